"""Saved FAISS indexes (index.faiss): read instead of rebuilt, checked against the vectors, appended to
without a rebuild; the GPU clone is sharded; without faiss the flat backend falls back to numpy."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faiss
import numpy as np
import pytest

from retrieval.errors import IndexStateError, MissingDependencyError
from retrieval.vectors import index as index_module
from retrieval.vectors import store
from retrieval.vectors.faiss_support import to_gpus
from retrieval.vectors.index import FaissBackend, NumpyBackend, VectorIndex

KINDS = ["hnsw", "ivf"]  # saved as index.faiss; flat is rebuilt from vectors.npy (as fast)


def _vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _make(kind: str, n: int = 300, dim: int = 32, seed: int = 0) -> VectorIndex:
    idx = VectorIndex("test-emb", dim, kind)
    idx.add([f"i{r}" for r in range(n)], _vectors(n, dim, seed))
    return idx


def _ids(idx: VectorIndex, queries: np.ndarray, k: int = 5) -> list[list[str]]:
    return [[i for i, _ in row] for row in idx.search_batch(queries, k)]


def _rechecksum(d: Path, edit: Any = lambda m: m) -> None:
    """Make the manifest's checksums match the files again, as a crafted directory would."""
    manifest = edit(json.loads((d / "manifest.json").read_text()))
    manifest["sha256"] = {f: store.sha256_file(d / f) for f in manifest["sha256"]}
    (d / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("kind", KINDS)
def test_a_saved_faiss_index_is_read_not_rebuilt(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    idx = _make(kind)
    d = idx.save(tmp_path / "ix")
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["faiss"]["kind"] == kind and manifest["faiss"]["faiss_version"] == faiss.__version__
    assert manifest["sha256"]["index.faiss"] == store.sha256_file(d / "index.faiss")

    def no_build(*args: Any) -> None:
        raise AssertionError("the index was rebuilt")

    for name in ("IndexFlatIP", "IndexHNSWFlat", "IndexIVFFlat"):
        monkeypatch.setattr(faiss, name, no_build)
    back = VectorIndex.load(d, embedder="test-emb")
    assert isinstance(back._backend, FaissBackend) and back._backend.cpu_index.ntotal == 300
    queries = _vectors(10, seed=3)
    assert _ids(back, queries) == _ids(idx, queries)


@pytest.mark.parametrize("kind", ["numpy", "flat"])
def test_numpy_and_flat_indexes_save_no_faiss_file_and_another_backend_ignores_it(tmp_path: Path,
                                                                                   kind: str) -> None:
    d = _make(kind).save(tmp_path / kind)
    assert not (d / "index.faiss").exists() and json.loads((d / "manifest.json").read_text())["faiss"] is None
    hnsw = _make("hnsw").save(tmp_path / "hnsw")
    exact = VectorIndex.load(hnsw, backend="numpy")
    assert exact._backend is None and isinstance(exact.backend, NumpyBackend)


def test_a_directory_saved_without_the_faiss_file_loads_by_rebuilding(tmp_path: Path) -> None:
    idx = _make("hnsw")
    d = idx.save(tmp_path / "ix")
    (d / "index.faiss").unlink()
    _rechecksum(d, lambda m: {**{k: v for k, v in m.items() if k != "faiss"},
                              "sha256": {f: c for f, c in m["sha256"].items() if f != "index.faiss"}})
    assert "index.faiss" not in json.loads((d / "manifest.json").read_text())["sha256"]
    back = VectorIndex.load(d)
    assert back._backend is None  # built on first use, as before index.faiss existed
    queries = _vectors(5, seed=4)
    assert back.search(queries[0], 3)[0][1] > 0 and len(_ids(back, queries)) == 5


def _swap_faiss_file(d: Path, other: Path) -> None:
    (d / "index.faiss").write_bytes((other / "index.faiss").read_bytes())
    _rechecksum(d)


@pytest.mark.parametrize(("make_other", "message"), [
    (lambda: _make("hnsw", n=200), "holds 200×32 vectors"),
    (lambda: _make("hnsw", dim=16), "holds 300×16 vectors"),
    (lambda: _make("ivf"), "not a FAISS hnsw index (header b'IwFl')"),
    (lambda: _make("hnsw", seed=9), "its rows differ from vectors.npy"),
], ids=["count", "dim", "type", "other-vectors"])
def test_a_faiss_file_that_does_not_match_the_vectors_is_refused(tmp_path: Path, make_other: Any,
                                                                 message: str) -> None:
    d = _make("hnsw").save(tmp_path / "ix")
    _swap_faiss_file(d, make_other().save(tmp_path / "other"))
    with pytest.raises(IndexStateError, match=re.escape(message)) as err:
        VectorIndex.load(d)
    assert "\n" not in str(err.value) and "driftrec index --out" in str(err.value)


def test_ivf_rows_and_metric_are_checked(tmp_path: Path) -> None:
    d = _make("ivf").save(tmp_path / "ix")
    _swap_faiss_file(d, _make("ivf", seed=9).save(tmp_path / "other"))
    with pytest.raises(IndexStateError, match="rows differ"):
        VectorIndex.load(d)
    l2 = faiss.IndexIVFFlat(faiss.IndexFlatL2(32), 32, 4, faiss.METRIC_L2)
    l2.train(_vectors(300))
    l2.add(_vectors(300))
    faiss.write_index(l2, str(d / "index.faiss"))
    _rechecksum(d)
    with pytest.raises(IndexStateError, match="metric 1"):
        VectorIndex.load(d)


def test_damaged_missing_or_foreign_faiss_files_are_one_line_errors(tmp_path: Path) -> None:
    d = _make("hnsw").save(tmp_path / "ix")
    good = (d / "index.faiss").read_bytes()
    (d / "index.faiss").write_bytes(good[:-100])
    with pytest.raises(IndexStateError, match="checksum mismatch"):
        VectorIndex.load(d)
    _rechecksum(d)
    with pytest.raises(IndexStateError, match="unreadable FAISS index") as err:
        VectorIndex.load(d)
    assert "\n" not in str(err.value)
    (d / "index.faiss").write_bytes(pickle.dumps(np.zeros((300, 32), np.float32)))
    _rechecksum(d)
    with pytest.raises(IndexStateError, match="not a FAISS hnsw index"):
        VectorIndex.load(d)
    (d / "index.faiss").unlink()
    with pytest.raises(IndexStateError, match="partial index, index.faiss is missing"):
        VectorIndex.load(d)


@pytest.mark.parametrize("kind", KINDS)
def test_new_rows_go_into_the_built_index_without_a_rebuild(tmp_path: Path, kind: str) -> None:
    idx = _make(kind)
    idx.search(idx.vector("i0"), 1)
    built = idx._backend
    assert isinstance(built, FaissBackend)
    fresh = _vectors(20, seed=5)
    idx.add([f"new{r}" for r in range(20)], fresh)
    assert idx._backend is built and built.cpu_index.ntotal == 320
    assert [row[0][0] for row in idx.search_batch(fresh, 1)] == [f"new{r}" for r in range(20)]
    back = VectorIndex.load(idx.save(tmp_path / "ix"))
    assert len(back) == 320 and isinstance(back._backend, FaissBackend) and back._backend.cpu_index.ntotal == 320
    assert _ids(back, fresh, 3) == _ids(idx, fresh, 3)
    idx.add(["new0"], -fresh[:1])  # a replaced vector cannot be updated in place: rebuilt
    assert idx._backend is None and idx.search(-fresh[0], 1)[0][0] == "new0"
    idx.remove(["i5"])  # removal renumbers later rows: rebuilt too
    assert idx._backend is None and "i5" not in {i for i, _ in idx.search(idx.vector("i6"), 319)}


class _FakeGpuFaiss:
    """The part of faiss that `to_gpus` touches, with a chosen number of GPUs and a call log."""

    def __init__(self, ngpu: int) -> None:
        self.ngpu = ngpu
        self.calls: list[tuple[Any, Any, int]] = []
        self.GpuMultipleClonerOptions = lambda: SimpleNamespace(shard=False)

    def get_num_gpus(self) -> int:
        return self.ngpu

    def index_cpu_to_all_gpus(self, index: Any, co: Any = None, ngpu: int = -1) -> Any:
        self.calls.append((index, co, ngpu))
        return ("on-gpus", index)


@pytest.mark.parametrize("ngpu", [1, 2, 4])
def test_the_gpu_clone_is_sharded_across_every_gpu(ngpu: int) -> None:
    fake, cpu = _FakeGpuFaiss(ngpu), object()
    assert to_gpus(fake, cpu) == ("on-gpus", cpu)
    [(index, options, n)] = fake.calls
    assert index is cpu and options.shard is True and n == ngpu


def test_without_gpus_the_cpu_index_is_used_as_is() -> None:
    fake, cpu = _FakeGpuFaiss(0), object()
    assert to_gpus(fake, cpu) is cpu and not fake.calls
    assert to_gpus(SimpleNamespace(), cpu) is cpu  # a faiss without GPU support at all


def test_faiss_backend_clones_to_gpus_and_clones_again_after_an_append(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeGpuFaiss(2)

    class Proxy:  # real faiss for building, the fake for the GPU calls; "GPU" search runs on the CPU index
        def __getattr__(self, name: str) -> Any:
            return getattr(fake, name) if name in ("get_num_gpus", "GpuMultipleClonerOptions") else getattr(faiss, name)

        def index_cpu_to_all_gpus(self, index: Any, co: Any = None, ngpu: int = -1) -> Any:
            fake.index_cpu_to_all_gpus(index, co, ngpu)
            return SimpleNamespace(search=index.search)

    monkeypatch.setattr(index_module, "faiss_module", Proxy)
    ivf = FaissBackend(_vectors(300), "ivf")
    assert len(fake.calls) == 1 and fake.calls[0][1].shard is True and fake.calls[0][2] == 2
    ivf.append(_vectors(5, seed=6), np.vstack([_vectors(300), _vectors(5, seed=6)]))
    assert len(fake.calls) == 2 and fake.calls[1][0].ntotal == 305
    assert ivf.search_batch(_vectors(5, seed=6), 1)[1][:, 0].tolist() == [300, 301, 302, 303, 304]
    FaissBackend(_vectors(300), "hnsw")
    assert len(fake.calls) == 2  # faiss has no GPU HNSW: it stays on the CPU


def test_without_faiss_flat_falls_back_to_numpy_and_saves_no_faiss_file(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    idx = _make("flat")
    assert isinstance(idx.backend, NumpyBackend)
    assert idx.search(idx.vector("i7"), 1)[0][0] == "i7"
    d = idx.save(tmp_path / "ix")
    assert not (d / "index.faiss").exists()
    with pytest.raises(MissingDependencyError, match=r"pip install 'driftrec\[cpu\]'"):
        _ = _make("hnsw").backend


def test_the_index_module_imports_and_searches_without_faiss() -> None:
    code = ("import sys; sys.modules['faiss'] = None\n"
            "import numpy as np\n"
            "from retrieval.vectors.index import VectorIndex\n"
            "idx = VectorIndex('e', 4); idx.add(['a', 'b'], np.eye(2, 4, dtype=np.float32))\n"
            "print(type(idx.backend).__name__, idx.search(np.eye(1, 4, 1, dtype=np.float32)[0], 1)[0][0])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["NumpyBackend", "b"]
