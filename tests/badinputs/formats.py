"""The base data (a small slice of ml-100k, read, never copied whole) and how each supported format writes it."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.badinputs.filebuilder import FileBuilder, accounting

GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western")


@dataclass(frozen=True)
class BaseItem:
    """One catalogue item of the base data."""

    id: str
    title: str
    release: str
    genres: tuple[str, ...]


@dataclass(frozen=True)
class BaseEvent:
    """One rating event of the base data."""

    user: str
    item: str
    rating: int
    ts: int


def base_data(ml100k: Path, n_items: int = 100, n_users: int = 60) -> tuple[list[BaseItem], list[BaseEvent]]:
    """Items 1..n_items of ml-100k and the events of users 1..n_users on them (about 1,000 events)."""
    items = []
    for line in (ml100k / "u.item").read_bytes().decode("latin-1").splitlines():
        parts = line.split("|")
        if int(parts[0]) <= n_items:
            genres = tuple(g for g, flag in zip(GENRES, parts[5:], strict=True) if flag == "1")
            items.append(BaseItem(parts[0], parts[1], parts[2], genres))
    events = []
    for line in (ml100k / "u.data").read_text().splitlines():
        u, i, r, t = line.split("\t")
        if int(i) <= n_items and int(u) <= n_users:
            events.append(BaseEvent(u, i, int(r), int(t)))
    return items, events


def case_user(events: list[BaseEvent]) -> str:
    """A user with 10 to 25 base events: enough history, and most of the 100 items left to recommend."""
    counts: dict[str, int] = {}
    for e in events:
        counts[e.user] = counts.get(e.user, 0) + 1
    return next(u for u in sorted(counts, key=int) if 10 <= counts[u] <= 25)


@dataclass(frozen=True)
class Raw:
    """A hand-written row (bad or odd) inserted among the rendered ones; see `FileBuilder.row`."""

    text: str | bytes
    bad: str = ""
    probe: dict[str, Any] | None = None
    records: int = 1
    end: bytes = b"\n"
    odd: bool = False


def _csv_line(values: list[str], delimiter: str = ",") -> str:
    """One RFC 4180 record without its line end (a field holding a newline is quoted)."""
    out = io.StringIO()
    # The writer quotes fields holding a character of its line terminator: "\n" here, then cut off.
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerow(values)
    return out.getvalue().removesuffix("\n")


@dataclass(frozen=True)
class Format:
    """Where a format keeps items and events and how it writes one row of each."""

    name: str
    items_file: str
    events_file: str
    encoding: str
    item_header: str | None
    event_header: str | None
    item: Callable[[BaseItem], str]
    event: Callable[[BaseEvent], str]
    rates: bool = True  # the loader reads the rating


def _ml100k_item(it: BaseItem) -> str:
    flags = "|".join("1" if g in it.genres else "0" for g in GENRES)
    return f"{it.id}|{it.title}|{it.release}||http://example.invalid/{it.id}|{flags}"


FORMATS: dict[str, Format] = {
    "ml100k": Format("ml100k", "u.item", "u.data", "latin-1", None, None, _ml100k_item,
                     lambda e: f"{e.user}\t{e.item}\t{e.rating}\t{e.ts}"),
    "dat": Format("dat", "movies.dat", "ratings.dat", "latin-1", None, None,
                  lambda it: f"{it.id}::{it.title}::{'|'.join(it.genres)}",
                  lambda e: f"{e.user}::{e.item}::{e.rating}::{e.ts}"),
    "mlcsv": Format("mlcsv", "movies.csv", "ratings.csv", "utf-8", "movieId,title,genres",
                    "userId,movieId,rating,timestamp",
                    lambda it: _csv_line([it.id, it.title, "|".join(it.genres)]),
                    lambda e: f"{e.user},{e.item},{e.rating},{e.ts}"),
    "recbole": Format("recbole", "ml.item", "ml.inter", "utf-8",
                      "item_id:token\ttitle:token_seq\tcategories:token_seq",
                      "user_id:token\titem_id:token\trating:float\ttimestamp:float",
                      lambda it: f"{it.id}\t{it.title}\t{' '.join(g.replace(' ', '_') for g in it.genres)}",
                      lambda e: f"{e.user}\t{e.item}\t{e.rating}\t{e.ts}"),
    "csv": Format("csv", "items.csv", "events.csv", "utf-8", "id,title", "user,item,timestamp",
                  lambda it: _csv_line([it.id, it.title]), lambda e: f"{e.user},{e.item},{e.ts}", rates=False),
    "jsonl": Format("jsonl", "items.jsonl", "events.jsonl", "utf-8", None, None,
                    lambda it: json.dumps({"id": it.id, "title": it.title}),
                    lambda e: json.dumps({"user": e.user, "item": e.item, "timestamp": e.ts}), rates=False),
}


@dataclass
class Variant:
    """How one generated dataset differs from the base data in one format.

    Attributes:
        item_raws / event_raws: (position, row) inserted before the base row at that position.
        item_head / event_head: bytes written before everything else instead of the header line
            (a BOM, an odd header); None = the format's header.
        event_tail: a row written last (e.g. truncated, without a newline).
        line_end: the line end of rendered rows ("\\r\\n" for CRLF files).
        no_items / no_events: write the file with no rows at all (header only where the format has one).
        empty_items / empty_events: write a zero-byte file.
        item_probe / event_probe: positions of base rows that must load exactly as written.
        refusable: refusing the whole dataset with one clear error is correct.
    """

    item_raws: list[tuple[int, Raw]] = field(default_factory=list)
    event_raws: list[tuple[int, Raw]] = field(default_factory=list)
    item_head: bytes | None = None
    event_head: bytes | None = None
    event_tail: Raw | None = None
    line_end: str = ""
    no_items: bool = False
    no_events: bool = False
    empty_items: bool = False
    empty_events: bool = False
    item_probe: list[int] = field(default_factory=list)
    event_probe: list[int] = field(default_factory=list)
    refusable: bool = False


def item_probe(it: BaseItem, policy: str = "faithful", **extra: Any) -> dict[str, Any]:
    """A probe: item `it` loads with its title."""
    return {"policy": policy, "kind": "item", "id": it.id, "field": "title", "value": it.title, **extra}


def event_probe(ev: BaseEvent, policy: str = "faithful", rating: float | None = None) -> dict[str, Any]:
    """A probe: an event of `ev.user` on `ev.item` loads (with this rating when given)."""
    probe: dict[str, Any] = {"policy": policy, "kind": "event", "user": ev.user, "item": ev.item}
    if rating is not None:
        probe.update(field="rating", value=rating)
    return probe


def _fill(fb: FileBuilder, head: bytes | None, header: str | None, rendered: list[str], raws: list[tuple[int, Raw]],
          probes: dict[int, dict[str, Any]], line_end: str, tail: Raw | None, empty: bool, none: bool) -> None:
    if empty:
        return
    if head is not None:
        fb.raw(head)
    elif header is not None:
        fb.header(header + line_end)
    if none:
        return
    inserts: dict[int, list[Raw]] = {}
    for pos, raw in raws:
        inserts.setdefault(pos, []).append(raw)
    for pos, text in enumerate(rendered):
        for raw in inserts.pop(pos, []):
            fb.row(raw.text, raw.records, raw.bad, raw.probe, raw.end, raw.odd)
        fb.row(text + line_end, probe=probes.get(pos))
    for raw in [r for pos in sorted(inserts) for r in inserts[pos]] + ([tail] if tail else []):
        fb.row(raw.text, raw.records, raw.bad, raw.probe, raw.end, raw.odd)


def write_dataset(directory: Path, fmt: Format, items: list[BaseItem], events: list[BaseEvent],
                  v: Variant) -> dict[str, Any]:
    """Write the base data in `fmt` changed as `v` says; returns the accounting record."""
    ifile, efile = FileBuilder(fmt.items_file, fmt.encoding), FileBuilder(fmt.events_file, fmt.encoding)
    iprobes = {p: item_probe(items[p]) for p in v.item_probe}
    eprobes = {p: event_probe(events[p], rating=float(events[p].rating) if fmt.rates else None)
               for p in v.event_probe}
    _fill(ifile, v.item_head, fmt.item_header, [fmt.item(it) for it in items], v.item_raws, iprobes, v.line_end,
          None, v.empty_items, v.no_items)
    _fill(efile, v.event_head, fmt.event_header, [fmt.event(e) for e in events], v.event_raws, eprobes, v.line_end,
          v.event_tail, v.empty_events, v.no_events)
    return accounting([ifile, efile], directory, v.refusable)


def write_sequences(directory: Path, items: list[BaseItem], events: list[BaseEvent],
                    raws: list[tuple[int, Raw]] | None = None) -> dict[str, Any]:
    """LLMRank-style RecBole files: `seq.item` and `seq.test.inter` (one row per user: history, target)."""
    ifile = FileBuilder("seq.item").header("item_id:token\ttitle:token_seq")
    for it in items:
        ifile.row(f"{it.id}\t{it.title}")
    efile = FileBuilder("seq.test.inter").header("user_id:token\titem_id_list:token_seq\titem_id:token")
    by_user: dict[str, list[str]] = {}
    for e in sorted(events, key=lambda e: e.ts):
        by_user.setdefault(e.user, []).append(e.item)
    inserts = dict(raws or [])
    for pos, (user, seq) in enumerate(by_user.items()):
        if pos in inserts:
            raw = inserts[pos]
            efile.row(raw.text, raw.records, raw.bad, raw.probe, raw.end, raw.odd)
        seq = seq[-6:]
        efile.row(f"{user}\t{' '.join(seq[:-1])}\t{seq[-1]}", records=len(seq))
    return accounting([ifile, efile], directory)
