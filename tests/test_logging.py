"""Logging: every record under the "driftrec" root, only a NullHandler in the library, and the CLI's
--log-level / DRIFTREC_LOG_LEVEL sending records to stderr."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.llm import LLMClient
from agent.rerank import LLMReranker, RerankConfig
from driftrec.cli.main import main
from retrieval.candidates.base import Candidate
from retrieval.data.loaders import load_csv
from retrieval.data.model import Catalog, Event, Item
from retrieval.log import get_logger
from tests.fakes import FakeChatModel


def _rows_dataset(root: Path) -> Path:
    """A CSV dataset whose events file has two bad rows (an unknown item, a bad timestamp)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "items.csv").write_text("id,title,categories\na,Alpha,Drama\nb,Beta,Comedy\nc,Gamma,Drama\n")
    (root / "events.csv").write_text("user,item,timestamp\nu1,a,1000000\nu1,b,1000100\nu1,zzz,1000200\n"
                                     "u1,c,not-a-time\nu2,a,1000300\nu2,c,1000400\n")
    return root


def test_library_installs_only_a_null_handler() -> None:
    import retrieval.log  # noqa: F401  (installs the root's handler)

    root = logging.getLogger("driftrec")
    assert root.handlers and all(type(h) is logging.NullHandler for h in root.handlers)
    for module in ("agent.rerank", "agent.explain", "agent.chat.llm_parse", "agent.llm.client",
                   "retrieval.data.loaders", "retrieval.vectors.embed", "retrieval.registry", "eval.provenance"):
        mod = __import__(module, fromlist=["log"])
        assert mod.log.name == f"driftrec.{module}" and mod.log.handlers == []
    assert get_logger("driftrec.server").name == "driftrec.server"


def test_rerank_fallback_is_a_warning_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    catalog = Catalog([Item(id=f"i{n}", title=f"Film {n}", categories=("Drama",)) for n in range(6)])
    t0 = datetime(1998, 1, 1, tzinfo=UTC)
    history = [Event(user="u", item="i0", timestamp=t0 + timedelta(days=d)) for d in range(2)]
    candidates = [Candidate(f"i{n}", 1.0 - 0.1 * n, "interest") for n in range(1, 6)]
    fake = FakeChatModel(supports_grammar=True).queue(ConnectionError("connection refused"))
    reranker = LLMReranker(LLMClient(fake), catalog, RerankConfig(method="json", max_retries=0))
    with caplog.at_level(logging.WARNING, logger="driftrec"):
        result = reranker.rerank(history, candidates)
    assert result.fallback
    fallbacks = [r for r in caplog.records if r.name == "driftrec.agent.rerank"]
    assert len(fallbacks) == 1 and fallbacks[0].levelno == logging.WARNING
    assert "fell back to retrieval order" in fallbacks[0].getMessage()
    assert "ConnectionError" in fallbacks[0].getMessage()


def test_a_successful_rerank_logs_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    catalog = Catalog([Item(id=f"i{n}", title=f"Film {n}", categories=("Drama",)) for n in range(4)])
    history = [Event(user="u", item="i0", timestamp=datetime(1998, 1, 1, tzinfo=UTC))]
    fake = FakeChatModel(supports_grammar=True).queue('{"ranking": ["C", "B", "A"]}')
    with caplog.at_level(logging.DEBUG, logger="driftrec"):
        result = LLMReranker(LLMClient(fake), catalog, RerankConfig(method="json")).rerank(
            history, [Candidate(f"i{n}", 1.0 - 0.1 * n, "interest") for n in range(1, 4)])
    assert not result.fallback
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_slow_llm_call_is_a_warning_with_latency_and_no_message_text(caplog: pytest.LogCaptureFixture) -> None:
    from langchain_core.messages import HumanMessage

    client = LLMClient(FakeChatModel().queue("fine"))
    client.slow_call_s = 0.0  # every call is "slow"
    with caplog.at_level(logging.DEBUG, logger="driftrec"):
        client.chat([HumanMessage("my secret message text")])
    slow = [r for r in caplog.records if "slow call" in r.getMessage()]
    assert len(slow) == 1 and slow[0].levelno == logging.WARNING and " s (threshold" in slow[0].getMessage()
    assert all("secret" not in r.getMessage() for r in caplog.records)


def test_skipped_rows_summary_warning_and_each_row_at_debug(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    root = _rows_dataset(tmp_path / "d")
    with caplog.at_level(logging.DEBUG, logger="driftrec"):
        ds = load_csv(root / "events.csv", root / "items.csv", on_error="skip")
    assert ds.n_events == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].name == "driftrec.retrieval.data.loaders"
    assert "2 skipped" in warnings[0].getMessage()
    rows = [r for r in caplog.records if r.levelno == logging.DEBUG and r.getMessage().startswith("skipped ")]
    assert sorted(r.getMessage().split(" ")[1].rsplit(":", 1)[1] for r in rows) == ["4", "5"]


def test_cli_log_level_debug_prints_driftrec_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _rows_dataset(tmp_path / "d")
    argv = ["timeline", "--data", str(root), "--on-error", "skip", "--embedder", "hashing", "--no-cache",
            "--user", "u1", "--json", "--no-vectors"]
    assert main(["--log-level", "debug", *argv]) == 0
    err = capsys.readouterr().err
    debug = [line for line in err.splitlines() if " DEBUG driftrec." in line]
    assert any("driftrec.retrieval.data.records: skipped" in line for line in debug)
    assert any(" WARNING driftrec.retrieval.data.loaders: " in line for line in err.splitlines())
    # without --log-level: warnings only, no INFO or DEBUG records, and the handler is gone afterwards
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert " WARNING driftrec." in err
    assert " DEBUG driftrec." not in err and " INFO driftrec." not in err
    assert all(type(h) is logging.NullHandler for h in logging.getLogger("driftrec").handlers)


def test_cli_info_records_only_with_log_level_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "clean"
    root.mkdir()
    (root / "items.csv").write_text("id,title\na,Alpha\nb,Beta\n")
    (root / "events.csv").write_text("user,item,timestamp\nu1,a,1000000\nu1,b,1000100\n")
    argv = ["timeline", "--data", str(root), "--embedder", "hashing", "--no-cache", "--user", "u1", "--json",
            "--no-vectors"]
    assert main(argv) == 0
    assert "driftrec." not in capsys.readouterr().err  # nothing at WARNING, INFO not shown
    assert main(["--log-level", "INFO", *argv]) == 0
    err = capsys.readouterr().err
    assert " INFO driftrec.retrieval.data.loaders: clean: 4 rows read, 4 loaded, none skipped" in err


def test_cli_log_level_from_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root = _rows_dataset(tmp_path / "d")
    argv = ["timeline", "--data", str(root), "--on-error", "skip", "--embedder", "hashing", "--no-cache",
            "--user", "u1", "--json", "--no-vectors"]
    monkeypatch.setenv("DRIFTREC_LOG_LEVEL", "DEBUG")
    assert main(argv) == 0
    assert " DEBUG driftrec." in capsys.readouterr().err
    monkeypatch.setenv("DRIFTREC_LOG_LEVEL", "loud")
    assert main(argv) == 2
    assert "DRIFTREC_LOG_LEVEL='loud' is not a log level" in capsys.readouterr().err
