"""Does the chat request in the rerank prompt move the LLM's ranking towards what the user asked for?

    python -m eval.bench_request --messages 300 --methods pmi,listwise --out runs/llm/request
    python -m eval.bench_request ... --resume        # continue an interrupted run

The ml-100k messages of the request test sets (tests/data/chat_requests*.jsonl) whose gold parse asks
for categories (to include or to lift, e.g. "Recommend me some westerns") are sampled (seeded); each is
paired with a seeded random user. The default hybrid's top 20 for that user, with no constraint
applied, is reranked by the LLM alone (w = 1) twice: without the request and with the message in the
prompt (`LLMReranker.rerank(..., request=...)`). The figure is the share of the top 5 in the asked-for
categories: retrieval order, LLM without the request, LLM with it, and the paired bootstrap difference
with − without (95% CI). Messages whose top 20 holds no such item are counted and left out (no order
of those candidates can answer them). Each rerank pair is appended to `<out>/rows.jsonl` as it
finishes; the summary is printed as Markdown and written to `<out>/report.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agent.llm import LLMSettings, make_client
from agent.narrative import NarrativeConfig
from agent.rerank import LLMReranker, RerankConfig
from eval import run_script
from eval.bench_rerank_methods import METHODS
from eval.chat_constraints import DATA_DIR, SETS
from eval.metrics import paired_comparison
from eval.resume import resume_rows
from retrieval.errors import ConfigError

TOP = 5
CANDIDATES = 20


def category_messages(n: int, seed: int) -> list[dict[str, Any]]:
    """A seeded sample of `n` ml-100k request messages whose gold parse asks for categories."""
    rows = [json.loads(line) for name in SETS for line in (DATA_DIR / name).read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if r["dataset"] == "ml-100k" and r["gold"]["intent"] in ("recommend", "refine")
            and (r["gold"]["include_categories"] or r["gold"]["lift_categories"])]
    rows = list({r["message"]: r for r in rows}.values())  # one row per distinct message
    random.Random(seed).shuffle(rows)
    return rows[:n]


def share_in(items: Sequence[str], wanted: set[str], catalog: Any) -> float:
    """Share of `items` that have at least one of the `wanted` categories."""
    return float(np.mean([bool(wanted & set(catalog[i].categories)) for i in items])) if items else 0.0


def summarize(rows: Sequence[dict[str, Any]], methods: Sequence[str], seed: int) -> dict[str, Any]:
    """Per method: mean top-5 share in the asked-for categories, and with − without the request."""
    out: dict[str, Any] = {"messages": len({r["message"] for r in rows}), "methods": {}}
    for m in methods:
        part = [r for r in rows if r["method"] == m and r["answerable"]]
        if not part:
            continue
        base, without, with_ = (np.array([r[k] for r in part]) for k in ("retrieval", "without", "with"))
        out["methods"][m] = {
            "answerable": len(part), "retrieval": float(base.mean()), "without": float(without.mean()),
            "with": float(with_.mean()),
            "with_minus_without": asdict(paired_comparison(with_, without, "top-5 share", seed=seed)),
            "with_minus_retrieval": asdict(paired_comparison(with_, base, "top-5 share", seed=seed)),
            "fallbacks": sum(r["fallbacks"] for r in part),
            "latency_p50_s": float(np.percentile([r["latency_s"] for r in part], 50)),
        }
    out["unanswerable"] = len({r["message"] for r in rows if not r["answerable"]})
    return out


def markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (shares ×100)."""
    def diff(d: dict[str, Any]) -> str:
        low, high = d["ci95"]
        return f"{100 * d['diff']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}], p = {d['p_value']:.2f}"

    lines = [f"Top-{TOP} share in the asked-for categories ×100, {summary['messages']} messages "
             f"({summary['unanswerable']} left out: no such item among the {CANDIDATES} candidates)", "",
             "| method | messages | retrieval order | LLM without the request | LLM with it | with − without | "
             "with − retrieval | fallbacks | p50 s per rerank |", "|---|---|---|---|---|---|---|---|---|"]
    for m, s in summary["methods"].items():
        lines.append(f"| {m} | {s['answerable']} | {100 * s['retrieval']:.1f} | {100 * s['without']:.1f} | "
                     f"{100 * s['with']:.1f} | {diff(s['with_minus_without'])} | {diff(s['with_minus_retrieval'])} | "
                     f"{s['fallbacks']} | {s['latency_p50_s']:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.bench_request", description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=300, help="request messages sampled (seeded)")
    p.add_argument("--methods", default="pmi,listwise", help=f"comma-separated, of {', '.join(METHODS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default="ml-100k", help="the ml-100k directory (default: the usual search)")
    p.add_argument("--embedder", default="sentence-transformers", choices=("sentence-transformers", "hashing"))
    p.add_argument("--llm", default="embedded")
    p.add_argument("--llm-model", default=None)
    p.add_argument("--llm-url", default=None)
    p.add_argument("--history-tokens", type=int, default=400)
    p.add_argument("--out", type=Path, required=True, help="directory for rows.jsonl and report.json")
    p.add_argument("--resume", action="store_true", help="keep the messages already in <out>/rows.jsonl")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if unknown := [m for m in methods if m not in METHODS]:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(METHODS)}")
    if args.messages < 1:
        raise ConfigError(f"--messages must be ≥ 1, got {args.messages}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from retrieval.candidates.registry import make_generator
    from retrieval.data.datasets import load_dataset
    from retrieval.vectors.build import build_index, default_cache
    from retrieval.vectors.embed import make_embedder

    ds = load_dataset(args.data)
    index = build_index(ds.catalog, make_embedder(args.embedder), cache=default_cache())
    generator = make_generator("hybrid", index, ds.histories, ds.catalog.ids)
    client = make_client(LLMSettings(backend=args.llm, model=args.llm_model, base_url=args.llm_url, seed=args.seed))
    rerankers = {m: LLMReranker(client, ds.catalog, RerankConfig(
        **METHODS[m], fusion_weight=1.0, seed=args.seed,  # type: ignore[arg-type]
        narrative=NarrativeConfig(max_tokens=args.history_tokens))) for m in methods}
    messages = category_messages(args.messages, args.seed)
    rng, pool = random.Random(args.seed), sorted(ds.histories)
    users = [rng.choice(pool) for _ in messages]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "rows.jsonl"
    rows = resume_rows(path, args.resume)
    done = {(r["message"], r["method"]) for r in rows}
    with path.open("a", encoding="utf-8") as fh:
        for msg, user in tqdm(list(zip(messages, users, strict=True)), desc="messages", unit="msg"):
            wanted = set(msg["gold"]["include_categories"]) | set(msg["gold"]["lift_categories"])
            history = ds.history(user)
            candidates = generator.generate(history, CANDIDATES)
            answerable = any(wanted & set(ds.catalog[c.item_id].categories) for c in candidates)
            for m in methods:
                if (msg["message"], m) in done:
                    continue
                row: dict[str, Any] = {"message": msg["message"], "user": user, "method": m,
                                       "categories": sorted(wanted), "answerable": answerable,
                                       "retrieval": share_in([c.item_id for c in candidates[:TOP]], wanted, ds.catalog)}
                if answerable:
                    plain = rerankers[m].rerank(history, candidates)
                    asked = rerankers[m].rerank(history, candidates, request=msg["message"])
                    row.update({
                        "without": share_in([c.item_id for c in plain.candidates[:TOP]], wanted, ds.catalog),
                        "with": share_in([c.item_id for c in asked.candidates[:TOP]], wanted, ds.catalog),
                        "fallbacks": int(plain.fallback) + int(asked.fallback),
                        "latency_s": (plain.latency_s + asked.latency_s) / 2})
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
                rows.append(row)
    summary = summarize(rows, methods, args.seed)
    summary.update({"llm": args.llm, "llm_model": args.llm_model or "default", "seed": args.seed,
                    "history_tokens": args.history_tokens})
    (args.out / "report.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    run_script(main, "bench_request")
