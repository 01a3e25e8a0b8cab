"""Interest evolution where interests move: next-month forecasts and a temporal split on MovieTweetings.

Run: `python -m eval.research.movietweetings_eval [forecast|retrieval|all] [--embedder hashing] [--out FILE]`.

Both parts use the full calendar months March–August 2013 (events on 2013-02-28 and 2013-09-01, the
partial first and last days of the snapshot, are left out and counted).

forecast: monthly windows; cut T = 2013-08-01. Forecasters are fitted on windows that end by T;
evaluated users are active in August and in at least 4 months in all, and their August window is
predicted from their earlier months (`evolution_eval.evaluate_forecasts`). Baselines, the registered
forecasters (GRU included) and, when statsmodels is installed, per-category ETS and ARIMA.

retrieval: a global temporal split. Training = events before T, test = August; validation = the same
with July as the month to predict and events before July as input (used only to pick the blend
weight β). Users: ≥ 1 input event and ≥ 1 new item in the month. Every item the user has not rated
is ranked (full ranking through the index search, seen items dropped); Recall@k = share of the
month's items in the top k, NDCG@k over them; 95 % CIs by bootstrap over users and paired CIs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from eval.research import emit_report
from eval.research.evolution_eval import _ci_dict, default_forecasters, evaluate_forecasts, timelines
from retrieval.candidates.attention import InterestConfig
from retrieval.candidates.base import Candidate, CandidateGenerator, History
from retrieval.candidates.interest import InterestRetriever
from retrieval.candidates.knn import ItemKNN, KNNGenerator
from retrieval.candidates.popularity import PopularityGenerator
from retrieval.candidates.registry import KNN_HALF_LIFE, KNN_NEIGHBOURS
from retrieval.data.model import Dataset, Event
from retrieval.evolution.forecast import Forecaster, ForecastGenerator, TunedSmoothingForecaster
from retrieval.vectors.embed import EMBEDDERS
from retrieval.vectors.index import VectorIndex

START, VAL_CUT, CUT, END = (datetime(2013, m, 1, tzinfo=UTC) for m in (3, 7, 8, 9))
BETAS = (0.1, 0.25, 0.5, 1.0)
# "static": attention by similarity only, no recency decay (half-lives of ~2,700 years).
STATIC = InterestConfig(short_half_life_days=1e6, long_half_life_days=1e6)
SHORT_TERM = InterestConfig(short_weight=1.0)


def full_months(dataset: Dataset) -> tuple[Dataset, int]:
    """The dataset restricted to START ≤ t < END, and how many events were left out."""
    kept = {u: tuple(ev for ev in evs if START <= ev.timestamp < END) for u, evs in dataset.histories.items()}
    kept = {u: evs for u, evs in kept.items() if evs}
    out = dataset.with_histories(kept)
    return out, dataset.n_events - out.n_events


def forecast_part(dataset: Dataset, index: VectorIndex | None, min_months: int = 4,
                  stats_users: int = 150, seed: int = 0) -> dict[str, object]:
    """The next-month forecast comparison (module docstring).

    ETS and ARIMA fit one model per category and user (~0.1 s each), so they run on a seeded sample of
    `stats_users` evaluated users, beside the untrained baselines on the same users.
    """
    from eval.research.evolution_eval import forecast_split
    from eval.research.forecast_stats import ARIMAForecaster, ETSForecaster, statsmodels_available
    from retrieval.evolution.forecast import make_forecaster

    tl = timelines(dataset, index, "month")
    categories = lambda i: dataset.catalog[i].categories  # noqa: E731
    out = evaluate_forecasts(tl, CUT, categories, default_forecasters(), min_windows=min_months)
    out["min_active_months"] = min_months
    out["statsmodels"] = statsmodels_available()
    if statsmodels_available():
        users = sorted(u for u, _, _ in forecast_split(tl, CUT, min_months)[1])
        sample = np.random.default_rng(seed).choice(users, min(stats_users, len(users)), replace=False)
        stats: list[Forecaster] = [ETSForecaster(), ARIMAForecaster()]
        base: list[Forecaster] = [make_forecaster(n) for n in ("last-window", "history-mean", "exp-smoothing")]
        block = evaluate_forecasts({u: tl[u] for u in sorted(sample)}, CUT, categories, base + stats,
                                   min_windows=min_months)
        block["sample_seed"] = seed
        block["fallbacks"] = {f.name: f"{f.fallbacks} of {f.fits} fits" for f in stats}  # type: ignore[attr-defined]
        out["statsmodels_sample"] = block
    return out


def month_split(dataset: Dataset, cut: datetime, end: datetime) -> tuple[dict[str, tuple[Event, ...]],
                                                                         list[str], list[set[str]]]:
    """(input histories before `cut` for every user, evaluated users, their new items in [cut, end))."""
    inputs = {u: tuple(ev for ev in evs if ev.timestamp < cut) for u, evs in dataset.histories.items()}
    users, targets = [], []
    for u, evs in dataset.histories.items():
        seen = {ev.item for ev in inputs[u]}
        new = {ev.item for ev in evs if cut <= ev.timestamp < end} - seen
        if inputs[u] and new:
            users.append(u)
            targets.append(new)
    return {u: h for u, h in inputs.items() if h}, users, targets


def recall_ndcg(lists: Sequence[Sequence[str]], targets: Sequence[set[str]], k: int) -> dict[str, np.ndarray]:
    """Per-user Recall@k (hits / |targets|) and NDCG@k with several relevant items."""
    rec, ndcg = np.zeros(len(targets)), np.zeros(len(targets))
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    for u, (lst, t) in enumerate(zip(lists, targets, strict=True)):
        gains = np.array([float(i in t) for i in list(lst)[:k]])
        rec[u] = gains.sum() / len(t)
        ndcg[u] = float(gains @ disc[:len(gains)]) / float(disc[:min(len(t), k)].sum())
    return {f"recall@{k}": rec, f"ndcg@{k}": ndcg}


def _ids(cands: Sequence[Sequence[Candidate]]) -> list[list[str]]:
    return [[c.item_id for c in cs] for cs in cands]


def popular_unseen(pop: PopularityGenerator, seqs: Sequence[History], k: int) -> list[list[str]]:
    """`PopularityGenerator`'s top-k lists, stopping at k (it builds a candidate for every unseen item)."""
    out = []
    for history in seqs:
        seen = {ev.item for ev in history}
        picks: list[str] = []
        for item, _ in pop.ranked:
            if item not in seen:
                picks.append(item)
                if len(picks) == k:
                    break
        out.append(picks)
    return out


