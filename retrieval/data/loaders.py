"""Loaders: MovieLens (100K, `::` files, CSV), RecBole atomic files, generic CSV/JSONL/DataFrame.

Every loader takes `on_error`: "raise" (default) stops at the first bad row naming file and line;
"skip" skips it and records the row and reason in `Dataset.report`. Nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from retrieval.data.model import Catalog, Dataset, Event, Item, LoadReport, SkippedRow, SkipReason
from retrieval.errors import DataError

OnError = Literal["raise", "skip"]

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)
# Sequences without timestamps get one synthetic day per position, so recency in days == in events.
SYNTHETIC_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class _Rows:
    """Collects rows and problems for one load; enforces the on_error policy in one place."""

    def __init__(self, on_error: OnError) -> None:
        if on_error not in ("raise", "skip"):
            raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.report = LoadReport()

    def bad(self, file: str | Path, line: int, kind: SkipReason, reason: str) -> None:
        """A bad row: raise DataError (on_error="raise") or record it with its typed kind and message."""
        if self.on_error == "raise":
            raise DataError(f"{file}:{line}: {reason}")
        self.report.skipped.append(SkippedRow(str(file), line, reason, kind))

    def build(self, make: Callable[..., Any], file: str | Path, line: int) -> Any:
        """Run a pydantic constructor; a validation failure becomes a bad row."""
        try:
            return make()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            self.bad(file, line, SkipReason.INVALID_FIELD, f"invalid {where}: {first['msg']}")
        except (ValueError, OverflowError, OSError) as exc:
            self.bad(file, line, SkipReason.INVALID_VALUE, f"invalid value: {exc}")
        return None


def _lines(path: Path, encoding: str, rows: _Rows) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text) for non-blank lines; undecodable lines are bad rows."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode(encoding).rstrip("\r\n")
            except UnicodeDecodeError as exc:
                rows.bad(path, lineno, SkipReason.BAD_ENCODING, f"bad encoding: not valid {encoding} ({exc.reason})")
                continue
            if text.strip():
                rows.report.rows_read += 1
                yield lineno, text


def _epoch(value: str) -> datetime:
    seconds = float(value)
    if not 0 <= seconds < 4_102_444_800:  # 2100-01-01
        raise ValueError(f"timestamp {value} out of range 1970..2100")
    return datetime.fromtimestamp(seconds, tz=UTC)


def _finish(catalog_items: list[tuple[Item, str, int]], events: list[Event], rows: _Rows, name: str,
            event_lines: list[tuple[str, int]]) -> Dataset:
    """Build the catalogue, resolve unknown-item events through the policy, return the Dataset."""
    seen: dict[str, Item] = {}
    for item, file, line in catalog_items:
        if item.id in seen:
            rows.bad(file, line, SkipReason.DUPLICATE_ITEM, f"duplicate item id: {item.id!r}")
            continue
        seen[item.id] = item
    catalog = Catalog(seen.values())
    kept: list[Event] = []
    for ev, (file, line) in zip(events, event_lines, strict=True):
        if ev.item not in catalog:
            rows.bad(file, line, SkipReason.UNKNOWN_ITEM, f"unknown item id: {ev.item!r} not in catalogue")
            continue
        kept.append(ev)
    return Dataset(catalog, kept, name=name, report=rows.report)


def load_movielens_100k(path: str | Path, on_error: OnError = "raise") -> Dataset:
    """Load GroupLens MovieLens 100K (`u.item` Latin-1 with 19 genre flags, `u.data` tab-separated).

    Args:
        path: Directory holding `u.data` and `u.item`.
        on_error: "raise" or "skip" (see module docstring).
    """
    root = Path(path)
    rows = _Rows(on_error)
    items: list[tuple[Item, str, int]] = []
    item_file = root / "u.item"
    for lineno, text in _lines(item_file, "latin-1", rows):
        parts = text.split("|")
        if len(parts) != 24:
            rows.bad(item_file, lineno, SkipReason.MALFORMED_ROW,
                     f"malformed row: expected 24 '|' fields, got {len(parts)}")
            continue
        if any(flag not in ("0", "1") for flag in parts[5:]):
            rows.bad(item_file, lineno, SkipReason.MALFORMED_ROW, "malformed row: genre flags must be 0/1")
            continue
        cats = tuple(g for g, flag in zip(ML100K_GENRES, parts[5:], strict=True) if flag == "1")
        release = f"Released {parts[2]}." if parts[2] else ""
        item = rows.build(lambda p=parts, c=cats, r=release: Item(id=p[0], title=p[1], text=r, categories=c),
                          item_file, lineno)
        if item is not None:
            items.append((item, str(item_file), lineno))
    events, where = _events_from_split(root / "u.data", "\t", "latin-1", rows)
    return _finish(items, events, rows, "ml-100k", where)


def _events_from_split(file: Path, sep: str, encoding: str, rows: _Rows) -> tuple[list[Event], list[tuple[str, int]]]:
    """user SEP item SEP rating SEP epoch-seconds rows (u.data and ratings.dat)."""
    events: list[Event] = []
    where: list[tuple[str, int]] = []
    for lineno, text in _lines(file, encoding, rows):
        parts = text.split(sep)
        if len(parts) != 4:
            rows.bad(file, lineno, SkipReason.MALFORMED_ROW, f"malformed row: expected 4 fields, got {len(parts)}")
            continue
        ev = rows.build(lambda p=parts: Event(user=p[0].strip(), item=p[1].strip(), rating=float(p[2]),
                                              timestamp=_epoch(p[3]), action="rate"), file, lineno)
        if ev is not None:
            events.append(ev)
            where.append((str(file), lineno))
    return events, where


def load_movielens_dat(path: str | Path, on_error: OnError = "raise") -> Dataset:
    """Load MovieLens 1M/10M style `movies.dat` + `ratings.dat` (`::` separated, genres `A|B`)."""
    root = Path(path)
    rows = _Rows(on_error)
    items: list[tuple[Item, str, int]] = []
    movies = root / "movies.dat"
    for lineno, text in _lines(movies, "latin-1", rows):
        parts = text.split("::")
        if len(parts) != 3:
            rows.bad(movies, lineno, SkipReason.MALFORMED_ROW,
                     f"malformed row: expected 3 '::' fields, got {len(parts)}")
            continue
        cats = tuple(g for g in parts[2].split("|") if g and g != "(no genres listed)")
        item = rows.build(lambda p=parts, c=cats: Item(id=p[0], title=p[1], categories=c), movies, lineno)
        if item is not None:
            items.append((item, str(movies), lineno))
    events, where = _events_from_split(root / "ratings.dat", "::", "latin-1", rows)
    return _finish(items, events, rows, root.name or "movielens", where)


def _csv_records(file: Path, rows: _Rows, delimiter: str = ",") -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line, record) from a headed CSV; rows with the wrong field count are bad rows."""
    lines = list(_lines(file, "utf-8", rows))
    if not lines:
        raise DataError(f"{file}: empty file")
    header_line, header = lines[0]
    rows.report.rows_read -= 1  # the header is not a data row
    fields = next(csv.reader([header], delimiter=delimiter))
    for lineno, text in lines[1:]:
        values = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
        if len(values) != len(fields):
            rows.bad(file, lineno, SkipReason.MALFORMED_ROW,
                     f"malformed row: expected {len(fields)} fields, got {len(values)}")
            continue
        yield lineno, dict(zip(fields, values, strict=True))


