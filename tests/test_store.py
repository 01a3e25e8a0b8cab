"""Saved directories: a write never removes what driftrec did not write, and leaves nothing behind."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from retrieval.errors import ConfigError
from retrieval.vectors import store
from retrieval.vectors.store import write_atomically

INDEX = {"format": "driftrec-index/1"}


def _payload(text: str):  # type: ignore[no-untyped-def]
    return lambda tmp: (tmp / "a.txt").write_text(text)


def test_a_foreign_directory_is_refused_and_kept(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "thesis.txt").write_text("precious")
    with pytest.raises(ConfigError, match="refusing to replace"):
        write_atomically(victim, ".tmp-index-", _payload("x"), INDEX, ["a.txt"])
    assert (victim / "sub" / "thesis.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]


def test_a_directory_of_another_kind_or_a_file_is_refused(tmp_path: Path) -> None:
    write_atomically(tmp_path / "model", ".tmp-seq-", _payload("m"), {"format": "driftrec-sequential/1"}, ["a.txt"])
    with pytest.raises(ConfigError, match="not a driftrec-index directory"):
        write_atomically(tmp_path / "model", ".tmp-index-", _payload("x"), INDEX, ["a.txt"])
    (tmp_path / "file").write_text("data")
    with pytest.raises(ConfigError, match="not a directory"):
        write_atomically(tmp_path / "file", ".tmp-index-", _payload("x"), INDEX, ["a.txt"])
    assert (tmp_path / "model" / "a.txt").read_text() == "m" and (tmp_path / "file").read_text() == "data"


def test_the_working_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="working directory"):
        write_atomically(".", ".tmp-index-", _payload("x"), INDEX, ["a.txt"])


@pytest.mark.parametrize("exchange", [True, False])
def test_resave_replaces_an_index_and_an_empty_dir_without_leftovers(tmp_path: Path, exchange: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if not exchange:  # the fallback path of systems without renameat2
        monkeypatch.setattr(store, "_exchange", lambda a, b: False)
    target = tmp_path / "idx"
    target.mkdir()
    write_atomically(target, ".tmp-index-", _payload("one"), INDEX, ["a.txt"])
    write_atomically(target, ".tmp-index-", _payload("two"), INDEX, ["a.txt"])
    assert (target / "a.txt").read_text() == "two"
    assert json.loads((target / "manifest.json").read_text())["format"] == "driftrec-index/1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_concurrent_writers_take_turns_and_leave_one_complete_version(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    errors: list[BaseException] = []

    def save(i: int) -> None:
        try:
            write_atomically(target, ".tmp-index-", _payload(str(i) * 1000), INDEX, ["a.txt"])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    text = (target / "a.txt").read_text()
    assert len(set(text)) == 1 and len(text) == 1000
    assert json.loads((target / "manifest.json").read_text())["sha256"]["a.txt"] == store.sha256_file(target / "a.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
