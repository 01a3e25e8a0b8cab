"""The `driftrec` command line. The only place errors become exit codes and one-line messages.

Each command is one module of this package with `add_parser(subparsers)` (which sets `handler`) and
`run(args) -> int`; `COMMANDS` lists them in the order `driftrec --help` shows them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from driftrec.cli import chat, demo, evaluate, index, recommend, timeline, train
from retrieval.errors import DriftrecError

COMMANDS = (index, recommend, demo, chat, evaluate, timeline, train)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="driftrec", description="Recommendations that follow how interests drift.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `driftrec` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except DriftrecError as exc:
        print(f"driftrec: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("driftrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
