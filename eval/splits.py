"""Leakage-free train / validation / test splits of a `Dataset`.

Two splits:

- `leave_one_out`: per user, the last event is the test target, the second-to-last the validation
  target, the rest is training. `Dataset.histories` are stably sorted by time, so equal timestamps
  keep the file's order (never item-id order). For LLMRank's Games files this *is* LLMRank's split:
  the loader rebuilds each sequence from `.test.inter` (history + target), so the last event is the
  `.test.inter` target and the one before it the `.valid.inter` target (`check_llmrank_split`
  verifies this against the files).
- `temporal_split`: one global cut date (and optionally an earlier validation cut); training is every
  event before the first cut, so no statistic can see the future of any user.

A `Stage` holds, per evaluated user, the model input (the events before the target) and the target.
Models receive `Stage.inputs` only; targets stay with the harness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from retrieval.data.model import Dataset, Event
from retrieval.errors import ConfigError, DataError

History = tuple[Event, ...]
SplitKind = Literal["leave-one-out", "temporal"]


@dataclass(frozen=True)
class Stage:
    """One evaluation stage (validation or test).

    Attributes:
        name: "validation" or "test".
        users: evaluated user ids.
        inputs: per user, the events before the target, oldest first (what a model may see).
        targets: per user, the held-out event.
    """

    name: str
    users: tuple[str, ...]
    inputs: tuple[History, ...]
    targets: tuple[Event, ...]

    def __post_init__(self) -> None:
        if not len(self.users) == len(self.inputs) == len(self.targets):
            raise DataError(f"{self.name}: users, inputs and targets differ in length")
        for user, inp, target in zip(self.users, self.inputs, self.targets, strict=True):
            if inp and inp[-1].timestamp > target.timestamp:
                raise DataError(f"{self.name}: user {user!r} has input events after its target")

    def __len__(self) -> int:
        return len(self.users)

    @property
    def target_items(self) -> tuple[str, ...]:
        """Target item ids, aligned with `users`."""
        return tuple(t.item for t in self.targets)

    def subset(self, keep: Sequence[int]) -> Stage:
        """The stage restricted to the given user positions (in that order)."""
        return Stage(self.name, tuple(self.users[i] for i in keep), tuple(self.inputs[i] for i in keep),
                     tuple(self.targets[i] for i in keep))

    def __repr__(self) -> str:
        return f"<Stage {self.name}: {len(self):,} users>"


@dataclass(frozen=True)
class Split:
    """Training histories plus validation and test stages.

    Attributes:
        kind: "leave-one-out" or "temporal".
        train: user → training events, oldest first (read-only mapping; users with no training
            events are absent).
        validation: the validation stage (may be empty).
        test: the test stage.
        train_only_users: users too short to evaluate; their events are training data only.
    """

    kind: SplitKind
    train: Mapping[str, History]
    validation: Stage
    test: Stage
    train_only_users: int = 0
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def n_train_events(self) -> int:
        return sum(len(h) for h in self.train.values())

    def __repr__(self) -> str:
        return (f"<Split {self.kind}: {len(self.train):,} train users / {self.n_train_events:,} events, "
                f"{len(self.validation):,} validation, {len(self.test):,} test>")


def leave_one_out(dataset: Dataset, min_events: int = 3) -> Split:
    """Temporal leave-one-out: last event = test, second-to-last = validation, rest = train.

    Args:
        dataset: histories already ordered by time, ties in file order.
        min_events: users with fewer events are kept as training data only (a user needs at least
            one input event, one validation and one test event).

    Returns:
        the split; users appear in the dataset's first-seen order.
    """
    if min_events < 3:
        raise ConfigError("leave_one_out needs min_events ≥ 3 (train, validation and test events)")
    train: dict[str, History] = {}
    v_users, v_inputs, v_targets, t_inputs, t_targets = [], [], [], [], []
    short = 0
    for user, events in dataset.histories.items():
        if len(events) < min_events:
            train[user] = tuple(events)
            short += 1
            continue
        train[user] = tuple(events[:-2])
        v_users.append(user)
        v_inputs.append(train[user])
        v_targets.append(events[-2])
        t_inputs.append(tuple(events[:-1]))
        t_targets.append(events[-1])
    users = tuple(v_users)
    return Split("leave-one-out", MappingProxyType(train),
                 Stage("validation", users, tuple(v_inputs), tuple(v_targets)),
                 Stage("test", users, tuple(t_inputs), tuple(t_targets)), train_only_users=short)


def temporal_split(dataset: Dataset, test_cut: datetime, validation_cut: datetime | None = None) -> Split:
    """Global temporal split: training = every event before the first cut.

    Test target = a user's first event at or after `test_cut`; its input = all the user's events
    before `test_cut`. With `validation_cut` (< test_cut), training ends at `validation_cut` and the
    validation target is the user's first event in [validation_cut, test_cut), input = training events.

    Args:
        dataset: the data.
        test_cut: timezone-aware cut date of the test period.
        validation_cut: optional earlier cut of the validation period.
    """
    if test_cut.tzinfo is None or (validation_cut is not None and validation_cut.tzinfo is None):
        raise ConfigError("cut dates must be timezone-aware")
    if validation_cut is not None and validation_cut >= test_cut:
        raise ConfigError("validation_cut must precede test_cut")
    train_end = validation_cut or test_cut
    train: dict[str, History] = {}
    val: list[tuple[str, History, Event]] = []
    test: list[tuple[str, History, Event]] = []
    short = 0
    for user, events in dataset.histories.items():
        before = tuple(e for e in events if e.timestamp < train_end)
        if before:
            train[user] = before
        if validation_cut is not None and before:
            window = [e for e in events if validation_cut <= e.timestamp < test_cut]
            if window:
                val.append((user, before, window[0]))
        context = tuple(e for e in events if e.timestamp < test_cut)
        after = [e for e in events if e.timestamp >= test_cut]
        if after and context:
            test.append((user, context, after[0]))
        elif not after:
            short += 1
    return Split("temporal", MappingProxyType(train), _stage("validation", val), _stage("test", test),
                 train_only_users=short, notes={"test_cut": test_cut.isoformat(),
                                                "validation_cut": validation_cut.isoformat() if validation_cut
                                                else ""})


def _stage(name: str, rows: list[tuple[str, History, Event]]) -> Stage:
    return Stage(name, tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(r[2] for r in rows))


def check_llmrank_split(split: Split, root: str | Path, name: str = "Games-6k") -> int:
    """Check a leave-one-out split of LLMRank files against their own `.test.inter`/`.valid.inter` targets.

    Returns:
        the number of users checked.

    Raises:
        DataError: a user's test or validation target differs from LLMRank's.
    """
    root = Path(root)
    checked = 0
    for stage, suffix in ((split.test, "test"), (split.validation, "valid")):
        expected: dict[str, str] = {}
        with open(root / f"{name}.{suffix}.inter", encoding="utf-8") as fh:
            next(fh)
            for line in fh:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 3:
                    expected[parts[0]] = parts[2]
        for user, target in zip(stage.users, stage.targets, strict=True):
            want = expected.get(user)
            if want is not None and want != target.item:
                raise DataError(f"{suffix} target of user {user!r} is {target.item!r}; LLMRank's is {want!r}")
            checked += want is not None
    return checked
