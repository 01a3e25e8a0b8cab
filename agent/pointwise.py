"""Pointwise likelihood scoring: each candidate as the continuation of the user's dated narrative.

For every candidate the model scores its quoted title (and, optionally, its categories) as the text
right after the narrative prompt (`prompts/pointwise.txt`): the summed log-probability of its tokens,
log p(item | history). Popular, short or generic titles are likely whatever the history, so the
score is calibrated by the same text's likelihood after a prompt with an empty history,
log p(item | no history), remembered per item (pointwise mutual information when alpha = 1):

    score = log p(item | history) - alpha · log p(item | no history)

No candidate list and no labels are shown, so there is no label position to prefer. All candidates
of one user share one prefix: one backend call scores them all (the embedded model evaluates the
prefix once in its KV cache; vLLM gets 20 prompts with a shared prefix and its prefix cache).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.listwise import Counters
from agent.llm.client import LLMClient
from agent.narrative import NarrativeConfig, build_narrative
from prompts import data_block, load_prompt, quote
from retrieval.data.model import Catalog, Event


@dataclass(frozen=True)
class PointwiseScores:
    """Raw likelihoods of one user's candidates.

    Attributes:
        conditional: log p(item text | narrative prompt), shape (n,).
        unconditional: log p(item text | empty-history prompt), shape (n,).
    """

    conditional: np.ndarray
    unconditional: np.ndarray

    def pmi(self, alpha: float) -> np.ndarray:
        """conditional - alpha · unconditional, shape (n,)."""
        return self.conditional - alpha * self.unconditional


class PointwiseScorer:
    """Scores candidates by their likelihood after a user's narrative (one backend call per user).

    Thread-safe: the per-item unconditional likelihoods are remembered under a lock.

    Args:
        client: an LLM client with the `prompt_logprobs` capability.
        catalog: items, for titles and categories.
        narrative: history rendering and its token budget.
        with_categories: append the item's quoted categories to its title in the scored text.
        title_chars: titles are cut to this many characters.
    """

    def __init__(self, client: LLMClient, catalog: Catalog, narrative: NarrativeConfig,
                 with_categories: bool = False, title_chars: int = 60) -> None:
        self.client = client
        self.catalog = catalog
        self.narrative = narrative
        self.with_categories = with_categories
        self.title_chars = title_chars
        self._prior: dict[str, float] = {}
        self._lock = threading.Lock()

    def item_text(self, item_id: str) -> str:
        """The scored continuation: the quoted title, then the quoted top-3 categories when asked."""
        item = self.catalog[item_id]
        text = quote(item.title, self.title_chars)
        if self.with_categories and item.categories:
            text += " " + quote(", ".join(item.categories[:3]))
        return text

    def prefix(self, history: Sequence[Event], context: str = "") -> str:
        """The narrative prompt the continuations follow (ends with a newline)."""
        narrative = build_narrative(history, self.catalog, self.narrative, self.client.count_tokens)
        return load_prompt("pointwise").render(history=data_block("history", [narrative.text]), context=context)

    def empty_prefix(self) -> str:
        """The same prompt with an empty history: the calibration prompt."""
        return load_prompt("pointwise").render(history=data_block("history", []), context="")

    def score(self, history: Sequence[Event], item_ids: Sequence[str], counters: Counters,
              context: str = "") -> PointwiseScores:
        """Raw likelihoods of `item_ids` for `history`.

        Raises:
            LLMError: the backend failed (or cannot score continuations); LLMReplyError: unusable reply.
        """
        texts = [self.item_text(i) for i in item_ids]
        reply = self.client.score_continuations(self.prefix(history, context), texts)
        counters.record(reply.prompt_tokens, reply.cached, reply.attempts)
        with self._lock:
            missing = sorted({i for i in item_ids if i not in self._prior})
        if missing:
            prior = self.client.score_continuations(self.empty_prefix(), [self.item_text(i) for i in missing])
            counters.record(prior.prompt_tokens, prior.cached, prior.attempts)
            with self._lock:
                self._prior.update(zip(missing, prior.logprobs, strict=True))
        with self._lock:
            unconditional = np.array([self._prior[i] for i in item_ids], dtype=np.float64)
        return PointwiseScores(np.array(reply.logprobs, dtype=np.float64), unconditional)
