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
    assert capsys.readouterr().err.strip() == "driftrec: error: -k must be at least 1"


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
