"""Reading data files into records: BOMs, encodings, RFC 4180 CSV, JSONL, and the bad-row policy.

Every reader yields `(line, record)` where `line` is the 1-based physical line where the record
starts, counts each record as one row read in the `LoadReport`, and hands every record it cannot
produce to `Rows.bad` (raise or skip). Header problems raise `DataError` in both modes: a file whose
header cannot be read has no columns to read rows with.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from retrieval.data.model import LoadReport, SkippedRow, SkipReason
from retrieval.data.values import BadValue
from retrieval.errors import DataError
from retrieval.log import get_logger

log = get_logger(__name__)

OnError = Literal["raise", "skip"]

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# A skipped row's message quotes input values; this keeps one line of a report readable.
MAX_REASON_CHARS = 300


class Rows:
    """The bad-row policy and the row accounting of one load."""

    def __init__(self, on_error: OnError) -> None:
        if on_error not in ("raise", "skip"):
            raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.report = LoadReport()

    def read(self, file: str | Path, n: int = 1) -> None:
        """Count `n` data rows read from `file`."""
        self.report.counts(file).rows_read += n

    def loaded(self, file: str | Path) -> None:
        """Count one row of `file` that became an item or an event."""
        self.report.counts(file).rows_loaded += 1

    def bad(self, file: str | Path, line: int, kind: SkipReason, reason: str) -> None:
        """A bad row: raise DataError (on_error="raise") or record it, typed, as skipped.

        Raises:
            DataError: on_error is "raise"; the message is `file:line: reason`, on one line.
        """
        reason = _one_line(reason)
        if self.on_error == "raise":
            raise DataError(f"{file}:{line}: {reason}")
        self.report.counts(file).rows_skipped += 1
        self.report.skipped.append(SkippedRow(str(file), line, reason, kind))
        log.debug("skipped %s:%d (%s): %s", file, line, kind.value, reason)

    def build(self, make: Callable[..., Any], file: str | Path, line: int) -> Any:
        """Run a record → container conversion; any failure becomes a bad row (and None)."""
        try:
            return make()
        except BadValue as exc:
            self.bad(file, line, exc.kind, str(exc))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            self.bad(file, line, SkipReason.INVALID_FIELD, f"invalid {where}: {first['msg']}")
        except KeyError as exc:
            self.bad(file, line, SkipReason.MALFORMED_ROW, f"malformed row: missing column {exc.args[0]!r}")
        except (ValueError, TypeError, OverflowError, OSError) as exc:
            self.bad(file, line, SkipReason.INVALID_VALUE, f"invalid value: {exc}")
        return None


def _one_line(text: str) -> str:
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "…"


def _raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, bytes with line ending) of every physical line; a UTF-8 BOM is dropped."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1:
                if raw.startswith(UTF16_BOMS):
                    raise DataError(f"{path}: UTF-16 text; save it as UTF-8")
                raw = raw.removeprefix(UTF8_BOM)
            yield lineno, raw


def _decoded(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """Physical lines decoded with surrogateescape, so undecodable bytes are found per record."""
    for lineno, raw in _raw_lines(path):
        yield lineno, raw.decode(encoding, errors="surrogateescape")


def _undecodable(text: str, encoding: str) -> str | None:
    """The bad-encoding message for text holding escaped undecodable bytes, else None."""
    for col, ch in enumerate(text, start=1):
        if "\udc80" <= ch <= "\udcff":
            return f"bad encoding: not valid {encoding} (byte 0x{ord(ch) - 0xDC00:02x} at column {col})"
    return None


def _check_header_text(path: Path, lineno: int, text: str, encoding: str) -> None:
    """DataError (in both modes) for a header with undecodable bytes: without it no row can be read."""
    problem = _undecodable(text, encoding)
    if problem:
        raise DataError(f"{path}:{lineno}: header {problem}; a file needs a readable header")


def check_columns(path: str | Path, names: list[str]) -> list[str]:
    """The header names, or DataError when one is empty or repeated (a column would be lost)."""
    seen: set[str] = set()
    for name in names:
        if not name or name in seen:
            what = "an empty column name" if not name else f"column {name!r} twice"
            raise DataError(f"{path}: header has {what}; every column needs its own name")
        seen.add(name)
    return names


def _nonblank(path: Path, lines: Iterator[tuple[int, str]], encoding: str,
              rows: Rows) -> Iterator[tuple[int, str]]:
    """Non-blank lines without their line ending, each counted as a row read; undecodable ones are bad."""
    for lineno, raw in lines:
        text = raw.rstrip("\r\n")
        if not text.strip():
            continue
        rows.read(path)
        problem = _undecodable(text, encoding)
        if problem:
            rows.bad(path, lineno, SkipReason.BAD_ENCODING, problem)
            continue
        yield lineno, text


def split_lines(path: Path, sep: str, encoding: str, rows: Rows) -> Iterator[tuple[int, list[str]]]:
    """Non-blank lines of an unquoted, headerless file split on `sep`; each one is a row read."""
    for lineno, text in _nonblank(path, _decoded(path, encoding), encoding, rows):
        yield lineno, text.split(sep)


def headed_split_lines(path: Path, sep: str, encoding: str,
                       rows: Rows) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(header names, rows) of an unquoted file whose first non-blank line is a header (names stripped)."""
    lines = _decoded(path, encoding)
    first = next(((n, t.rstrip("\r\n")) for n, t in lines if t.strip()), None)
    if first is None:
        raise DataError(f"{path}: empty file (no header line)")
    _check_header_text(path, *first, encoding)
    header = check_columns(path, [n.strip() for n in first[1].split(sep)])
    body = ((n, t.split(sep)) for n, t in _nonblank(path, lines, encoding, rows))
    return header, body


