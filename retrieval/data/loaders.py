"""Loaders: MovieLens (100K, `::` files, CSV), RecBole atomic files, generic CSV/JSONL/DataFrame.

Every loader takes `on_error`: "raise" (default) stops at the first bad row with one line naming
file and line; "skip" skips it and records it, typed, in `Dataset.report`. Nothing is dropped or
coerced silently, and no input makes a loader fail with anything but `DataError`:

- Files: a UTF-8 BOM at the start of any file is dropped; a UTF-16 file is a DataError. MovieLens
  100K/`.dat` files are Latin-1, every other file UTF-8; a row with undecodable bytes is a bad row,
  an undecodable header is a DataError in both modes (no row can be read without it). Blank lines
  are not rows.
- CSV/TSV follow RFC 4180: a quoted field keeps its delimiters, doubled quotes and newlines (a
  CRLF inside a quoted field becomes LF); rows are reported at the line where they start. Header
  names are stripped of surrounding whitespace; an empty or repeated name, or a mapped column
  missing from the header, is a DataError. A field over 131,072 characters (csv.field_size_limit)
  is one bad row covering the lines it spans. A stray or unterminated quote is a bad row at its own
  line, and the lines it swallowed are read again as rows of their own.
- JSONL: one object per line; invalid JSON, a non-object, a repeated key or nesting deeper than the
  recursion limit is a bad row.
- Values (`retrieval.data.values`): ids are text (stripped) or numbers (7 and 7.0 → "7"); null, empty,
  NaN, bool or list/dict ids are bad rows. Titles are text or numbers; text fields longer than
  131,072 characters or holding a NUL byte are bad rows, in every format. Ratings are numbers or
  numeric text, finite and >= 0; null/empty → no rating. A missing or empty action → the loader's
  default action. DataFrame loaders read pandas' NaN/NaT/NA as missing (files never do).
- Accounting: `Dataset.report` counts rows per file (a row is a data record: see `LoadReport`)
  with rows_read == rows_loaded + rows_skipped, and keeps every skipped row.
- A load that ends with no items or no events is a DataError naming the files, in both modes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from retrieval.data import values as val
from retrieval.data.model import Catalog, Dataset, Event, Item, SkipReason
from retrieval.data.records import OnError, Rows, check_columns, csv_rows, headed_split_lines, jsonl_rows, split_lines
from retrieval.data.values import parse_time
from retrieval.errors import DataError, EmptyDatasetError
from retrieval.log import get_logger

log = get_logger(__name__)

__all__ = ["ML100K_GENRES", "SYNTHETIC_EPOCH", "ColumnMap", "ItemColumnMap", "OnError", "load_csv",
           "load_dataframe", "load_movielens_100k", "load_movielens_csv", "load_movielens_dat", "load_recbole",
           "parse_time"]

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)
# Sequences without timestamps get one synthetic day per position, so recency in days == in events.
SYNTHETIC_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

Located = list[tuple[Any, str, int]]  # (Item or Event, file, line)


def _finish(items: Located, events: Located, rows: Rows, name: str, sources: tuple[str, str]) -> Dataset:
    """Build the catalogue, resolve duplicate items and unknown-item events through the policy.

    Raises:
        EmptyDatasetError: no item or no event is left (in both modes), naming the files.
    """
    seen: dict[str, Item] = {}
    for item, file, line in items:
        if item.id in seen:
            rows.bad(file, line, SkipReason.DUPLICATE_ITEM, f"duplicate item id: {item.id!r}")
            continue
        seen[item.id] = item
        rows.loaded(file)
    catalog = Catalog(seen.values())
    kept: list[Event] = []
    for ev, file, line in events:
        if ev.item not in catalog:
            rows.bad(file, line, SkipReason.UNKNOWN_ITEM, f"unknown item id: {ev.item!r} not in catalogue")
            continue
        kept.append(ev)
        rows.loaded(file)
    if rows.report.skipped:  # each row was logged at DEBUG when skipped; one summary line here
        log.warning("%s: %s", name, rows.report.summary())
    else:
        log.info("%s: %s", name, rows.report.summary())
    for what, count, source in (("items", len(catalog), sources[0]), ("events", len(kept), sources[1])):
        if not count:
            raise EmptyDatasetError(f"{source}: no {what} loaded ({rows.report.summary()}); "
                                    "a dataset needs at least one item and one event", rows.report)
    return Dataset(catalog, kept, name=name, report=rows.report)


def _add(out: Located, obj: Any, file: Path | str, line: int) -> None:
    if obj is not None:
        out.append((obj, str(file), line))


def load_movielens_100k(path: str | Path, on_error: OnError = "raise") -> Dataset:
    """Load GroupLens MovieLens 100K (`u.item` Latin-1 with 19 genre flags, `u.data` tab-separated).

    Args:
        path: Directory holding `u.data` and `u.item`.
        on_error: "raise" or "skip" (see module docstring).
    """
    root = Path(path)
    rows = Rows(on_error)
    items: Located = []
    item_file = root / "u.item"
    for lineno, parts in split_lines(item_file, "|", "latin-1", rows):
        if len(parts) != 24:
            rows.bad(item_file, lineno, SkipReason.MALFORMED_ROW,
                     f"malformed row: expected 24 '|' fields, got {len(parts)}")
            continue
        if any(flag not in ("0", "1") for flag in parts[5:]):
            rows.bad(item_file, lineno, SkipReason.MALFORMED_ROW, "malformed row: genre flags must be 0/1")
            continue
        cats = tuple(g for g, flag in zip(ML100K_GENRES, parts[5:], strict=True) if flag == "1")
        _add(items, rows.build(lambda p=parts, c=cats: _ml100k_item(p, c), item_file, lineno), item_file, lineno)
    events = _events_from_split(root / "u.data", "\t", rows)
    return _finish(items, events, rows, "ml-100k", (str(item_file), str(root / "u.data")))


def _ml100k_item(parts: list[str], cats: tuple[str, ...]) -> Item:
    release = val.optional_text(parts[2].strip(), "release date")
    return Item(id=val.identifier(parts[0], "id"), title=val.title(parts[1]),
                text=f"Released {release}." if release else "", categories=cats)


def _events_from_split(file: Path, sep: str, rows: Rows) -> Located:
    """user SEP item SEP rating SEP epoch-seconds rows (u.data and ratings.dat, Latin-1)."""
    events: Located = []
    for lineno, parts in split_lines(file, sep, "latin-1", rows):
        if len(parts) != 4:
            rows.bad(file, lineno, SkipReason.MALFORMED_ROW, f"malformed row: expected 4 fields, got {len(parts)}")
            continue
        _add(events, rows.build(lambda p=parts: Event(
            user=val.identifier(p[0], "user"), item=val.identifier(p[1], "item"),
            rating=val.rating(p[2], required=True), timestamp=val.epoch(p[3]), action="rate"), file, lineno),
            file, lineno)
    return events


def load_movielens_dat(path: str | Path, on_error: OnError = "raise") -> Dataset:
    """Load MovieLens 1M/10M style `movies.dat` + `ratings.dat` (`::` separated, genres `A|B`)."""
    root = Path(path)
    rows = Rows(on_error)
    items: Located = []
    movies = root / "movies.dat"
    for lineno, parts in split_lines(movies, "::", "latin-1", rows):
        if len(parts) != 3:
            rows.bad(movies, lineno, SkipReason.MALFORMED_ROW,
                     f"malformed row: expected 3 '::' fields, got {len(parts)}")
            continue
        _add(items, rows.build(lambda p=parts: Item(
            id=val.identifier(p[0], "id"), title=val.title(p[1]), categories=val.categories(p[2])), movies, lineno),
            movies, lineno)
    events = _events_from_split(root / "ratings.dat", "::", rows)
    return _finish(items, events, rows, root.name or "movielens", (str(movies), str(root / "ratings.dat")))


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
    day per position, and `Event.synthetic_time` is set; each position is one row of the report.
    """
    root = Path(path)
    if name is None:
        found = sorted(root.glob("*.item"))
        if len(found) != 1:
            raise DataError(f"{root}: expected exactly one *.item file, found {len(found)}; pass name=")
        name = found[0].name[: -len(".item")]
    rows = Rows(on_error)
    items: Located = []
    item_file = root / f"{name}.item"
    for lineno, rec in _atomic_records(item_file, rows, ["item_id"]):
        _add(items, rows.build(lambda r=rec: _atomic_item(r), item_file, lineno), item_file, lineno)
    plain, seq = root / f"{name}.inter", root / f"{name}.test.inter"
    if plain.is_file():
        events, source = _plain_inter(plain, rows), plain
    elif seq.is_file():
        events, source = _sequence_inter(seq, rows), seq
    else:
        raise DataError(f"{root}: neither {plain.name} nor {seq.name} found")
    return _finish(items, events, rows, name, (str(item_file), str(source)))