def load_movielens_csv(path: str | Path, on_error: OnError = "raise") -> Dataset:
    """Load MovieLens `movies.csv` (movieId,title,genres) + `ratings.csv` (userId,movieId,rating,timestamp)."""
    root = Path(path)
    mapping = ColumnMap(user="userId", item="movieId", timestamp="timestamp", rating="rating")
    item_map = ItemColumnMap(id="movieId", title="title", categories="genres")
    return load_csv(root / "ratings.csv", root / "movies.csv", mapping, item_map, on_error=on_error,
                    name=root.name or "movielens", default_action="rate")


def load_recbole(path: str | Path, name: str | None = None, on_error: OnError = "raise") -> Dataset:
    """Load RecBole atomic files: `NAME.item` plus `NAME.inter` or LLMRank's `NAME.test.inter`.

    `.inter` files with a `timestamp:float` column give real times. LLMRank's `.test.inter`
    (`user_id, item_id_list, item_id`) has order only: each event gets a synthetic timestamp of one
    day per position, and `Event.synthetic_time` is set.
    """
    root = Path(path)
    if name is None:
        found = sorted(root.glob("*.item"))
        if len(found) != 1:
            raise DataError(f"{root}: expected exactly one *.item file, found {len(found)}; pass name=")
        name = found[0].name[: -len(".item")]
    rows = _Rows(on_error)
    items: list[tuple[Item, str, int]] = []
    item_file = root / f"{name}.item"
    for lineno, rec in _atomic_records(item_file, rows):
        title = rec.get("title") or rec.get("movie_title") or ""
        cats = tuple((rec.get("categories") or rec.get("genre") or "").split())
        item = rows.build(lambda r=rec, t=title, c=cats: Item(id=r.get("item_id", ""), title=t, categories=c),
                          item_file, lineno)
        if item is not None:
            items.append((item, str(item_file), lineno))
    events: list[Event] = []
    where: list[tuple[str, int]] = []
    plain, seq = root / f"{name}.inter", root / f"{name}.test.inter"
    if plain.is_file():
        for lineno, rec in _atomic_records(plain, rows):
            ev = rows.build(lambda r=rec: Event(
                user=r.get("user_id", ""), item=r.get("item_id", ""),
                timestamp=_epoch(r["timestamp"]) if "timestamp" in r else SYNTHETIC_EPOCH,
                rating=float(r["rating"]) if r.get("rating") else None,
                synthetic_time="timestamp" not in r), plain, lineno)
            if ev is not None:
                events.append(ev)
                where.append((str(plain), lineno))
    elif seq.is_file():
        for lineno, rec in _atomic_records(seq, rows):
            sequence = rec.get("item_id_list", "").split() + [rec.get("item_id", "")]
            user = rec.get("user_id", "")
            for pos, iid in enumerate(sequence):
                ev = rows.build(lambda u=user, i=iid, p=pos: Event(
                    user=u, item=i, timestamp=SYNTHETIC_EPOCH + timedelta(days=p), synthetic_time=True),
                    seq, lineno)
                if ev is not None:
                    events.append(ev)
                    where.append((str(seq), lineno))
    else:
        raise DataError(f"{root}: neither {plain.name} nor {seq.name} found")
    return _finish(items, events, rows, name, where)


