"""The `driftrec` command line. The only place errors become exit codes and one-line messages.

Each command is one module of this package with `add_parser(subparsers)` (which sets `handler`) and
`run(args) -> int`; `COMMANDS` lists them in the order `driftrec --help` shows them.

`--log-level` (before the command; default `DRIFTREC_LOG_LEVEL`, else warning) sends the records of the
"driftrec" loggers at that level and above to stderr, one line each.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from driftrec.cli import (
    chat,
    demo,
    evaluate,
    export,
    index,
    recommend,
    serve,
    timeline,
    train,
    tune_embedder,
    tune_ranker,
)
from retrieval.errors import ConfigError, DriftrecError
from retrieval.log import LEVELS, cli_logging

COMMANDS = (index, recommend, demo, chat, evaluate, timeline, train, tune_embedder, tune_ranker, export, serve)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="driftrec", description="Recommendations that follow how interests drift.")
    parser.add_argument("--log-level", default=None, type=str.lower, choices=LEVELS, metavar="LEVEL",
                        help="log records of this level and above to stderr: " + ", ".join(LEVELS)
                             + " (default: $DRIFTREC_LOG_LEVEL, else warning)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `driftrec` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        with cli_logging(_log_level(args.log_level)):
            return int(args.handler(args))
    except DriftrecError as exc:
        print(f"driftrec: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("driftrec: interrupted", file=sys.stderr)
        return 130


def _log_level(given: str | None) -> str:
    """--log-level, else DRIFTREC_LOG_LEVEL, else "warning".

    Raises:
        ConfigError: DRIFTREC_LOG_LEVEL is set to a name that is not a level.
    """
    if given is not None:
        return given
    env = os.environ.get("DRIFTREC_LOG_LEVEL", "").strip().lower()
    if env and env not in LEVELS:
        raise ConfigError(f"DRIFTREC_LOG_LEVEL={env!r} is not a log level; use one of {', '.join(LEVELS)}")
    return env or "warning"


if __name__ == "__main__":
    sys.exit(main())
