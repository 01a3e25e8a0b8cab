"""The offline evaluation harness and its benchmarks."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from retrieval.errors import DriftrecError


def run_script(main: Callable[[], int], name: str) -> NoReturn:
    """Run a benchmark's `main` as `python -m eval.<name>`: its exit code, or, for a `DriftrecError`
    (bad arguments, missing data or rows), one line naming the script and no traceback."""
    try:
        raise SystemExit(main())
    except DriftrecError as exc:
        raise SystemExit(f"{name}: error: {exc}") from None
