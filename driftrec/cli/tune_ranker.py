"""`driftrec tune-ranker`: fine-tune the LLM ranker (LoRA) on the training events of a leave-one-out split.

Examples come from the split's training events only; the state is picked on the validation stage
(second-to-last event per user). The saved directory is a peft adapter with a manifest; serve it with
`--llm transformers --llm-adapter DIR` (in process) or vLLM's LoRA serving (docs/servers.md), and
evaluate it with `driftrec eval ... --model-arg llm-rerank.adapter=DIR` (checked against the run's
training events).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agent.tuning.examples import OBJECTIVES
from agent.tuning.train import RankerTuneConfig
from driftrec.cli.options import DATASET_HELP, tuning_data

D = RankerTuneConfig()  # the defaults shown in --help are the library's


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `tune-ranker` subcommand."""
    p = sub.add_parser("tune-ranker", help="fine-tune the LLM ranker (LoRA) on the training split")
    p.add_argument("--data", "--dataset", dest="data", default="ml-100k", metavar="NAME_OR_PATH",
                   help=DATASET_HELP)
    p.add_argument("--out", required=True, type=Path, help="adapter directory to write (atomic replace)")
    p.add_argument("--base", default=None, metavar="NAME_OR_DIR",
                   help="packaged model name (converted once to HF weights) or a HF model directory "
                        "(default: smollm2-135m)")
    p.add_argument("--objective", choices=OBJECTIVES, default=D.objective,
                   help="verbalizer: the target's label among shuffled candidates (LlamaRec); pointwise: the "
                        f"target's title after the narrative (default {D.objective})")
    p.add_argument("--candidates", type=int, default=D.candidates,
                   help=f"candidates per example, target included (default {D.candidates})")
    p.add_argument("--per-user", type=int, default=D.per_user, help="training targets per user (default 1)")
    p.add_argument("--history-tokens", type=int, default=D.history_tokens,
                   help=f"narrative budget of the prompt; use the same at inference (default {D.history_tokens})")
    p.add_argument("--max-examples", type=int, default=0, help="train on a seeded sample of N examples (0 = all)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop training after M minutes")
    p.add_argument("--epochs", type=int, default=D.epochs)
    p.add_argument("--batch-size", type=int, default=D.batch_size, help="examples per optimiser step")
    p.add_argument("--lr", type=float, default=D.lr, help=f"AdamW learning rate (default {D.lr:g})")
    p.add_argument("--rank", type=int, default=D.rank, help=f"LoRA rank (default {D.rank})")
    p.add_argument("--alpha", type=int, default=D.alpha, help=f"LoRA alpha (default {D.alpha})")
    p.add_argument("--eval-every", type=int, default=D.eval_every, help="examples between validations")
    p.add_argument("--valid-users", type=int, default=D.valid_users, help="validation users (seeded sample)")
    p.add_argument("--pmi-alpha", type=float, default=D.pmi_alpha,
                   help="pointwise validation score: log p(item | history) - ALPHA · log p(item | no history) "
                        f"(default {D.pmi_alpha})")
    p.add_argument("--patience", type=int, default=D.patience, help="validations without improvement before stopping")
    p.add_argument("--seed", type=int, default=D.seed)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Tune, save, print where it saved and the validation metric; returns the exit code."""
    from agent.llm.adapter import FORMAT
    from agent.tuning.train import tune_ranker
    from retrieval.errors import ConfigError

    start = time.perf_counter()
    if args.max_examples < 0:
        raise ConfigError(f"--max-examples must be ≥ 0 (0 = every example), got {args.max_examples}")
    config = RankerTuneConfig(objective=args.objective, candidates=args.candidates, per_user=args.per_user,
                              history_tokens=args.history_tokens, max_examples=args.max_examples or None,
                              max_minutes=args.max_minutes, epochs=args.epochs, batch_size=args.batch_size,
                              lr=args.lr, rank=args.rank, alpha=args.alpha, eval_every=args.eval_every,
                              valid_users=args.valid_users, patience=args.patience, pmi_alpha=args.pmi_alpha,
                              seed=args.seed)
    dataset, split = tuning_data(args.data, args.out, FORMAT.split("/")[0])
    stage = split.validation
    validation = list(zip(stage.users, stage.inputs, stage.target_items, strict=True))
    report = tune_ranker(dataset.catalog, split.train, validation, args.out, config, args.base,
                         progress=not args.quiet)
    base, best = report.validation[0], report.best
    print(f"tuned in {report.seconds:.1f}s ({time.perf_counter() - start:.1f}s with loading) on "
          f"{report.manifest['examples']['seen']:,} examples; kept the state after {report.best_step:,}")
    print(f"validation ({int(best['users']):,} users, LLM alone, {config.candidates} candidates): NDCG@10 "
          f"{base['ndcg@10']:.4f} → {best['ndcg@10']:.4f}, HR@1 {base['hr@1']:.4f} → {best['hr@1']:.4f}")
    print(f"saved to {report.adapter_dir}")
    return 0
