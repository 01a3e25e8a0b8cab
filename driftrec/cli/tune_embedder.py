"""`driftrec tune-embedder`: fine-tune the sentence-transformer on next-item pairs of a leave-one-out split.

Pairs come from the split's training events only; the epoch is picked on the validation stage
(second-to-last event per user). The saved directory is a sentence-transformers model with a
manifest; use it with `driftrec eval --embedder-model DIR` (checked against the run's training events).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from driftrec.cli.options import DATASET_HELP, tuning_data
from retrieval.errors import ConfigError
from retrieval.vectors.tune import TuneConfig

D = TuneConfig()  # the defaults shown in --help are the library's


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `tune-embedder` subcommand."""
    p = sub.add_parser("tune-embedder",
                       help="fine-tune the text embedder so items land near the items that follow them")
    p.add_argument("--data", "--dataset", dest="data", default="ml-100k", metavar="NAME_OR_PATH",
                   help=DATASET_HELP)
    p.add_argument("--out", required=True, type=Path, help="model directory to write (atomic replace)")
    p.add_argument("--base-model", default=None, metavar="NAME_OR_DIR",
                   help="sentence-transformers model to start from (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--epochs", type=int, default=D.epochs,
                   help=f"passes over the catalogue, each followed by validation (default {D.epochs}; stops after "
                        f"{D.patience} without a better validation NDCG@10)")
    p.add_argument("--batch-size", type=int, default=D.batch_size,
                   help=f"items per step: pairs among them are positives, the rest negatives (default {D.batch_size})")
    p.add_argument("--max-pairs", type=int, default=0, help="use a seeded sample of N training pairs (0 = all)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop training after M minutes")
    p.add_argument("--lr", type=float, default=D.lr, help=f"AdamW learning rate (default {D.lr:g})")
    p.add_argument("--train-layers", type=int, default=D.train_layers,
                   help="top transformer layers trained; the rest are frozen and computed once "
                        f"(default {D.train_layers})")
    p.add_argument("--window", type=int, default=D.window, help="pair each item with the next N items of a history")
    p.add_argument("--valid-users", type=int, default=None, help="validate on a seeded sample of N users")
    p.add_argument("--seed", type=int, default=D.seed)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Tune, save, print where it saved and the validation metric; returns the exit code."""
    from retrieval.vectors.tune import FORMAT, tune_embedder

    start = time.perf_counter()
    if args.max_pairs < 0:
        raise ConfigError(f"--max-pairs must be ≥ 0 (0 = every pair), got {args.max_pairs}")
    config = TuneConfig(epochs=args.epochs, batch_size=args.batch_size, max_pairs=args.max_pairs or None,
                        max_minutes=args.max_minutes, lr=args.lr, window=args.window,
                        train_layers=args.train_layers, valid_users=args.valid_users, seed=args.seed)
    dataset, split = tuning_data(args.data, args.out, FORMAT.split("/")[0])
    validation = list(zip(split.validation.inputs, split.validation.target_items, strict=True))
    report = tune_embedder(dataset.catalog, split.train, validation, args.out, config, args.base_model,
                           progress=not args.quiet)
    base, best = report.validation[0], report.best
    print(f"tuned in {report.seconds:.1f}s ({time.perf_counter() - start:.1f}s with loading); best epoch "
          f"{report.best_epoch} of {report.manifest['epochs_run']}")
    print(f"validation (last-item neighbours, {int(best['users']):,} users): NDCG@10 {base['ndcg@10']:.4f} → "
          f"{best['ndcg@10']:.4f}, Recall@20 {base['recall@20']:.4f} → {best['recall@20']:.4f}")
    print(f"saved to {report.model_dir}")
    return 0
