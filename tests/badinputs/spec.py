"""What a corpus case is: an argv or an API call, where it runs, and what a correct outcome looks like.

Cases are plain JSON-serialisable records, written by the generator and read by the worker that runs them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Klass = Literal["data", "index", "cli", "llm", "threads"]
Owner = Literal["data", "index", "llm", "cli-validation"]
Kind = Literal["cli", "api", "subprocess"]
Group = Literal["main", "llm", "llm-b", "embedded", "selftest"]

# How each failed case is counted (a case counts once, in the first of these that applies).
CATEGORIES = ("crash", "hang", "traceback", "silent loss", "wrong outcome")


@dataclass
class Case:
    """One bad input and the outcome it must have.

    Attributes:
        name: unique name, `<class>.<what>`.
        klass: the input class (data, index, cli, llm, threads).
        owner: the code area that must handle it (data, index, llm, cli-validation).
        kind: "cli" (`driftrec.cli.main.main(argv)` in the worker), "api" (a function of
            `tests.badinputs.api`), or "subprocess" (`python -m driftrec.cli.main` on its own).
        group: the worker that runs it: "main" (most cases, one process), "llm" and "llm-b" (fake-server
            cases, beside "main": they mostly wait), "embedded" (cases that load llama.cpp), "selftest"
            (the harness's own tests).
        argv: the command line (cli, subprocess); `{llm}` is replaced by the fake server's base URL.
        api: the API function name (api).
        params: keyword arguments of the API function.
        exits: the exit codes that count as correct (API: 0 = returned, else the DriftrecError's code).
        bound_s: the case must finish within this many seconds (slower = a hang).
        timeout_s: the watchdog kills the worker after this many seconds.
        cwd: working directory of the case (None = the corpus root).
        env: environment variables set for the case.
        checks: post-conditions, [check name, parameters] (see `tests.badinputs.checks`).
        note: what the case reproduces.
    """

    name: str
    klass: Klass
    owner: Owner
    kind: Kind = "cli"
    group: Group = "main"
    argv: list[str] = field(default_factory=list)
    api: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    exits: list[int] = field(default_factory=lambda: [0])
    bound_s: float = 20.0
    timeout_s: float = 60.0
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    checks: list[list[Any]] = field(default_factory=list)
    note: str = ""


@dataclass
class Outcome:
    """What happened when a case ran.

    Attributes:
        name: the case name.
        exit: exit code (None: the case did not finish).
        seconds: wall time.
        stdout: captured standard output (tail).
        stderr: captured standard error (tail).
        traceback: an uncaught exception or a printed Python traceback.
        crashed: the process died from a signal (or vanished) during the case.
        hung: the watchdog killed it, or it ran past its bound.
        problems: every way the outcome differs from the expectation, one line each.
        lost: a silent-loss finding (rows neither loaded nor reported, or coerced without a word).
    """

    name: str
    exit: int | None = None
    seconds: float = 0.0
    stdout: str = ""
    stderr: str = ""
    traceback: bool = False
    crashed: bool = False
    hung: bool = False
    problems: list[str] = field(default_factory=list)
    lost: bool = False

    @property
    def category(self) -> str | None:
        """The failure category (one of CATEGORIES), or None when the case passed."""
        if self.crashed:
            return "crash"
        if self.hung:
            return "hang"
        if self.traceback:
            return "traceback"
        if self.lost:
            return "silent loss"
        return "wrong outcome" if self.problems else None


def write_cases(path: Path, cases: list[Case]) -> None:
    """Write the corpus as JSON."""
    path.write_text(json.dumps([asdict(c) for c in cases], indent=1))


def read_cases(path: Path) -> list[Case]:
    """Read a corpus written by `write_cases`."""
    return [Case(**c) for c in json.loads(path.read_text())]