def _atomic_item(rec: dict[str, str]) -> Item:
    """An item of a RecBole `.item` file: title from `title` or `movie_title`, labels from `categories`
    or `genre` (space-separated)."""
    labels = val.optional_text(rec.get("categories", rec.get("genre")), "categories") or ""
    return Item(id=val.identifier(rec["item_id"], "item_id"), title=val.title(rec.get("title", rec.get("movie_title"))),
                categories=tuple(labels.split()))


def _plain_inter(file: Path, rows: Rows) -> Located:
    events: Located = []
    for lineno, rec in _atomic_records(file, rows, ["user_id", "item_id"]):
        _add(events, rows.build(lambda r=rec: Event(
            user=val.identifier(r["user_id"], "user_id"), item=val.identifier(r["item_id"], "item_id"),
            timestamp=val.epoch(r["timestamp"]) if "timestamp" in r else SYNTHETIC_EPOCH,
            rating=val.rating(r.get("rating")), synthetic_time="timestamp" not in r), file, lineno), file, lineno)
    return events


def _sequence_inter(file: Path, rows: Rows) -> Located:
    events: Located = []
    for lineno, rec in _atomic_records(file, rows, ["user_id", "item_id_list", "item_id"]):
        sequence = rec["item_id_list"].split() + [rec["item_id"]]
        rows.read(file, len(sequence) - 1)  # the record was counted once; each position is a row
        for pos, iid in enumerate(sequence):
            _add(events, rows.build(lambda i=iid, p=pos, r=rec: Event(
                user=val.identifier(r["user_id"], "user_id"), item=val.identifier(i, "item_id"),
                timestamp=SYNTHETIC_EPOCH + timedelta(days=p), synthetic_time=True), file, lineno), file, lineno)
    return events


