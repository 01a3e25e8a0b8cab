"""The bad-input corpus (tests/badinputs, docs/reliability.md): every case bounded, no traceback, no silent loss.

The corpus is generated into a temp directory once per module. The "main" group (data files, index
directories, CLI options, threads without a real model) runs in the fast tier; the fake-LLM-server cases
(which wait on deadlines) and the embedded llama.cpp cases are marked slow. The harness itself is tested
first, so that a corpus that passes is known to be able to fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from retrieval.data.model import Catalog, Dataset, Event, Item, LoadReport
from tests.badinputs.checks import Findings, account
from tests.badinputs.filebuilder import FileBuilder, accounting
from tests.badinputs.run import Report, run_cases, run_group
from tests.badinputs.spec import CATEGORIES, Case, write_cases
from tests.badinputs.worker import Ran, judge

TARGETS = CATEGORIES  # crash, hang, traceback, silent loss, wrong outcome: each must be 0
MIN_CASES = {"data": 150, "index": 40, "cli": 30, "llm": 25, "threads": 4}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, ml100k_path: Path) -> tuple[Path, list[Case]]:
    from tests.badinputs.generate import generate

    root = tmp_path_factory.mktemp("badinputs")
    return root, generate(root, ml100k_path)


def _show(report: Report, capsys: pytest.CaptureFixture[str], title: str) -> None:
    with capsys.disabled():
        print(f"\n{title}: {len(report.cases)} cases in {report.seconds:.0f}s\n{report.table()}")
        if report.failures():
            print(report.failure_lines())


def _assert_targets(report: Report) -> None:
    totals = report.totals()
    missed = {k: totals[k] for k in TARGETS if totals[k]}
    assert not missed, f"targets missed {missed}:\n{report.failure_lines()}"


# ------------------------------------------------------------------ the harness can fail


def _tiny(tmp_path: Path) -> dict[str, object]:
    items = FileBuilder("items.csv").header("id,title")
    for n in range(3):
        items.row(f"i{n},Title {n}")
    events = FileBuilder("events.csv").header("user,item,timestamp")
    events.row("u1,i0,881250949").row("u1,i1,881250950").row("u1,i9,881250951", bad="unknown item")
    return accounting([items, events], tmp_path)


def _dataset(n_items: int, n_events: int) -> Dataset:
    from datetime import UTC, datetime, timedelta

    items = [Item(id=f"i{n}", title=f"Title {n}") for n in range(n_items)]
    t = datetime(2000, 1, 1, tzinfo=UTC)
    events = [Event(user="u1", item=f"i{n}", timestamp=t + timedelta(days=n)) for n in range(n_events)]
    return Dataset(Catalog(items), events, report=LoadReport())


def test_accounting_flags_a_row_neither_loaded_nor_reported(tmp_path: Path) -> None:
    acc = _tiny(tmp_path)
    ok = account(_dataset(3, 2), [("events.csv", 4)], acc, "skip")
    assert ok.problems == [] and not ok.lost
    lost = account(_dataset(3, 1), [("events.csv", 4)], acc, "skip")  # one good event vanished
    assert lost.lost and "1 neither loaded nor reported" in lost.problems[0]
    unreported = account(_dataset(3, 2), [], acc, "skip")  # the bad row counted as loaded, never reported
    assert unreported.lost and any("loaded without a report" in p for p in unreported.problems)


def test_judge_flags_tracebacks_multiline_errors_wrong_exits_and_slowness() -> None:
    case = Case("x", "cli", "cli-validation", exits=[2], bound_s=1)
    good = judge(case, Ran(2, 0.1, "", "driftrec: error: bad -k\n"), Findings())
    assert good.category is None
    assert judge(case, Ran(2, 0.1, "", "driftrec: error: a\nsecond line\n"), Findings()).category == "wrong outcome"
    assert judge(case, Ran(1, 0.1, "", "", traceback="Traceback ...\nKeyError: 1"), Findings()).category == "traceback"
    assert judge(case, Ran(0, 0.1, "", ""), Findings()).category == "wrong outcome"
    assert judge(case, Ran(2, 5.0, "", "driftrec: error: slow\n"), Findings()).category == "hang"


def test_watchdog_survives_a_segfault_and_a_hang(tmp_path: Path) -> None:
    cases = [Case(f"self.{a}", "threads", "llm", kind="api", api="selftest", group="selftest", params={"action": a},
                  exits=[0], timeout_s=4, bound_s=3) for a in ("hang", "segfault", "traceback", "two_lines", "ok")]
    cases[3].exits = [2]
    write_cases(tmp_path / "corpus.json", cases)
    got = {o.name: o for o in run_group(cases, tmp_path / "corpus.json", "selftest", dict(os.environ))}
    assert got["self.hang"].category == "hang"
    assert got["self.segfault"].category == "crash"
    assert got["self.traceback"].category == "traceback"
    assert got["self.two_lines"].category == "wrong outcome"
    assert got["self.ok"].category is None


# ------------------------------------------------------------------ the corpus


def test_corpus_covers_every_input_class(corpus: tuple[Path, list[Case]]) -> None:
    _, cases = corpus
    counts = {k: sum(c.klass == k for c in cases) for k in MIN_CASES}
    assert all(counts[k] >= n for k, n in MIN_CASES.items()), counts
    assert len({c.name for c in cases}) == len(cases)
    assert not list(Path(__file__).parent.glob("badinputs/**/corpus.json")), "generated data inside the repository"


def test_bad_input_corpus_main(corpus: tuple[Path, list[Case]], capsys: pytest.CaptureFixture[str]) -> None:
    root, cases = corpus
    report = run_cases(root, cases, groups=("main",))
    _show(report, capsys, "bad-input corpus, data / index / cli / threads")
    _assert_targets(report)


@pytest.mark.slow
def test_bad_input_corpus_llm_servers_and_embedded(corpus: tuple[Path, list[Case]],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root, cases = corpus
    report = run_cases(root, cases, groups=("llm", "llm-b", "embedded"))
    _show(report, capsys, "bad-input corpus, LLM servers and embedded model")
    _assert_targets(report)
