"""Interest-evolution evaluation: next-window forecasts, shift detection, the forecast vector in retrieval.

Run: `python -m eval.research.evolution_eval [forecast|shifts|retrieval|all] [--embedder hashing] [--out FILE.json]`.

Forecast protocol (leakage-free): weekly windows; one global cut T (a Monday, so no window straddles
it). Forecasters are trained only on windows that end before T. Evaluated users are those whose
last window starts at or after T and who have an earlier window; the last window is held out and
predicted from all the user's earlier windows. Metrics per user: JS divergence between predicted and
true category shares of the held-out window (lower is better), whether any category of its first
item is among the predicted top 3 (hit@3), and the cosine similarity of predicted and true window
vectors; top3 = the held-out window's largest category is among the predicted top 3. 95% CIs by
bootstrap over users, also for the paired difference to each baseline.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from eval.research import (
    emit_report,
    forecast_gru,  # noqa: F401  (registers the "gru" forecaster)
)
from retrieval.data.model import Dataset
from retrieval.evolution.drift import js_divergence
from retrieval.evolution.forecast import (
    FORECASTERS,
    Forecaster,
    ForecastGenerator,
    TunedSmoothingForecaster,
    make_forecaster,
)
from retrieval.evolution.timeline import Window, build_timeline
from retrieval.vectors.embed import EMBEDDERS
from retrieval.vectors.index import VectorIndex

BASELINES = ("last-window", "history-mean")


def bootstrap_ci(values: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, 2.5th, 97.5th percentile) of the mean of `values` (shape (users,)) over bootstrap resamples."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n, len(values)))].mean(axis=1)
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _ci_dict(values: np.ndarray) -> dict[str, float]:
    m, lo, hi = bootstrap_ci(values)
    return {"mean": round(m, 4), "lo": round(lo, 4), "hi": round(hi, 4)}


def timelines(dataset: Dataset, index: VectorIndex | None, period: str = "week") -> dict[str, list[Window]]:
    """Every user's windows."""
    return {u: build_timeline(evs, dataset.catalog, index, period)
            for u, evs in tqdm(dataset.histories.items(), desc="timelines", leave=False)}


def forecast_split(tl: dict[str, list[Window]], cut: datetime, min_windows: int = 2,
                   ) -> tuple[list[list[Window]], list[tuple[str, list[Window], Window]]]:
    """Training sequences (windows ending by `cut`) and evaluation cases (user, earlier windows, last window).

    Evaluated users have at least `min_windows` windows in all (the held-out one included).
    """
    train = [[w for w in ws if w.end <= cut] for ws in tl.values()]
    cases = [(u, ws[:-1], ws[-1]) for u, ws in tl.items()
             if len(ws) >= max(2, min_windows) and ws[-1].start >= cut]
    return [s for s in train if s], cases


def default_forecasters() -> list[Forecaster]:
    """Baselines, untuned and tuned smoothing, autoregression, GRU."""
    return [make_forecaster(n) for n in FORECASTERS.names()]


def evaluate_forecasts(tl: dict[str, list[Window]], cut: datetime, catalog_categories: Callable[[str], Sequence[str]],
                       forecasters: Sequence[Forecaster] | None = None, min_windows: int = 2) -> dict[str, object]:
    """Fit each forecaster on pre-cut windows, predict every evaluated user's held-out last window.

    Args:
        tl: user → windows.
        cut: the global train/test cut (aware).
        catalog_categories: item id → its categories.
        forecasters: to compare (default `default_forecasters()`).
        min_windows: evaluate only users with at least this many windows (held-out one included).

    Returns:
        JSON-ready dict: protocol counts and, per forecaster, metric means with 95% CIs and paired
        differences to both baselines.
    """
    train, cases = forecast_split(tl, cut, min_windows)
    if not cases:
        raise ValueError(f"no user has a last window after {cut:%Y-%m-%d}")
    vocab = sorted({c for seq in train for w in seq for c in w.categories})
    out: dict[str, object] = {"cut": cut.isoformat(), "train_sequences": len(train),
                              "train_pairs": sum(len(s) - 1 for s in train), "eval_users": len(cases),
                              "eval_users_2plus_history": sum(len(h) >= 2 for _, h, _ in cases)}
    metrics: dict[str, dict[str, np.ndarray]] = {}
    for f in forecasters or default_forecasters():
        start, cpu = time.perf_counter(), time.process_time()
        f.fit(train)
        fit_s, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
        js, hit, top, cos = [], [], [], []
        for _, history, target in cases:
            shares, vector = f.forecast(history, vocab)
            js.append(js_divergence(shares, target.categories))
            top3 = set(sorted(shares, key=lambda k: -shares[k])[:3])
            hit.append(float(bool(top3 & set(catalog_categories(target.items[0])))))
            # the held-out window's largest category (ties: first in its largest-first order) in the top 3
            top.append(float(bool(target.categories) and next(iter(target.categories)) in top3))
            cos.append(float(vector @ target.vector) if vector is not None and target.vector is not None else np.nan)
        metrics[f.name] = {"js": np.array(js), "hit3": np.array(hit), "top3": np.array(top), "cosine": np.array(cos)}
        metrics[f.name]["fit_s"] = np.array([fit_s, fit_cpu])
    rows: dict[str, object] = {}
    for name, m in metrics.items():
        row: dict[str, object] = {"fit_wall_seconds": round(float(m["fit_s"][0]), 2),
                                  "fit_cpu_seconds": round(float(m["fit_s"][1]), 2)}
        for key in ("js", "hit3", "top3", "cosine"):
            if np.isnan(m[key]).any():
                continue
            row[key] = _ci_dict(m[key])
            for base in BASELINES:
                if name != base:
                    row[f"{key}_minus_{base}"] = _ci_dict(m[key] - metrics[base][key])
        rows[name] = row
    out["forecasters"] = rows
    return out


