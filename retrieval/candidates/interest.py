"""Interest retrieval: attention-pooled interest vectors fused into one index query per history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from retrieval.candidates.attention import (
    InterestConfig,
    attention_weights,
    fused_query,
    interest_vectors,
    interest_vectors_batch,
)
from retrieval.candidates.base import Candidate, CandidateGenerator, Evidence, History, top_evidence
from retrieval.vectors.index import VectorIndex

if TYPE_CHECKING:
    from retrieval.vectors.behaviour import BehaviourVectors


class InterestRetriever(CandidateGenerator):
    """Attention-pooled short- and long-term interest vectors, fused into one index query per user.

    Empty histories get the `popularity` generator's candidates (source "popularity", the flag), or
    none when no popularity generator is given.

    Args:
        index: item vectors (every history item must be in it).
        config: pooling settings.
        popularity: fallback for empty histories (e.g. `PopularityGenerator(training histories)`).
        behaviour: when given, pooling attends over event vectors (item vector + the event's behaviour
            text, `retrieval.vectors.behaviour`) instead of bare item vectors.
    """

    name = "interest"

    def __init__(self, index: VectorIndex, config: InterestConfig | None = None,
                 popularity: CandidateGenerator | None = None, behaviour: BehaviourVectors | None = None) -> None:
        self.index = index
        self.config = config or InterestConfig()
        self.popularity = popularity
        self.behaviour = behaviour

    def _event_vectors(self, history: History, rows: np.ndarray) -> np.ndarray:
        """(n, dim) vectors pooled for a history: item vectors, or event vectors with behaviour text."""
        if self.behaviour is None:
            return self.index.vectors[rows]
        return self.behaviour.event_vectors(history, self.index)

    def _arrays(self, history: History) -> tuple[np.ndarray, np.ndarray]:
        """(n,) index rows and (n,) epoch seconds of a history."""
        rows = self.index.rows([ev.item for ev in history])
        times = np.array([ev.timestamp.timestamp() for ev in history], dtype=np.float64)
        return rows, times

    def history_vectors(self, history: History) -> tuple[np.ndarray, np.ndarray] | None:
        """(short, long) interest vectors of shape (dim,), or None for an empty history.

        The exact one-history reference; `queries` computes the same vectors for many at once.
        """
        rows, times = self._arrays(history)
        if not len(rows):
            return None
        return interest_vectors(self._event_vectors(history, rows), times, self.config)

    def queries(self, histories: Sequence[History], batch_events: int = 51_200) -> tuple[np.ndarray, list[bool]]:
        """Fused query per history, shape (len(histories), dim), and which histories are non-empty.

        Whole histories are pooled in padded batches. Histories are grouped by length, and a batch
        holds at most `batch_events` padded events, so a few very long histories (ml-100k has users
        with 700 ratings in one day) neither get cut nor blow up a batch of short ones.
        """
        out = np.zeros((len(histories), self.index.dim), dtype=np.float32)
        arrays = [self._arrays(h) for h in histories]
        has = [len(a[0]) > 0 for a in arrays]
        live = sorted((i for i, ok in enumerate(has) if ok), key=lambda i: len(arrays[i][0]))
        start = 0
        while start < len(live):
            stop = start + 1
            # live is sorted by length, so the last (longest) history of a batch sets its padded width
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
            if self.behaviour is None:
                vectors = self.index.vectors[rows]
            else:
                vectors = np.zeros((len(part), width, self.index.dim), dtype=np.float32)
                for b, i in enumerate(part):
                    vectors[b, width - len(arrays[i][0]):] = self._event_vectors(histories[i], arrays[i][0])
            short, long = interest_vectors_batch(vectors, times, mask, self.config)
            out[part] = fused_query(short, long, self.config.short_weight)
            start = stop
        return out, has

    def generate_batch(self, histories: Sequence[History], k: int) -> list[list[Candidate]]:
        queries, has = self.queries(histories)
        return self.search_queries(histories, queries, has, k, self.name)

    def search_queries(self, histories: Sequence[History], queries: np.ndarray, has: Sequence[bool], k: int,
                       source: str) -> list[list[Candidate]]:
        """Search (len(histories), dim) queries; drop each history's items; popularity where has is False."""
        seen_rows = [self.index.rows([ev.item for ev in h]) for h in histories]
        depth = k + max((len(r) for r in seen_rows), default=0)  # enough even if every seen item ranks first
        scores, rows = self.index.search_rows(queries, depth)
        keep = unseen_mask(rows, seen_rows, len(self.index), k)
        ids = self.index.ids
        out: list[list[Candidate]] = []
        for history, s_row, r_row, keep_row, ok in zip(histories, scores, rows, keep, has, strict=True):
            if not ok:
                out.append(self.popularity.generate(history, k) if self.popularity is not None else [])
                continue
            picks = [Candidate(ids[r], s, source)
                     for s, r in zip(s_row[keep_row].tolist(), r_row[keep_row].tolist(), strict=True)]
            out.append(picks)
        return out


    def evidence_batch(self, histories: Sequence[History],
                       item_ids: Sequence[Sequence[str]]) -> list[list[tuple[Evidence, ...]]]:
        """Content evidence: each history item's share of the query that found the item.

        The query is w·s/|s| + (1-w)·l/|l| with s, l the attention-pooled short- and long-term sums
        Σ a_h v_h, so an item's score q·v_i splits exactly into one term per history event and vector:
        w·a^s_h/|s| · (v_h·v_i) (source "interest.short") and (1-w)·a^l_h/|l| · (v_h·v_i) ("interest.long").
        """
        cfg = self.config
        out: list[list[tuple[Evidence, ...]]] = []
        for history, ids in zip(histories, item_ids, strict=True):
            rows, times = self._arrays(history)
            if not len(rows) or not ids:
                out.append([() for _ in ids])
                continue
            vectors = self._event_vectors(history, rows)  # (n, dim)
            sims = vectors @ self.index.vectors[self.index.rows(list(ids))].T  # (n, len(ids))
            row: list[tuple[Evidence, ...]] = [() for _ in ids]
            for part, half_life, events, weight in (
                    ("short", cfg.short_half_life_days, cfg.short_half_life_events, cfg.short_weight),
                    ("long", cfg.long_half_life_days, cfg.long_half_life_events, 1.0 - cfg.short_weight)):
                att = attention_weights(vectors, times, half_life, cfg, events)
                norm = float(np.linalg.norm(att @ vectors))
                if weight <= 0 or norm <= 0:
                    continue
                terms = (weight * att / norm)[:, None] * sims
                for j in range(len(ids)):
                    per: dict[str, float] = {}
                    for e in np.flatnonzero(terms[:, j] > 0).tolist():
                        per[history[e].item] = per.get(history[e].item, 0.0) + float(terms[e, j])
                    row[j] = row[j] + top_evidence(per, f"{self.name}.{part}", "content")
            out.append([tuple(sorted(ev, key=lambda e: -e.weight)) for ev in row])
        return out

def unseen_mask(rows: np.ndarray, seen_rows: Sequence[np.ndarray], n_items: int, k: int) -> np.ndarray:
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
