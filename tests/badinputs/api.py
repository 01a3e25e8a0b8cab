"""API cases, run in the worker: loads with loss accounting, threads sharing one agent, re-saves under readers.

Each function takes the case's params and a `Findings` to fill; a `DriftrecError` it raises counts as the
case's exit code and one-line message, like the CLI's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.badinputs.checks import Findings, account, refusal_ok

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def load(params: dict[str, Any], out: Findings) -> None:
    """`load_dataset(dir, on_error)`, then the silent-loss accounting of what it returned."""
    from retrieval.data.datasets import load_dataset
    from retrieval.errors import DriftrecError

    acc, mode = params["accounting"], params["on_error"]
    try:
        dataset = load_dataset(acc["dir"], on_error=mode)
    except DriftrecError as exc:
        if not refusal_ok(acc, mode):
            out.add(f"refused a dataset it should load ({mode} mode): {str(exc)[:160]}")
        raise
    skipped = [(s.file, s.line) for s in dataset.report.skipped]
    if mode == "raise" and skipped:
        out.add(f"raise mode returned with {len(skipped)} reported rows instead of stopping")
    out.extend(account(dataset, skipped, acc, mode))


def _small_world(data: str) -> tuple[Any, Any, Any]:
    from retrieval.candidates.registry import make_generator
    from retrieval.data.datasets import load_dataset
    from retrieval.vectors.build import build_index
    from retrieval.vectors.embed import make_embedder

    dataset = load_dataset(data)
    index = build_index(dataset.catalog, make_embedder("hashing"), "flat", progress=False)
    return dataset, index, make_generator("hybrid", index, dataset.histories, dataset.catalog.ids)


def _fake_reply(messages: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """A deterministic reply computed from the prompt: logprobs for rerank calls, a sentence otherwise."""
    from agent.llm.backends.fake import LogprobReply

    prompt = "\n".join(str(m.content) for m in messages)
    seed = hashlib.sha256(prompt.encode()).digest()
    if kwargs.get("top_logprobs") or kwargs.get("logprobs"):
        return LogprobReply({lab: -(seed[i] / 25.0) for i, lab in enumerate(LABELS[:20])})
    return "It matches the films you rated highly over the last few weeks of your history."


def _client(backend: str) -> Any:
    """An LLM client for `backend` ("fake": deterministic replies computed from the prompt); None for "none"."""
    from agent.llm.backends import make_client
    from agent.llm.settings import LLMSettings

    if backend == "none":
        return None
    model = None
    if backend == "fake":
        from agent.llm.backends.fake import FakeChatModel

        model = FakeChatModel(default=_fake_reply, supports_logprobs=True)
    return make_client(LLMSettings(backend=backend, max_tokens=24), model=model)


def _agent(dataset: Any, index: Any, generator: Any, client: Any) -> Any:
    from agent.agent import AgentConfig, RecommenderAgent
    from agent.narrative import NarrativeConfig
    from agent.rerank import LLMReranker, RerankConfig

    if client is None:
        return RecommenderAgent(dataset, generator, index, config=AgentConfig(candidates=8))
    reranker = LLMReranker(client, dataset.catalog, RerankConfig(
        max_candidates=4, title_chars=30, narrative=NarrativeConfig(max_tokens=60, min_recent=2)))
    return RecommenderAgent(dataset, generator, index, client=client, reranker=reranker,
                            config=AgentConfig(candidates=4))


def _summary(rec: Any) -> tuple[Any, ...]:
    return rec.items, tuple(e.text.text for e in rec.explanations)


def threads_recommend(params: dict[str, Any], out: Findings) -> None:
    """8 threads recommending through one agent give the same results as one thread, and nothing crashes.

    Params: data (dataset dir), backend ("none", "fake", "embedded"), users (how many; the 8 threads
    share them when fewer), k, explain.
    """
    dataset, index, generator = _small_world(params["data"])
    users = dataset.users[: params.get("users", 16)]
    k, explain = params.get("k", 5), params.get("explain", True)
    client = _client(params["backend"])  # one model: the shared agent's threads and the serial run use it
    serial_agent = _agent(dataset, index, generator, client)
    serial = {u: _summary(serial_agent.recommend(u, k, explain=explain)) for u in users}
    shared = _agent(dataset, index, generator, client)
    errors: list[str] = []

    def one(user: str) -> tuple[Any, ...] | None:
        try:
            return _summary(shared.recommend(user, k, explain=explain))
        except Exception as exc:  # noqa: BLE001 - every failure in a thread is a finding
            errors.append(f"{type(exc).__name__}: {exc}"[:160])
            return None

    tasks = (users * (8 // len(users) + 1))[: max(8, len(users))]  # 8 threads busy even with fewer users
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(zip(tasks, pool.map(one, tasks), strict=True))
    if errors:
        out.add(f"{len(errors)} of {len(tasks)} threaded calls failed, first: {errors[0]}")
    differ = [(u, got) for u, got in threaded if got is not None and got != serial[u]]
    if differ:
        u, got = differ[0]
        out.add(f"threaded results differ from serial in {len(differ)} of {len(tasks)} calls (first, user {u!r}: "
                f"{got!r:.80} vs {serial[u]!r:.80})", lost=True)


def _index_versions(data: str) -> tuple[Any, Any]:
    from retrieval.vectors.build import build_index
    from retrieval.vectors.embed import make_embedder

    dataset, index, _ = _small_world(data)
    half = type(dataset.catalog)(list(dataset.catalog)[: len(dataset.catalog) // 2])
    return index, build_index(half, make_embedder("hashing"), "flat", progress=False)


def resave_readers(params: dict[str, Any], out: Findings) -> None:
    """Readers loading an index while a writer re-saves it see the old or the new version, whole, never an error."""
    from retrieval.vectors.index import VectorIndex

    full, half = _index_versions(params["data"])
    target = Path(params["dir"]) / "ix"
    full.save(target)
    sizes, failures, done = {len(full), len(half)}, [], threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                n = len(VectorIndex.load(target))
                if n not in sizes:
                    failures.append(f"read an index of {n} items")
            except Exception as exc:  # noqa: BLE001 - every failed read is a finding
                failures.append(f"{type(exc).__name__}: {exc}"[:160])

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for n in range(params.get("saves", 12)):
            (half if n % 2 else full).save(target)
    finally:
        done.set()
        for t in readers:
            t.join(30)
    if failures:
        out.add(f"{len(failures)} reads failed during re-saves, first: {failures[0]}")
    _leftovers(Path(params["dir"]), out)


def concurrent_writers(params: dict[str, Any], out: Findings) -> None:
    """Four threads saving to one directory at once: no error, a loadable result, no leftovers."""
    from retrieval.vectors.index import VectorIndex

    full, half = _index_versions(params["data"])
    target = Path(params["dir"]) / "ix"
    errors: list[str] = []

    def save(n: int) -> None:
        try:
            (half if n % 2 else full).save(target)
        except Exception as exc:  # noqa: BLE001 - every failed save is a finding
            errors.append(f"{type(exc).__name__}: {exc}"[:160])

    for _ in range(params.get("rounds", 3)):
        threads = [threading.Thread(target=save, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    if errors:
        out.add(f"{len(errors)} concurrent saves failed, first: {errors[0]}")
    if len(VectorIndex.load(target)) not in (len(full), len(half)):
        out.add("the directory holds neither version after concurrent saves")
    _leftovers(Path(params["dir"]), out)


def _leftovers(directory: Path, out: Findings) -> None:
    left = [p.name for p in directory.iterdir() if p.name.startswith((".tmp-", ".old-"))]
    if left:
        out.add(f"leftovers after saving: {', '.join(sorted(left)[:3])}")
    shutil.rmtree(directory / "ix", ignore_errors=True)


def long_chat_message(params: dict[str, Any], out: Findings) -> None:
    """The rules' parse of a long message runs in linear time: 10x the message, at most ~10x the time."""
    from agent.chat.parse import parse_message
    from agent.chat.vocabulary import CatalogVocabulary
    from retrieval.data.model import Catalog, Item

    vocab = CatalogVocabulary(Catalog([Item(id="1", title="Heat (1995)", categories=("Action",))]))

    base = params.get("chars", 40_000)
    times = []
    for size in (base, base * 10):
        message = ("something different please " * (size // 27 + 1))[:size]
        start = time.perf_counter()
        try:
            parse_message(message, vocab)
        except Exception as exc:  # a cap (ConfigError) is fine: the CLI reports it in one line
            from retrieval.errors import DriftrecError

            if not isinstance(exc, DriftrecError):
                raise
            return
        times.append(time.perf_counter() - start)
    if times[1] > max(1.0, 25 * times[0]):
        out.add(f"parsing time grows faster than the message: {times[0]:.2f}s at {base:,} chars, "
                f"{times[1]:.2f}s at {base * 10:,}")


def selftest(params: dict[str, Any], out: Findings) -> None:
    """The harness's own test: misbehave as `params["action"]` says (segfault, hang, traceback, two_lines, ok)."""
    from retrieval.errors import DataError

    action = params["action"]
    if action == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif action == "hang":
        time.sleep(3600)
    elif action == "traceback":
        raise KeyError("selftest")
    elif action == "two_lines":
        raise DataError("first line\nsecond line")


API: dict[str, Callable[[dict[str, Any], Findings], None]] = {
    "selftest": selftest,
    "load": load,
    "threads_recommend": threads_recommend,
    "resave_readers": resave_readers,
    "concurrent_writers": concurrent_writers,
    "long_chat_message": long_chat_message,
}
