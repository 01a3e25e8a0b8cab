"""Run the bad-input corpus and print the totals: `python -m tests.badinputs.run [--keep DIR] [-v]`.

Generates the corpus into a temp directory, starts the fake LLM server, and runs the cases in worker
processes (`tests.badinputs.worker`) under a watchdog: a case that outlives its timeout is a hang, a
worker that dies during a case is a crash, and either way a fresh worker goes on with the next case.
The "main" group runs beside the "llm" group (whose cases mostly wait on the fake server); the
"embedded" group (llama.cpp) runs after "main".
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.badinputs.fakeserver import FakeServer
from tests.badinputs.generate import REPO, generate
from tests.badinputs.spec import CATEGORIES, Case, Outcome

STARTUP_S = 120.0


@dataclass
class Report:
    """Outcomes of one corpus run."""

    cases: list[Case]
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    seconds: float = 0.0

    def totals(self, klass: str | None = None) -> dict[str, int]:
        """Counts of cases, passes and each failure category (for one class, or all)."""
        chosen = [c for c in self.cases if klass is None or c.klass == klass]
        counts = {"cases": len(chosen), "passed": 0, **dict.fromkeys(CATEGORIES, 0)}
        for c in chosen:
            category = self.outcomes[c.name].category
            counts["passed" if category is None else category] += 1
        return counts

    def failures(self) -> list[tuple[Case, Outcome]]:
        """Failed cases with their outcomes, in corpus order."""
        return [(c, self.outcomes[c.name]) for c in self.cases if self.outcomes[c.name].category is not None]

    def table(self) -> str:
        """The totals table, one row per input class plus the total."""
        cols = ["cases", "passed", *CATEGORIES]
        classes = list(dict.fromkeys(c.klass for c in self.cases))
        lines = [f"{'class':<9}" + "".join(f"{c:>15}" for c in cols)]
        for k in [*classes, None]:
            t = self.totals(k)
            lines.append(f"{k or 'total':<9}" + "".join(f"{t[c]:>15}" for c in cols))
        return "\n".join(lines)

    def failure_lines(self) -> str:
        """One block per failed case, grouped by owner: category, name, problems and the command."""
        out = []
        for owner in ("data", "index", "llm", "cli-validation"):
            failed = [(c, o) for c, o in self.failures() if c.owner == owner]
            if failed:
                out.append(f"== {owner}: {len(failed)} failing")
            for c, o in failed:
                what = " ".join(_short(a) for a in c.argv) if c.argv else f"api {c.api}"
                out.append(f"[{o.category}] {c.name} (exit {o.exit}, {o.seconds:.1f}s): {'; '.join(o.problems)[:400]}"
                           f"\n    {what[:300]}")
        return "\n".join(out)


def _short(arg: str) -> str:
    arg = arg if len(arg) <= 60 else f"{arg[:25]}…({len(arg):,} chars)"
    return repr(arg) if not arg or any(ch.isspace() or not ch.isprintable() for ch in arg) else arg


class _Lines:
    """Line reader over a worker's protocol pipe with a deadline per line."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.buf = b""
        self.eof = False
        self.sel = selectors.DefaultSelector()
        self.sel.register(stream, selectors.EVENT_READ)

    def next(self, deadline: float) -> dict[str, Any] | None:
        """The next JSON record; None on timeout or end of stream (check the process to tell them apart)."""
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            chunk = os.read(self.stream.fileno(), 1 << 16)
            if not chunk:
                self.eof = True
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return dict(json.loads(line))


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _log_tail(log: Path, name: str) -> str:
    text = log.read_text(errors="replace") if log.is_file() else ""
    part = text.rsplit(f"--- case {name}\n", 1)[-1]
    return part.strip()[-1500:]


