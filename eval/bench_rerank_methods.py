"""Does the LLM help? Rerank methods compared on the same seeded users, resumable user by user.

For one dataset and protocol (`llmrank`: 20 candidates = target + 19 sampled; `rerank`: the
retriever's top 20), each method reranks every sampled user's validation AND test candidates; each
rerank is appended to `<out>/reranks.jsonl` as it finishes (methods interleaved per user, so an
interrupted run has the same users for every method). `--report` (also run at the end) uses the users
every method has finished and writes `<out>/report.json` and `<out>/report.md`:

- per method: NDCG@10 ×100 of the retriever alone, the LLM alone (w = 1) and the fusion
  (1 - w)·z(retrieval) + w·z(llm), w (and, pointwise, the calibration weight alpha) tuned on the
  validation stage of the same users over grids that include w = 0 (the retriever alone);
- paired bootstrap difference of LLM-alone and fused vs the retriever (95% CI, p, wins/losses);
- position following (listwise): share of passes whose top choice is at the most frequent position;
- latency p50/p95 per rerank, prompt tokens, fallbacks, and popularity on the same candidates.

    python -m eval.bench_rerank_methods --dataset ml-100k --protocol llmrank --users 500 \
        --out runs/methods/ml100k-llmrank
    python -m eval.bench_rerank_methods ... --resume          # continue after an interruption
    python -m eval.bench_rerank_methods ... --report          # tables from what has finished
    python -m eval.bench_rerank_methods ... --llm transformers --llm-adapter DIR --versus OTHER_OUT
                                  # a tuned ranker, paired with an earlier run on the same users

Methods: `pmi` (pointwise title likelihood, calibrated), `pmi-cat` (title + categories), `listwise`
(verbalizer logprobs, retrieval order), `listwise3` (3 passes, each its own shuffle),
`listwise-shift` (verbalizer with the interest-shift line in the prompt).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agent.llm import LLMSettings, make_client
from agent.llm.adapter import check_trained_on
from agent.narrative import NarrativeConfig
from agent.rerank import LLMReranker, RerankConfig
from eval import run_script
from eval.harness import EvalConfig, _instance, _overrides_tune, _sample_users
from eval.metrics import paired_comparison
from eval.models import TrainData, ValidationData, make_model, parse_model_args, with_defaults
from eval.models_llm import DEFAULT_ALPHAS, DEFAULT_WEIGHTS, _ndcg10, llm_array, position_following
from eval.protocols import ProtocolContext, make_protocol
from eval.resume import read_rows, resume_rows
from eval.splits import leave_one_out
from retrieval.candidates.base import Candidate
from retrieval.data.datasets import cache_dir as user_cache_dir
from retrieval.data.datasets import load_dataset
from retrieval.errors import ConfigError

METHODS: dict[str, dict[str, Any]] = {
    "pmi": {"method": "pointwise"},
    "pmi-cat": {"method": "pointwise", "with_categories": True},
    "listwise": {"method": "logprobs"},
    "listwise3": {"method": "logprobs", "passes": 3, "shuffle_all": True},
    "listwise-shift": {"method": "logprobs", "shift_summary": True},
}


# The agent's untuned settings (listwise "auto" or pointwise, fused at w = 0.5): what a user gets by default.
AGENT_DEFAULT = RerankConfig()


def _result_record(method: str, index: int, user: str, stage: str, r: Any) -> dict[str, Any]:
    return {"method": method, "i": index, "user": user, "stage": stage, "used": r.method, "fallback": r.fallback,
            "llm_scores": r.llm_scores, "llm_parts": {k: list(v) for k, v in r.llm_parts.items()},
            "top_positions": list(r.top_positions), "latency_s": r.latency_s, "prompt_tokens": r.prompt_tokens,
            "calls": r.calls, "cached_calls": r.cached_calls, "backend_retries": r.backend_retries,
            "errors": list(r.errors)[:3]}


class _Stored:
    """A stored rerank read back with the attributes `llm_array` and `position_following` use."""

    def __init__(self, rec: dict[str, Any]) -> None:
        self.llm_scores: dict[str, float] = rec["llm_scores"]
        self.llm_parts = {k: tuple(v) for k, v in rec["llm_parts"].items()}
        self.top_positions = tuple(rec["top_positions"])
        self.rec = rec


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Users, candidates, retrieval and popularity scores of both stages (deterministic from the seed)."""
    ds = load_dataset(args.dataset)
    split = leave_one_out(ds)
    retriever_kwargs = {args.retriever: args.retriever_args} if args.retriever_args else {}
    cfg = EvalConfig(protocol=args.protocol, seed=args.seed, n_users=args.users, retriever=args.retriever,
                     rerank_k=args.k, defaults={"embedder": args.embedder}, model_kwargs=retriever_kwargs)
    test, validation = _sample_users(split, cfg)
    item_ids = tuple(ds.catalog.ids)
    train = TrainData(ds.catalog, split.train, item_ids)
    if args.llm_adapter is not None:
        check_trained_on(args.llm_adapter, split.train)  # LeakageError when tuned on other events
    retriever = None
    if args.protocol == "rerank":
        retriever = _instance(args.retriever, cfg)
        retriever.fit(train)
        if _overrides_tune(retriever):  # as the harness does: tuned as under `full`, before giving candidates
            retriever.tune(ValidationData(validation.users, validation.inputs, validation.target_items, None))
    protocol = make_protocol(args.protocol, args.k)
    context = ProtocolContext(item_ids, args.seed, retriever)
    stages = {"test": test, "validation": validation}
    cands = {name: protocol.candidates(stage, context) for name, stage in stages.items()}
    base = None
    if args.protocol == "llmrank":
        base = make_model(args.retriever, **with_defaults(args.retriever, args.retriever_args,
                                                          {"embedder": args.embedder, "seed": args.seed}))
        base.fit(train)
    popularity = make_model("popularity").fit(train)
    scores, pop = {}, {}
    for name, stage in stages.items():
        c = cands[name]
        if c is None:
            raise ConfigError(f"protocol {args.protocol} gave no candidates")
        if base is None:
            scores[name] = [np.asarray(x.scores, dtype=np.float64) for x in c]
        else:
            scores[name] = [np.asarray(s, dtype=np.float64) for s in base.score_candidates(stage.inputs, c)]
        pop[name] = [np.asarray(s, dtype=np.float64) for s in popularity.score_candidates(stage.inputs, c)]
    val_pos = {u: i for i, u in enumerate(validation.users)}
    return {"ds": ds, "stages": stages, "cands": cands, "scores": scores, "pop": pop, "val_pos": val_pos}


