"""Listwise LLM ranking of labelled candidates: verbalizer logprobs or constrained JSON (`agent.rerank` runs them).

Candidates are shown with short labels (A, B, C, ...):

    logprobs  one forward pass; the next-token logprobs of the labels score every candidate
              (LlamaRec's verbalizer). Needs `supports_logprobs`.
    json      the model returns {"ranking": [labels]}, constrained by JSON schema / grammar / json mode
              where the backend can; validated, re-asked with the error, repaired.

A listwise model can prefer a label position over the item shown there; `agent.rerank` shows the
candidates in several independently shuffled orders (`RerankConfig.passes`) and records the shown
position of each pass's top choice (`RerankResult.top_positions`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from agent.llm.client import LLMClient
from agent.llm.json_reply import extract_json_object
from prompts import load_prompt
from retrieval.errors import LLMReplyError

if TYPE_CHECKING:
    from agent.rerank import RerankConfig

LABELS: tuple[str, ...] = tuple(chr(ord("A") + i) for i in range(26))


class InvalidOutput(ValueError):
    """A model reply that cannot be turned into scores (internal: always caught by the reranker)."""


@dataclass
class Counters:
    """What one rerank's LLM calls did; copied into `RerankResult`."""

    retries: int = 0
    backend_retries: int = 0
    invalid_outputs: int = 0
    hallucinated_ids: int = 0
    duplicates: int = 0
    missing_filled: int = 0
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    errors: list[str] = field(default_factory=list)

    top_positions: list[int] = field(default_factory=list)

    def record(self, reply_tokens: int, cached: bool, attempts: int = 1) -> None:
        """Count one call: its prompt tokens, whether the cache served it, HTTP attempts past the first."""
        self.calls += 1
        self.cached_calls += int(cached)
        self.prompt_tokens += reply_tokens
        self.backend_retries += max(0, attempts - 1)


@dataclass(frozen=True)
class Pass:
    """One presentation of the candidates: `order[j]` is the candidate index shown with LABELS[j].

    `history` and `candidates` are rendered <data> blocks; `context` is "" or a newline plus the
    request / interest-shift blocks (`agent.rerank_context`); the method picks the template.
    """

    order: list[int]
    system: str
    history: str
    candidates: str
    context: str = ""

    def messages(self, template: str) -> list[BaseMessage]:
        labels = LABELS[: len(self.order)]
        if template == "rerank":
            user = load_prompt("rerank").render(history=self.history, context=self.context, candidates=self.candidates,
                                                first_label=labels[0], last_label=labels[-1])
        else:
            user = load_prompt("rerank_json").render(history=self.history, context=self.context,
                                                     candidates=self.candidates, n=len(labels),
                                                     example=_example(labels))
        return [SystemMessage(self.system), HumanMessage(user)]


class RankingMethod:
    """Base class: score one pass. One method to implement."""

    name = "method"

    def score(self, client: LLMClient, one: Pass, config: RerankConfig, counters: Counters) -> np.ndarray:
        """Scores per shown position, shape (len(one.order),), higher = better.

        Raises:
            InvalidOutput: the reply(s) gave nothing usable.
            LLMError: the backend failed.
        """
        raise NotImplementedError


class LogprobMethod(RankingMethod):
    """LlamaRec verbalizer: logprobs of the label tokens at the first answer position.

    Args:
        prior: n → per-label log-probabilities to subtract (calibration), or None.
    """

    name = "logprobs"

    def __init__(self, prior: Callable[[int, Counters], np.ndarray] | None = None) -> None:
        self.prior = prior

    def score(self, client: LLMClient, one: Pass, config: RerankConfig, counters: Counters) -> np.ndarray:
        try:
            reply = client.chat(one.messages("rerank"), max_tokens=1, top_logprobs=top_k(client, config))
        except LLMReplyError as exc:
            raise InvalidOutput(str(exc)) from None
        counters.record(reply.prompt_tokens, reply.cached, reply.attempts)
        scores = label_scores(reply.top_logprobs, LABELS[: len(one.order)])
        return scores if self.prior is None else scores - self.prior(len(one.order), counters)


def top_k(client: LLMClient, config: RerankConfig) -> int:
    """Alternatives to ask for: calibration asks for all the backend gives, so fewer labels sit at the floor."""
    return max(config.top_logprobs, client.max_logprobs) if config.calibrate else config.top_logprobs