def run_group(cases: list[Case], corpus: Path, group: str, env: dict[str, str]) -> Iterator[Outcome]:
    """Run one group's cases in workers, restarting after a hang or a crash."""
    start, restarts = 0, 0
    while start < len(cases):
        log = corpus.parent / f"worker-{group}-{restarts}.log"
        with log.open("wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "tests.badinputs.worker", str(corpus), group, str(start)],
                                    stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO, env=env,
                                    start_new_session=True)
        assert proc.stdout is not None
        lines = _Lines(proc.stdout)
        record = lines.next(time.monotonic() + STARTUP_S)
        if record is None or record.get("event") != "ready":
            _kill(proc)
            for case in cases[start:]:
                yield Outcome(case.name, crashed=True, problems=[f"worker did not start: {_log_tail(log, '')}"])
            return
        i = start
        while i < len(cases):
            case = cases[i]
            began = time.monotonic()
            record = lines.next(began + 30)
            if record is not None and record.get("event") == "start":
                record = lines.next(began + case.timeout_s)
            if record is not None and record.get("event") == "done":
                yield Outcome(**record["outcome"])
                i += 1
                continue
            seconds = round(time.monotonic() - began, 1)
            if not lines.eof:  # no result in time and the worker still talks: the case hangs
                _kill(proc)
                yield Outcome(case.name, seconds=seconds, hung=True,
                              problems=[f"no result after {case.timeout_s:.0f}s: killed"])
            else:
                try:
                    code = proc.wait(30)
                except subprocess.TimeoutExpired:
                    _kill(proc)
                    code = proc.returncode
                yield Outcome(case.name, exit=code, seconds=seconds, crashed=True,
                              problems=[f"the worker died (exit {code}) during the case: "
                                        f"{_log_tail(log, case.name)[-300:]!r}"])
            i += 1
            break
        else:
            proc.wait()
        start, restarts = i, restarts + 1


LANES: tuple[tuple[str, ...], ...] = (("main", "embedded"), ("llm",), ("llm-b",))


def run_cases(root: Path, cases: list[Case], groups: tuple[str, ...] | None = None, progress: bool = False) -> Report:
    """Run the cases of `groups` (all when None) from the corpus under `root`; returns their report.

    The groups run in the lanes of LANES, side by side; the fake LLM server runs in this process.
    """
    began = time.monotonic()
    chosen = [c for c in cases if groups is None or c.group in groups]
    corpus = root / "corpus.json"
    server = FakeServer()
    env = {**os.environ, "BADINPUTS_LLM_URL": server.url, "PYTHONFAULTHANDLER": "1", "TQDM_DISABLE": "1"}
    report = Report(chosen)
    lock = threading.Lock()

    def drive(lane: tuple[str, ...]) -> None:
        for group in lane:
            for outcome in run_group([c for c in chosen if c.group == group], corpus, group, env):
                with lock:
                    report.outcomes[outcome.name] = outcome
                    if progress and outcome.category:
                        print(f"  {outcome.category}: {outcome.name}: {'; '.join(outcome.problems)[:160]}",
                              flush=True)

    lanes = [lane for lane in LANES if any(c.group in lane for c in chosen)]
    lanes += [(g,) for g in dict.fromkeys(c.group for c in chosen) if not any(g in lane for lane in LANES)]
    threads = [threading.Thread(target=drive, args=(lane,)) for lane in lanes]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.close()
    for c in chosen:
        report.outcomes.setdefault(c.name, Outcome(c.name, problems=["never ran"], crashed=True))
    report.seconds = time.monotonic() - began
    (root / f"outcomes-{'-'.join(groups or ('all',))}.json").write_text(
        json.dumps([asdict(report.outcomes[c.name]) for c in chosen], indent=1))
    return report


def run_corpus(root: Path, ml100k: Path | None = None, progress: bool = False) -> Report:
    """Generate the corpus under `root`, run every case and return the report."""
    began = time.monotonic()
    cases = generate(root) if ml100k is None else generate(root, ml100k)
    report = run_cases(root, cases, progress=progress)
    report.seconds = time.monotonic() - began
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the corpus, print the totals table and the failing cases; exit 1 when any case failed."""
    p = argparse.ArgumentParser(prog="python -m tests.badinputs.run", description=__doc__.splitlines()[0])
    p.add_argument("--keep", type=Path, default=None, help="generate into this directory and keep it")
    p.add_argument("-v", "--verbose", action="store_true", help="print each failure as it happens")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="driftrec-badinputs-") as tmp:
        root = args.keep or Path(tmp)
        report = run_corpus(root, progress=args.verbose)
        print(f"bad-input corpus: {len(report.cases)} cases in {report.seconds:.0f}s ({root})")
        print(report.table())
        slow = sorted(report.outcomes.values(), key=lambda o: -o.seconds)[:5]
        print("slowest: " + ", ".join(f"{o.name} {o.seconds:.1f}s" for o in slow))
        if report.failures():
            print(report.failure_lines())
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
