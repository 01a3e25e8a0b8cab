"""Reranks per second against an LLM server with 1 vs N concurrent requests, per rerank method.

Measures, for each method (listwise verbalizer `logprobs`, `pointwise` likelihood) and each
concurrency level, the wall time to rerank a set of users (20 popularity candidates, 50-event ml-100k
histories, as `eval.bench_llm`) through `LLMReranker.rerank_batch`, and the same through the harness
(`llm-rerank` on the `llmrank` protocol, scoring stage only, fusion weight fixed). Every run uses
its own users, so no run is served by a prefix cached in an earlier one; the response cache is off.

    python -m eval.bench_throughput --start-vllm --users 24 --out runs/throughput.json
    python -m eval.bench_throughput --url http://127.0.0.1:8000/v1 --model SmolLM2-135M-Instruct --users 24
    python -m eval.bench_throughput --backend embedded --concurrency 1 --users 8     # in-process baseline

`--start-vllm` launches vLLM (`.venv-vllm`, the packaged SmolLM2 converted by `make vllm-env`) with
prefix caching on and stops it at the end; `--vllm-args` passes more server flags (e.g. for a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from agent.llm import LLMSettings, make_client
from agent.rerank import LLMReranker, RerankConfig
from eval.bench_llm import workload

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ThroughputRow:
    """One (path, method, concurrency) run."""

    path: str
    method: str
    concurrency: int
    reranks: int
    wall_s: float
    reranks_per_s: float
    latency_p50_s: float
    latency_p95_s: float
    fallbacks: int
    methods_used: str
    prompt_tokens_mean: float
    load_avg_1m: float


def direct_run(settings: LLMSettings, method: str, concurrency: int, users: list, catalog) -> ThroughputRow:  # type: ignore[no-untyped-def,type-arg]
    """Rerank `users` ([(history, candidates)]) through `LLMReranker.rerank_batch`."""
    reranker = LLMReranker(make_client(settings), catalog, RerankConfig(method=method))  # type: ignore[arg-type]
    start = time.perf_counter()
    results = reranker.rerank_batch([h for h, _ in users], [c for _, c in users], max_concurrency=concurrency)
    wall = time.perf_counter() - start
    lat = np.array([r.latency_s for r in results])
    return ThroughputRow("direct", method, concurrency, len(results), wall, len(results) / wall,
                         float(np.percentile(lat, 50)), float(np.percentile(lat, 95)),
                         sum(r.fallback for r in results), ",".join(sorted({r.method for r in results})),
                         float(np.mean([r.prompt_tokens for r in results])), os.getloadavg()[0])


def harness_run(settings: LLMSettings, method: str, concurrency: int, n_users: int, seed: int) -> ThroughputRow:
    """The scoring stage of `llm-rerank` under `llmrank` (fixed weight, no tuning) on `n_users` users."""
    from eval.harness import EvalConfig, evaluate
    from eval.models_llm import LLMRerankModel
    from retrieval.data.datasets import load_dataset

    model = LLMRerankModel(backend=settings.backend, model=settings.model, base_url=settings.base_url,
                           method=method, fusion_weight=0.5, cache_dir="", base="popularity", seed=seed,
                           max_concurrency=concurrency, timeout_s=settings.timeout_s)
    result = evaluate(load_dataset("ml-100k"), [model],
                      EvalConfig(protocol="llmrank", seed=seed, n_users=n_users, tune=False))
    row = result.models["llm-rerank"]
    wall = row.timings["score_s"]
    d = row.diagnostics
    n = int(d.get("reranks", 0))
    return ThroughputRow("harness", method, concurrency, n, wall, n / wall, d.get("latency_p50_s", 0.0),
                         d.get("latency_p95_s", 0.0), int(round(d.get("fallback_rate", 0.0) * n)),
                         method, d.get("prompt_tokens_mean", 0.0), os.getloadavg()[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="vllm", help="LLM backend (vllm, openai, embedded, ...)")
    p.add_argument("--url", default=None, help="server base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", default=None, help="served model name (default: the started server's)")
    p.add_argument("--start-vllm", action="store_true", help="start vLLM on the packaged SmolLM2 for the run")
    p.add_argument("--vllm-model-dir", type=Path, default=REPO / ".cache/vllm-models/SmolLM2-135M-Instruct")
    p.add_argument("--vllm-args", default="", help="extra vLLM server flags, space-separated")
    p.add_argument("--methods", default="logprobs,pointwise")
    p.add_argument("--concurrency", default="1,8", help="comma-separated levels")
    p.add_argument("--users", type=int, default=24, help="users per run (each run gets its own)")
    p.add_argument("--paths", default="direct,harness", help="direct (LLMReranker.rerank_batch), harness")
    p.add_argument("--timeout", type=float, default=900.0, help="deadline of one LLM call, seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the rows and ratios as JSON here")
    args = p.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    levels = [int(c) for c in args.concurrency.split(",") if c]
    paths = [x for x in args.paths.split(",") if x]

    server = None
    if args.start_vllm:
        from agent.llm.servers import vllm_python, vllm_server

        extra = [a for a in args.vllm_args.split() if a]
        server = vllm_server(args.vllm_model_dir, log_dir=Path(os.environ.get("TMPDIR", "/tmp")) / "driftrec-vllm",
                             python=vllm_python(REPO / ".venv-vllm"), extra_args=extra)
        server.start()
        print(f"vLLM ready in {server.startup_s:.1f} s at {server.base_url}", flush=True)
    try:
        url = server.base_url if server is not None else args.url
        name = args.model or (server.model if server is not None else None)
        settings = LLMSettings(backend=args.backend, base_url=url, model=name, timeout_s=args.timeout)
        runs = len(methods) * len(levels)
        catalog, pool = workload(args.users * runs + 2, seed=args.seed)
        warm = pool[-2:]
        direct_run(settings, methods[0], 1, warm, catalog)  # load / connect once, outside the timings
        rows: list[ThroughputRow] = []
        for m_i, method in enumerate(methods):
            for c_i, level in enumerate(levels):
                k = m_i * len(levels) + c_i
                if "direct" in paths:
                    rows.append(direct_run(settings, method, level, pool[k * args.users:(k + 1) * args.users],
                                           catalog))
                    print(json.dumps(asdict(rows[-1])), flush=True)
                if "harness" in paths:
                    rows.append(harness_run(settings, method, level, args.users, seed=1000 + k))
                    print(json.dumps(asdict(rows[-1])), flush=True)
    finally:
        if server is not None:
            server.stop()
    ratios = {}
    for path in paths:
        for method in methods:
            by = {r.concurrency: r.reranks_per_s for r in rows if r.path == path and r.method == method}
            if len(by) >= 2:
                ratios[f"{path}/{method}"] = by[max(by)] / by[min(by)]
    print("| path | method | concurrency | reranks | wall s | reranks/s | p50 s | p95 s | fallbacks |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.path} | {r.method} | {r.concurrency} | {r.reranks} | {r.wall_s:.1f} | {r.reranks_per_s:.2f} | "
              f"{r.latency_p50_s:.2f} | {r.latency_p95_s:.2f} | {r.fallbacks} |")
    for key, value in ratios.items():
        print(f"{key}: {max(levels)} vs {min(levels)} concurrent = {value:.2f}x")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": [asdict(r) for r in rows], "ratios": ratios,
                                        "settings": {"backend": args.backend, "model": name,
                                                     "users_per_run": args.users}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
