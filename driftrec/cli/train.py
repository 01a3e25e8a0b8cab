"""`driftrec train`: train the sequential next-item model on a leave-one-out split and save it.

Training uses the split's training events only; early stopping watches the validation stage
(second-to-last event per user). The saved directory loads with `SequentialModel.load` and in the
harness with `--model-arg sasrec.load=DIR`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pydantic import ValidationError

from agent.limits import check_count
from driftrec.cli.options import DATASET_HELP, check_out_path
from retrieval.errors import ConfigError
from retrieval.vectors.embed import EMBEDDERS


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `train` subcommand."""
    p = subparsers.add_parser("train", help="train the sequential (SASRec-style) model and save it")
    p.add_argument("--dataset", "--data", dest="dataset", default="ml-100k", metavar="NAME_OR_PATH",
                   help=DATASET_HELP)
    p.add_argument("--out", required=True, type=Path, help="model directory to write (atomic replace)")
    p.add_argument("--embedder", default="sentence-transformers", choices=EMBEDDERS.names(),
                   help="text embedder for the item text vectors")
    p.add_argument("--embedder-model", default=None, metavar="NAME_OR_DIR",
                   help="sentence-transformers model name or directory for the text vectors (default: the "
                        "packaged all-MiniLM-L6-v2); the harness needs the same one: sasrec.embedder_model=DIR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--max-len", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=10, help="evaluations without improvement before stopping")
    p.add_argument("--loss", choices=("ce", "bce", "sampled"), default="ce",
                   help="ce = full softmax; bce = one negative; sampled = softmax over --negatives shared items")
    p.add_argument("--negatives", type=int, default=256, help="negatives per batch for --loss sampled")
    p.add_argument("--no-text", action="store_true", help="id embeddings only (no text vectors)")
    p.add_argument("--no-time", action="store_true", help="no time-gap features")
    p.add_argument("--valid-users", type=int, default=None, help="validate on a seeded sample of users")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train, save, print time / best epoch / validation NDCG@10; returns the exit code."""
    from eval.splits import leave_one_out
    from retrieval.data.datasets import load_dataset
    from retrieval.sequential.model import FORMAT, SeqConfig, SequentialModel
    from retrieval.sequential.train import text_matrix, train
    from retrieval.vectors.store import check_replaceable

    start = time.perf_counter()
    check_out_path(args.out, "--out")
    check_replaceable(args.out, FORMAT.split("/")[0])  # before training, not after it
    check_count(args.seed, "--seed", None, low=0)
    try:  # settings are checked before the data is loaded
        config = SeqConfig(max_len=args.max_len, hidden=args.hidden, blocks=args.blocks, heads=args.heads,
                           dropout=args.dropout, use_text=not args.no_text, use_time=not args.no_time,
                           loss=args.loss, lr=args.lr, batch_size=args.batch_size,
                           epochs=args.epochs, patience=args.patience, negatives=args.negatives,
                           valid_users=args.valid_users, seed=args.seed)
    except ValidationError as exc:
        raise ConfigError(f"invalid training settings: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc
    dataset = load_dataset(args.dataset)
    if dataset.synthetic_time:  # made-up timestamps carry no time gaps to learn from
        config = config.model_copy(update={"use_time": False})
    split = leave_one_out(dataset)
    item_ids = list(dataset.catalog.ids)
    text, embedder_name = None, None
    if config.use_text:
        from retrieval.vectors.build import default_cache
        from retrieval.vectors.embed import make_embedder

        if args.embedder_model:
            from retrieval.vectors.tune import check_tuned_on

            check_tuned_on(args.embedder_model, split.train)  # LeakageError when tuned on other events
        embedder = make_embedder(args.embedder, args.embedder_model)
        text, embedder_name = text_matrix(dataset.catalog, item_ids, embedder, default_cache()), embedder.name
    model = SequentialModel(item_ids, config, text, embedder_name)
    report = train(model, split.train, list(zip(split.validation.inputs, split.validation.target_items, strict=True)),
                   progress=not args.quiet, checkpoint=args.out)
    model.save(args.out)
    (args.out / "train_report.json").write_text(json.dumps({"dataset": dataset.name, **report.to_dict()}, indent=2))
    total = time.perf_counter() - start
    print(f"{dataset!r}: {split!r}")
    print(f"trained {model} in {report.seconds:.1f}s ({total:.1f}s with loading and embedding)")
    print(f"best epoch {report.best_epoch} of {report.epochs_run}"
          f"{' (early stop)' if report.stopped_early else ''}: validation NDCG@10 {report.best_ndcg10:.4f}, "
          f"Recall@10 {report.best_recall10:.4f} on {report.n_valid:,} users; {report.n_targets:,} training targets")
    print(f"saved to {args.out}")
    return 0
