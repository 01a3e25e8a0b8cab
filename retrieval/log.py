"""driftrec's loggers: every logger of the library hangs under the one root logger named "driftrec".

Modules call `get_logger(__name__)` and get "driftrec.<module>" (e.g. "driftrec.agent.rerank"), so an
application turns all of driftrec's records on or off with `logging.getLogger("driftrec")`. The library
itself installs only a `NullHandler` on that root; handlers and levels are the application's choice
(the `driftrec` CLI adds one for `--log-level`, see `cli_logging`).

Levels: WARNING for fallbacks, skipped rows (a summary), slow calls and rebuilt or corrupted caches;
INFO for retries and model loads; DEBUG for per-row and per-call detail. Records never carry API keys or
the text of a user's message at INFO or above.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

ROOT = "driftrec"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("debug", "info", "warning", "error", "critical")

logging.getLogger(ROOT).addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """The library logger for module `name` (pass `__name__`), under the "driftrec" root.

    Args:
        name: a module name such as "agent.rerank"; one already under "driftrec" is kept as is.

    Returns:
        The logger "driftrec.<name>".
    """
    if name == ROOT or name.startswith(ROOT + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{ROOT}.{name}")


@contextmanager
def cli_logging(level: str, stream: TextIO | None = None) -> Iterator[logging.Handler]:
    """While in the block, send driftrec's records at `level` and above to `stream`, one line each.

    For the command line only (a library user configures logging themselves). On exit the handler is
    removed and the root's level restored, so in-process calls (tests, `main()` run twice) leave the
    library as they found it.

    Args:
        level: one of `LEVELS` (any case).
        stream: where records go; stderr when None (looked up at call time, so capture works).

    Yields:
        The handler added to the "driftrec" logger.
    """
    root = logging.getLogger(ROOT)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    before = root.level
    root.addHandler(handler)
    root.setLevel(level.upper())
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(before)
