from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftrec.cli.main import main


def test_index_and_recommend_json(tmp_path: Path, ml100k_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data", str(ml100k_path), "--embedder", "hashing", "--no-cache"]
    assert main(["index", *base, "--out", str(tmp_path / "ix")]) == 0
    assert main(["recommend", *base, "--index", str(tmp_path / "ix"), "--user", "196", "-k", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert out["user"] == "196" and len(out["items"]) == 5


def test_cli_errors_are_one_line(tmp_path: Path, ml100k_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data", str(ml100k_path), "--embedder", "hashing", "--no-cache"]
    assert main(["recommend", *base, "--user", "nobody"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("driftrec: error: unknown user 'nobody'") and "\n" not in err
    assert main(["recommend", "--data", str(tmp_path / "missing"), "--user", "1"]) == 2
    assert main(["recommend", *base, "--index", str(tmp_path), "--user", "1"]) == 4
    capsys.readouterr()
    assert main(["recommend", *base, "--user", "196", "-k", "0"]) == 2
    assert capsys.readouterr().err.strip() == "driftrec: error: -k must be between 1 and 1,000, got 0"


def test_demo_real_embedder(ml100k_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--data", str(ml100k_path), "--no-cache", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "top 3 recommendations" in out and "all-MiniLM-L6-v2" in out


def test_index_out_never_replaces_a_foreign_directory(tmp_path: Path, ml100k_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "thesis.txt").write_text("precious")
    base = ["--data", str(ml100k_path), "--embedder", "hashing", "--no-cache"]
    assert main(["index", *base, "--out", str(victim)]) == 2
    err = capsys.readouterr().err.strip()
    assert "refusing to replace" in err and "\n" not in err
    assert main(["index", *base, "--out", str(ml100k_path)]) == 2  # the dataset itself
    assert main(["train", "--dataset", str(ml100k_path), "--out", str(victim)]) == 2
    assert (victim / "sub" / "thesis.txt").read_text() == "precious"
    assert (ml100k_path / "u.data").is_file()


_READS_DATA = ("recommend", "demo", "chat", "timeline")


@pytest.mark.parametrize(("argv", "message"), [
    (["recommend", "--user", ""], "user id is empty"),  # used to recommend for the first user, exit 0
    (["recommend", "--user", "  "], "user id is empty"),
    (["demo", "--user", "", "--llm", "none"], "user id is empty"),
    (["chat", "--user", "", "--llm", "none", "--message", "hi"], "user id is empty"),
    (["timeline", "--user", "", "--json"], "user id is empty"),
    (["recommend", "--user", "196", "-k", "100000"], "-k must be between 1 and 1,000, got 100,000"),
    (["recommend", "--user", "196", "-k", "-1"], "-k must be between 1 and 1,000, got -1"),
    (["recommend", "--user", "196", "-k", "21", "--explain", "--llm", "none"], "explanations are limited to 20"),
    (["demo", "-k", "100000", "--llm", "none"], "-k must be between 1 and 1,000"),
    (["demo", "-k", "50", "--llm", "none"], "explanations are limited to 20 items per call, got -k 50"),
    (["chat", "--user", "196", "--llm", "none", "--message", ""], "the chat message is empty"),
    (["chat", "--user", "196", "--llm", "none", "--message", "x" * 4001], "4,001 characters; the limit is 4,000"),
    (["chat", "--user", "196", "--llm", "none", "-k", "21", "--message", "hi"], "-k must be between 1 and 20"),
    (["timeline", "--user", "196", "--out", "{tmp}/plot.txt"], "give a file name ending in .png, .svg, .pdf"),
    (["timeline", "--user", "196", "--out", "{tmp}/plot"], "give a file name ending in .png"),
    (["timeline", "--user", "196", "--out", "{tmp}"], "is a directory"),
    (["timeline", "--user", "196", "--out", "."], "--out . is a directory"),
    (["timeline", "--user", "196", "--out", "{tmp}/file/plot.png"], "file is a file, so nothing can be written"),
    (["timeline", "--user", "196", "--top", "0", "--json"], "--top must be at least 1, got 0"),
    (["eval", "--models", "popularity", "--out", "{tmp}/file"], "is a file, not a directory"),
    (["eval", "--models", "popularity", "--out", "{tmp}/e", "--seed", "-1"], "--seed must be at least 0"),
    (["eval", "--models", "popularity", "--out", "{tmp}/e", "--users", "0"], "--users must be at least 1"),
    (["eval", "--models", "popularity", "--out", "{tmp}/e", "--n-boot", "0"], "--n-boot must be at least 1"),
    (["eval", "--models", "popularity", "--out", "{tmp}/e", "--batch-size", "-3"], "--batch-size must be at"),
    (["eval", "--models", "popularity", "--out", "{tmp}/e", "-k", "1001"], "-k must be between 1 and 1,000"),
    (["train", "--out", "{tmp}/file"], "is a file, not a directory"),
    (["train", "--out", "{tmp}/file/sub"], "file is a file, so nothing can be written"),
    (["train", "--out", "{tmp}/t", "--epochs", "0"], "epochs"),
    (["train", "--out", "{tmp}/t", "--seed", "-1"], "--seed must be at least 0"),
])
def test_bad_options_are_one_line_errors_before_any_work(argv: list[str], message: str, tmp_path: Path,
                                                         ml100k_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("not a directory")
    before = sorted(tmp_path.rglob("*"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    extra = ["--no-cache"] if argv[0] in _READS_DATA else []
    assert main([*argv, "--data", str(ml100k_path), "--embedder", "hashing", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("driftrec: error: ") and "\n" not in err and message in err, err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_timeline_creates_missing_parent_directories(tmp_path: Path, ml100k_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "sub" / "u196.png"
    assert main(["timeline", "--data", str(ml100k_path), "--user", "196", "--no-vectors", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {out}" in capsys.readouterr().out


def test_interactive_chat_refuses_a_long_line_and_goes_on(ml100k_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    lines = iter(["why " * 2000, "recommend me something"])

    def fake_input(prompt: str = "") -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    base = ["--data", str(ml100k_path), "--embedder", "hashing", "--backend", "numpy", "--no-cache", "--llm", "none"]
    assert main(["chat", *base, "--user", "196", "-k", "2"]) == 0
    captured = capsys.readouterr()
    assert "driftrec: the chat message has 8,000 characters; the limit is 4,000" in captured.err
    assert "Here are my picks for you:" in captured.out
