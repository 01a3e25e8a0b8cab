"""Benchmark one LLM rerank of 20 candidates with a 50-event ml-100k history, and one grounded
explanation of the top item, per available backend.

Prints, per backend (and per CPU format of an embedded model):
- model load time and the machine's 1-minute load average (timings on a shared box are only
  comparable at similar load);
- rerank: prompt tokens (mean/max), latency p50/p95, method used, fallback count;
- explanation: prompt tokens, latency p50/p95 (LLM answer with re-asks, else the template) and the
  share of LLM answers that passed the grounding check;
- for a converted format: agreement of its LLM scores with the original weights' (mean Spearman
  over the reranks; 1 = same order).
Target for the embedded default: ≤ 3 s p50 per rerank, ≤ 1,500 prompt tokens.

    python -m eval.bench_llm                                   # embedded packaged models installed here
    python -m eval.bench_llm --models smollm2-135m --users 10
    python -m eval.bench_llm --models smollm2-135m --cpu-formats original,q8_0,q4_0,f16   # format agreement
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

from agent.evidence import item_evidence
from agent.explain import Explainer
from agent.llm import LLMClient, LLMSettings, make_chat_model
from agent.llm.packaged import CPU_FORMATS, DEFAULT_CPU_FORMAT, PACKAGED, locate
from agent.narrative import NarrativeConfig
from agent.rerank import LLMReranker, RerankConfig
from retrieval.candidates.popularity import PopularityGenerator
from retrieval.data.datasets import load_dataset
from retrieval.errors import MissingDependencyError


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
    cpu_format: str = ""
    spearman_vs_original: float | None = None
    explain_prompt_tokens_mean: float = 0.0
    explain_p50_s: float = 0.0
    explain_p95_s: float = 0.0
    explain_llm_share: float = 0.0


class _Recorder(LLMClient):
    """An LLMClient that remembers the prompt tokens of every reply."""

    def __init__(self, model) -> None:  # type: ignore[no-untyped-def]
        super().__init__(model)
        self.prompt_tokens: list[int] = []

    def chat(self, messages, **kwargs):  # type: ignore[no-untyped-def,override]
        reply = super().chat(messages, **kwargs)
        self.prompt_tokens.append(reply.prompt_tokens)
        return reply


def workload(n_users: int, history_len: int = 50, k: int = 20, seed: int = 0):  # type: ignore[no-untyped-def]
    """(catalog, [(history, candidates)]) for seeded ml-100k users with ≥ history_len + 1 events."""
    ds = load_dataset("ml-100k")
    rng = np.random.default_rng(seed)
    eligible = [u for u, h in ds.histories.items() if len(h) > history_len]
    users = [eligible[i] for i in rng.choice(len(eligible), size=min(n_users, len(eligible)), replace=False)]
    histories = {u: ds.histories[u][-history_len - 1:-1] for u in users}
    gen = PopularityGenerator({u: ds.histories[u] for u in ds.histories})
    cands = gen.generate_batch([ds.histories[u] for u in users], k)
    return ds.catalog, [(histories[u], c) for u, c in zip(users, cands, strict=True)]


def _spearman(a: dict[str, float], b: dict[str, float]) -> float:
    keys = sorted(a.keys() & b.keys())
    if len(keys) < 2:
        return float("nan")
    ra = np.argsort(np.argsort([a[k] for k in keys]))
    rb = np.argsort(np.argsort([b[k] for k in keys]))
    return float(np.corrcoef(ra, rb)[0, 1])


def bench(name: str, settings: LLMSettings, catalog, work, config: RerankConfig,  # type: ignore[no-untyped-def]
          reference: list[dict[str, float]] | None = None) -> tuple[BenchRow, list[dict[str, float]]]:
    """One row of figures and the per-rerank LLM scores (to compare formats against the original)."""
    t0 = time.perf_counter()
    model = make_chat_model(settings)
    client = _Recorder(model)
    client.count_tokens("warm up")  # loads an embedded model; servers: no-op
    load = time.perf_counter() - t0
    rr = LLMReranker(client, catalog, config)
    explainer = Explainer(catalog, client)
    results, explained, explain_tokens = [], [], []
    for history, cands in work:
        results.append(rr.rerank(history, cands))
        # One grounded explanation of the top item: LLM answer, re-asks, else the template.
        client.prompt_tokens.clear()
        ev = item_evidence(history, results[-1].item_ids[0], catalog, n=explainer.config.supporting)
        explained.append(explainer.explain_evidence(ev).text)
        explain_tokens.append(client.prompt_tokens[0] if client.prompt_tokens else 0)
    ex_lat = np.array([t.latency_s for t in explained])
    lat = np.array([r.latency_s for r in results])
    toks = [r.prompt_tokens for r in results]
    methods = sorted({r.method for r in results})
    scores = [r.llm_scores for r in results]
    agree = None
    if reference is not None:
        agree = round(float(np.nanmean([_spearman(a, b) for a, b in zip(scores, reference, strict=True)])), 3)
    row = BenchRow(name, settings.model or "", len(results), round(load, 2), float(np.mean(toks)), int(max(toks)),
                   round(float(np.percentile(lat, 50)), 3), round(float(np.percentile(lat, 95)), 3),
                   ",".join(methods), sum(r.fallback for r in results), round(os.getloadavg()[0], 1),
                   settings.cpu_format or "", agree, float(np.mean(explain_tokens)),
                   round(float(np.percentile(ex_lat, 50)), 3), round(float(np.percentile(ex_lat, 95)), 3),
                   round(float(np.mean([t.source != "template" for t in explained])), 3))
    return row, scores


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(PACKAGED), help="packaged embedded models to try (if installed)")
    p.add_argument("--users", type=int, default=8, help="reranks per backend (one per sampled user)")
    p.add_argument("--history", type=int, default=50, help="history events per user")
    p.add_argument("--history-tokens", type=int, default=400, help="narrative token budget")
    p.add_argument("--threads", type=int, default=None, help="embedded CPU threads")
    p.add_argument("--cpu-formats", default=DEFAULT_CPU_FORMAT,
                   help=f"embedded GGUF formats to try, comma-separated ({', '.join(CPU_FORMATS)})")
    p.add_argument("--method", default="auto", choices=("auto", "logprobs", "json"))
    p.add_argument("--vllm-url", default=None)
    p.add_argument("--vllm-model", default=None)
    p.add_argument("--llamacpp-url", default=None)
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    catalog, work = workload(args.users, args.history)
    config = RerankConfig(method=args.method, narrative=NarrativeConfig(max_tokens=args.history_tokens))
    formats = [f for f in args.cpu_formats.split(",") if f]
    unknown = sorted(set(formats) - set(CPU_FORMATS))
    if unknown:
        p.error(f"unknown --cpu-formats {unknown}; valid: {', '.join(CPU_FORMATS)}")
    plans: list[tuple[str, LLMSettings]] = []
    for name in [m for m in args.models.split(",") if m]:
        try:
            locate(name)
        except MissingDependencyError as exc:
            print(f"skip embedded {name}: {exc}")
            continue
        for fmt in formats:
            plans.append((f"embedded:{name}:{fmt}", LLMSettings(backend="embedded", model=name, n_threads=args.threads,
                                                                cpu_format=fmt)))
    if args.vllm_url:
        plans.append(("vllm", LLMSettings(backend="vllm", base_url=args.vllm_url, model=args.vllm_model)))
    if args.llamacpp_url:
        plans.append(("llamacpp-server", LLMSettings(backend="llamacpp-server", base_url=args.llamacpp_url)))
    rows = []
    originals: dict[str, list[dict[str, float]]] = {}
    for name, settings in plans:
        model = settings.model or ""
        reference = originals.get(model) if settings.cpu_format != "original" else None
        row, scores = bench(name, settings, catalog, work, config, reference)
        if settings.cpu_format == "original":
            originals[model] = scores
        rows.append(row)
        agree = "" if row.spearman_vs_original is None else f" spearman_vs_original={row.spearman_vs_original:.3f}"
        print(f"{row.backend:32s} reranks={row.reranks} load={row.load_s:.1f}s "
              f"prompt_tokens mean={row.prompt_tokens_mean:.0f} "
              f"max={row.prompt_tokens_max} latency p50={row.latency_p50_s:.2f}s p95={row.latency_p95_s:.2f}s "
              f"method={row.methods} fallbacks={row.fallbacks} | explain prompt_tokens mean="
              f"{row.explain_prompt_tokens_mean:.0f} p50={row.explain_p50_s:.2f}s p95={row.explain_p95_s:.2f}s "
              f"llm_kept={row.explain_llm_share:.0%} | loadavg={row.load_avg_1m}{agree}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([asdict(r) for r in rows], indent=2))


if __name__ == "__main__":
    main()
