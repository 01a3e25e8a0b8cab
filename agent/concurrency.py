"""Bounded concurrency for LLM work: many users' reranks or recommendations in flight at once.

A server (vLLM) batches concurrent requests, so throughput grows with requests in flight; the
embedded model serves one call at a time (`LLMClient.default_concurrency` is 1 there).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tqdm.auto import tqdm

from retrieval.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


def map_bounded(fn: Callable[[T], R], items: Sequence[T], max_concurrency: int, *, desc: str = "",
                progress: bool = False) -> list[R]:
    """`[fn(x) for x in items]` with at most `max_concurrency` calls running at once, results in input order.

    Each call runs in a copy of the caller's context (so a `agent.llm.deadline.budget` opened by the
    caller applies). 1 runs inline, in order. The first exception raised by `fn` propagates.

    Raises:
        ConfigError: max_concurrency < 1.
    """
    if max_concurrency < 1:
        raise ConfigError(f"max_concurrency must be ≥ 1, got {max_concurrency}")
    bar = tqdm(total=len(items), desc=desc, leave=False, disable=not progress)
    try:
        if max_concurrency == 1 or len(items) <= 1:
            out = []
            for x in items:
                out.append(fn(x))
                bar.update(1)
            return out
        with ThreadPoolExecutor(max_workers=min(max_concurrency, len(items))) as pool:
            futures = [pool.submit(contextvars.copy_context().run, fn, x) for x in items]
            for f in futures:
                f.add_done_callback(lambda _: bar.update(1))
            return [f.result() for f in futures]
    finally:
        bar.close()
