"""Vector index: owns the mapping between external item ids and rows; FAISS or exact numpy backends.

A `VectorIndex` keeps the (n, dim) float32 matrix and the id list; a backend searches it. Backends
implement one method, `search_batch`. The numpy backend is the exact answer key for the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from retrieval import __version__
from retrieval.errors import ConfigError, IndexStateError, MissingDependencyError, UnknownItemError
from retrieval.registry import Registry
from retrieval.vectors.store import verify_files, write_atomically

# name -> factory(vectors) of a search backend. Third parties register under the entry-point group
# "driftrec.index_backends".
BACKENDS: Registry[Callable[[np.ndarray], Backend]] = Registry("index backend", "driftrec.index_backends")
_FILES = ("vectors.npy", "ids.json")


class Backend:
    """Inner-product search over a fixed matrix. Subclasses implement `search_batch`."""

    name = "backend"
    exact = True

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by inner product.

        Args:
            queries: (q, dim) float32.
            k: results per query (≤ number of rows).

        Returns:
            scores (q, k) float32 and rows (q, k) int64, best first; row -1 pads missing results.
        """
        raise NotImplementedError


class NumpyBackend(Backend):
    """Exact brute force in numpy; ties broken by lower row."""

    name = "numpy"

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows, top = top_k(queries @ self.vectors.T, k)
        return top.astype(np.float32), rows.astype(np.int64)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns per row, best first, ties broken by lower column, and their scores.

    Args:
        scores: (n, n_cols) scores.
        k: columns per row (k ≥ n_cols returns every column).

    Returns:
        ((n, min(k, n_cols)) columns, (n, min(k, n_cols)) scores).
    """
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.tile(
        np.arange(scores.shape[1]), (len(scores), 1))
    top = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -top), axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(top, order, axis=1)


def _faiss():  # type: ignore[no-untyped-def]
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError("faiss is missing: pip install faiss-cpu (or 'driftrec[gpu]')") from exc
    return faiss


class FaissBackend(Backend):
    """FAISS flat / HNSW / IVF inner-product index, moved to GPU when faiss sees one."""

    def __init__(self, vectors: np.ndarray, kind: str = "flat", hnsw_m: int = 32, nlist: int | None = None,
                 nprobe: int = 16, prebuilt: Any | None = None) -> None:
        super().__init__(vectors)
        faiss = _faiss()
        self.name, self.exact = kind, kind == "flat"
        dim = vectors.shape[1]
        index: Any  # a faiss index (faiss ships no type information)
        if prebuilt is not None:
            index = prebuilt
        elif kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
        elif kind == "ivf":
            lists = nlist or max(1, min(4096, int(np.sqrt(len(vectors)))))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
        else:
            raise ConfigError(f"unknown FAISS index kind {kind!r}; valid: flat, hnsw, ivf")
        if prebuilt is None and len(vectors):
            index.add(vectors)
        if kind == "ivf":
            index.nprobe = nprobe
        if kind == "hnsw":
            index.hnsw.efSearch = 128
        self.cpu_index = index
        self.index = index
        if kind != "hnsw" and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
            self.index = faiss.index_cpu_to_all_gpus(index)

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, rows.astype(np.int64)


for _kind in ("flat", "hnsw", "ivf"):  # registered before numpy: "flat" is the default, listed first
    BACKENDS.register(_kind, partial(FaissBackend, kind=_kind))
BACKENDS.register("numpy", NumpyBackend)


def make_backend(kind: str, vectors: np.ndarray) -> Backend:
    """Backend by registered name (`BACKENDS`: flat, hnsw, ivf, numpy, or a plugin's from the entry-point
    group "driftrec.index_backends"); unknown names raise ConfigError listing the valid ones."""
    return BACKENDS.get(kind)(vectors)


class VectorIndex:
    """Item vectors with their external ids; the only place ids are translated to rows and back.

    Args:
        embedder: name of the embedder that made the vectors (checked on load).
        dim: vector dimension.
        backend: "flat" (default), "hnsw", "ivf" or "numpy".
    """

    def __init__(self, embedder: str, dim: int, backend: str = "flat") -> None:
        BACKENDS.get(backend)  # unknown name: ConfigError listing the valid ones, before any work
        self.embedder, self.dim, self.backend_name = embedder, dim, backend
        self.ids: list[str] = []
        self._row: dict[str, int] = {}
        self.vectors = np.zeros((0, dim), dtype=np.float32)
        self._backend: Backend | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"<VectorIndex {len(self):,} items, dim {self.dim}, {self.backend_name}, {self.embedder}>"

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row

    def row(self, item_id: str) -> int:
        """Row of an external id."""
        try:
            return self._row[item_id]
        except KeyError:
            raise UnknownItemError(f"item {item_id!r} is not in the index") from None

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows of external ids, shape (n,) int64."""
        try:
            return np.array([self._row[i] for i in item_ids], dtype=np.int64)
        except KeyError as exc:
            raise UnknownItemError(f"item {exc.args[0]!r} is not in the index") from None

    def vector(self, item_id: str) -> np.ndarray:
        """The stored vector of one item, shape (dim,)."""
        return self.vectors[self.row(item_id)]

    def add(self, item_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add new items or replace the vectors of existing ones.

        Args:
            item_ids: n external ids, unique.
            vectors: (n, dim) float32.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(item_ids), self.dim):
            raise ConfigError(f"vectors shape {vectors.shape} does not match {len(item_ids)} ids × dim {self.dim}")
        if len(set(item_ids)) != len(item_ids):
            raise ConfigError("duplicate ids in one add() call")
        mask = np.array([i not in self._row for i in item_ids], dtype=bool)
        for item_id, vec in zip(item_ids, vectors, strict=True):
            if item_id in self._row:
                self.vectors[self._row[item_id]] = vec
        fresh = [i for i in item_ids if i not in self._row]
        if fresh:
            self.vectors = np.vstack([self.vectors, vectors[mask]])
            for item_id in fresh:
                self._row[item_id] = len(self.ids)
                self.ids.append(item_id)
        self._backend = None

    def remove(self, item_ids: Sequence[str]) -> None:
        """Remove items by external id (unknown ids raise UnknownItemError)."""
        drop = set(self.rows(item_ids).tolist())
        keep = [r for r in range(len(self.ids)) if r not in drop]
        self.vectors = self.vectors[keep]
        self.ids = [self.ids[r] for r in keep]
        self._row = {item_id: r for r, item_id in enumerate(self.ids)}
        self._backend = None

    @property
    def backend(self) -> Backend:
        """The search backend, (re)built lazily after changes."""
        if self._backend is None:
            self._backend = make_backend(self.backend_name, self.vectors)
        return self._backend

    def search_rows(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, rows) for (q, dim) queries; k is capped at the index size."""
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ConfigError(f"queries must have shape (q, {self.dim}), got {queries.shape}")
        k = min(k, len(self.ids))
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return self.backend.search_batch(np.ascontiguousarray(queries, dtype=np.float32), k)

    def search_batch(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Top-k (item_id, score) per query for (q, dim) queries."""
        scores, rows = self.search_rows(queries, k)
        return [[(self.ids[r], float(s)) for s, r in zip(srow, rrow, strict=True) if r >= 0]
                for srow, rrow in zip(scores, rows, strict=True)]

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        """Top-k (item_id, score) for one (dim,) query."""
        return self.search_batch(query[None, :], k)[0]

    def save(self, directory: str | Path) -> Path:
        """Write vectors.npy, ids.json and manifest.json atomically (temp dir + rename). No pickle."""
        def write(tmp: Path) -> None:
            np.save(tmp / "vectors.npy", self.vectors, allow_pickle=False)
            (tmp / "ids.json").write_text(json.dumps(self.ids))

        manifest = {"format": "driftrec-index/1", "driftrec_version": __version__, "embedder": self.embedder,
                    "dim": self.dim, "count": len(self.ids), "metric": "inner_product",
                    "backend": self.backend_name}
        return write_atomically(directory, ".tmp-index-", write, manifest, _FILES)

    @classmethod
    def load(cls, directory: str | Path, embedder: str | None = None, backend: str | None = None) -> VectorIndex:
        """Load a saved index, verifying the manifest, checksums and (if given) the embedder name.

        Raises:
            IndexStateError: missing, partial or corrupted directory, or another embedder.
        """
        root = Path(directory)
        mfile = root / "manifest.json"
        if not mfile.is_file():
            raise IndexStateError(f"{root}: not an index directory (no manifest.json); build one with `driftrec index`")
        try:
            manifest = json.loads(mfile.read_text())
            expected = manifest["sha256"]
            dim, count, made_by = int(manifest["dim"]), int(manifest["count"]), str(manifest["embedder"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise IndexStateError(f"{mfile}: corrupted manifest ({exc})") from exc
        verify_files(root, _FILES, expected, "index", "rebuild it with `driftrec index`")
        if embedder is not None and embedder != made_by:
            raise IndexStateError(f"{root}: built with embedder {made_by!r}, but {embedder!r} is in use; "
                                  "rebuild the index or use the same embedder")
        vectors = np.load(root / "vectors.npy", allow_pickle=False)
        ids = json.loads((root / "ids.json").read_text())
        if vectors.shape != (count, dim) or len(ids) != count:
            raise IndexStateError(f"{root}: manifest says {count}×{dim}, files hold {vectors.shape} and {len(ids)} ids")
        index = cls(made_by, dim, backend or manifest.get("backend", "flat"))
        index.ids = list(ids)
        index._row = {item_id: r for r, item_id in enumerate(index.ids)}
        index.vectors = vectors.astype(np.float32, copy=False)
        return index
