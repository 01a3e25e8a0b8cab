"""Candidate generation: typed candidates from interest-aware index search, seen items dropped."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.data.model import Event
from retrieval.errors import UnknownUserError
from retrieval.vectors.index import VectorIndex
from retrieval.candidates.attention import InterestConfig, fused_query, interest_vectors, interest_vectors_batch


@dataclass(frozen=True, slots=True)
class Candidate:
    """One recommended item from a generator.

    Attributes:
        item_id: external item id.
        score: generator score (higher is better; comparable within one source).
        source: the generator's name, e.g. "interest" or "popularity".
    """

    item_id: str
    score: float
    source: str


Histories = Mapping[str, Sequence[Event]]


class CandidateGenerator:
    """Base class: produce candidates for many users from their histories. One method to implement."""

    name = "generator"

    def generate_batch(self, users: Sequence[str], k: int) -> list[list[Candidate]]:
        """Top-k unseen candidates per user, best first."""
        raise NotImplementedError

    def generate(self, user: str, k: int) -> list[Candidate]:
        """Top-k unseen candidates for one user."""
        return self.generate_batch([user], k)[0]


class PopularityGenerator(CandidateGenerator):
    """Most frequent items in the given histories, minus what each user has seen."""

    name = "popularity"

    def __init__(self, histories: Histories) -> None:
        self.histories = histories
        counts = Counter(ev.item for evs in histories.values() for ev in evs)
        self.ranked = [(item, float(n)) for item, n in counts.most_common()]

    def generate_batch(self, users: Sequence[str], k: int) -> list[list[Candidate]]:
        out = []
        for user in users:
            seen = {ev.item for ev in _history(self.histories, user)}
            picks = [Candidate(i, s, self.name) for i, s in self.ranked if i not in seen]
            out.append(picks[:k])
        return out


def _history(histories: Histories, user: str) -> Sequence[Event]:
    try:
        return histories[user]
    except KeyError:
        raise UnknownUserError(f"unknown user {user!r} ({len(histories):,} users known)") from None


class InterestRetriever(CandidateGenerator):
    """Attention-pooled short- and long-term interest vectors, fused into one index query per user.

    Users with an empty history get popularity candidates with source "popularity" (the flag).

    Args:
        index: item vectors (every history item must be in it).
        histories: user → events, oldest first.
        config: pooling settings.
    """

    name = "interest"

    def __init__(self, index: VectorIndex, histories: Histories, config: InterestConfig | None = None) -> None:
        self.index = index
        self.histories = histories
        self.config = config or InterestConfig()
        self.popularity = PopularityGenerator(histories)
        # Per-user (rows, times) arrays, computed once: histories are fixed for a retriever.
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _user_arrays(self, user: str) -> tuple[np.ndarray, np.ndarray]:
        found = self._arrays.get(user)
        if found is None:
            events = _history(self.histories, user)
            rows = self.index.rows([ev.item for ev in events])
            times = np.array([ev.timestamp.timestamp() for ev in events], dtype=np.float64)
            found = (rows, times)
            self._arrays[user] = found
        return found

    def user_vectors(self, user: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(short, long) interest vectors of shape (dim,), or None for an empty history.

        The exact one-user reference; `queries` computes the same vectors for many users at once.
        """
        rows, times = self._user_arrays(user)
        if not len(rows):
            return None
        return interest_vectors(self.index.vectors[rows], times, self.config)

    def queries(self, users: Sequence[str], batch_events: int = 51_200) -> tuple[np.ndarray, list[bool]]:
        """Fused query per user, shape (len(users), dim), and which users had a history.

        Whole histories are pooled in padded batches. Users are grouped by history length, and a
        batch holds at most `batch_events` padded events, so a few very long histories (ml-100k has
        users with 700 ratings in one day) neither get cut nor blow up a batch of short ones.
        """
        out = np.zeros((len(users), self.index.dim), dtype=np.float32)
        arrays = [self._user_arrays(u) for u in users]
        has = [len(a[0]) > 0 for a in arrays]
        live = sorted((i for i, ok in enumerate(has) if ok), key=lambda i: len(arrays[i][0]))
        start = 0
        while start < len(live):
            stop = start + 1
            # live is sorted by length, so the last (longest) user of a batch sets its padded width
            while stop < len(live) and (stop + 1 - start) * len(arrays[live[stop]][0]) <= batch_events:
                stop += 1
            part = live[start:stop]
            width = len(arrays[part[-1]][0])
            rows = np.zeros((len(part), width), dtype=np.int64)
            times = np.zeros((len(part), width), dtype=np.float64)
            mask = np.zeros((len(part), width), dtype=bool)
            for b, i in enumerate(part):
                r, t = arrays[i]
                rows[b, width - len(r):], times[b, width - len(r):], mask[b, width - len(r):] = r, t, True
            short, long = interest_vectors_batch(self.index.vectors[rows], times, mask, self.config)
            out[part] = fused_query(short, long, self.config.short_weight)
            start = stop
        return out, has

    def generate_batch(self, users: Sequence[str], k: int) -> list[list[Candidate]]:
        queries, has = self.queries(users)
        return self.search_queries(users, queries, has, k, self.name)

    def search_queries(self, users: Sequence[str], queries: np.ndarray, has: Sequence[bool], k: int,
                       source: str) -> list[list[Candidate]]:
        """Search (len(users), dim) queries; drop each user's seen items; popularity where has is False."""
        arrays = [self._user_arrays(u) for u in users]
        depth = k + max((len(a[0]) for a in arrays), default=0)  # enough even if every seen item ranks first
        scores, rows = self.index.search_rows(queries, depth)
        keep = _unseen_mask(rows, [a[0] for a in arrays], len(self.index), k)
        ids = self.index.ids
        out: list[list[Candidate]] = []
        for user, s_row, r_row, keep_row, ok in zip(users, scores, rows, keep, has, strict=True):
            if not ok:
                out.append(self.popularity.generate(user, k))
                continue
            picks = [Candidate(ids[r], s, source)
                     for s, r in zip(s_row[keep_row].tolist(), r_row[keep_row].tolist(), strict=True)]
            out.append(picks)
        return out


def _unseen_mask(rows: np.ndarray, seen_rows: Sequence[np.ndarray], n_items: int, k: int) -> np.ndarray:
    """Which search results to keep: real rows the user has not seen, the first k per user.

    Args:
        rows: (users, depth) result rows, -1 for padding.
        seen_rows: per user, the rows of the items they have seen.
        n_items: rows in the index (keys are user * n_items + row, so one sorted lookup serves all users).
        k: results to keep per user.

    Returns:
        (users, depth) bool.
    """
    lengths = np.array([len(r) for r in seen_rows], dtype=np.int64)
    seen_keys = np.concatenate([*seen_rows, np.zeros(0, dtype=np.int64)]).astype(np.int64)
    seen_keys += np.repeat(np.arange(len(seen_rows), dtype=np.int64) * n_items, lengths)
    keys = rows + np.arange(len(rows), dtype=np.int64)[:, None] * n_items
    keep = (rows >= 0) & ~np.isin(keys, seen_keys)
    return keep & (np.cumsum(keep, axis=1) <= k)
