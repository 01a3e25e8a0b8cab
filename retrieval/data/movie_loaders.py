"""Loaders for two movie logs with long time spans: MovieTweetings and the MovieLens 10M tag applications.

Both follow `retrieval.data.loaders`' contract: `on_error="raise"` stops at the first bad row with
`file:line: reason`, `"skip"` records it, typed, in `Dataset.report`; rows read == loaded + skipped.

- MovieTweetings (Dooms et al., RecSys 2013 CrowdRec workshop; MIT): `movies.dat`
  (`id::Title (Year)::Genre|Genre`, genres may be empty) and `ratings.dat`
  (`user::movie::rating::epoch`), UTF-8, `::`-separated. Movie ids are zero-padded IMDb numbers and
  stay text ("0104257"). Ratings are 0–10 stars from tweets; they are mapped to driftrec's 0–5 scale
  by halving (7/10 → 3.5), so "rated x/5" and `LIKED_RATING` read the same on every dataset. A rating
  outside 0–10 is a bad row.
- MovieLens 10M tags (GroupLens, research use only): `movies.dat` (`id;Title (Year);Genre|Genre`) and
  `tags.dat` (`user;movie;tag;epoch`), UTF-8, `;`-separated. A tag may itself hold `;`: the user is
  the first field, the movie the second, the timestamp the last, and the tag everything between. Each
  row is an event with action "tag" and the tag (stripped) as `Event.text`; an empty tag gives an
  event without text.
"""

from __future__ import annotations

from pathlib import Path

from retrieval.data import values as val
from retrieval.data.loaders import Located, _add, _finish
from retrieval.data.model import Dataset, Event, Item, SkipReason
from retrieval.data.records import OnError, Rows, split_lines

__all__ = ["MOVIETWEETINGS_MAX_RATING", "load_ml10m_tags", "load_movietweetings"]

MOVIETWEETINGS_MAX_RATING = 10.0


def _movies(file: Path, sep: str, rows: Rows) -> Located:
    """`id SEP title SEP genres` rows (UTF-8) as items; genres split on `|`, empty means none."""
    items: Located = []
    for lineno, parts in split_lines(file, sep, "utf-8", rows):
        if len(parts) != 3:
            rows.bad(file, lineno, SkipReason.MALFORMED_ROW,
                     f"malformed row: expected 3 {sep!r} fields, got {len(parts)}")
            continue
        _add(items, rows.build(lambda p=parts: Item(
            id=val.identifier(p[0], "id"), title=val.title(p[1]), categories=val.categories(p[2] or None)),
            file, lineno), file, lineno)
    return items


def _tweet_rating(text: str) -> float:
    """A MovieTweetings rating (0–10) on driftrec's 0–5 scale."""
    stars = val.rating(text, required=True)
    if stars is None or stars > MOVIETWEETINGS_MAX_RATING:
        raise val.BadValue(SkipReason.INVALID_VALUE, f"invalid value: rating {text.strip()[:40]!r} is outside 0-10")
    return stars / 2.0


def load_movietweetings(path: str | Path, on_error: OnError = "raise") -> Dataset:
    """Load MovieTweetings (`movies.dat` + `ratings.dat`, `::`, UTF-8); ratings halved to 0–5.

    Args:
        path: directory holding both files.
        on_error: "raise" or "skip" (see `retrieval.data.loaders`).

    Raises:
        DataError: a bad row under "raise", or no items / no events left.
    """
    root = Path(path)
    rows = Rows(on_error)
    movies, ratings = root / "movies.dat", root / "ratings.dat"
    items = _movies(movies, "::", rows)
    events: Located = []
    for lineno, parts in split_lines(ratings, "::", "utf-8", rows):
        if len(parts) != 4:
            rows.bad(ratings, lineno, SkipReason.MALFORMED_ROW, f"malformed row: expected 4 fields, got {len(parts)}")
            continue
        _add(events, rows.build(lambda p=parts: Event(
            user=val.identifier(p[0], "user"), item=val.identifier(p[1], "item"), rating=_tweet_rating(p[2]),
            timestamp=val.epoch(p[3]), action="rate"), ratings, lineno), ratings, lineno)
    return _finish(items, events, rows, "movietweetings", (str(movies), str(ratings)))


def load_ml10m_tags(path: str | Path, on_error: OnError = "raise") -> Dataset:
    """Load the MovieLens 10M tag applications (`movies.dat` + `tags.dat`, `;`, UTF-8) as "tag" events.

    Args:
        path: directory holding both files.
        on_error: "raise" or "skip" (see `retrieval.data.loaders`).

    Raises:
        DataError: a bad row under "raise", or no items / no events left.
    """
    root = Path(path)
    rows = Rows(on_error)
    movies, tags = root / "movies.dat", root / "tags.dat"
    items = _movies(movies, ";", rows)
    events: Located = []
    for lineno, parts in split_lines(tags, ";", "utf-8", rows):
        if len(parts) < 4:
            rows.bad(tags, lineno, SkipReason.MALFORMED_ROW,
                     f"malformed row: expected user;movie;tag;timestamp, got {len(parts)} fields")
            continue
        tag = ";".join(parts[2:-1]).strip()  # a tag may hold ';': it is everything between movie and time
        _add(events, rows.build(lambda p=parts, t=tag: Event(
            user=val.identifier(p[0], "user"), item=val.identifier(p[1], "item"), timestamp=val.epoch(p[-1]),
            action="tag", text=val.optional_text(t, "tag")), tags, lineno), tags, lineno)
    return _finish(items, events, rows, "ml10m-tags", (str(movies), str(tags)))