def run(args: argparse.Namespace, data: dict[str, Any], methods: Sequence[str]) -> None:
    """Rerank every user's validation and test candidates with each method, appending to reranks.jsonl."""
    out = args.out / "reranks.jsonl"
    done = {(rec["method"], rec["i"], rec["stage"]) for rec in resume_rows(out, resume=True)}
    settings = LLMSettings(backend=args.llm, model=args.llm_model, base_url=args.llm_url, seed=args.seed,
                           cache_dir=user_cache_dir() / "llm", timeout_s=args.timeout, adapter=args.llm_adapter)
    client = make_client(settings)
    listwise_client = client
    if args.listwise_url:
        listwise_client = make_client(settings.model_copy(update={"backend": "vllm", "base_url": args.listwise_url,
                                                                  "model": args.listwise_model}))
    rerankers = {m: LLMReranker(client if METHODS[m]["method"] == "pointwise" else listwise_client,
                                data["ds"].catalog,
                                RerankConfig(**METHODS[m], fusion_weight=1.0, seed=args.seed,  # type: ignore[arg-type]
                                             narrative=NarrativeConfig(max_tokens=args.history_tokens)))
                 for m in methods}
    test = data["stages"]["test"]
    with out.open("a") as f:
        for i in tqdm(range(len(test)), desc="users", disable=args.no_progress):
            user = test.users[i]
            for m in methods:
                for stage, j in (("validation", data["val_pos"].get(user)), ("test", i)):
                    if j is None or (m, i, stage) in done:
                        continue
                    st = data["stages"][stage]
                    cands = [Candidate(c, float(s), "retrieval")
                             for c, s in zip(data["cands"][stage][j], data["scores"][stage][j], strict=True)]
                    result = rerankers[m].rerank(st.inputs[j], cands)
                    f.write(json.dumps(_result_record(m, i, user, stage, result)) + "\n")
                    f.flush()


def read_reranks(out: Path) -> dict[tuple[str, int, str], dict[str, Any]]:
    """The stored reranks of a run directory, by (method, user index, stage)."""
    recs: dict[tuple[str, int, str], dict[str, Any]] = {}
    for rec in read_rows(out / "reranks.jsonl"):
        recs[(rec["method"], rec["i"], rec["stage"])] = rec
    return recs