def label_scores(top: dict[str, float], labels: Sequence[str]) -> np.ndarray:
    """Per-label log-probability from first-position alternatives, shape (len(labels),).

    Token variants of one label (" A", "A", "A.") are merged with logsumexp. Labels absent from the
    alternatives get one nat below the least likely alternative returned (they are less likely than
    all of those). Raises InvalidOutput when no label is among the alternatives.
    """
    if not top:
        raise InvalidOutput("the reply carried no logprobs")
    index = {lab: i for i, lab in enumerate(labels)}
    found = np.full(len(labels), -np.inf)
    for token, lp in top.items():
        key = token.strip().strip("().:*\"'[]")
        if key in index:
            i = index[key]
            found[i] = np.logaddexp(found[i], lp)
    if not np.isfinite(found).any():
        raise InvalidOutput(f"no candidate label among the top tokens {sorted(top)[:8]}")
    floor = min(top.values()) - 1.0
    return np.where(np.isfinite(found), found, floor)


class JsonMethod(RankingMethod):
    """{"ranking": [labels]} under the strongest constraint the backend has; validated and re-asked."""

    name = "json"

    def score(self, client: LLMClient, one: Pass, config: RerankConfig, counters: Counters) -> np.ndarray:
        labels = LABELS[: len(one.order)]
        schema = ranking_schema(labels)
        first = one.messages("rerank_json")
        messages = list(first)
        for attempt in range(config.max_retries + 1):
            try:
                reply = client.chat(messages, max_tokens=6 * len(labels) + 24, json_schema=schema)
            except LLMReplyError as exc:  # the server's reply itself was unreadable: same as invalid JSON
                problem, text = InvalidOutput(str(exc)), ""
            else:
                counters.record(reply.prompt_tokens, reply.cached, reply.attempts)
                try:
                    ranked = parse_ranking(reply.text, labels, counters)
                except InvalidOutput as exc:
                    problem, text = exc, reply.text
                else:
                    # Missing labels go after the ranked ones, in the pass's shown (= retrieval, pass 0) order.
                    missing = [lab for lab in labels if lab not in ranked]
                    counters.missing_filled += len(missing)
                    pos = {lab: r for r, lab in enumerate(ranked + missing)}
                    return np.array([float(len(labels) - pos[lab]) for lab in labels])
            if attempt == config.max_retries:
                raise problem  # counted by the caller
            counters.invalid_outputs += 1
            counters.errors.append(f"json attempt {attempt + 1}: {problem}")
            counters.retries += 1
            retry = load_prompt("rerank_retry").render(error=str(problem)[:200], n=len(labels),
                                                       example=_example(labels))
            messages = [*first, AIMessage(text[:400]), HumanMessage(retry)] if text else list(first)
        raise InvalidOutput("unreachable")  # the loop returns or raises


def ranking_schema(labels: Sequence[str]) -> dict[str, object]:
    """JSON schema of the ranking reply: an array of the given labels (bounded length)."""
    return {"type": "object",
            "properties": {"ranking": {"type": "array", "items": {"type": "string", "enum": list(labels)},
                                       "minItems": 1, "maxItems": len(labels)}},
            "required": ["ranking"], "additionalProperties": False}


def _example(labels: Sequence[str]) -> str:
    return json.dumps({"ranking": list(labels[:3]) + ["..."]})


def parse_ranking(text: str, labels: Sequence[str], counters: Counters) -> list[str]:
    """Valid labels from a JSON ranking reply, in the model's order; foreign and repeated ones dropped.

    Raises:
        InvalidOutput: empty, not JSON, wrong shape, or no valid label at all.
    """
    try:
        data = extract_json_object(text)
    except ValueError as exc:
        raise InvalidOutput(str(exc)) from None
    entries = data.get("ranking")
    if not isinstance(entries, list):
        raise InvalidOutput('the JSON object has no "ranking" list')
    valid = set(labels)
    out: list[str] = []
    for entry in entries:
        key = str(entry).strip().strip(".:)(").upper() if isinstance(entry, str | int) else ""
        if key not in valid:
            counters.hallucinated_ids += 1
        elif key in out:
            counters.duplicates += 1
        else:
            out.append(key)
    if not out:
        raise InvalidOutput(f"none of the {len(entries)} entries is a candidate label ({labels[0]}-{labels[-1]})")
    return out