def recall_at(lists: Sequence[Sequence[str]], targets: Sequence[str], k: int) -> np.ndarray:
    """(users,) 1.0 where the target is in the user's top k."""
    return np.array([float(t in list(lst)[:k]) for lst, t in zip(lists, targets, strict=True)])


def rrf_merge(a: Sequence[str], b: Sequence[str], k: int, c: float = 60.0) -> list[str]:
    """Reciprocal-rank fusion of two ranked id lists, top k."""
    score: dict[str, float] = {}
    for lst in (a, b):
        for r, item in enumerate(lst):
            score[item] = score.get(item, 0.0) + 1.0 / (c + r + 1)
    return sorted(score, key=lambda i: -score[i])[:k]


def evaluate_retrieval(dataset: Dataset, index: VectorIndex, k: int = 20, period: str = "week",
                       forecaster: Forecaster | None = None) -> dict[str, object]:
    """Recall@k on temporal leave-one-out (eval/splits.py): interest retriever vs with the forecast source.

    The blend weight β of `interest query + β · forecast vector` is chosen on the validation stage
    and reported on the test stage.
    """
    from eval.splits import leave_one_out
    from retrieval.candidates.interest import InterestRetriever
    from retrieval.candidates.popularity import PopularityGenerator

    split = leave_one_out(dataset)
    forecaster = forecaster or TunedSmoothingForecaster()
    forecaster.fit([s for s in timelines(dataset.with_histories(dict(split.train)), index, period).values() if s])
    out: dict[str, object] = {"k": k, "forecaster": forecaster.name, "users": len(split.test)}
    betas = (0.1, 0.25, 0.5, 1.0)
    stage_scores: dict[str, dict[str, np.ndarray]] = {}
    for stage in (split.validation, split.test):
        seqs = list(stage.inputs)
        interest = InterestRetriever(index, popularity=PopularityGenerator(seqs))
        fgen = ForecastGenerator(index, dataset.catalog, forecaster, period)
        q_int, has = interest.queries(seqs)
        q_fc, has_fc = fgen.queries(seqs)
        depth = 4 * k
        lists = {
            "interest": interest.search_queries(seqs, q_int, has, depth, "interest"),
            "forecast": interest.search_queries(seqs, q_fc, has_fc, depth, "forecast"),
        }
        ids = {name: [[c.item_id for c in cands] for cands in ls] for name, ls in lists.items()}
        ids["interest+forecast (RRF)"] = [rrf_merge(a, b, k) for a, b in zip(ids["interest"], ids["forecast"],
                                                                             strict=True)]
        for beta in betas:
            q = q_int + beta * q_fc
            q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            ids[f"blend β={beta}"] = [[c.item_id for c in cs] for cs in
                                      interest.search_queries(seqs, q.astype(np.float32), has, k, "blend")]
        stage_scores[stage.name] = {n: recall_at(v, stage.target_items, k) for n, v in ids.items()}
    best_beta = max(betas, key=lambda b: stage_scores["validation"][f"blend β={b}"].mean())
    test = stage_scores["test"]
    rows = {n: _ci_dict(v) for n, v in test.items() if not n.startswith("blend") or n == f"blend β={best_beta}"}
    rows["paired: best blend - interest"] = _ci_dict(test[f"blend β={best_beta}"] - test["interest"])
    rows["paired: RRF - interest"] = _ci_dict(test["interest+forecast (RRF)"] - test["interest"])
    out["validation_recall"] = {n: round(float(v.mean()), 4) for n, v in stage_scores["validation"].items()}
    out["chosen_beta"] = best_beta
    out["test_recall"] = rows
    return out


def _index(dataset: Dataset, embedder: str) -> VectorIndex:
    from retrieval.vectors.build import build_index, default_cache
    from retrieval.vectors.embed import make_embedder

    return build_index(dataset.catalog, make_embedder(embedder), "flat", cache=default_cache(), progress=False)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: run the chosen parts and print (and optionally write) one JSON report."""
    p = argparse.ArgumentParser(prog="python -m eval.research.evolution_eval", description=__doc__.splitlines()[0])
    p.add_argument("part", nargs="?", default="all", choices=("forecast", "shifts", "retrieval", "all"))
    p.add_argument("--data", default="ml-100k")
    p.add_argument("--embedder", default="sentence-transformers", choices=EMBEDDERS.names())
    p.add_argument("--cut", default="1998-01-05", help="forecast train/test cut date, a Monday (UTC)")
    p.add_argument("--period", default="week")
    p.add_argument("--retrieval-forecaster", default="exp-smoothing-tuned", choices=FORECASTERS.names(),
                   help="forecaster whose vector is the extra retrieval source")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = p.parse_args(argv)
    report: dict[str, object] = {"command": "python -m eval.research.evolution_eval " + " ".join(argv or sys.argv[1:])}
    if args.part in ("shifts", "all"):
        from eval.research.evolution_synthetic import tune_and_test

        report["shifts"] = tune_and_test()
    if args.part in ("forecast", "retrieval", "all"):
        from retrieval.data.datasets import load_dataset

        dataset = load_dataset(args.data)
        index = _index(dataset, args.embedder)
        report["embedder"] = index.embedder
        if args.part in ("forecast", "all"):
            cut = datetime.fromisoformat(args.cut).replace(tzinfo=UTC)
            report["forecast"] = evaluate_forecasts(timelines(dataset, index, args.period), cut,
                                                    lambda i: dataset.catalog[i].categories)
        if args.part in ("retrieval", "all"):
            report["retrieval"] = evaluate_retrieval(dataset, index, period=args.period,
                                                     forecaster=make_forecaster(args.retrieval_forecaster))
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