def report(args: argparse.Namespace, data: dict[str, Any], methods: Sequence[str]) -> dict[str, Any]:
    """Tables over the users every method has finished (both stages); with `args.versus`, paired
    differences to that run's same method on the users both runs finished."""
    recs = read_reranks(args.out)
    other = read_reranks(args.versus) if args.versus is not None else {}
    test = data["stages"]["test"]
    users = [i for i in range(len(test)) if test.users[i] in data["val_pos"]
             and all((m, i, s) in recs for m in methods for s in ("validation", "test"))
             and (args.versus is None or all((m, i, s) in other for m in methods for s in ("validation", "test")))]
    out: dict[str, Any] = {"dataset": args.dataset, "protocol": args.protocol, "seed": args.seed,
                           "users_sampled": len(test), "users_done": len(users), "llm": args.llm,
                           "llm_model": args.llm_model or "default",
                           "llm_adapter": None if args.llm_adapter is None else str(args.llm_adapter),
                           "retriever": args.retriever, "retriever_args": args.retriever_args,
                           "listwise_url": args.listwise_url,
                           "versus": None if args.versus is None else str(args.versus), "methods": {}}
    if not users:
        return out
    vpos = [data["val_pos"][test.users[i]] for i in users]
    targets = {"test": [test.target_items[i] for i in users],
               "validation": [data["stages"]["validation"].target_items[j] for j in vpos]}
    idx = {"test": users, "validation": vpos}

    def ndcgs(stage: str, score_lists: list[np.ndarray]) -> np.ndarray:
        return np.array([_ndcg10(s, data["cands"][stage][j], t) for s, j, t in
                         zip(score_lists, idx[stage], targets[stage], strict=True)])

    retr = {s: [data["scores"][s][j] for j in idx[s]] for s in idx}
    base_test = ndcgs("test", [_z(r) for r in retr["test"]])
    out["retriever_ndcg@10"] = 100 * float(base_test.mean())
    out["popularity_ndcg@10"] = 100 * float(ndcgs("test", [data["pop"]["test"][j] for j in users]).mean())

    def evaluate(stored: dict[str, list[_Stored]]) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
        """w and alpha tuned on validation; per-user test NDCG@10 of the LLM alone, of the tuned fusion and
        of the fusion at the agent's untuned defaults (`RerankConfig().fusion_weight`, `.pmi_alpha`)."""
        pointwise = any(x.llm_parts for x in stored["test"])
        alphas = DEFAULT_ALPHAS if pointwise else (0.5,)

        def llm(stage: str, alpha: float) -> list[np.ndarray]:
            return [llm_array(x, data["cands"][stage][j], alpha)  # type: ignore[arg-type]
                    for x, j in zip(stored[stage], idx[stage], strict=True)]

        best = (-1.0, 0.0, alphas[0])
        best_alone = (-1.0, alphas[0])
        for a in alphas:
            v_llm = llm("validation", a)
            for w in sorted(set(DEFAULT_WEIGHTS) | {0.0}):
                v = float(ndcgs("validation", [_fuse(r, s, w) for r, s in zip(retr["validation"], v_llm,
                                                                                strict=True)]).mean())
                if v > best[0] + 1e-12:
                    best = (v, w, a)
                if w == 1.0 and v > best_alone[0] + 1e-12:
                    best_alone = (v, a)
        _, w, a = best
        fused = ndcgs("test", [_fuse(r, s, w) for r, s in zip(retr["test"], llm("test", a), strict=True)])
        alone = ndcgs("test", [_fuse(r, s, 1.0) for r, s in zip(retr["test"], llm("test", best_alone[1]),
                                                                 strict=True)])
        default = ndcgs("test", [_fuse(r, s, AGENT_DEFAULT.fusion_weight) for r, s in
                                 zip(retr["test"], llm("test", AGENT_DEFAULT.pmi_alpha), strict=True)])
        chosen = {"fusion_weight": w, "pmi_alpha": a if pointwise else None,
                  "llm_alone_pmi_alpha": best_alone[1] if pointwise else None}
        return chosen, alone, fused, default

    for m in methods:
        stored = {s: [_Stored(recs[(m, i, s)]) for i in users] for s in idx}
        chosen, alone, fused, default = evaluate(stored)
        recs_all = [x.rec for s in idx for x in stored[s]]
        lat = np.array([r["latency_s"] for r in recs_all])
        row: dict[str, Any] = {
            **chosen,
            "llm_alone_ndcg@10": 100 * float(alone.mean()), "fused_ndcg@10": 100 * float(fused.mean()),
            "llm_alone_vs_retriever": _paired(alone, base_test, args.seed),
            "fused_vs_retriever": _paired(fused, base_test, args.seed),
            "default_fusion_weight": AGENT_DEFAULT.fusion_weight, "default_fused_ndcg@10": 100 * float(default.mean()),
            "default_fused_vs_retriever": _paired(default, base_test, args.seed),
            "latency_p50_s": float(np.percentile(lat, 50)), "latency_p95_s": float(np.percentile(lat, 95)),
            "prompt_tokens_mean": float(np.mean([r["prompt_tokens"] for r in recs_all])),
            "fallbacks": int(sum(r["fallback"] for r in recs_all)), "reranks": len(recs_all),
            "cached_call_share": sum(r["cached_calls"] for r in recs_all) / max(1, sum(r["calls"] for r in recs_all)),
            **position_following([x for s in idx for x in stored[s]],  # type: ignore[misc]
                                 shuffled_first=bool(METHODS[m].get("shuffle_all"))),
        }
        if args.versus is not None:
            theirs, their_alone, their_fused, _ = evaluate({s: [_Stored(other[(m, i, s)]) for i in users] for s in idx})
            row["versus"] = {**theirs, "llm_alone_ndcg@10": 100 * float(their_alone.mean()),
                             "fused_ndcg@10": 100 * float(their_fused.mean()),
                             "llm_alone_diff": _paired(alone, their_alone, args.seed),
                             "fused_diff": _paired(fused, their_fused, args.seed)}
        out["methods"][m] = row
    return out


