"""Typed, self-validating data containers: items, events, catalogue, dataset with per-user histories."""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from retrieval.errors import DataError, UnknownItemError, UnknownUserError

Action = Literal["view", "click", "purchase", "rate", "review", "tag", "interact"]



def item_counts(histories: Iterable[Sequence[Event]]) -> Counter[str]:
    """Event count per item over the given histories; items keep first-seen order (ties in `most_common`)."""
    return Counter(ev.item for evs in histories for ev in evs)


# Real behaviour logs start after 1970 and before 2100; anything outside is a unit or parsing error.
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC)


class Item(BaseModel):
    """One catalogue item.

    Attributes:
        id: External item id (string; numeric ids are kept as their text).
        title: Non-empty display title.
        text: Free text (description, review summary), may be empty.
        categories: Category labels, e.g. genres.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    title: str
    text: str = ""
    categories: tuple[str, ...] = ()

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty title")
        return value.strip()

    def embedding_text(self) -> str:
        """The text embedded for this item: title, categories, then free text."""
        parts = [self.title]
        if self.categories:
            parts.append("Categories: " + ", ".join(self.categories))
        if self.text:
            parts.append(self.text)
        return ". ".join(parts)


class Event(BaseModel):
    """One timestamped behaviour event.

    Attributes:
        user: External user id.
        item: External item id (must exist in the catalogue of the dataset it joins).
        timestamp: Timezone-aware time of the event.
        action: What the user did.
        rating: Optional explicit rating, finite and >= 0.
        text: Optional review text.
        synthetic_time: True when the source had only an order and the timestamp is a position.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str = Field(min_length=1)
    item: str = Field(min_length=1)
    timestamp: datetime
    action: Action = "interact"
    rating: float | None = None
    text: str | None = None
    synthetic_time: bool = False

    @field_validator("timestamp")
    @classmethod
    def _aware_in_range(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        if not MIN_TIME <= value < MAX_TIME:
            raise ValueError(f"timestamp {value.isoformat()} out of range 1970..2100")
        return value

    @field_validator("rating")
    @classmethod
    def _rating_finite(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"rating must be a finite number >= 0, got {value}")
        return value


class Catalog:
    """An immutable set of items keyed by id; duplicate ids are rejected when built."""

    def __init__(self, items: Iterable[Item]) -> None:
        self._items: dict[str, Item] = {}
        for item in items:
            if item.id in self._items:
                raise DataError(f"duplicate item id {item.id!r} in catalogue")
            self._items[item.id] = item
        self.ids: tuple[str, ...] = tuple(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def __getitem__(self, item_id: str) -> Item:
        try:
            return self._items[item_id]
        except KeyError:
            raise UnknownItemError(f"unknown item id {item_id!r}") from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._items.values())

    def __repr__(self) -> str:
        return f"<Catalog {len(self):,} items>"

    def find_title(self, query: str) -> list[Item]:
        """Items whose title contains `query` (case-insensitive), exact matches first."""
        q = query.strip().lower()
        if not q:
            return []
        exact = [it for it in self if it.title.lower() == q]
        partial = [it for it in self if q in it.title.lower() and it not in exact]
        return exact + partial


class SkipReason(StrEnum):
    """Why a loader skipped a row (the typed kind; `SkippedRow.reason` keeps the full message)."""

    MALFORMED_ROW = "malformed row"
    UNKNOWN_ITEM = "unknown item id"
    DUPLICATE_ITEM = "duplicate item id"
    INVALID_VALUE = "invalid value"
    INVALID_FIELD = "invalid field"
    BAD_ENCODING = "bad encoding"
    MISSING_VALUE = "missing value"
    FIELD_TOO_LARGE = "field too large"
    TOO_DEEP = "nesting too deep"
    NUL_BYTE = "NUL byte"


@dataclass(frozen=True)
class SkippedRow:
    """A row a loader skipped under `on_error="skip"`.

    Attributes:
        file: the file it came from.
        line: the 1-based physical line where the row starts (0-based position for DataFrames).
        reason: the full message, e.g. "malformed row: expected 4 fields, got 2".
        kind: the typed reason, for counting and filtering.
    """

    file: str
    line: int
    reason: str
    kind: SkipReason


@dataclass
class FileCounts:
    """Row accounting for one source (a file, or "events"/"items" for DataFrames).

    Attributes:
        rows_read: data rows read (see `LoadReport` for what a row is).
        rows_loaded: rows that became an item or an event of the dataset.
        rows_skipped: rows skipped as bad under `on_error="skip"`.
    """

    rows_read: int = 0
    rows_loaded: int = 0
    rows_skipped: int = 0

    @property
    def balanced(self) -> bool:
        """True when every row read was either loaded or skipped, exactly once."""
        return self.rows_read == self.rows_loaded + self.rows_skipped


@dataclass
class LoadReport:
    """What a loader read, loaded and skipped, per file and in total.

    A row is one data record, never a header and never a blank line: a non-blank line of a
    line-based file (u.data, u.item, `.dat`, RecBole atomic files, JSONL), one CSV record (which may
    span several physical lines when a quoted field holds a newline), one DataFrame row, and one
    item position of a RecBole `.test.inter` sequence line (a line that cannot be split counts once).
    After a load, `rows_read == rows_loaded + rows_skipped` holds for every file and for the total.

    Attributes:
        files: the counts of each source, keyed by its path as given.
        skipped: every skipped row, in the order found (never truncated).
    """

    files: dict[str, FileCounts] = field(default_factory=dict)
    skipped: list[SkippedRow] = field(default_factory=list)

    @classmethod
    def in_memory(cls, n_events: int) -> LoadReport:
        """The report of a dataset built from events in memory: all of them loaded."""
        return cls(files={"<memory>": FileCounts(rows_read=n_events, rows_loaded=n_events)})

    def counts(self, file: str | Path) -> FileCounts:
        """The counts of `file`, created empty on first use."""
        return self.files.setdefault(str(file), FileCounts())

    @property
    def rows_read(self) -> int:
        """Data rows read over all files."""
        return sum(c.rows_read for c in self.files.values())

    @property
    def rows_loaded(self) -> int:
        """Rows loaded over all files."""
        return sum(c.rows_loaded for c in self.files.values())

    @property
    def rows_skipped(self) -> int:
        """Rows skipped over all files."""
        return sum(c.rows_skipped for c in self.files.values())

    @property
    def balanced(self) -> bool:
        """True when every file's rows read equal its rows loaded plus skipped."""
        return all(c.balanced for c in self.files.values())

    def reasons(self) -> Counter[SkipReason]:
        """Count of skipped rows per typed reason."""
        return Counter(s.kind for s in self.skipped)

    def summary(self) -> str:
        """One line: rows read, loaded and skipped, with the skipped counts per reason."""
        head = f"{self.rows_read:,} rows read, {self.rows_loaded:,} loaded"
        if not self.skipped:
            return f"{head}, none skipped"
        detail = ", ".join(f"{n} {r}" for r, n in self.reasons().most_common())
        return f"{head}, {len(self.skipped):,} skipped ({detail})"

    def write_skipped(self, path: str | Path) -> None:
        """Write every skipped row as TSV with a header: file, line, kind, reason.

        Raises:
            OSError: the file cannot be written.
        """
        with Path(path).open("w", encoding="utf-8", newline="") as fh:
            out = csv.writer(fh, delimiter="\t", lineterminator="\n")
            out.writerow(("file", "line", "kind", "reason"))
            out.writerows((s.file, s.line, s.kind.value, s.reason) for s in self.skipped)


class Dataset:
    """A catalogue plus events, with per-user histories ordered by time (ties keep file order).

    Every event's item must be in the catalogue; this is checked when built.
    """

    def __init__(
        self,
        catalog: Catalog,
        events: Sequence[Event],
        name: str = "dataset",
        report: LoadReport | None = None,
    ) -> None:
        for pos, ev in enumerate(events):
            if ev.item not in catalog:
                raise DataError(f"event {pos}: unknown item id {ev.item!r} (not in catalogue)")
        self.catalog = catalog
        self.name = name
        self.report = report or LoadReport.in_memory(len(events))
        by_user: dict[str, list[Event]] = {}
        for ev in events:
            by_user.setdefault(ev.user, []).append(ev)
        # sorted() is stable: equal timestamps keep file order, never item-id order.
        self.histories: dict[str, tuple[Event, ...]] = {
            u: tuple(sorted(evs, key=lambda e: e.timestamp)) for u, evs in by_user.items()
        }
        self.n_events = len(events)
        self.synthetic_time = any(ev.synthetic_time for ev in events)

    @property
    def users(self) -> list[str]:
        """User ids in first-seen order."""
        return list(self.histories)

    def history(self, user: str) -> tuple[Event, ...]:
        """The user's events, oldest first; raises UnknownUserError for an unknown user."""
        try:
            return self.histories[user]
        except KeyError:
            raise UnknownUserError(f"unknown user {user!r} ({len(self.histories):,} users loaded)") from None

    def item_popularity(self) -> Counter[str]:
        """Event count per item over all histories."""
        return item_counts(self.histories.values())

    def with_histories(self, histories: dict[str, tuple[Event, ...]], name: str | None = None) -> Dataset:
        """A dataset on the same catalogue with the given (already ordered) histories."""
        out = Dataset.__new__(Dataset)
        out.catalog = self.catalog
        out.name = name or self.name
        out.report = self.report
        out.histories = histories
        out.n_events = sum(len(h) for h in histories.values())
        out.synthetic_time = self.synthetic_time
        return out

    def __repr__(self) -> str:
        flag = ", synthetic time" if self.synthetic_time else ""
        return (
            f"<Dataset {self.name}: {len(self.catalog):,} items, {len(self.histories):,} users, "
            f"{self.n_events:,} events{flag}>"
        )