def _atomic_records(file: Path, rows: _Rows) -> Iterator[tuple[int, dict[str, str]]]:
    """RecBole atomic rows as {field name without type: value}."""
    lines = _lines(file, "utf-8", rows)
    first = next(lines, None)
    if first is None:
        raise DataError(f"{file}: empty file")
    rows.report.rows_read -= 1
    fields = [f.split(":")[0] for f in first[1].split("\t")]
    for lineno, text in lines:
        values = text.split("\t")
        if len(values) != len(fields):
            rows.bad(file, lineno, SkipReason.MALFORMED_ROW,
                     f"malformed row: expected {len(fields)} fields, got {len(values)}")
            continue
        yield lineno, dict(zip(fields, values, strict=True))


class ColumnMap:
    """Which source columns hold an event's fields (generic CSV/JSONL/DataFrame loaders)."""

    def __init__(self, user: str = "user", item: str = "item", timestamp: str = "timestamp",
                 action: str | None = None, rating: str | None = None, text: str | None = None) -> None:
        self.user, self.item, self.timestamp = user, item, timestamp
        self.action, self.rating, self.text = action, rating, text


class ItemColumnMap:
    """Which source columns hold an item's fields; `categories` is split on `|` or `,`."""

    def __init__(self, id: str = "id", title: str = "title", text: str | None = None,
                 categories: str | None = None) -> None:
        self.id, self.title, self.text, self.categories = id, title, text, categories


