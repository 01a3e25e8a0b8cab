"""The "fake" backend: a deterministic chat model with queued replies, declared capabilities and a call history.

For tests and demos (no model, no network): script the replies, run the code under test, assert on
`calls`.

A queued reply is one of:
    str                       the reply text
    AIMessage                 returned as is (e.g. with tool calls)
    LogprobReply              first-token logprobs (OpenAI format in response_metadata) plus text
    BaseException instance    raised (TimeoutError, ConnectionError, openai errors ...)
    callable(messages, kwargs) -> any of the above (computed from the prompt)
When the queue is empty, `default` is used (itself any of the above); with no default the model
raises `FakeExhaustedError`, so a test that makes more calls than it scripted fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field

from agent.llm.settings import LLMSettings


class FakeExhaustedError(RuntimeError):
    """The fake was called more often than the test scripted (a test bug, never caught by driftrec)."""


@dataclass(frozen=True)
class LogprobReply:
    """A reply carrying next-token logprobs at the first position (what servers return with logprobs=true).

    Attributes:
        logprobs: token text → logprob, e.g. {"A": -0.1, "B": -2.3}.
        text: the reply text (defaults to the most likely token).
    """

    logprobs: Mapping[str, float]
    text: str | None = None


@dataclass
class FakeCall:
    """One recorded call: the messages sent and the call kwargs (max_tokens, logprobs, json_schema ...)."""

    messages: list[BaseMessage]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """All message contents joined, for assertions on what the model saw."""
        return "\n".join(str(m.content) for m in self.messages)


Reply = Any  # str | AIMessage | LogprobReply | BaseException | Callable[[list, dict], Reply]


class FakeChatModel(BaseChatModel):
    """Scripted chat model. Capabilities are per-instance fields so one class covers every backend shape.

    Args:
        replies: queued replies, consumed in order.
        default: reply used when the queue is empty (None = raise FakeExhaustedError).
        supports_logprobs / supports_json_schema / supports_grammar / supports_tools / supports_json_mode:
            the capabilities this fake declares.
        name_: model name used in cache keys.
        supports_prompt_logprobs: declare continuation scoring (`score_continuations`).
        continuation_scores: (prefix, continuations) -> one log-likelihood per continuation, or an
            exception instance to raise; used by `score_continuations` (None: every continuation -1.0).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    replies: list[Any] = Field(default_factory=list)
    default: Any = None
    supports_logprobs: bool = False
    supports_json_schema: bool = False
    supports_grammar: bool = False
    supports_tools: bool = False
    supports_json_mode: bool = False
    supports_prompt_logprobs: bool = False
    continuation_scores: Any = None
    model_name: str = "fake"
    calls: list[FakeCall] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "driftrec-fake"

    def queue(self, *replies: Reply) -> FakeChatModel:
        """Append replies to the queue; returns self."""
        self.replies.extend(replies)
        return self

    def count_tokens(self, text: str) -> int:
        """Whitespace tokens: deterministic, so token budgets are easy to check by hand."""
        return len(text.split())

    def score_continuations(self, prefix: str, continuations: Sequence[str]) -> tuple[list[float], list[int], int]:
        """Scripted continuation log-likelihoods (recorded in `calls` with kwargs {"continuations": ...})."""
        self.calls.append(FakeCall([AIMessage(prefix)], {"continuations": list(continuations)}))
        fn = self.continuation_scores
        values = [-1.0] * len(continuations) if fn is None else fn(prefix, list(continuations))
        if isinstance(values, BaseException):
            raise values
        counts = [self.count_tokens(c) for c in continuations]
        return list(values), counts, self.count_tokens(prefix) + sum(counts)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        self.calls.append(FakeCall(list(messages), dict(kwargs)))
        if self.replies:
            reply = self.replies.pop(0)
        elif self.default is not None:
            reply = self.default
        else:
            raise FakeExhaustedError(f"fake chat model called {len(self.calls)} times; no reply queued")
        if callable(reply) and not isinstance(reply, BaseException | AIMessage | LogprobReply):
            reply = reply(list(messages), dict(kwargs))
        if isinstance(reply, BaseException):
            raise reply
        prompt_tokens = sum(self.count_tokens(str(m.content)) for m in messages)
        usage = {"input_tokens": prompt_tokens, "output_tokens": 1, "total_tokens": prompt_tokens + 1}
        if isinstance(reply, AIMessage):
            message = reply
        elif isinstance(reply, LogprobReply):
            message = _logprob_message(reply, usage)
        elif isinstance(reply, str):
            message = AIMessage(content=reply, usage_metadata=usage)
        else:
            raise TypeError(f"unsupported fake reply {reply!r}")
        return ChatResult(generations=[ChatGeneration(message=message)])


def _logprob_message(reply: LogprobReply, usage: dict[str, int]) -> AIMessage:
    ranked = sorted(reply.logprobs.items(), key=lambda kv: -kv[1])
    entries = [{"token": t, "logprob": lp} for t, lp in ranked]
    text = reply.text if reply.text is not None else (ranked[0][0] if ranked else "")
    content = [{"token": text, "logprob": ranked[0][1] if ranked else 0.0, "top_logprobs": entries}]
    return AIMessage(content=text, response_metadata={"logprobs": {"content": content}}, usage_metadata=usage)


def prompt_dependent(fn: Callable[[str], Reply]) -> Callable[[Sequence[BaseMessage], Mapping[str, Any]], Reply]:
    """Wrap `fn(prompt_text) -> reply` as a queued reply computed from the prompt the model saw."""
    def reply(messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]) -> Reply:
        return fn("\n".join(str(m.content) for m in messages))
    return reply


def build(settings: LLMSettings) -> BaseChatModel:
    """The "fake" backend: a `FakeChatModel` with an empty queue (queue replies before calling it)."""
    return FakeChatModel(replies=[])
