"""`driftrec eval`: run the offline evaluation harness and write results.json, report.md and plots."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from agent.limits import MAX_K, check_count
from driftrec.cli.options import DATASET_HELP, check_out_path
from retrieval.errors import ConfigError
from retrieval.log import get_logger
from retrieval.vectors.embed import EMBEDDERS


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `eval` subcommand."""
    p = sub.add_parser("eval", help="evaluate models offline (full / llmrank / rerank protocols)")
    p.add_argument("--dataset", "--data", dest="dataset", default="ml-100k", metavar="NAME_OR_PATH",
                   help=DATASET_HELP)
    p.add_argument("--protocol", choices=("full", "llmrank", "rerank"), default="full",
                   help="full ranking of unseen items; LLMRank's 20 sampled candidates; retriever top-K rerank")
    p.add_argument("--models", default="random,popularity,itemknn,interest",
                   help="comma-separated registered model names (default: the baselines)")
    p.add_argument("--model-arg", action="append", default=[], metavar="MODEL.KEY=VALUE",
                   help="constructor argument of one model, VALUE parsed as JSON when it can be "
                        "(e.g. itemknn.neighbours=50); repeatable")
    p.add_argument("--out", required=True, type=Path, help="directory for results.json, report.md, PNGs")
    p.add_argument("--users", type=int, default=None, help="evaluate a seeded sample of N users (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of sampling, ties, bootstrap, random model")
    p.add_argument("--retriever", default="interest", help="rerank protocol: model whose top-K are the candidates")
    p.add_argument("-k", type=int, default=20,
                   help=f"rerank protocol: candidates per user, 1 to {MAX_K:,} (default 20)")
    p.add_argument("--ties", choices=("pessimistic", "random"), default="pessimistic",
                   help="tie policy of ranks (pessimistic: the target ranks below every equal score)")
    p.add_argument("--embedder", default="sentence-transformers", choices=EMBEDDERS.names(),
                   help="text embedder for models that embed (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--embedder-model", default=None, metavar="NAME_OR_DIR",
                   help="sentence-transformers model name or directory for models that embed item text, e.g. one "
                        "written by `driftrec tune-embedder` (it must have been tuned on this run's training events)")
    p.add_argument("--split", choices=("loo", "temporal"), default="loo",
                   help="temporal leave-one-out per user, or a global cut date (--test-cut)")
    p.add_argument("--test-cut", default=None, help="temporal split: ISO date where the test period starts")
    p.add_argument("--validation-cut", default=None, help="temporal split: ISO date where validation starts")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--batch-size", type=int, default=256, help="users per model call")
    p.add_argument("--max-concurrency", type=int, default=None, metavar="N",
                   help="LLM calls in flight at once for LLM models (default: 1 for the embedded model, 8 for "
                        "a server)")
    p.add_argument("--no-tune", action="store_true", help="skip Recommender.tune on the validation stage")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--resume", action="store_true",
                   help="reuse per-model ranks that an earlier identical run saved in OUT/ranks")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="bad input rows: raise or skip")
    p.set_defaults(handler=run)


def _date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"not an ISO date: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def check_numbers(args: argparse.Namespace) -> None:
    """ConfigError unless -k, --users, --n-boot and --batch-size are ≥ 1 (k ≤ MAX_K) and --seed ≥ 0."""
    check_count(args.k, "-k")
    if args.users is not None:
        check_count(args.users, "--users", None)
    check_count(args.n_boot, "--n-boot", None)
    check_count(args.batch_size, "--batch-size", None)
    if args.max_concurrency is not None:
        check_count(args.max_concurrency, "--max-concurrency", 256)
    check_count(args.seed, "--seed", None, low=0)


def run(args: argparse.Namespace) -> int:
    """Handler of `driftrec eval`; returns the exit code."""
    from eval.harness import EvalConfig, evaluate
    from eval.models import parse_model_args
    from eval.report import to_markdown, write_report
    from eval.splits import check_llmrank_split, leave_one_out, temporal_split
    from retrieval.data.datasets import load_dataset, locate_games

    started = time.perf_counter()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise ConfigError("--models is empty")
    check_numbers(args)
    check_out_path(args.out, "--out")
    dataset = load_dataset(args.dataset, on_error=args.on_error)
    if dataset.report.skipped and not get_logger("retrieval.data.loaders").isEnabledFor(logging.WARNING):
        print(f"driftrec: {dataset.report.summary()}", file=sys.stderr)  # else the loader logged it
    if args.split == "temporal":
        if not args.test_cut:
            raise ConfigError("--split temporal needs --test-cut DATE")
        split = temporal_split(dataset, _date(args.test_cut), _date(args.validation_cut) if args.validation_cut
                               else None)
    else:
        split = leave_one_out(dataset)
        if args.dataset == "games":
            n = check_llmrank_split(split, locate_games())
            print(f"LLMRank split verified: {n:,} test/validation targets match Games-6k.test/valid.inter")
    model_args = parse_model_args(args.model_arg)
    stray = sorted(set(model_args) - set(models) - ({args.retriever} if args.protocol == "rerank" else set()))
    if stray:
        raise ConfigError(f"--model-arg names {', '.join(stray)}, which this run does not use "
                          f"(models: {', '.join(models)})")
    print(f"{dataset!r}\n{split!r}")
    config = EvalConfig(protocol=args.protocol, seed=args.seed, n_users=args.users, retriever=args.retriever,
                        rerank_k=args.k, ties=args.ties, n_boot=args.n_boot, batch_size=args.batch_size,
                        tune=not args.no_tune, model_kwargs=model_args,
                        defaults={"embedder": args.embedder,
                                  **({"embedder_model": args.embedder_model} if args.embedder_model else {})},
                        progress=not args.no_progress,
                        resume_dir=args.out / "ranks", resume=args.resume, max_concurrency=args.max_concurrency)
    result = evaluate(dataset, models, config, split=split)
    wall = time.perf_counter() - started
    result.info["total_wall_s"] = round(wall, 2)
    # `driftrec [--log-level L] eval ...`: the global option may come first.
    command = "driftrec " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if "eval" in sys.argv[1:4] else ""
    paths = write_report(result, args.out, command)
    print(to_markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths))
    print(f"total wall time {wall:.1f}s (evaluation), {time.perf_counter() - started:.1f}s with report")
    return 0
