"""Continuation scoring on a llama.cpp context: one decode for the prefix, one batched decode for all continuations.

Each continuation gets its own sequence id; the prefix's KV cells are shared with it (`seq_cp` on a
unified KV cache adds the sequence to the cells, copying nothing), so every continuation attends to
the prefix and to its own tokens only. All continuation tokens of a chunk go through ONE
`llama_decode`: on a busy CPU every decode pays llama.cpp's thread barriers, so 20 small decodes cost
far more than one larger one. The extra sequences are removed afterwards, leaving sequence 0 (the
prefix) for the next call.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from agent.llm.deadline import expired
from retrieval.errors import LLMTimeoutError

# Sequences a context holds: sequence 0 (the prefix) plus this many continuations per decode.
N_SEQ_MAX = 32
_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def parallel_sequences(n_seq_max: int = N_SEQ_MAX) -> Iterator[None]:
    """Within the block, new llama.cpp contexts hold `n_seq_max` sequences on one unified KV cache.

    `Llama.__init__` takes no argument for it, so the default-context-parameter factory is wrapped for
    the duration of the load (under a process-wide lock). A unified cache keeps `n_ctx` cells in all,
    shared by the sequences, so a single-sequence chat call sees the same context size.
    """
    import llama_cpp.llama_cpp as lib

    original = lib.llama_context_default_params

    def params() -> Any:
        p = original()
        p.n_seq_max = n_seq_max
        p.kv_unified = True
        return p

    with _PATCH_LOCK:
        lib.llama_context_default_params = params
        try:
            yield
        finally:
            lib.llama_context_default_params = original


def next_token_logprobs(llm: Any, tokens: Sequence[int]) -> np.ndarray:
    """Evaluate `tokens` on sequence 0 of `llm` and return the next token's log-probabilities (n_vocab,).

    The longest part of `tokens` already in the KV cache is kept; at least the last token is evaluated.
    Without `logits_all`, llama.cpp keeps logits for the last token of the last batch only: exactly the
    next-token distribution, at no cost for the other positions.
    """
    keep = 0
    for a, b in zip(llm._input_ids.tolist(), tokens[:-1], strict=False):
        if a != b:
            break
        keep += 1
    llm.n_tokens = keep
    llm.eval(list(tokens[keep:]))
    return log_softmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)))


def log_softmax(row: Any) -> np.ndarray:
    """log-softmax of one logit row, shape (n_vocab,), in float64 (a copy: llama.cpp reuses its buffer)."""
    x = np.asarray(row, dtype=np.float64)
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def score_after_prefix(llm: Any, head: Sequence[int], tails: Sequence[Sequence[int]]) -> list[float]:
    """Summed log-probability of each token list in `tails` after the token list `head`.

    `llm` is a `llama_cpp.Llama` whose context was created under `parallel_sequences`. The longest
    part of `head` already in its KV cache (sequence 0) is kept.

    Raises:
        LLMTimeoutError: the deadline passed between decodes.
        RuntimeError: llama.cpp failed to decode.
    """
    import llama_cpp.llama_cpp as lib

    first = next_token_logprobs(llm, head)
    n_vocab, n_head = llm.n_vocab(), llm.n_tokens
    values = [float(first[t[0]]) for t in tails]
    mem = lib.llama_get_memory(llm._ctx.ctx)
    batch = llm._batch.batch
    pending = [k for k, t in enumerate(tails) if len(t) > 1]
    while pending:
        if expired():
            raise LLMTimeoutError("the deadline passed while scoring continuations")
        chunk: list[int] = []
        size = 0
        for k in pending:
            if chunk and (size + len(tails[k]) - 1 > llm.n_batch or len(chunk) + 1 >= N_SEQ_MAX):
                break
            chunk.append(k)
            size += len(tails[k]) - 1
        pending = pending[len(chunk):]
        rows: list[tuple[int, int, int]] = []  # (continuation, batch index, next token)
        batch.n_tokens = 0
        try:
            for s, k in enumerate(chunk, start=1):
                lib.llama_memory_seq_cp(mem, 0, s, 0, n_head)
                tail = tails[k]
                for j, token in enumerate(tail[:-1]):
                    i = batch.n_tokens
                    batch.token[i], batch.pos[i] = token, n_head + j
                    batch.n_seq_id[i], batch.seq_id[i][0], batch.logits[i] = 1, s, True
                    batch.n_tokens += 1
                    rows.append((k, i, tail[j + 1]))
            llm._ctx.decode(llm._batch)
            for k, i, nxt in rows:
                values[k] += float(log_softmax(np.ctypeslib.as_array(llm._ctx.get_logits_ith(i),
                                                                      shape=(n_vocab,)))[nxt])
        finally:
            for s in range(1, len(chunk) + 1):
                lib.llama_memory_seq_rm(mem, s, -1, -1)
    return values