def check_same_users(args: argparse.Namespace, other: Path) -> None:
    """ConfigError unless `other` is a run of this dataset, protocol, retriever, k, seed and user count."""
    try:
        theirs = json.loads((other / "args.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--versus {other}: not a methods-benchmark run ({exc})") from None
    keys = ("dataset", "protocol", "retriever", "k", "seed", "users", "embedder", "model_arg")
    differ = [k for k in keys if theirs.get(k) != str(getattr(args, k))]
    if differ:
        raise ConfigError(f"--versus {other}: another run setting ({', '.join(differ)}), so not the same users "
                          "and candidates")


def _z(x: np.ndarray) -> np.ndarray:
    std = float(x.std()) if x.size > 1 else 0.0
    return (x - x.mean()) / std if std > 1e-12 else np.zeros_like(x)


def _fuse(retrieval: np.ndarray, llm: np.ndarray, w: float) -> np.ndarray:
    return (1.0 - w) * _z(retrieval) + w * llm


def _paired(a: np.ndarray, b: np.ndarray, seed: int) -> dict[str, Any]:
    c = paired_comparison(100 * a, 100 * b, "ndcg@10", 1000, seed)
    return {"diff": c.diff, "ci95": list(c.ci95), "p": c.p_value, "wins": c.wins, "losses": c.losses}


def _default_cells(row: dict[str, Any]) -> str:
    """'NDCG (w=…) | Δ [CI]' of the agent's default fusion; '– | –' in reports written before it was measured."""
    if "default_fused_vs_retriever" not in row:
        return "– | –"
    d = row["default_fused_vs_retriever"]
    return (f"{row['default_fused_ndcg@10']:.2f} (w={row['default_fusion_weight']:g}) | {d['diff']:+.2f} "
            f"[{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]")


def markdown(rep: dict[str, Any]) -> str:
    """The report as a Markdown table (NDCG@10 ×100)."""
    nan = float("nan")
    lines = [f"{rep['dataset']} `{rep['protocol']}`, {rep['users_done']} of {rep['users_sampled']} seeded users "
             f"(seed {rep['seed']}), LLM {rep['llm']} {rep['llm_model']}; retriever ({rep['retriever']}) "
             f"{rep.get('retriever_ndcg@10', nan):.2f}, popularity {rep.get('popularity_ndcg@10', nan):.2f}",
             "",
             "| method | LLM alone | Δ vs retriever [95% CI] | fused (w, α) | Δ vs retriever [95% CI] | "
             "agent default (untuned w) | Δ vs retriever [95% CI] | "
             "position modal share | p50 / p95 s | prompt tokens | fallbacks |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, r in rep["methods"].items():
        a, f = r["llm_alone_vs_retriever"], r["fused_vs_retriever"]
        alpha = f", α={r['pmi_alpha']:g}" if r["pmi_alpha"] is not None else ""
        pos = (f"{r['position_modal_share']:.2f} (pos {int(r['position_modal'])})"
               if "position_modal_share" in r else "–")
        lines.append(f"| {m} | {r['llm_alone_ndcg@10']:.2f} | {a['diff']:+.2f} "
                     f"[{a['ci95'][0]:+.2f}, {a['ci95'][1]:+.2f}] "
                     f"| {r['fused_ndcg@10']:.2f} (w={r['fusion_weight']:g}{alpha}) | {f['diff']:+.2f} "
                     f"[{f['ci95'][0]:+.2f}, {f['ci95'][1]:+.2f}] | {_default_cells(r)} | {pos} | "
                     f"{r['latency_p50_s']:.2f} / {r['latency_p95_s']:.2f} | {r['prompt_tokens_mean']:.0f} | "
                     f"{r['fallbacks']} |")
    for m, r in rep["methods"].items():
        if "versus" in r:
            v, a, f = r["versus"], r["versus"]["llm_alone_diff"], r["versus"]["fused_diff"]
            lines += ["", f"{m} versus {rep['versus']} on the same users: "
                      f"LLM alone {v['llm_alone_ndcg@10']:.2f} there, "
                      f"this run − that one {a['diff']:+.2f} [{a['ci95'][0]:+.2f}, {a['ci95'][1]:+.2f}] "
                      f"(p = {a['p']:.2f}, {a['wins']}↑ {a['losses']}↓); fused {v['fused_ndcg@10']:.2f} there "
                      f"(w={v['fusion_weight']:g}), {f['diff']:+.2f} [{f['ci95'][0]:+.2f}, {f['ci95'][1]:+.2f}] "
                      f"(p = {f['p']:.2f}, {f['wins']}↑ {f['losses']}↓)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--protocol", choices=("llmrank", "rerank"), default="llmrank")
    p.add_argument("--retriever", default=None,
                   help="scores the candidates (llmrank: 'interest'; rerank: the candidate source, 'hybrid')")
    p.add_argument("-k", type=int, default=20)
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--embedder", default="sentence-transformers")
    p.add_argument("--methods", default="pmi,listwise,listwise3")
    p.add_argument("--llm", default="embedded")
    p.add_argument("--llm-model", default=None)
    p.add_argument("--llm-url", default=None)
    p.add_argument("--llm-adapter", type=Path, default=None,
                   help="a tuned ranker from `driftrec tune-ranker` (--llm transformers); it must have been tuned "
                        "on this split's training events, else LeakageError")
    p.add_argument("--model-arg", action="append", default=[], metavar="MODEL.KEY=VALUE",
                   help="argument of the retriever model, repeatable, as in `driftrec eval` "
                        "(e.g. hybrid.load=runs/models/sasrec)")
    p.add_argument("--listwise-url", default=None,
                   help="run the listwise methods on this vLLM server (the same model served), the rest on --llm")
    p.add_argument("--listwise-model", default=None, help="served model name for --listwise-url")
    p.add_argument("--history-tokens", type=int, default=400)
    p.add_argument("--timeout", type=float, default=600.0, help="deadline of one LLM call, seconds")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--report", action="store_true", help="only write the report from what has finished")
    p.add_argument("--versus", type=Path, default=None, metavar="DIR",
                   help="an earlier run on the same users (another model or adapter): paired differences to it")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.retriever = args.retriever or ("hybrid" if args.protocol == "rerank" else "interest")
    model_args = parse_model_args(args.model_arg)
    others = sorted(set(model_args) - {args.retriever})
    if others:
        raise ConfigError(f"--model-arg names {', '.join(others)}, but only the retriever {args.retriever!r} is built")
    args.retriever_args = model_args.get(args.retriever, {})
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(METHODS)}")
    if args.versus is not None:
        check_same_users(args, args.versus)
    args.out.mkdir(parents=True, exist_ok=True)
    if (args.out / "reranks.jsonl").exists() and not (args.resume or args.report):
        raise ConfigError(f"{args.out} holds an earlier run: add --resume to continue it or --report")
    (args.out / "args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=2))
    started = time.perf_counter()
    data = prepare(args)
    if not args.report:
        run(args, data, methods)
    rep = report(args, data, methods)
    rep["wall_s"], rep["load_avg_1m"] = time.perf_counter() - started, os.getloadavg()[0]
    (args.out / "report.json").write_text(json.dumps(rep, indent=2))
    (args.out / "report.md").write_text(markdown(rep))
    print(markdown(rep))
    return 0


if __name__ == "__main__":
    run_script(main, "bench_rerank_methods")