class _LineFeed:
    """Feeds decoded lines to csv.reader and keeps the lines of the record being read."""

    def __init__(self, lines: Iterator[tuple[int, str]]) -> None:
        self._lines = lines
        self.last = 0
        self.record: list[str] = []

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        self.last, text = next(self._lines)
        self.record.append(text)
        return text

    def replay(self, first: int, texts: list[str]) -> None:
        """Feed `texts` (physical lines numbered from `first`) again before the lines not yet read."""
        self._lines = itertools.chain(enumerate(texts, start=first), self._lines)
        self.last = first - 1

    def finish_quoted(self) -> None:
        """After a csv error, read on to where the record ends by RFC 4180 (its quotes balance)."""
        while "".join(self.record).count('"') % 2:
            try:
                next(self)
            except StopIteration:
                return


def csv_rows(path: Path, delimiter: str, rows: Rows) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(header names, records) of an RFC 4180 CSV/TSV file in UTF-8.

    A quoted field may hold delimiters, doubled quotes and newlines; a record is reported at the
    physical line where it starts. A field over csv.field_size_limit() is one bad row covering every
    line its record spans. A malformed record spanning several lines (a stray quote that swallowed
    the lines after it) is a bad row at its first line, and the lines after it are read again.
    """
    feed = _LineFeed(_decoded(path, "utf-8"))
    reader = csv.reader(feed, delimiter=delimiter, strict=True)
    header: list[str] | None = None
    while header is None:
        try:
            values = next(reader)
        except StopIteration:
            raise DataError(f"{path}: empty file (no header line)") from None
        except csv.Error as exc:
            raise DataError(f"{path}:{feed.last}: unreadable header ({exc})") from None
        if _blank(values):
            feed.record = []
            continue
        _check_header_text(path, feed.last, "".join(feed.record), "utf-8")
        header = check_columns(path, [v.strip() for v in values])
    return header, _csv_records(path, feed, lambda: csv.reader(feed, delimiter=delimiter, strict=True), reader, rows)


def _blank(values: list[str]) -> bool:
    return not values or (len(values) == 1 and not values[0].strip())


def _csv_records(path: Path, feed: _LineFeed, new_reader: Callable[[], Any], reader: Any,
                 rows: Rows) -> Iterator[tuple[int, list[str]]]:
    while True:
        feed.record = []
        start = feed.last + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            feed.finish_quoted()
            rows.read(path)
            if feed.last > start and "field limit" not in str(exc):
                # A stray quote made the record swallow the lines after it (up to the next quote or the
                # end of the file). Its own line is the bad row; the lines after it are read again as
                # records of their own, so none is lost behind one report.
                what = ("a quote that is never closed" if "unexpected end of data" in str(exc)
                        else f"{exc} (a stray quote?)")
                rows.bad(path, start, SkipReason.MALFORMED_ROW, f"malformed row: {what}")
                feed.replay(start + 1, feed.record[1:])
                reader = new_reader()
                continue
            rows.bad(path, start, *_csv_problem(exc, start, feed.last))
            continue
        if _blank(values):
            continue
        rows.read(path)
        problem = _undecodable("".join(feed.record), "utf-8")
        if problem:
            rows.bad(path, start, SkipReason.BAD_ENCODING, problem)
            continue
        yield start, [v.replace("\r\n", "\n") for v in values]


def _csv_problem(exc: csv.Error, start: int, end: int) -> tuple[SkipReason, str]:
    """The typed kind and message of a record csv.reader rejected (spanning lines start..end)."""
    span = f" (record spans lines {start}-{end})" if end > start else ""
    if "field limit" in str(exc):
        return SkipReason.FIELD_TOO_LARGE, f"field too large: over {csv.field_size_limit():,} characters{span}"
    if "unexpected end of data" in str(exc):
        return SkipReason.MALFORMED_ROW, f"malformed row: unterminated quoted field{span}"
    return SkipReason.MALFORMED_ROW, f"malformed row: {exc}{span}"


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadValue(SkipReason.MALFORMED_ROW, f"malformed row: key {key!r} appears twice")
        out[key] = value
    return out


def jsonl_rows(path: Path, rows: Rows) -> Iterator[tuple[int, dict[str, Any]]]:
    """JSON objects, one per non-blank line of a UTF-8 file; anything else is a bad row."""
    for lineno, text in _nonblank(path, _decoded(path, "utf-8"), "utf-8", rows):
        rec = rows.build(lambda t=text: _json_object(t), path, lineno)
        if rec is not None:
            yield lineno, rec


def _json_object(text: str) -> dict[str, Any]:
    try:
        rec = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except BadValue:
        raise
    except json.JSONDecodeError as exc:
        raise BadValue(SkipReason.MALFORMED_ROW, f"malformed row: invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise BadValue(SkipReason.TOO_DEEP, "nesting too deep: JSON nested beyond Python's recursion limit") from None
    except ValueError as exc:  # e.g. an integer longer than sys.get_int_max_str_digits()
        raise BadValue(SkipReason.MALFORMED_ROW, f"malformed row: invalid JSON ({exc})") from None
    if not isinstance(rec, dict):
        raise BadValue(SkipReason.MALFORMED_ROW, "malformed row: JSON line is not an object")
    return rec
