"""JSONL rows of a resumable benchmark run: read back, a cut-short last line dropped, bad lines named."""

from __future__ import annotations

import json
import logging

import pytest

from eval.resume import read_rows, resume_rows
from retrieval.errors import DataError


def _write(path, rows, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail, encoding="utf-8")


def test_resume_keeps_rows_and_drops_a_cut_short_last_line(tmp_path, caplog):
    path = tmp_path / "rows.jsonl"
    _write(path, [{"user": "1"}, {"user": "2"}], tail='{"user": "3", "te')
    with caplog.at_level(logging.WARNING, logger="driftrec.eval.resume"):
        rows = resume_rows(path, resume=True)
    assert [r["user"] for r in rows] == ["1", "2"]
    assert "cut short" in caplog.text
    with path.open("a", encoding="utf-8") as fh:  # what a resumed run does next
        fh.write(json.dumps({"user": "3"}) + "\n")
    assert [r["user"] for r in read_rows(path)] == ["1", "2", "3"]


def test_without_resume_the_earlier_file_is_removed(tmp_path):
    path = tmp_path / "rows.jsonl"
    _write(path, [{"user": "1"}])
    assert resume_rows(path, resume=False) == []
    assert not path.exists()
    assert resume_rows(tmp_path / "absent.jsonl", resume=True) == []


def test_a_bad_line_before_the_last_is_an_error_naming_it(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"user": "1"}\nnot json\n{"user": "2"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"rows.jsonl:2: not a JSON line"):
        read_rows(path)
    path.write_text('{"user": "1"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"rows.jsonl:2: not a JSON object"):
        read_rows(path)
