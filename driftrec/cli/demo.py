"""`driftrec demo`: load a dataset, build the index, recommend for a user with explanations, print the list."""

from __future__ import annotations

import argparse

from agent.limits import MAX_EXPLAINED
from driftrec.cli import recommend
from driftrec.cli.options import dataset_options, llm_options


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `demo` subcommand."""
    p = sub.add_parser("demo", help="load a dataset, build the index, recommend for a user, print the list")
    dataset_options(p)
    p.add_argument("--user", default=None, help="user id (default: the first user in the data)")
    p.add_argument("-k", type=int, default=5, help=f"number of items, 1 to {MAX_EXPLAINED} (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    llm_options(p)
    p.set_defaults(explain=True, handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of `driftrec demo`: `driftrec recommend --explain` for one user (default: the first)."""
    return recommend.run(args)
