"""Evaluation protocols: which items a model ranks for each held-out target.

A protocol implements one method, `candidates(stage, context)`: None means full ranking over every
item not in the user's input; otherwise one `RankedCandidates` per user.

- `full`: rank all items the user has not seen in its input.
- `llmrank`: the target plus 19 items sampled uniformly from the catalogue minus the user's input
  items, shuffled; seeded per (seed, user, stage) so a user's list does not depend on which other
  users are evaluated.
- `rerank`: a fitted retriever's top-K unseen items, best first, carrying its scores; the target may
  be absent (then every reranker scores 0 for that user; the retriever's Recall@K is the ceiling).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from tqdm.auto import tqdm

from eval.models import RankedCandidates, Recommender
from eval.splits import History, Stage
from retrieval.errors import ConfigError
from retrieval.vectors.index import top_k


@dataclass(frozen=True)
class ProtocolContext:
    """What a protocol may use: the catalogue's column order, the seed, a fitted retriever.

    Attributes:
        item_ids: column order of score matrices.
        seed: base seed.
        retriever: a fitted model whose top-K forms the `rerank` candidates.
        batch_size: users scored per batch.
        progress: show progress bars.
    """

    item_ids: tuple[str, ...]
    seed: int = 0
    retriever: Recommender | None = None
    batch_size: int = 256
    progress: bool = False


class Protocol:
    """Base class: the candidate items of each user in a stage. One method to implement."""

    name = "protocol"

    def candidates(self, stage: Stage, context: ProtocolContext) -> list[RankedCandidates] | None:
        """Per user, the candidates to rank; None = all items not in the user's input."""
        raise NotImplementedError


class FullRanking(Protocol):
    """Rank against the whole catalogue minus the user's input items."""

    name = "full"

    def candidates(self, stage: Stage, context: ProtocolContext) -> list[RankedCandidates] | None:
        return None


def user_rng(seed: int, user: str, stage: str) -> np.random.Generator:
    """A generator that depends only on (seed, user, stage): stable under user subsampling."""
    return np.random.default_rng([seed, zlib.crc32(user.encode("utf-8")), zlib.crc32(stage.encode("utf-8"))])


class LLMRankSampling(Protocol):
    """LLMRank's protocol: ground truth + `n_negatives` uniformly sampled unseen items, shuffled.

    Args:
        n_negatives: sampled items per user (19 → 20 candidates).
    """

    name = "llmrank"

    def __init__(self, n_negatives: int = 19) -> None:
        if n_negatives < 1:
            raise ConfigError("n_negatives must be ≥ 1")
        self.n_negatives = n_negatives

    def candidates(self, stage: Stage, context: ProtocolContext) -> list[RankedCandidates] | None:
        ids = context.item_ids
        col = {item: c for c, item in enumerate(ids)}
        out = []
        for user, inp, target in zip(stage.users, stage.inputs, stage.targets, strict=True):
            rng = user_rng(context.seed, user, stage.name)
            banned = {col[e.item] for e in inp}
            banned.add(col[target.item])
            want = min(self.n_negatives, len(ids) - len(banned))
            picks: dict[int, None] = {}  # insertion-ordered set: keeps the draw order, so seeded
            while len(picks) < want:
                for c in rng.integers(0, len(ids), size=2 * want + 8).tolist():
                    if c not in banned and c not in picks:
                        picks[c] = None
                        if len(picks) == want:
                            break
            cols = np.array([col[target.item], *picks], dtype=np.int64)
            out.append(RankedCandidates([ids[c] for c in cols[rng.permutation(len(cols))]], None, self.name))
        return out


class RetrieveRerank(Protocol):
    """The retriever's top-`k` unseen items, best first, with its scores.

    Args:
        k: candidates per user.
    """

    name = "rerank"

    def __init__(self, k: int = 20) -> None:
        if k < 1:
            raise ConfigError("rerank k must be ≥ 1")
        self.k = k

    def candidates(self, stage: Stage, context: ProtocolContext) -> list[RankedCandidates] | None:
        retriever = context.retriever
        if retriever is None:
            raise ConfigError("the rerank protocol needs a retriever (e.g. --retriever interest)")
        col = {item: c for c, item in enumerate(context.item_ids)}
        out: list[RankedCandidates] = []
        starts = range(0, len(stage), context.batch_size)
        for start in tqdm(starts, desc=f"retrieve ({retriever.name})", disable=not context.progress, leave=False):
            inputs = stage.inputs[start:start + context.batch_size]
            scores = np.asarray(retriever.score_batch(inputs), dtype=np.float64)
            scores = np.where(seen_mask(inputs, col, scores.shape[1]), -np.inf, scores)
            for row, cols in zip(scores, top_columns(scores, self.k), strict=True):
                cols = cols[np.isfinite(row[cols])]
                out.append(RankedCandidates([context.item_ids[c] for c in cols], row[cols], retriever.name))
        return out


def seen_mask(inputs: Sequence[History], col: dict[str, int], n_items: int) -> np.ndarray:
    """(len(inputs), n_items) bool: True where the item appears in the user's input."""
    mask = np.zeros((len(inputs), n_items), dtype=bool)
    for u, inp in enumerate(inputs):
        mask[u, [col[e.item] for e in inp]] = True
    return mask


def top_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """(n, min(k, n_items)) columns of the highest scores per row, best first; ties → lower column.

    Args:
        scores: (n, n_items) float scores (-inf for excluded items).
        k: how many.
    """
    return top_k(scores, min(k, scores.shape[1]))[0]


ProtocolName = Literal["full", "llmrank", "rerank"]
PROTOCOLS: tuple[str, ...] = get_args(ProtocolName)


def make_protocol(name: ProtocolName, k: int = 20, n_negatives: int = 19) -> Protocol:
    """A protocol by name; unknown names raise ConfigError listing the valid ones."""
    if name == "full":
        return FullRanking()
    if name == "llmrank":
        return LLMRankSampling(n_negatives)
    if name == "rerank":
        return RetrieveRerank(k)
    raise ConfigError(f"unknown protocol {name!r}; valid: {', '.join(PROTOCOLS)}")
