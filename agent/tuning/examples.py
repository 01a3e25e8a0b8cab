"""Training and validation examples for the LLM ranker, built from a split's training events only.

An example is one user at one point of their training history: the events before it are the history,
the event itself is the target. Its candidates are the target plus `candidates - 1` items drawn
uniformly from the catalogue minus everything in the user's history (LlamaRec / LLMRank style),
shown in a random order. The prompt is exactly what the reranker sends at inference
(`LLMReranker.label_prompt`, `PointwiseScorer.prefix`), so the model is trained on the inputs it will
be asked about:

    verbalizer  the chat-templated label prompt; the target is the target item's label token (LlamaRec)
    pointwise   the narrative prompt; the target is the item's quoted title (its likelihood is the score)

Validation examples take the validation stage's inputs and targets, candidates seeded per user, so every
evaluation during training ranks the same lists.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from retrieval.data.model import Event
from retrieval.errors import ConfigError

Objective = Literal["verbalizer", "pointwise"]
OBJECTIVES: tuple[str, ...] = ("verbalizer", "pointwise")
History = Sequence[Event]


@dataclass(frozen=True)
class RankingCase:
    """One user's ranking question: the history, the target and the candidates in shown order.

    Attributes:
        user: user id.
        history: the events before the target, oldest first.
        target: the item the user chose next.
        shown: candidate item ids in the order shown (labels A, B, ... in the verbalizer prompt); includes
            `target` exactly once.
    """

    user: str
    history: tuple[Event, ...]
    target: str
    shown: tuple[str, ...]

    @property
    def label_index(self) -> int:
        """Position of the target among the shown candidates."""
        return self.shown.index(self.target)


def sample_candidates(rng: random.Random, target: str, seen: set[str], items: Sequence[str], n: int) -> tuple[str, ...]:
    """`target` plus `n - 1` distinct items outside `seen` (uniform), in a random order.

    Raises:
        ConfigError: fewer than `n - 1` unseen items in the catalogue.
    """
    pool = len(items) - len(seen | {target})
    if pool < n - 1:
        raise ConfigError(f"only {pool} unseen items to sample {n - 1} negatives from")
    negatives: set[str] = set()
    while len(negatives) < n - 1:
        item = items[rng.randrange(len(items))]
        if item != target and item not in seen:
            negatives.add(item)
    shown = [target, *sorted(negatives)]
    rng.shuffle(shown)
    return tuple(shown)


def training_cases(train: Mapping[str, History], items: Sequence[str], n_candidates: int = 20,
                   per_user: int = 1, min_history: int = 3, seed: int = 0) -> list[RankingCase]:
    """Ranking cases from training events: per user, the last `per_user` training events as targets.

    Args:
        train: user → TRAINING events only, oldest first.
        items: the catalogue's item ids (negatives are drawn from it).
        n_candidates: candidates per case, the target included.
        per_user: targets per user, counted back from the last training event.
        min_history: events a target needs before it.
        seed: seeds the negatives and the shown order.

    Returns:
        cases in a seeded random order.
    """
    if per_user < 1 or min_history < 1 or n_candidates < 2:
        raise ConfigError("per_user and min_history must be ≥ 1 and n_candidates ≥ 2")
    rng = random.Random(seed)
    out = []
    for user in sorted(train):
        events = list(train[user])
        seen = {e.item for e in events}  # every training item of the user, as the llmrank protocol excludes
        for cut in range(len(events) - 1, max(min_history, len(events) - per_user) - 1, -1):
            target = events[cut].item
            out.append(RankingCase(user, tuple(events[:cut]), target,
                                   sample_candidates(rng, target, seen - {target}, items, n_candidates)))
    rng.shuffle(out)
    return out


def validation_cases(stage: Sequence[tuple[str, History, str]], items: Sequence[str], n_candidates: int = 20,
                     seed: int = 0) -> list[RankingCase]:
    """Ranking cases for (user, inputs, target) triples, candidates seeded per user (the same every call)."""
    out = []
    for user, inputs, target in stage:
        rng = random.Random(zlib.crc32(f"{seed}\x1f{user}\x1fvalidation".encode()))
        seen = {e.item for e in inputs}
        out.append(RankingCase(user, tuple(inputs), target,
                               sample_candidates(rng, target, seen - {target}, items, n_candidates)))
    return out
