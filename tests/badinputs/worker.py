"""Runs many corpus cases in one process: `python -m tests.badinputs.worker CORPUS.json GROUP START`.

Each case runs in-process through `driftrec.cli.main.main(argv)` (or an API function, or a subprocess
where it needs its own process) with stdout and stderr captured. The worker writes one JSON line per
event to its original stdout ("ready", then "start" and "done" per case); everything else the process
writes at file-descriptor level (native libraries, faulthandler) goes to stderr, which the parent keeps
in a log. When a case hangs or kills the process, the parent's watchdog starts a fresh worker at the next case.
"""

from __future__ import annotations

import faulthandler
import io
import json
import os
import re
import subprocess
import sys
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from tests.badinputs.checks import CHECKS, Findings
from tests.badinputs.spec import Case, Outcome, read_cases

ERROR_LINE = re.compile(r"^driftrec(?: [\w-]+)?: error: ")
TAIL = 1500


@dataclass
class Ran:
    """The raw result of running a case, before it is judged."""

    exit: int | None
    seconds: float
    stdout_full: str
    stderr_full: str
    traceback: str = ""
    crashed: bool = False
    hung: bool = False


def _substitute(argv: list[str]) -> list[str]:
    url = os.environ.get("BADINPUTS_LLM_URL", "http://127.0.0.1:9")
    return [a.replace("{llm}", url) for a in argv]


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def run_in_process(case: Case, findings: Findings) -> Ran:
    """Run a cli or api case here, capturing its output."""
    from retrieval.errors import DriftrecError
    from tests.badinputs.api import API

    out, err = io.StringIO(), io.StringIO()
    tb = ""
    start = time.perf_counter()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            if case.kind == "api":
                try:
                    API[case.api](case.params, findings)
                    code = 0
                except DriftrecError as exc:
                    print(f"driftrec: error: {exc}", file=sys.stderr)
                    code = exc.exit_code
            else:
                from driftrec.cli.main import main

                code = int(main(_substitute(case.argv)))
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException:  # noqa: BLE001 - anything that escapes is the finding
            tb = traceback.format_exc()
            code = 1
    return Ran(code, time.perf_counter() - start, out.getvalue(), err.getvalue(), tb)


def run_subprocess(case: Case) -> Ran:
    """Run a case as `python -m driftrec.cli.main ARGV` in its own process."""
    start = time.perf_counter()
    env = {**os.environ, **case.env}
    try:
        proc = subprocess.run([sys.executable, "-m", "driftrec.cli.main", *_substitute(case.argv)],
                              capture_output=True, text=True, errors="replace", timeout=case.timeout_s - 5,
                              env=env, cwd=case.cwd, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        return Ran(None, time.perf_counter() - start, _text(exc.stdout), _text(exc.stderr), hung=True)
    crashed = proc.returncode < 0
    return Ran(None if crashed else proc.returncode, time.perf_counter() - start, proc.stdout, proc.stderr,
               crashed=crashed)


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def judge(case: Case, ran: Ran, findings: Findings) -> Outcome:
    """Compare what happened with what the case expects."""
    o = Outcome(case.name, ran.exit, round(ran.seconds, 2), ran.stdout_full[-TAIL:], ran.stderr_full[-TAIL:],
                crashed=ran.crashed, hung=ran.hung)
    if ran.crashed:
        o.problems.append(f"the process died (signal {ran.exit})")
    if ran.hung:
        o.problems.append(f"killed after {case.timeout_s:.0f}s")
    text = ran.stdout_full + ran.stderr_full
    if ran.traceback or "Traceback (most recent call last)" in text:
        o.traceback = True
        last = (ran.traceback or text).strip().splitlines()[-1]
        o.problems.append(f"traceback: {last[:200]}")
    if ran.exit is not None and ran.exit not in case.exits:
        o.problems.append(f"exit {ran.exit}, expected {' or '.join(map(str, case.exits))}")
    if ran.exit not in (None, 0) and not ran.traceback:
        o.problems += _one_line_error(ran.stderr_full)
    if ran.seconds > case.bound_s and not ran.hung:
        o.hung = True
        o.problems.append(f"took {ran.seconds:.1f}s, bound {case.bound_s:.0f}s")
    if not (ran.crashed or ran.hung):
        for name, params in case.checks:
            findings.extend(CHECKS[name](case, ran, params))
    o.problems += findings.problems
    o.lost = findings.lost
    return o


def _one_line_error(stderr: str) -> list[str]:
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if ERROR_LINE.match(line)]
    if len(errors) != 1:
        return [f"stderr has {len(errors)} 'driftrec: error:' lines, expected exactly one: {stderr.strip()[-200:]!r}"]
    if lines[-1] != errors[0]:
        return [f"the error line is not the last line of stderr: {lines[-1][:120]!r}"]
    return []


def run_case(case: Case, root: Path) -> Outcome:
    """Run one case (cwd and environment set for it, then restored) and judge it."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.update(case.env)
    os.chdir(case.cwd or root)
    findings = Findings()
    try:
        ran = run_subprocess(case) if case.kind == "subprocess" else run_in_process(case, findings)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return judge(case, ran, findings)


def _emit(proto: TextIO, **record: Any) -> None:
    proto.write(json.dumps(record) + "\n")
    proto.flush()


def main(argv: list[str]) -> int:
    """Run the cases of one group from a start position, reporting each on the protocol stream."""
    corpus, group, start = Path(argv[0]), argv[1], int(argv[2])
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # native writes to stdout land in the log, never in the protocol
    faulthandler.enable(file=sys.stderr)
    cases = [c for c in read_cases(corpus) if c.group == group]
    if group != "selftest":
        import driftrec.cli.main  # noqa: F401 - imported before "ready", so the first case's bound is fair

    _emit(proto, event="ready")
    for i in range(start, len(cases)):
        _emit(proto, event="start", index=i, name=cases[i].name)
        print(f"--- case {cases[i].name}", file=sys.__stderr__, flush=True)
        outcome = run_case(cases[i], corpus.parent)
        _emit(proto, event="done", index=i, outcome=asdict(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
