"""One contract suite run over every index backend, checked against a brute-force answer key."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pickle
import re
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftrec.cli.main import main
from retrieval.data.model import Catalog, Item
from retrieval.errors import ConfigError, IndexStateError, UnknownItemError
from retrieval.vectors import store
from retrieval.vectors.build import build_index
from retrieval.vectors.embed import EmbeddingCache, HashingEmbedder, make_embedder
from retrieval.vectors.fingerprint import catalog_sha256, text_sha256
from retrieval.vectors.index import VectorIndex


def _vectors(n: int = 300, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _make(backend: str, n: int = 300) -> VectorIndex:
    idx = VectorIndex("test-emb", 32, backend)
    idx.add([f"i{r}" for r in range(n)], _vectors(n))
    return idx


_NO_QDRANT = pytest.mark.skipif(importlib.util.find_spec("qdrant_client") is None,
                                reason="qdrant-client not installed (pip install 'driftrec[qdrant]')")


@pytest.fixture(params=["numpy", "flat", "hnsw", "ivf", pytest.param("qdrant", marks=_NO_QDRANT)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _recall(got: list[list[tuple[str, float]]], want: list[list[tuple[str, float]]]) -> float:
    hits = sum(len({i for i, _ in g} & {i for i, _ in w}) for g, w in zip(got, want, strict=True))
    return hits / sum(len(w) for w in want)


def _brute_force(queries: np.ndarray, k: int, n: int = 300) -> list[list[tuple[str, float]]]:
    """The exact answer, computed here: inner products with every stored vector, best first."""
    scores = queries.astype(np.float64) @ _vectors(n).astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(f"i{c}", float(row[c])) for c in cols] for row, cols in zip(scores, order, strict=True)]


def test_search_matches_exact_answer(backend: str) -> None:
    idx = _make(backend)
    queries = _vectors(20, seed=1)
    got, want = idx.search_batch(queries, 10), _brute_force(queries, 10)
    exact = backend in ("numpy", "flat", "qdrant")
    assert _recall(got, want) >= (1.0 if exact else 0.8)
    for row in got:
        scores = [s for _, s in row]
        assert scores == sorted(scores, reverse=True) and len(row) == 10
    if exact:
        for g, w in zip(got, want, strict=True):
            assert [i for i, _ in g] == [i for i, _ in w]
            np.testing.assert_allclose([s for _, s in g], [s for _, s in w], rtol=1e-5, atol=1e-6)


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
    assert res and res[0][0] == "i0"  # never empty: the query's own item is found first
    if backend != "ivf":  # exhaustive backends return every item once k exceeds the size
        assert len(res) == len(idx)


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


# --- catalogue fingerprint, --rebuild, hardened loads -------------------------------------------------


def _catalog(titles: dict[str, str]) -> Catalog:
    return Catalog(Item(id=i, title=t, categories=("Drama",)) for i, t in titles.items())


_TITLES = {f"m{i}": f"movie number {i} about {w}" for i, w in enumerate(["space", "cakes", "orbit", "ships", "rain"])}


def _saved(tmp_path: Path, titles: dict[str, str] | None = None) -> tuple[Path, Catalog]:
    catalog = _catalog(titles or _TITLES)
    d = build_index(catalog, HashingEmbedder(32), "numpy", progress=False).save(tmp_path / "ix")
    return d, catalog


def test_manifest_fingerprints_the_embedded_texts(tmp_path: Path) -> None:
    d, catalog = _saved(tmp_path)
    stamp = json.loads((d / "manifest.json").read_text())["catalog"]
    items = list(catalog)
    assert stamp["count"] == 5
    hashes = [text_sha256(it.embedding_text()) for it in items]
    assert stamp["sha256"] == catalog_sha256([it.id for it in items], hashes)
    assert VectorIndex.load(d, embedder="hashing-32", catalog=_catalog(dict(_TITLES))).ids == list(_TITLES)


def test_another_catalogue_is_refused_naming_what_changed(tmp_path: Path) -> None:
    d, _ = _saved(tmp_path)
    titles = {k: v for k, v in _TITLES.items() if k != "m0"} | {"m1": "another title", "x1": "new", "x2": "new too"}
    with pytest.raises(IndexStateError, match=r"another catalogue: 2 ids added, 1 ids removed, 1 texts changed; "
                                              r"rebuild it with `driftrec index --out .*` or pass --rebuild"):
        VectorIndex.load(d, catalog=_catalog(titles))
    with pytest.raises(IndexStateError, match="the same items in another order"):
        VectorIndex.load(d, catalog=_catalog(dict(reversed(_TITLES.items()))))
    changed_genre = Catalog(Item(id=i, title=t, categories=("Comedy",)) for i, t in _TITLES.items())
    with pytest.raises(IndexStateError, match=": 5 texts changed;"):
        VectorIndex.load(d, catalog=changed_genre)  # categories are part of the embedded text


def test_old_format_and_bare_vector_indexes_are_refused_against_a_catalogue(tmp_path: Path) -> None:
    d, catalog = _saved(tmp_path)
    _rewrite_manifest(d, lambda m: {**m, "format": "driftrec-index/1"})
    with pytest.raises(IndexStateError, match="records no catalogue fingerprint.*pass --rebuild"):
        VectorIndex.load(d)
    bare = _make("numpy", 5).save(tmp_path / "bare")
    assert len(VectorIndex.load(bare)) == 5  # fine without a catalogue to check
    with pytest.raises(IndexStateError, match="records no catalogue fingerprint"):
        VectorIndex.load(bare, catalog=catalog)


def _rewrite_manifest(d: Path, edit: Any) -> None:
    """Apply `edit` to the manifest and make every checksum match the files again (a crafted directory)."""
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["sha256"] = {f: store.sha256_file(d / f) for f in manifest["sha256"]}
    (d / "manifest.json").write_text(json.dumps(edit(manifest)))


@pytest.mark.parametrize("manifest", [
    "[]", "42", '"text"', "null", "{}", '{"format": "driftrec-index/2"}',
    '{"format": ["driftrec-index/2"]}', '{"format": "driftrec-sequential/1"}',
], ids=["list", "number", "string", "null", "empty", "only-format", "format-list", "other-kind"])
def test_odd_manifests_are_one_line_errors(tmp_path: Path, manifest: str) -> None:
    d, _ = _saved(tmp_path)
    (d / "manifest.json").write_text(manifest)
    with pytest.raises(IndexStateError) as err:
        VectorIndex.load(d)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: {**m, "dim": "32"}, "field dim"),
    (lambda m: {**m, "dim": -1}, "field dim"),
    (lambda m: {**m, "count": True}, "field count"),
    (lambda m: {**m, "embedder": ["hashing-32"]}, "field embedder"),
    (lambda m: {k: v for k, v in m.items() if k != "embedder"}, "field embedder"),
    (lambda m: {k: v for k, v in m.items() if k != "catalog"}, "field catalog"),
    (lambda m: {**m, "catalog": {"sha256": 5, "count": 5}}, "field catalog.sha256"),
    (lambda m: {**m, "sha256": ["vectors.npy"]}, "`sha256` must map"),
    (lambda m: {**m, "sha256": {**m["sha256"], "ids.json": None}}, "`sha256` must map"),
    (lambda m: {**m, "dim": 33}, "wrong dimension"),
    (lambda m: {**m, "count": 4}, "manifest says 4×32"),
    (lambda m: {**m, "catalog": {**m["catalog"], "sha256": "0" * 64}}, "fingerprint does not match"),
])
def test_wrong_typed_or_inconsistent_manifest_fields(tmp_path: Path, edit: Any, message: str) -> None:
    d, _ = _saved(tmp_path)
    _rewrite_manifest(d, edit)
    with pytest.raises(IndexStateError, match=re.escape(message)) as err:
        VectorIndex.load(d)
    assert "\n" not in str(err.value)


def test_non_utf8_and_oversized_manifests(tmp_path: Path) -> None:
    d, _ = _saved(tmp_path)
    (d / "manifest.json").write_bytes(b'{"format": "\xff\xfe"}')
    with pytest.raises(IndexStateError, match="not UTF-8"):
        VectorIndex.load(d)
    (d / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(IndexStateError, match="corrupted manifest"):
        VectorIndex.load(d)


def test_payload_that_is_a_pickle_or_of_the_wrong_shape(tmp_path: Path) -> None:
    d, _ = _saved(tmp_path)
    good = np.load(d / "vectors.npy")
    (d / "vectors.npy").write_bytes(pickle.dumps(np.zeros((5, 32), np.float32)))
    _rewrite_manifest(d, lambda m: m)
    with pytest.raises(IndexStateError, match="not a float vector array"):
        VectorIndex.load(d)
    np.save(d / "vectors.npy", np.array([{"a": 1}] * 5, dtype=object).reshape(5, 1), allow_pickle=True)
    _rewrite_manifest(d, lambda m: m)
    with pytest.raises(IndexStateError, match="not a float vector array"):
        VectorIndex.load(d)
    np.save(d / "vectors.npy", np.zeros((5, 16), np.float32))
    _rewrite_manifest(d, lambda m: m)
    with pytest.raises(IndexStateError, match=r"holds \(5, 16\) vectors.*wrong dimension"):
        VectorIndex.load(d)
    np.save(d / "vectors.npy", np.full((5, 32), np.nan, np.float32))
    _rewrite_manifest(d, lambda m: m)
    with pytest.raises(IndexStateError, match="NaN"):
        VectorIndex.load(d)
    np.save(d / "vectors.npy", good)
    (d / "ids.json").write_text(json.dumps(["a", "a", "b", "c", "d"]))
    _rewrite_manifest(d, lambda m: {**m, "catalog": None})
    with pytest.raises(IndexStateError, match="duplicate ids"):
        VectorIndex.load(d)


def test_symlinks_and_special_files_are_refused_without_hanging(tmp_path: Path) -> None:
    d, _ = _saved(tmp_path)
    secret = tmp_path / "elsewhere.npy"
    (d / "vectors.npy").rename(secret)
    (d / "vectors.npy").symlink_to(secret)
    with pytest.raises(IndexStateError, match="is a symlink"):
        VectorIndex.load(d)
    (d / "vectors.npy").unlink()
    secret.rename(d / "vectors.npy")
    (d / "ids.json").unlink()
    os.mkfifo(d / "ids.json")  # opening a FIFO for reading would block forever
    with pytest.raises(IndexStateError, match="not a regular file"):
        VectorIndex.load(d)
    (d / "ids.json").unlink()
    (d / "manifest.json").rename(tmp_path / "m.json")
    (d / "manifest.json").symlink_to(tmp_path / "m.json")
    with pytest.raises(IndexStateError, match="is a symlink"):
        VectorIndex.load(d)


def test_unusable_models_are_config_errors(tmp_path: Path) -> None:
    for dim in ("abc", "0", "-3", "1e9"):
        with pytest.raises(ConfigError, match="hashing embedder"):
            make_embedder("hashing", dim)
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("not a model")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{")
    cases = {str(tmp_path / "nope"): "does not exist", str(tmp_path / "afile"): "is a file",
             str(tmp_path / "empty"): "no modules.json", "": "--model is empty",
             str(tmp_path / "broken"): "cannot load embedding model"}
    for model, message in cases.items():
        with pytest.raises(ConfigError, match=re.escape(message)) as err:
            make_embedder("sentence-transformers", model)
        assert "\n" not in str(err.value)


def test_a_corrupt_cache_file_is_moved_aside_and_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "embeddings.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    emb = HashingEmbedder(16)
    with caplog.at_level(logging.WARNING):
        cache = EmbeddingCache(path)
        got = emb.embed(["a b", "c"], cache=cache)
    np.testing.assert_array_equal(got, emb.embed(["a b", "c"]))
    assert len(cache) == 2 and (tmp_path / "embeddings.sqlite.corrupt").read_bytes().startswith(b"this is not")
    assert "moved it to" in caplog.text
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE vec (x INTEGER)")
    db.close()
    assert len(EmbeddingCache(foreign)) == 0 and (tmp_path / "foreign.sqlite.corrupt").exists()


def test_wrong_dimension_or_damaged_cache_entries_are_recomputed(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    emb = HashingEmbedder(16)
    texts = ["space rocket", "cake", "orbit"]
    cache.put_many(emb.name, texts[:2], np.ones((2, 8), np.float32))  # e.g. another model under the same name
    cache.put_many(emb.name, texts[2:], np.full((1, 16), np.inf, np.float32))
    with caplog.at_level(logging.WARNING):
        got = emb.embed(texts, cache=cache)
    np.testing.assert_array_equal(got, emb.embed(texts))
    assert "3 entries" in caplog.text
    assert all(v is not None and v.shape == (16,) for v in cache.get_many(emb.name, texts, dim=16))


def _cli_data(root: Path, titles: dict[str, str]) -> Path:
    root.mkdir(exist_ok=True)
    (root / "items.csv").write_text("id,title\n" + "".join(f"{i},{t}\n" for i, t in titles.items()))
    events = [("u1", "m0"), ("u1", "m1"), ("u2", "m2"), ("u2", "m0")]
    (root / "events.csv").write_text("user,item,timestamp\n" + "".join(
        f"{u},{i},{1_000_000_000 + n * 100}\n" for n, (u, i) in enumerate(events)))
    return root


def test_cli_refuses_a_stale_index_and_rebuild_replaces_it(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = _cli_data(tmp_path / "data", _TITLES)
    ix = tmp_path / "ix"
    base = ["--data", str(data), "--embedder", "hashing", "--backend", "numpy", "--no-cache"]
    rec = ["recommend", *base, "--user", "u1", "-k", "2", "--json", "--index", str(ix)]
    assert main(["index", *base, "--out", str(ix)]) == 0
    assert main(rec) == 0
    _cli_data(data, _TITLES | {"m1": "a retitled movie", "m9": "a new movie"})
    capsys.readouterr()
    assert main(rec) == 4
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "2 ids added" not in err and "1 ids added, 1 texts changed" in err
    assert main([*rec, "--rebuild"]) == 0
    assert "rebuilding" in capsys.readouterr().err
    assert json.loads((ix / "manifest.json").read_text())["count"] == 6
    assert main(rec) == 0  # the rebuilt index matches now
    assert main(["recommend", *base, "--embedder", "hashing", "--model", "64", "--user", "u1", "--index", str(ix)]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "ix"]


def test_cli_rebuild_never_replaces_a_foreign_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _cli_data(tmp_path / "data", _TITLES)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.txt").write_text("precious")
    base = ["--data", str(data), "--embedder", "hashing", "--no-cache"]
    assert main(["recommend", *base, "--user", "u1", "--index", str(victim), "--rebuild"]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (victim / "thesis.txt").read_text() == "precious"