def _stage(dataset: Dataset, index: VectorIndex, cut: datetime, end: datetime, k: int,
           ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray], int]:
    """Scores of every source on one stage, the blend's scores per β, and the number of users."""
    inputs, users, targets = month_split(dataset, cut, end)
    seqs: list[History] = [inputs[u] for u in users]
    pop = PopularityGenerator(inputs)
    forecaster = TunedSmoothingForecaster().fit(
        [s for s in timelines(dataset.with_histories(inputs), index, "month").values() if s])
    recency = InterestRetriever(index, popularity=pop)
    gens: dict[str, CandidateGenerator] = {
        "interest (recency, default)": recency,
        "interest (short-term only)": InterestRetriever(index, SHORT_TERM, popularity=pop),
        "interest (static, no recency)": InterestRetriever(index, STATIC, popularity=pop),
        "forecast (next-month vector)": ForecastGenerator(index, dataset.catalog, forecaster, "month", pop),
        "item-kNN": KNNGenerator(ItemKNN(inputs, dataset.catalog.ids, KNN_NEIGHBOURS, half_life=KNN_HALF_LIFE)),
    }
    scores = {name: recall_ndcg(_ids(g.generate_batch(seqs, k)), targets, k) for name, g in gens.items()}
    scores["popularity"] = recall_ndcg(popular_unseen(pop, seqs, k), targets, k)
    q_int, has = recency.queries(seqs)
    q_fc, _ = ForecastGenerator(index, dataset.catalog, forecaster, "month").queries(seqs)
    blends = {}
    for beta in BETAS:
        q = q_int + beta * q_fc
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        blends[beta] = recall_ndcg(_ids(recency.search_queries(seqs, q.astype(np.float32), has, k, "blend")),
                                   targets, k)
    return scores, {str(b): v[f"ndcg@{k}"] for b, v in blends.items()} | {
        f"{b}/recall": v[f"recall@{k}"] for b, v in blends.items()}, len(users)


def retrieval_part(dataset: Dataset, index: VectorIndex, k: int = 20) -> dict[str, object]:
    """The temporal-split comparison (module docstring)."""
    _, val_blend, val_users = _stage(dataset, index, VAL_CUT, CUT, k)
    beta = max(BETAS, key=lambda b: float(val_blend[str(b)].mean()))
    scores, blend, users = _stage(dataset, index, CUT, END, k)
    scores[f"interest + β·forecast (β={beta} on July)"] = {f"recall@{k}": blend[f"{beta}/recall"],
                                                           f"ndcg@{k}": blend[str(beta)]}
    rows: dict[str, object] = {name: {m: _ci_dict(v) for m, v in s.items()} for name, s in scores.items()}
    static = scores["interest (static, no recency)"]
    for name in [n for n in scores if n.startswith(("interest (recency", "interest (short", "interest +", "forecast"))]:
        rows[f"paired: {name} - static"] = {m: _ci_dict(scores[name][m] - static[m]) for m in static}
    return {"k": k, "test_users": users, "validation_users": val_users, "chosen_beta": beta,
            "validation_blend_ndcg": {b: round(float(v.mean()), 4) for b, v in val_blend.items() if "/" not in b},
            "test": rows}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: run the chosen parts and print (and optionally write) one JSON report."""
    p = argparse.ArgumentParser(prog="python -m eval.research.movietweetings_eval",
                                description=__doc__.splitlines()[0])
    p.add_argument("part", nargs="?", default="all", choices=("forecast", "retrieval", "all"))
    p.add_argument("--data", default="movietweetings")
    p.add_argument("--embedder", default="sentence-transformers", choices=EMBEDDERS.names())
    p.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = p.parse_args(argv)
    from eval.research.evolution_eval import _index
    from retrieval.data.datasets import load_dataset

    dataset, dropped = full_months(load_dataset(args.data))
    index = _index(dataset, args.embedder)
    report: dict[str, object] = {"command": "python -m eval.research.movietweetings_eval "
                                 + " ".join(argv or sys.argv[1:]), "embedder": index.embedder,
                                 "events": dataset.n_events, "events_outside_full_months": dropped}
    if args.part in ("forecast", "all"):
        report["forecast"] = forecast_part(dataset, index)
    if args.part in ("retrieval", "all"):
        report["retrieval"] = retrieval_part(dataset, index)
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
