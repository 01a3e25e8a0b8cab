"""Time budgets for LLM work: a deadline that every LLM call inside a `budget` block respects.

A budget is a context variable, so it follows the code that runs inside the block (on the same
thread) without being passed down: `LLMClient.chat` opens one per call (`LLMSettings.timeout_s`), the
agent opens one per recommendation (`AgentConfig.llm_budget_s`), and nested budgets keep the tighter
deadline. The backends read `remaining()`: the server backends cap every socket read, write and connect
with it (`agent.llm.backends.http`), the embedded backend stops generating when it is spent.

    with budget(30.0):
        ...                      # no LLM call in here runs past 30 s from now
        if expired(): ...        # callers switch to their template texts
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_DEADLINE: ContextVar[float | None] = ContextVar("driftrec_llm_deadline", default=None)


@contextmanager
def budget(seconds: float | None) -> Iterator[None]:
    """Within the block, LLM calls end by `seconds` from now (None: no new limit; nested: the tighter wins)."""
    if seconds is None:
        yield
        return
    until = time.monotonic() + max(0.0, seconds)
    outer = _DEADLINE.get()
    token = _DEADLINE.set(until if outer is None else min(outer, until))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining() -> float | None:
    """Seconds left before the innermost deadline (≤ 0 once passed), or None outside any budget."""
    until = _DEADLINE.get()
    return None if until is None else until - time.monotonic()


def expired() -> bool:
    """True when a deadline is set and has passed."""
    left = remaining()
    return left is not None and left <= 0
