"""Typed, self-validating data containers: items, events, catalogue, dataset with per-user histories."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from retrieval.errors import DataError, UnknownItemError, UnknownUserError

Action = Literal["view", "click", "purchase", "rate", "review", "interact"]



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
        rating: Optional explicit rating.
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


@dataclass(frozen=True)
class SkippedRow:
    """A row a loader skipped under `on_error="skip"`.

    Attributes:
        file: the file it came from.
        line: its 1-based line number.
        reason: the full message, e.g. "malformed row: expected 4 fields, got 2".
        kind: the typed reason, for counting and filtering.
    """

    file: str
    line: int
    reason: str
    kind: SkipReason


@dataclass
class LoadReport:
    """What a loader read and what it skipped, row by row."""

    rows_read: int = 0
    skipped: list[SkippedRow] = field(default_factory=list)

    def reasons(self) -> Counter[SkipReason]:
        """Count of skipped rows per typed reason."""
        return Counter(s.kind for s in self.skipped)

    def summary(self) -> str:
        """One line: rows read and skipped counts per reason."""
        if not self.skipped:
            return f"{self.rows_read:,} rows read, none skipped"
        detail = ", ".join(f"{n} {r}" for r, n in self.reasons().most_common())
        return f"{self.rows_read:,} rows read, {len(self.skipped):,} skipped ({detail})"


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
        self.report = report or LoadReport(rows_read=len(events))
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