def _atomic_records(file: Path, rows: Rows, needed: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """RecBole atomic rows (tab-separated, UTF-8) as {field name without its `:type`: value}."""
    header, lines = headed_split_lines(file, "\t", "utf-8", rows)
    fields = check_columns(file, [f.split(":")[0].strip() for f in header])
    _require(file, fields, needed)
    yield from _with_names(file, fields, lines, rows)


class ColumnMap:
    """Which source columns hold an event's fields (generic CSV/JSONL/DataFrame loaders).

    `user`, `item` and `timestamp` are required. `action` and `text` are read only when named;
    `rating` is read from the named column, or when None from a `rating` column if there is one.
    A named column missing from a CSV header or a DataFrame is a DataError; in JSONL a named
    optional key missing from a line means no value.
    """

    def __init__(self, user: str = "user", item: str = "item", timestamp: str = "timestamp",
                 action: str | None = None, rating: str | None = None, text: str | None = None) -> None:
        self.user, self.item, self.timestamp = user, item, timestamp
        self.action, self.rating, self.text = action, rating, text

    def named(self) -> list[str]:
        """The columns a table must have: the required ones and every optional one given by name."""
        return [c for c in (self.user, self.item, self.timestamp, self.action, self.rating, self.text) if c]


class ItemColumnMap:
    """Which source columns hold an item's fields; `categories` is split on `|` or `,` (or a JSON list)."""

    def __init__(self, id: str = "id", title: str = "title", text: str | None = None,
                 categories: str | None = None) -> None:
        self.id, self.title, self.text, self.categories = id, title, text, categories

    def named(self) -> list[str]:
        """The columns a table must have."""
        return [c for c in (self.id, self.title, self.text, self.categories) if c]


def _item_from(rec: Mapping[str, Any], m: ItemColumnMap) -> Item:
    return Item(id=val.identifier(rec[m.id], "id"), title=val.title(rec[m.title]),
                text=(val.optional_text(rec.get(m.text), "text") or "") if m.text else "",
                categories=val.categories(rec.get(m.categories)) if m.categories else ())


def _event_from(rec: Mapping[str, Any], m: ColumnMap, default_action: str) -> Event:
    action = val.optional_text(rec.get(m.action), "action") if m.action else None
    return Event(user=val.identifier(rec[m.user], "user"), item=val.identifier(rec[m.item], "item"),
                 timestamp=parse_time(rec[m.timestamp]), action=(action or "").strip() or default_action,
                 rating=val.rating(rec.get(m.rating or "rating")),
                 text=val.optional_text(rec.get(m.text), "text") if m.text else None)


def _records(file: Path, rows: Rows, needed: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records of a CSV/TSV (header checked for the `needed` columns) or JSONL/NDJSON file."""
    if file.suffix in (".jsonl", ".ndjson"):
        return jsonl_rows(file, rows)
    header, lines = csv_rows(file, "\t" if file.suffix == ".tsv" else ",", rows)
    _require(file, header, needed)
    return _with_names(file, header, lines, rows)


def _require(source: str | Path, columns: list[str], needed: list[str]) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(f"{source}: missing column {missing[0]!r} (columns: {', '.join(map(str, columns))})")


def _with_names(file: Path, header: list[str], lines: Iterator[tuple[int, list[str]]],
                rows: Rows) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, values in lines:
        if len(values) != len(header):
            rows.bad(file, lineno, SkipReason.MALFORMED_ROW,
                     f"malformed row: expected {len(header)} fields, got {len(values)}")
            continue
        yield lineno, dict(zip(header, values, strict=True))


def load_csv(events_file: str | Path, items_file: str | Path, columns: ColumnMap | None = None,
             item_columns: ItemColumnMap | None = None, on_error: OnError = "raise",
             name: str | None = None, default_action: str = "interact") -> Dataset:
    """Load events and items from CSV/TSV/JSONL files with a column mapping (see module docstring)."""
    cmap, imap = columns or ColumnMap(), item_columns or ItemColumnMap()
    rows = Rows(on_error)
    ifile, efile = Path(items_file), Path(events_file)
    items: Located = []
    for lineno, rec in _records(ifile, rows, imap.named()):
        _add(items, rows.build(lambda r=rec: _item_from(r, imap), ifile, lineno), ifile, lineno)
    events: Located = []
    for lineno, rec in _records(efile, rows, cmap.named()):
        _add(events, rows.build(lambda r=rec: _event_from(r, cmap, default_action), efile, lineno), efile, lineno)
    return _finish(items, events, rows, name or efile.stem, (str(ifile), str(efile)))


def _table_records(frame: Any, source: str, needed: list[str]) -> list[dict[str, Any]]:
    """A DataFrame's rows as dicts with pandas' missing markers (NaN, NaT, NA) turned into None."""
    import pandas as pd

    _require(source, [str(c) for c in frame.columns], needed)
    check_columns(source, [str(c) for c in frame.columns])
    out = frame.astype(object).where(pd.notna(frame), None)
    return list(out.to_dict("records"))


def load_dataframe(events: Any, items: Any, columns: ColumnMap | None = None,
                   item_columns: ItemColumnMap | None = None, on_error: OnError = "raise",
                   name: str = "dataframe", default_action: str = "interact") -> Dataset:
    """Load from pandas DataFrames; rows are reported as "events"/"items" with 0-based positions."""
    cmap, imap = columns or ColumnMap(), item_columns or ItemColumnMap()
    rows = Rows(on_error)
    item_list: Located = []
    for pos, rec in enumerate(_table_records(items, "items", imap.named())):
        rows.read("items")
        _add(item_list, rows.build(lambda r=rec: _item_from(r, imap), "items", pos), "items", pos)
    ev_list: Located = []
    for pos, rec in enumerate(_table_records(events, "events", cmap.named())):
        rows.read("events")
        _add(ev_list, rows.build(lambda r=rec: _event_from(r, cmap, default_action), "events", pos), "events", pos)
    return _finish(item_list, ev_list, rows, name, ("items", "events"))

