"""Grounding figures: how often LLM explanations and interest-shift texts mention things outside their evidence.

    python -m eval.grounding_eval --users 100            # ml-100k, embedded default LLM, k=2 items per user
    python -m eval.grounding_eval --users 100 -k 5 --generator hybrid   # the default generator's top-5

Per user (a seeded sample, the same users as `eval.faithfulness` for the same seed): the generator's
top-k items are explained from their evidence (`Candidate.evidence`) and the interest shift is
described. For every text it records the first LLM answer's ungrounded mentions (before the check),
the final text's ungrounded mentions re-checked independently (after the check), whether the first
answer was kept, regenerated or replaced by the template, and the wall time. Rows are appended to a
JSONL file as they are made (`--resume` continues a partial run); the summary is printed as Markdown,
with the rejected LLM attempts counted by reason. After the check changes, `--recheck` replays the
LLM-written texts of a stored run (same `--data`, `--generator`, `-k`, `--verb`) through the current
check, with no LLM call, and says how many it now rejects and why.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from eval import run_script
from eval.resume import read_rows, resume_rows
from retrieval.errors import ConfigError


def run_user(user: str, dataset: Any, index: Any, retriever: Any, explainer: Any, k: int) -> list[dict[str, Any]]:
    """Explanations for the top-k items and the shift text of one user, one row per text."""
    from agent.evidence import item_evidence, shift_evidence
    from retrieval.evolution.summary import summarize_evolution

    history = dataset.history(user)
    rows = []
    evo = summarize_evolution(user, history, dataset.catalog, index)
    top = retriever.with_evidence([history], [retriever.generate(history, k)])[0]
    evidence = {c.item_id: c.evidence for c in top}
    for exp in explainer.explain(history, list(evidence), evidence=evidence, rising=evo.short_term):
        ev = item_evidence(history, exp.item_id, dataset.catalog, evidence=evidence[exp.item_id],
                           n=explainer.config.supporting, rising=evo.short_term)
        final = explainer.checker.check(exp.text.text, ev.titles, ev.categories, ev.item_line + ev.as_lines())
        rows.append(_row(user, "explanation", exp.text, len(final.ungrounded)))
    sev = shift_evidence(evo, dataset.catalog)
    text = explainer.describe_shift_evidence(sev)
    final = explainer.checker.check(text.text, sev.titles, sev.categories, sev.as_lines())
    rows.append(_row(user, "shift", text, len(final.ungrounded)))
    return rows


def _row(user: str, kind: str, text: Any, ungrounded_final: int) -> dict[str, Any]:
    return {"user": user, "kind": kind, "source": text.source, "attempts": text.attempts,
            "ungrounded_first": text.ungrounded_first, "ungrounded_final": ungrounded_final,
            "backend_error": any(e.startswith("backend") for e in text.errors), "errors": list(text.errors),
            "latency_s": round(text.latency_s, 3), "text": text.text}


def recheck(rows: Sequence[dict[str, Any]], dataset: Any, index: Any, retriever: Any, config: Any,
            k: int) -> dict[str, dict[str, Any]]:
    """Replay every LLM-written text of a stored run through the current check, with no LLM call.

    Each user is run again with `config` (the run's `ExplainConfig`) and a scripted model whose answer
    per text is the stored one (a template row that asked the LLM gets an answer the check always
    rejects), one attempt per text, so the evidence and the check are exactly those of a live run.
    Per kind: texts kept then, how many the check rejects now, and why. A text rejected now would
    have been re-asked once in a live run, so a run with the current check keeps between
    `kept - rejected_now` and `kept` of them.
    """
    from agent.explain import Explainer, rejection_kind
    from agent.llm.backends.fake import FakeChatModel
    from agent.llm.client import LLMClient

    config = replace(config, max_attempts=1)
    out: dict[str, dict[str, Any]] = {kind: {"kept": 0, "rejected_now": 0, "reasons": Counter()}
                                      for kind in ("explanation", "shift")}
    by_user: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_user.setdefault(r["user"], []).append(r)
    for user, old in tqdm(by_user.items(), desc="re-checking", unit="user"):
        if all(r["source"] == "template" for r in old):
            continue
        replies = [r["text"] if r["source"] != "template" else "-" for r in old if r["attempts"] > 0]
        replay = Explainer(dataset.catalog, LLMClient(FakeChatModel(replies=replies)), index, config)
        for before, now in zip(old, run_user(user, dataset, index, retriever, replay, k), strict=True):
            if before["source"] == "template":
                continue
            stats = out[before["kind"]]
            stats["kept"] += 1
            if now["source"] == "template":
                stats["rejected_now"] += 1
                stats["reasons"][rejection_kind(now["errors"][0])] += 1
    return {kind: {**s, "reasons": dict(s["reasons"].most_common())} for kind, s in out.items()}


def rejections(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per kind of text: how many LLM attempts were rejected (or failed) for each reason, most first."""
    from agent.explain import rejection_kind

    out: dict[str, dict[str, int]] = {}
    for kind in ("explanation", "shift"):
        counts = Counter(rejection_kind(e) for r in rows if r["kind"] == kind for e in r["errors"])
        if counts:
            out[kind] = dict(counts.most_common())
    return out


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per kind: counts, shares before/after the check, how texts were obtained, latency percentiles."""
    out: dict[str, dict[str, float]] = {}
    for kind in ("explanation", "shift"):
        part = [r for r in rows if r["kind"] == kind]
        answered = [r for r in part if r["attempts"] > 0 and not (r["backend_error"] and r["attempts"] == 1)]
        if not part:
            continue
        lat = np.array([r["latency_s"] for r in part])
        calls = sum(r["attempts"] for r in part)
        out[kind] = {
            "texts": len(part),
            "llm_answered": len(answered),
            "zero_ungrounded_before": float(np.mean([r["ungrounded_first"] == 0 for r in answered])) if answered
            else float("nan"),
            "zero_ungrounded_after": float(np.mean([r["ungrounded_final"] == 0 for r in part])),
            "kept_first_answer": float(np.mean([r["source"] == "llm" for r in part])),
            "regenerated": float(np.mean([r["source"] == "regenerated" for r in part])),
            "template": float(np.mean([r["source"] == "template" for r in part])),
            "backend_errors": float(sum(r["backend_error"] for r in part)),
            "llm_calls": float(calls),
            "latency_p50_s": float(np.percentile(lat, 50)),
            "latency_p95_s": float(np.percentile(lat, 95)),
            "latency_per_call_s": float(lat.sum() / calls) if calls else float("nan"),
        }
    return out


def markdown(summary: dict[str, dict[str, float]], users: int, model: str,
             rejected: dict[str, dict[str, int]] | None = None) -> str:
    """The summary as a Markdown table (one column per kind), then the rejections by reason."""
    kinds = list(summary)
    pct = {"zero_ungrounded_before", "zero_ungrounded_after", "kept_first_answer", "regenerated", "template"}
    lines = [f"Grounding on {users} users, model {model}", "", "| | " + " | ".join(kinds) + " |",
             "|---|" + "---|" * len(kinds)]
    for key in summary[kinds[0]]:
        cells = [f"{100 * summary[k][key]:.1f}%" if key in pct else
                 (f"{summary[k][key]:.2f}" if key.startswith("latency") else f"{summary[k][key]:g}") for k in kinds]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    for kind, counts in (rejected or {}).items():
        lines.append(f"\nrejected {kind} attempts by reason: "
                     + "; ".join(f"{reason} {n}" for reason, n in counts.items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.grounding_eval", description=__doc__.split("\n")[0])
    p.add_argument("--data", default="ml-100k")
    p.add_argument("--users", type=int, default=100, help="users sampled (seeded)")
    p.add_argument("-k", type=int, default=2, help="items explained per user")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--llm", default="embedded", help="LLM backend ('none' = templates only)")
    p.add_argument("--llm-model", default=None)
    p.add_argument("--llm-url", default=None)
    p.add_argument("--max-attempts", type=int, default=2, help="LLM answers per text before the template")
    p.add_argument("--embedder", default="sentence-transformers", choices=("sentence-transformers", "hashing"))
    p.add_argument("--generator", default="interest", help="candidate generator by name (e.g. hybrid)")
    p.add_argument("--verb", default="watched", help="past-tense verb of the templates (e.g. played)")
    p.add_argument("--out", type=Path, default=Path("grounding_rows.jsonl"), help="JSONL rows (appended)")
    p.add_argument("--resume", action="store_true", help="skip users already in --out")
    p.add_argument("--recheck", action="store_true",
                   help="no LLM: replay the LLM-written texts stored in --out through the current check")
    args = p.parse_args(argv)
    if args.recheck and not args.out.is_file():
        raise ConfigError(f"--recheck reads the rows of an earlier run: {args.out} does not exist")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from agent.explain import ExplainConfig, Explainer
    from eval.faithfulness import sample_users
    from retrieval.candidates.registry import make_generator
    from retrieval.data.datasets import load_dataset
    from retrieval.vectors.build import build_index, default_cache
    from retrieval.vectors.embed import make_embedder

    dataset = load_dataset(args.data)
    index = build_index(dataset.catalog, make_embedder(args.embedder), cache=default_cache())
    retriever = make_generator(args.generator, index, dataset.histories, dataset.catalog.ids)
    client = None
    if args.recheck:
        stored = read_rows(args.out)
        checked = recheck(stored, dataset, index, retriever, ExplainConfig(verb=args.verb), args.k)
        for kind, stats in checked.items():
            reasons = "; ".join(f"{reason} {n}" for reason, n in stats["reasons"].items()) or "none"
            print(f"{kind}: {stats['kept']} written by the LLM in {args.out}; the current check rejects "
                  f"{stats['rejected_now']} of them ({reasons})")
        return 0
    if args.llm != "none":
        from agent.llm import LLMSettings, make_client

        client = make_client(LLMSettings(backend=args.llm, model=args.llm_model, base_url=args.llm_url))
    explainer = Explainer(dataset.catalog, client, index, ExplainConfig(max_attempts=args.max_attempts,
                                                                        verb=args.verb))
    users = sample_users([u for u in dataset.users if dataset.history(u)], args.users, args.seed)
    done = resume_rows(args.out, args.resume)
    finished = {r["user"] for r in done if r["kind"] == "shift"}
    start = time.perf_counter()
    with args.out.open("a", encoding="utf-8") as fh:
        for user in tqdm([u for u in users if u not in finished], desc="users", unit="user"):
            rows = run_user(user, dataset, index, retriever, explainer, args.k)
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            done.extend(rows)
    rows = [r for r in done if r["user"] in set(users)]
    summary = summarize(rows)
    model = client.model_id if client is not None else "none (templates)"
    print(markdown(summary, len({r["user"] for r in rows}), model, rejections(rows)))
    print(f"\nwall time this run: {time.perf_counter() - start:.0f}s; rows in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_script(main, "grounding_eval")