def parse_time(value: Any) -> datetime:
    """Epoch seconds (number or numeric string) or ISO 8601; naive times are taken as UTC."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, int | float) or (
            isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit()):
        return _epoch(str(value))
    elif isinstance(value, str):
        dt = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"unreadable timestamp {value!r}")
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _item_from(rec: Mapping[str, Any], m: ItemColumnMap) -> Item:
    raw = str(rec.get(m.categories, "") or "") if m.categories else ""
    cats = tuple(c.strip() for c in raw.replace(",", "|").split("|") if c.strip() and c.strip() != "(no genres listed)")
    return Item(id=str(rec[m.id]), title=str(rec[m.title] or ""),
                text=str(rec.get(m.text) or "") if m.text else "", categories=cats)


def _event_from(rec: Mapping[str, Any], m: ColumnMap, default_action: str) -> Event:
    rating = rec.get(m.rating) if m.rating else None
    text = rec.get(m.text) if m.text else None
    return Event(user=str(rec[m.user]), item=str(rec[m.item]), timestamp=parse_time(rec[m.timestamp]),
                 action=(rec.get(m.action) if m.action else None) or default_action,
                 rating=float(rating) if rating not in (None, "") else None,
                 text=str(text) if text not in (None, "") else None)


def _records(file: Path, rows: _Rows) -> Iterator[tuple[int, dict[str, Any]]]:
    if file.suffix in (".jsonl", ".ndjson"):
        for lineno, text in _lines(file, "utf-8", rows):
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as exc:
                rows.bad(file, lineno, SkipReason.MALFORMED_ROW, f"malformed row: invalid JSON ({exc.msg})")
                continue
            if not isinstance(rec, dict):
                rows.bad(file, lineno, SkipReason.MALFORMED_ROW, "malformed row: JSON line is not an object")
                continue
            yield lineno, rec
    else:
        yield from _csv_records(file, rows, "\t" if file.suffix == ".tsv" else ",")


def load_csv(events_file: str | Path, items_file: str | Path, columns: ColumnMap | None = None,
             item_columns: ItemColumnMap | None = None, on_error: OnError = "raise",
             name: str | None = None, default_action: str = "interact") -> Dataset:
    """Load events and items from CSV/TSV/JSONL files with a column mapping."""
    cmap, imap = columns or ColumnMap(), item_columns or ItemColumnMap()
    rows = _Rows(on_error)
    ifile, efile = Path(items_file), Path(events_file)
    items: list[tuple[Item, str, int]] = []
    for lineno, rec in _records(ifile, rows):
        item = _guarded(rows, ifile, lineno, lambda r=rec: _item_from(r, imap))
        if item is not None:
            items.append((item, str(ifile), lineno))
    events: list[Event] = []
    where: list[tuple[str, int]] = []
    for lineno, rec in _records(efile, rows):
        ev = _guarded(rows, efile, lineno, lambda r=rec: _event_from(r, cmap, default_action))
        if ev is not None:
            events.append(ev)
            where.append((str(efile), lineno))
    return _finish(items, events, rows, name or efile.stem, where)


def _guarded(rows: _Rows, file: Path | str, lineno: int, make: Callable[..., Any]) -> Any:
    try:
        return rows.build(make, file, lineno)
    except KeyError as exc:
        rows.bad(file, lineno, SkipReason.MALFORMED_ROW, f"malformed row: missing column {exc.args[0]!r}")
        return None


def load_dataframe(events: Any, items: Any, columns: ColumnMap | None = None,
                   item_columns: ItemColumnMap | None = None, on_error: OnError = "raise",
                   name: str = "dataframe", default_action: str = "interact") -> Dataset:
    """Load from pandas DataFrames; row numbers in errors are 0-based DataFrame positions."""
    cmap, imap = columns or ColumnMap(), item_columns or ItemColumnMap()
    rows = _Rows(on_error)
    item_list: list[tuple[Item, str, int]] = []
    for pos, rec in enumerate(items.to_dict("records")):
        rows.report.rows_read += 1
        item = _guarded(rows, "items", pos, lambda r=rec: _item_from(r, imap))
        if item is not None:
            item_list.append((item, "items", pos))
    ev_list: list[Event] = []
    where: list[tuple[str, int]] = []
    for pos, rec in enumerate(events.to_dict("records")):
        rows.report.rows_read += 1
        ev = _guarded(rows, "events", pos, lambda r=rec: _event_from(r, cmap, default_action))
        if ev is not None:
            ev_list.append(ev)
            where.append(("events", pos))
    return _finish(item_list, ev_list, rows, name, where)
