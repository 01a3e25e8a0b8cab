"""One contract suite run over every index backend; the numpy backend is the exact answer key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retrieval.errors import ConfigError, IndexStateError, UnknownItemError
from retrieval.vectors.embed import EmbeddingCache, HashingEmbedder
from retrieval.vectors.index import VectorIndex


def _vectors(n: int = 300, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _make(backend: str, n: int = 300) -> VectorIndex:
    idx = VectorIndex("test-emb", 32, backend)
    idx.add([f"i{r}" for r in range(n)], _vectors(n))
    return idx


@pytest.fixture(params=["numpy", "flat", "hnsw", "ivf"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _recall(got: list[list[tuple[str, float]]], want: list[list[tuple[str, float]]]) -> float:
    hits = sum(len({i for i, _ in g} & {i for i, _ in w}) for g, w in zip(got, want, strict=True))
    return hits / sum(len(w) for w in want)


def test_search_matches_exact_answer(backend: str) -> None:
    idx, ref = _make(backend), _make("numpy")
    queries = _vectors(20, seed=1)
    got, want = idx.search_batch(queries, 10), ref.search_batch(queries, 10)
    floor = 1.0 if backend == "flat" else 0.8
    assert _recall(got, want) >= floor
    for row in got:
        scores = [s for _, s in row]
        assert scores == sorted(scores, reverse=True) and len(row) == 10
    if backend in ("numpy", "flat"):
        np.testing.assert_allclose([s for _, s in got[0]], [s for _, s in want[0]], rtol=1e-5)


def test_self_is_nearest(backend: str) -> None:
    idx = _make(backend)
    assert idx.search(idx.vector("i7"), 1)[0][0] == "i7"


def test_add_remove_replace(backend: str) -> None:
    idx = _make(backend, 50)
    idx.remove(["i3", "i4"])
    assert len(idx) == 48 and "i3" not in idx
    assert all(i not in ("i3", "i4") for i, _ in idx.search_batch(_vectors(5, seed=2), 48)[0])
    target = -idx.vector("i9")
    idx.add(["i9", "new"], np.stack([target, target]))
    assert len(idx) == 49
    assert {i for i, _ in idx.search(target, 2)} == {"i9", "new"}
    with pytest.raises(UnknownItemError):
        idx.remove(["ghost"])
    with pytest.raises(ConfigError):
        idx.add(["a", "a"], np.zeros((2, 32), np.float32))
    with pytest.raises(ConfigError):
        idx.add(["a"], np.zeros((1, 5), np.float32))


def test_k_larger_than_index(backend: str) -> None:
    idx = _make(backend, 5) if backend != "ivf" else _make(backend, 40)
    res = idx.search(idx.vector("i0"), 100)
    assert len({i for i, _ in res}) == len(res) <= len(idx)


def test_save_load_roundtrip(tmp_path: Path, backend: str) -> None:
    idx = _make(backend)
    idx.save(tmp_path / "ix")
    back = VectorIndex.load(tmp_path / "ix", embedder="test-emb")
    assert back.ids == idx.ids and back.backend_name == backend
    q = _vectors(3, seed=4)
    assert [[i for i, _ in r] for r in back.search_batch(q, 5)] == [[i for i, _ in r] for r in idx.search_batch(q, 5)]
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["count"] == 300 and manifest["dim"] == 32 and manifest["embedder"] == "test-emb"
    assert not list(tmp_path.glob(".tmp-index-*"))  # atomic write left no temp dir


def test_load_errors(tmp_path: Path) -> None:
    idx = _make("flat")
    d = idx.save(tmp_path / "ix")
    with pytest.raises(IndexStateError, match="built with embedder 'test-emb'"):
        VectorIndex.load(d, embedder="other")
    with pytest.raises(IndexStateError, match="no manifest.json"):
        VectorIndex.load(tmp_path / "nothing")
    (d / "ids.json").write_text(json.dumps(idx.ids[:-1]))
    with pytest.raises(IndexStateError, match="checksum mismatch"):
        VectorIndex.load(d)
    (d / "vectors.npy").unlink()
    with pytest.raises(IndexStateError, match="partial index"):
        VectorIndex.load(d)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(IndexStateError, match="corrupted manifest"):
        VectorIndex.load(d)


def test_unknown_backend() -> None:
    with pytest.raises(ConfigError, match="valid: flat, hnsw, ivf, numpy"):
        VectorIndex("e", 4, "annoy")


def test_hashing_embedder_and_cache(tmp_path: Path) -> None:
    emb = HashingEmbedder(64)
    a = emb.embed(["space rocket orbit", "space rocket orbit", "baking a cake"])
    assert a.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    assert a[0] @ a[1] == pytest.approx(1.0) and a[0] @ a[2] < 0.5

    class Counting(HashingEmbedder):
        calls = 0

        def embed_batch(self, texts):  # type: ignore[no-untyped-def]
            Counting.calls += len(texts)
            return super().embed_batch(texts)

    cache = EmbeddingCache(tmp_path / "c.sqlite")
    counting = Counting(64)
    first = counting.embed(["x y", "z"], cache=cache)
    second = counting.embed(["x y", "z", "new"], cache=cache)
    assert Counting.calls == 3  # only "new" was computed the second time
    np.testing.assert_array_equal(first, second[:2])
    assert len(cache) == 3
