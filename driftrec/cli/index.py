"""`driftrec index`: embed a catalogue and save its vector index."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from driftrec.cli.options import dataset_options, load_data, open_index


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `index` subcommand."""
    p = sub.add_parser("index", help="embed a catalogue and save its vector index")
    dataset_options(p)
    p.add_argument("--out", required=True, type=Path, help="index directory to write (atomic replace)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of `driftrec index`."""
    from retrieval.vectors.store import check_replaceable

    start = time.perf_counter()
    check_replaceable(args.out, "driftrec-index")  # before the embedding work, not after it
    dataset = load_data(args)
    index = open_index(args, dataset)
    index.save(args.out)
    print(f"{index} written to {args.out} in {time.perf_counter() - start:.1f}s")
    return 0
