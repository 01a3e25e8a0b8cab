"""Cold items: does a recommendation-tuned embedder place items it never trained on?

Run: `python -m eval.research.cold_items --dataset ml-100k --out runs/eval/cold-items.json [--tuned DIR]`.

A seeded `--fraction` of the catalogue is held out of embedder tuning entirely: their events are
removed from the training histories that make the tuning pairs and from the validation used to pick
the epoch. Evaluated users are those whose leave-one-out TEST item is one of them. On those users
(harness, full ranking of unseen items) the report gives Recall@20 and NDCG@10 with bootstrap 95%
CIs for `popularity` (training counts, which do include the held-out items' events), `interest` with
the packaged all-MiniLM-L6-v2 and `interest` with the cold-tuned model, plus paired differences.

Without `--tuned`, the model is tuned here (`--epochs`, `--batch-size`, `--max-minutes`, ...) into
`--model-out`; a given `--tuned` directory must record the same held-out items.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from eval.harness import EvalConfig, evaluate
from eval.models import Recommender
from eval.models_baselines import InterestModel, PopularityModel
from eval.splits import Split, leave_one_out
from retrieval.data.datasets import load_dataset
from retrieval.data.model import Dataset
from retrieval.errors import ConfigError
from retrieval.vectors.tune import TuneConfig, read_manifest, tune_embedder

METRICS = ("recall@20", "ndcg@10")


def cold_items(dataset: Dataset, fraction: float, seed: int) -> list[str]:
    """A seeded `fraction` of the catalogue's item ids (catalogue order, sorted result)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"--fraction must lie in (0, 1), got {fraction}")
    ids = list(dataset.catalog.ids)
    pick = np.random.default_rng(seed).choice(len(ids), round(fraction * len(ids)), replace=False)
    return sorted(ids[i] for i in pick)


def cold_split(split: Split, cold: set[str]) -> Split:
    """The split restricted to users whose test target is a cold item (training histories unchanged)."""
    keep = [i for i, t in enumerate(split.test.target_items) if t in cold]
    users = {split.test.users[i] for i in keep}
    v_keep = [i for i, u in enumerate(split.validation.users) if u in users]
    return Split(split.kind, split.train, split.validation.subset(v_keep), split.test.subset(keep),
                 split.train_only_users, dict(split.notes))


def tuned_model(dataset: Dataset, split: Split, cold: list[str], args: argparse.Namespace) -> Path:
    """The cold-tuned model directory: `--tuned` (checked) or a fresh tuning run into `--model-out`."""
    if args.tuned is not None:
        manifest = read_manifest(args.tuned) or {}
        if sorted(manifest.get("excluded_items", {}).get("ids", [])) != cold:
            raise ConfigError(f"{args.tuned} was not tuned with these held-out items (same --fraction and --seed)")
        return Path(args.tuned)
    validation = list(zip(split.validation.inputs, split.validation.target_items, strict=True))
    config = TuneConfig(epochs=args.epochs, batch_size=args.batch_size, max_pairs=args.max_pairs or None,
                        max_minutes=args.max_minutes, lr=args.lr, train_layers=args.train_layers, seed=args.seed)
    return tune_embedder(dataset.catalog, split.train, validation, args.model_out, config,
                         excluded_items=cold).model_dir


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The experiment (module docstring); returns the JSON-ready report."""
    dataset = load_dataset(args.dataset)
    split = leave_one_out(dataset)
    cold = cold_items(dataset, args.fraction, args.seed)
    model_dir = tuned_model(dataset, split, cold, args)
    sub = cold_split(split, set(cold))
    pooling = json.loads(args.interest_args) if args.interest_args else {}
    models: list[Recommender] = [PopularityModel(), InterestModel(**pooling),
                                 InterestModel(embedder_model=str(model_dir), **pooling)]
    for model, name in zip(models, ("popularity", "interest", "interest-tuned"), strict=True):
        model.name = name
    result = evaluate(dataset, models, EvalConfig(seed=args.seed, n_boot=args.n_boot, tune=False), split=sub)
    rows = {name: {m: {"mean": r.metrics[m], "ci95": list(r.ci95[m])} for m in METRICS}
            for name, r in result.models.items()}
    paired = {f"{a} - {b}": {m: asdict(result.compare(a, b, m, args.n_boot)) for m in METRICS}
              for a, b in (("interest-tuned", "interest"), ("interest-tuned", "popularity"))}
    return {"dataset": dataset.name, "fraction": args.fraction, "seed": args.seed, "cold_items": len(cold),
            "users": result.n_users, "tuned_model": str(model_dir), "interest_args": pooling,
            "tuning": (read_manifest(model_dir) or {}).get("validation", {}).get("best"),
            "models": rows, "paired": paired}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--fraction", type=float, default=0.1, help="share of items held out of tuning")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tuned", type=Path, default=None, help="an already cold-tuned model directory")
    p.add_argument("--model-out", type=Path, default=Path("runs/models/cold-embedder"))
    default = TuneConfig()
    p.add_argument("--epochs", type=int, default=default.epochs)
    p.add_argument("--batch-size", type=int, default=default.batch_size, help="items per tuning step")
    p.add_argument("--max-pairs", type=int, default=0, help="tune on a sample of N pairs (0 = all)")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--lr", type=float, default=default.lr)
    p.add_argument("--train-layers", type=int, default=default.train_layers)
    p.add_argument("--interest-args", default="", help='InterestModel keyword arguments as JSON, e.g. '
                                                       '\'{"short_half_life_events": 1}\'')
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--out", type=Path, required=True, help="JSON report")
    args = p.parse_args(argv)
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(json.dumps({"users": report["users"], "models": report["models"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
