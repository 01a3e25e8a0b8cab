"""Benchmark one LLM rerank of 20 candidates with a 50-event ml-100k history, per available backend.

Prints, per backend: model load time, the machine's 1-minute load average (timings on a shared box
are only comparable at similar load), prompt tokens (mean/max), latency p50/p95 per rerank, method
used and fallback count. Target for the embedded default: ≤ 3 s p50 per rerank, ≤ 1,500 prompt tokens.

    python -m eval.bench_llm                                   # embedded packaged models installed here
    python -m eval.bench_llm --models smollm2-135m --users 10
    python -m eval.bench_llm --vllm-url http://127.0.0.1:8000/v1 --llamacpp-url http://127.0.0.1:8080/v1
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from agent.llm import LLMClient, LLMSettings, make_chat_model
from agent.narrative import NarrativeConfig
from agent.packaged import PACKAGED, locate
from agent.rerank import LLMReranker, RerankConfig
from retrieval.datasets import load_dataset
from retrieval.errors import MissingDependencyError
from retrieval.retrieve import PopularityGenerator


@dataclass(frozen=True)
class BenchRow:
    """One backend's figures."""

    backend: str
    model: str
    reranks: int
    load_s: float
    prompt_tokens_mean: float
    prompt_tokens_max: int
    latency_p50_s: float
    latency_p95_s: float
    methods: str
    fallbacks: int
    load_avg_1m: float


def workload(n_users: int, history_len: int = 50, k: int = 20, seed: int = 0):  # type: ignore[no-untyped-def]
    """(catalog, [(history, candidates)]) for seeded ml-100k users with ≥ history_len + 1 events."""
    ds = load_dataset("ml-100k")
    rng = np.random.default_rng(seed)
    eligible = [u for u, h in ds.histories.items() if len(h) > history_len]
    users = [eligible[i] for i in rng.choice(len(eligible), size=min(n_users, len(eligible)), replace=False)]
    histories = {u: ds.histories[u][-history_len - 1:-1] for u in users}
    gen = PopularityGenerator({u: ds.histories[u] for u in ds.histories})
    cands = gen.generate_batch(users, k)
    return ds.catalog, [(histories[u], c) for u, c in zip(users, cands, strict=True)]


def bench(name: str, settings: LLMSettings, catalog, work, config: RerankConfig) -> BenchRow:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    model = make_chat_model(settings)
    client = LLMClient(model)
    client.count_tokens("warm up")  # loads an embedded model; servers: no-op
    load = time.perf_counter() - t0
    rr = LLMReranker(client, catalog, config)
    results = [rr.rerank(h, c) for h, c in work]
    lat = np.array([r.latency_s for r in results])
    toks = [r.prompt_tokens for r in results]
    methods = sorted({r.method for r in results})
    return BenchRow(name, settings.model or "", len(results), round(load, 2), float(np.mean(toks)), int(max(toks)),
                    round(float(np.percentile(lat, 50)), 3), round(float(np.percentile(lat, 95)), 3),
                    ",".join(methods), sum(r.fallback for r in results), round(os.getloadavg()[0], 1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(PACKAGED), help="packaged embedded models to try (if installed)")
    p.add_argument("--users", type=int, default=8, help="reranks per backend (one per sampled user)")
    p.add_argument("--history", type=int, default=50, help="history events per user")
    p.add_argument("--history-tokens", type=int, default=400, help="narrative token budget")
    p.add_argument("--threads", type=int, default=None, help="embedded CPU threads")
    p.add_argument("--method", default="auto", choices=("auto", "logprobs", "json"))
    p.add_argument("--vllm-url", default=None)
    p.add_argument("--vllm-model", default=None)
    p.add_argument("--llamacpp-url", default=None)
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    catalog, work = workload(args.users, args.history)
    config = RerankConfig(method=args.method, narrative=NarrativeConfig(max_tokens=args.history_tokens))
    plans: list[tuple[str, LLMSettings]] = []
    for name in [m for m in args.models.split(",") if m]:
        try:
            path = locate(name)
        except MissingDependencyError as exc:
            print(f"skip embedded {name}: {exc}")
            continue
        plans.append((f"embedded:{name}", LLMSettings(backend="embedded", model=str(path), n_threads=args.threads)))
    if args.vllm_url:
        plans.append(("vllm", LLMSettings(backend="vllm", base_url=args.vllm_url, model=args.vllm_model)))
    if args.llamacpp_url:
        plans.append(("llamacpp-server", LLMSettings(backend="llamacpp-server", base_url=args.llamacpp_url)))
    rows = []
    for name, settings in plans:
        row = bench(name, settings, catalog, work, config)
        rows.append(row)
        print(f"{row.backend:32s} reranks={row.reranks} load={row.load_s:.1f}s "
              f"prompt_tokens mean={row.prompt_tokens_mean:.0f} "
              f"max={row.prompt_tokens_max} latency p50={row.latency_p50_s:.2f}s p95={row.latency_p95_s:.2f}s "
              f"method={row.methods} fallbacks={row.fallbacks} loadavg={row.load_avg_1m}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([asdict(r) for r in rows], indent=2))


if __name__ == "__main__":
    main()
