"""Deterministic fakes for tests. The fake chat model ships as the "fake" LLM backend
(`agent.llm.backends.fake`); it is re-exported here so tests keep one import place for their fakes."""

from __future__ import annotations

from agent.llm.backends.fake import (
    FakeCall,
    FakeChatModel,
    FakeExhaustedError,
    LogprobReply,
    Reply,
    prompt_dependent,
)

__all__ = ["FakeCall", "FakeChatModel", "FakeExhaustedError", "LogprobReply", "Reply", "prompt_dependent"]
