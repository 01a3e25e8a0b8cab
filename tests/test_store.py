"""Saved directories: a write never removes what driftrec did not write, and leaves nothing behind."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from retrieval.errors import ConfigError, IndexStateError
from retrieval.vectors import store
from retrieval.vectors.index import VectorIndex
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


def _two_versions() -> list[VectorIndex]:
    """Two indexes whose rows tell them apart: every vector of version v is filled with v + 1."""
    versions = []
    for v in range(2):
        idx = VectorIndex("hashing-8", 8, "numpy")
        ids = [f"v{v}-{i}" for i in range(200 + 50 * v)]
        idx.add(ids, np.full((len(ids), 8), v + 1, np.float32), texts=ids)
        versions.append(idx)
    return versions


@pytest.mark.parametrize("exchange", [True, False])
def test_loads_during_repeated_resaves_never_fail(tmp_path: Path, exchange: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if not exchange:  # the fallback path: rename aside, rename in (the target is briefly missing)
        monkeypatch.setattr(store, "_exchange", lambda a, b: False)
    versions = _two_versions()
    target = versions[0].save(tmp_path / "idx")
    done = threading.Event()
    failures: list[BaseException] = []
    loads: list[int] = []

    def resave() -> None:
        try:
            for n in range(30):
                versions[n % 2].save(target)
        finally:
            done.set()

    def load() -> None:
        while not done.is_set():
            try:
                got = VectorIndex.load(target, embedder="hashing-8")
                v = int(got.ids[0][1])
                if got.ids != versions[v].ids or not np.all(got.vectors == v + 1):
                    raise AssertionError(f"a mix of versions: {got}")  # each load must be one whole version
            except BaseException as exc:  # collected and asserted below
                failures.append(exc)
                continue
            loads.append(v)

    threads = [threading.Thread(target=resave), threading.Thread(target=load)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and len(loads) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_a_load_gives_up_when_the_directory_keeps_changing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    versions = _two_versions()
    target = versions[0].save(tmp_path / "idx")
    calls = {"n": 0}
    real = store._open_regular

    def swap_then_open(root: Path, dfd: int, name: str, fix: str):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if name == "vectors.npy":  # a writer swaps a new version in before every payload read
            versions[calls["n"] % 2].save(target)
        return real(root, dfd, name, fix)

    monkeypatch.setattr(store, "_open_regular", swap_then_open)
    monkeypatch.setattr(store, "READ_ATTEMPTS", 3)
    monkeypatch.setattr(store.time, "sleep", lambda s: None)
    with pytest.raises(IndexStateError, match="kept changing while it was read"):
        VectorIndex.load(target)


def test_a_corrupted_index_fails_at_once_without_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = _two_versions()[0].save(tmp_path / "idx")
    (target / "ids.json").write_text("[]")
    sleeps: list[float] = []
    monkeypatch.setattr(store.time, "sleep", sleeps.append)
    with pytest.raises(IndexStateError, match="checksum mismatch"):
        VectorIndex.load(target)
    assert sleeps == []


def test_one_file_is_replaced_whole_with_an_ordinary_mode(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "state.json"
    assert store.write_file_atomically(path, lambda f: f.write("new")) == 3
    assert path.read_text() == "new"
    assert path.stat().st_mode & 0o777 == 0o666 & ~store._umask()

    def broken(f: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.write_file_atomically(path, broken)
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]
