"""The Qdrant backend (local embedded mode; no server here): FAISS-flat parity, settings, errors, the CLI.

The shared index contract suite in tests/test_index.py also runs over "qdrant".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from driftrec.cli.main import main
from retrieval.errors import ConfigError, MissingDependencyError
from retrieval.vectors.index import BACKENDS, FaissBackend, VectorIndex

pytest.importorskip("qdrant_client", reason="qdrant-client not installed (pip install 'driftrec[qdrant]')")

from retrieval.vectors.qdrant import (  # noqa: E402  (after the skip: the module needs qdrant-client to run)
    QdrantBackend,
    QdrantSettings,
    collection_name,
    search_params,
)


@pytest.fixture(autouse=True)
def _local_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIFTREC_QDRANT_URL", raising=False)
    monkeypatch.delenv("DRIFTREC_QDRANT_API_KEY", raising=False)


def _vectors(n: int, dim: int = 48, seed: int = 0, normalise: bool = True) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True) if normalise else v * 3


@pytest.mark.parametrize("normalise", [True, False], ids=["normalised", "raw"])
def test_same_rows_and_scores_as_faiss_flat(normalise: bool) -> None:
    vectors, queries = _vectors(500, normalise=normalise), _vectors(40, seed=1, normalise=normalise)
    q_scores, q_rows = QdrantBackend(vectors).search_batch(queries, 10)
    f_scores, f_rows = FaissBackend(vectors, "flat").search_batch(queries, 10)
    assert q_rows.dtype == np.int64 and q_scores.dtype == np.float32 and q_rows.shape == (40, 10)
    np.testing.assert_array_equal(q_rows, f_rows)  # inner product (DOT), not cosine: raw vectors agree too
    np.testing.assert_allclose(q_scores, f_scores, rtol=1e-5, atol=1e-5)


def test_k_beyond_the_collection_pads_with_minus_one() -> None:
    scores, rows = QdrantBackend(_vectors(4)).search_batch(_vectors(2, seed=3), 6)
    assert sorted(rows[0, :4].tolist()) == [0, 1, 2, 3] and rows[:, 4:].tolist() == [[-1, -1], [-1, -1]]
    assert np.isneginf(scores[:, 4:]).all() and (np.diff(scores[:, :4], axis=1) <= 0).all()


def test_more_queries_than_one_request_holds() -> None:
    vectors = _vectors(50)
    _, rows = QdrantBackend(vectors).search_batch(vectors[np.arange(300) % 50], 1)  # two requests of ≤256
    assert rows[:, 0].tolist() == (np.arange(300) % 50).tolist()


def test_registered_lazily_and_hnsw_variant() -> None:
    assert ("qdrant", "qdrant-hnsw") == BACKENDS.names()[4:6]
    code = "import sys, retrieval.vectors.index; print('qdrant_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # importing the index module never imports qdrant-client
    idx = VectorIndex("e", 48, "qdrant-hnsw")
    idx.add([f"i{r}" for r in range(100)], _vectors(100))
    assert idx.backend.name == "qdrant-hnsw" and idx.backend.exact  # local mode always scans everything
    assert idx.search(idx.vector("i42"), 1)[0][0] == "i42"


def test_settings_from_environment_and_search_params() -> None:
    assert QdrantSettings.from_env({}) == QdrantSettings()
    assert QdrantSettings.from_env({"DRIFTREC_QDRANT_URL": ""}).url is None
    server = QdrantSettings.from_env({"DRIFTREC_QDRANT_URL": "http://q:6333", "DRIFTREC_QDRANT_API_KEY": "k"},
                                     search="hnsw")
    assert (server.url, server.api_key, server.search) == ("http://q:6333", "k", "hnsw")
    assert search_params(QdrantSettings()) is None
    exact = search_params(QdrantSettings(url="http://q:6333"))
    assert exact.exact is True
    approx = search_params(server)
    assert approx.exact is False and approx.hnsw_ef == 128
    with pytest.raises(ConfigError, match="valid: exact, hnsw"):
        QdrantSettings(search="ivf")  # type: ignore[arg-type]


def test_unreachable_server_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTREC_QDRANT_URL", "http://127.0.0.1:1")  # nothing listens on port 1
    idx = VectorIndex("e", 48, "qdrant")
    idx.add(["a", "b"], _vectors(2))
    with pytest.raises(ConfigError, match=r"Qdrant at http://127.0.0.1:1 failed: .*DRIFTREC_QDRANT_URL") as err:
        idx.search(idx.vector("a"), 1)
    assert "\n" not in str(err.value)


def test_missing_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "qdrant_client", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'driftrec\[qdrant\]'"):
        QdrantBackend(_vectors(3))


def test_collection_is_content_addressed_and_a_partial_upload_is_redone() -> None:
    vectors = _vectors(120)
    backend = QdrantBackend(vectors)
    assert backend.collection == collection_name(vectors.copy()) != collection_name(vectors[:-1])
    backend.client.delete(backend.collection, points_selector=[0, 1, 2])  # as if an upload had stopped
    backend._call(backend._ensure_collection)
    assert backend.client.count(backend.collection, exact=True).count == 120
    assert backend.search_batch(vectors[:1], 1)[1][0, 0] == 0
    backend.drop()
    assert not backend.client.collection_exists(backend.collection)


def test_cli_index_saves_and_recommend_loads_a_qdrant_index(tmp_path: Path, ml100k_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data", str(ml100k_path), "--embedder", "hashing", "--no-cache"]
    items = {}
    for backend in ("qdrant", "flat"):
        ix = tmp_path / backend
        assert main(["index", *base, "--backend", backend, "--out", str(ix)]) == 0
        assert json.loads((ix / "manifest.json").read_text())["backend"] == backend
        capsys.readouterr()
        assert main(["recommend", *base, "--index", str(ix), "--retriever", "interest", "--user", "196",
                     "-k", "10", "--json"]) == 0  # interest: ranked by one index query per user
        items[backend] = json.loads(capsys.readouterr().out)["items"]
    assert VectorIndex.load(tmp_path / "qdrant").backend.name == "qdrant"  # the collection is rebuilt on load
    assert len(items["qdrant"]) == 10 and items["qdrant"] == items["flat"]


def test_appended_rows_are_upserted_without_a_rebuild() -> None:
    vectors = _vectors(60)
    idx = VectorIndex("e", 48, "qdrant")
    idx.add([f"i{r}" for r in range(50)], vectors[:50])
    built = idx.backend
    idx.add([f"i{r}" for r in range(50, 60)], vectors[50:])
    assert idx.backend is built and built.client.count(built.collection, exact=True).count == 60
    assert [i for i, _ in idx.search_batch(vectors[50:], 1)[0]] == ["i50"]
    idx.add(["i3"], -vectors[3:4])  # a replaced vector rebuilds the collection
    assert idx.backend is not built and idx.search(-vectors[3], 1)[0][0] == "i3"
