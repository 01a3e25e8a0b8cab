"""Pooling settings of the `interest` model on the VALIDATION stage (never the test stage).

Run: `python -m eval.research.interest_grid [--dataset ml-100k] [--embedder-model DIR] [--out FILE]`.

Scores every InterestConfig of a small grid (temperature, recent_events, short_weight, event-count
half-lives) by validation NDCG@10 of the temporal leave-one-out split, full ranking of
unseen items, so a setting can be chosen without looking at test targets.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from eval.harness import validation_metric
from eval.models import TrainData, ValidationData
from eval.models_baselines import InterestModel
from eval.splits import leave_one_out
from retrieval.candidates.attention import InterestConfig
from retrieval.data.datasets import load_dataset

GRID: dict[str, tuple[Any, ...]] = {
    "temperature": (0.1, 1.0),
    "recent_events": (1, 5),
    "short_weight": (0.6, 0.9, 1.0),
    "short_half_life_events": (None, 1.0, 3.0, 10.0),
}


def grid_configs() -> list[InterestConfig]:
    """Every combination of `GRID` (other fields at their defaults)."""
    keys = list(GRID)
    return [InterestConfig(**dict(zip(keys, values, strict=True))) for values in itertools.product(*GRID.values())]


def run_grid(dataset_name: str, embedder_model: str | None) -> list[dict[str, object]]:
    """Validation NDCG@10 of each grid setting, best first."""
    dataset = load_dataset(dataset_name)
    split = leave_one_out(dataset)
    model = InterestModel(embedder_model=embedder_model).fit(TrainData(dataset.catalog, split.train,
                                                                       tuple(dataset.catalog.ids)))
    validation = ValidationData(split.validation.users, split.validation.inputs,
                                split.validation.target_items, None)
    rows: list[dict[str, object]] = []
    for config in grid_configs():
        model.config = config
        rows.append({**asdict(config), "ndcg@10": validation_metric(model, validation, "ndcg@10")})
    return sorted(rows, key=lambda r: -float(r["ndcg@10"]))  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--embedder-model", default=None, help="tuned model directory (default: packaged MiniLM)")
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = p.parse_args(argv)
    rows = run_grid(args.dataset, args.embedder_model)
    default = next(r for r in rows if InterestConfig(**{k: r[k] for k in GRID}) == InterestConfig())  # type: ignore[arg-type]
    for r in rows[:10]:
        print({k: r[k] for k in (*GRID, "ndcg@10")})
    print("default:", default["ndcg@10"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"dataset": args.dataset, "embedder_model": args.embedder_model,
                                        "stage": "validation", "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
