"""Vector index: owns the mapping between external item ids and rows; FAISS or exact numpy backends.

A `VectorIndex` keeps the (n, dim) float32 matrix and the id list; a backend searches it. Backends
implement one method, `search_batch`. The numpy backend is the exact answer key for the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from retrieval import __version__
from retrieval.errors import ConfigError, IndexStateError, UnknownItemError
from retrieval.log import get_logger
from retrieval.registry import Registry
from retrieval.vectors.faiss_support import faiss_available, faiss_module, to_gpus
from retrieval.vectors.fingerprint import TEXT_FUNCTION, catalog_sha256, describe_change, embedded_texts, text_sha256
from retrieval.vectors.index_files import (
    FAISS_FILE,
    FAISS_HEADERS,
    FILES,
    FORMAT,
    IndexManifest,
    parse_manifest,
    payload_files,
    read_faiss,
    read_strings,
    read_vectors,
    rebuild_hint,
)
from retrieval.vectors.store import read_verified, write_atomically

if TYPE_CHECKING:
    from retrieval.data.model import Catalog

# name -> factory(vectors) of a search backend. Third parties register under the entry-point group
# "driftrec.index_backends".
BACKENDS: Registry[Callable[[np.ndarray], Backend]] = Registry("index backend", "driftrec.index_backends")
log = get_logger(__name__)


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

    def append(self, vectors: np.ndarray, matrix: np.ndarray) -> bool:
        """Take new rows at the end without a rebuild, if this backend can; by default it cannot.

        Args:
            vectors: (m, dim) float32 rows just appended.
            matrix: (n + m, dim) float32, the whole matrix now (its last m rows are `vectors`).

        Returns:
            True when the rows were added; False asks the caller to rebuild the backend instead.
        """
        return False


class NumpyBackend(Backend):
    """Exact brute force in numpy; ties broken by lower row."""

    name = "numpy"

    def append(self, vectors: np.ndarray, matrix: np.ndarray) -> bool:
        self.vectors = matrix
        return True

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


class FaissBackend(Backend):
    """FAISS flat / HNSW / IVF inner-product index, split across the GPUs when faiss sees any (not HNSW).

    Rows appended later go into the built index (`append`): FAISS numbers them on from `ntotal`, which
    is the row order of `VectorIndex`. An IVF index keeps the centroids it was trained on.

    Args:
        vectors: (n, dim) float32 rows.
        kind: "flat", "hnsw" or "ivf".
        hnsw_m: HNSW graph degree.
        nlist: IVF lists (default √n, at most 4096).
        nprobe: IVF lists searched per query.
        prebuilt: a CPU faiss index already holding `vectors` (read from index.faiss), used as is.
    """

    def __init__(self, vectors: np.ndarray, kind: str = "flat", hnsw_m: int = 32, nlist: int | None = None,
                 nprobe: int = 16, prebuilt: Any | None = None) -> None:
        super().__init__(vectors)
        faiss = faiss_module()
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
        self.cpu_index = index  # kept on the CPU: appended to, and what `write` saves
        self.index = index if kind == "hnsw" else to_gpus(faiss, index)  # faiss has no GPU HNSW

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, rows.astype(np.int64)

    def append(self, vectors: np.ndarray, matrix: np.ndarray) -> bool:
        self.vectors = matrix
        if len(vectors):
            self.cpu_index.add(vectors)
            if self.index is not self.cpu_index:  # a sharded GPU index takes one add() only: clone again
                self.index = to_gpus(faiss_module(), self.cpu_index)
        return True

    def write(self, path: Path) -> None:
        """Save the CPU index with `faiss.write_index` (read back by `index_files.read_faiss`)."""
        faiss_module().write_index(self.cpu_index, str(path))


def _flat(vectors: np.ndarray) -> Backend:
    """FAISS flat search, or the same exact search in numpy when faiss is not installed."""
    if faiss_available():
        return FaissBackend(vectors, kind="flat")
    log.warning("faiss is not installed: the flat backend searches with numpy (exact, slower on large "
                "indexes); pip install 'driftrec[cpu]' for FAISS")
    return NumpyBackend(vectors)


# registered before numpy: "flat" is the default, listed first
BACKENDS.register("flat", _flat)
for _kind in ("hnsw", "ivf"):
    BACKENDS.register(_kind, partial(FaissBackend, kind=_kind))
BACKENDS.register("numpy", NumpyBackend)


def _qdrant_backend(vectors: np.ndarray, search: str = "exact") -> Backend:
    """Qdrant collection (retrieval.vectors.qdrant); imported here only when chosen, so qdrant-client stays optional."""
    from retrieval.vectors import qdrant

    return qdrant.build(vectors, "hnsw" if search == "hnsw" else "exact")


BACKENDS.register("qdrant", _qdrant_backend)
BACKENDS.register("qdrant-hnsw", partial(_qdrant_backend, search="hnsw"))


def make_backend(kind: str, vectors: np.ndarray) -> Backend:
    """Backend by registered name (`BACKENDS`: flat, hnsw, ivf, numpy, or a plugin's from the entry-point
    group "driftrec.index_backends"); unknown names raise ConfigError listing the valid ones."""
    return BACKENDS.get(kind)(vectors)


class VectorIndex:
    """Item vectors with their external ids; the only place ids are translated to rows and back.

    Items added with their embedded texts (as `build_index` does) also record the sha256 of each text,
    so a saved index knows which catalogue it embedded and `load(..., catalog=...)` refuses another.

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
        self._text_sha: dict[str, str] = {}
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

    def add(self, item_ids: Sequence[str], vectors: np.ndarray, texts: Sequence[str] | None = None) -> None:
        """Add new items or replace the vectors of existing ones.

        Args:
            item_ids: n external ids, unique.
            vectors: (n, dim) float32.
            texts: the n texts the vectors embed, recorded (as sha256) for the catalogue fingerprint;
                None leaves these items without one, and a saved index then records no catalogue.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(item_ids), self.dim):
            raise ConfigError(f"vectors shape {vectors.shape} does not match {len(item_ids)} ids × dim {self.dim}")
        if len(set(item_ids)) != len(item_ids):
            raise ConfigError("duplicate ids in one add() call")
        if texts is not None and len(texts) != len(item_ids):
            raise ConfigError(f"{len(texts)} texts for {len(item_ids)} ids")
        for n, item_id in enumerate(item_ids):
            if texts is None:
                self._text_sha.pop(item_id, None)
            else:
                self._text_sha[item_id] = text_sha256(texts[n])
        mask = np.array([i not in self._row for i in item_ids], dtype=bool)
        replaced = not mask.all()
        for item_id, vec in zip(item_ids, vectors, strict=True):
            if item_id in self._row:
                self.vectors[self._row[item_id]] = vec
        fresh = [i for i in item_ids if i not in self._row]
        if fresh:
            self.vectors = np.vstack([self.vectors, vectors[mask]])
            for item_id in fresh:
                self._row[item_id] = len(self.ids)
                self.ids.append(item_id)
        # New rows only: a built backend takes them as they are (FAISS add); a replaced vector rebuilds it.
        if replaced or self._backend is None or not self._backend.append(vectors, self.vectors):
            self._backend = None

    def remove(self, item_ids: Sequence[str]) -> None:
        """Remove items by external id (unknown ids raise UnknownItemError)."""
        drop = set(self.rows(item_ids).tolist())
        keep = [r for r in range(len(self.ids)) if r not in drop]
        self.vectors = self.vectors[keep]
        self.ids = [self.ids[r] for r in keep]
        self._row = {item_id: r for r, item_id in enumerate(self.ids)}
        for item_id in item_ids:
            self._text_sha.pop(item_id, None)
        self._backend = None  # rows after the removed ones move up: the backend is rebuilt on next use

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

    def catalog_fingerprint(self) -> str | None:
        """sha256 over the ids and embedded texts in row order; None when some item was added without text."""
        if len(self._text_sha) != len(self.ids):
            return None
        return catalog_sha256(self.ids, [self._text_sha[i] for i in self.ids])

    def save(self, directory: str | Path) -> Path:
        """Write vectors.npy, ids.json, texts.json and manifest.json atomically (temp dir + swap). No pickle.

        An HNSW or IVF backend is also saved, as index.faiss (`faiss.write_index`), so `load` reads it
        instead of rebuilding it; it is built here first if no search has built it yet. Flat is not
        (see `_persistable`).
        The manifest records the embedder, the shape, each file's sha256, the catalogue fingerprint
        (`catalog`: sha256 over ids and embedded texts, and the item count; null when unknown) and the
        saved FAISS index (`faiss`: its kind and faiss version; null when none was saved).
        """
        persisted = self._persistable()

        def write(tmp: Path) -> None:
            np.save(tmp / "vectors.npy", self.vectors, allow_pickle=False)
            (tmp / "ids.json").write_text(json.dumps(self.ids))
            (tmp / "texts.json").write_text(json.dumps([self._text_sha.get(i) for i in self.ids]))
            if persisted is not None:
                persisted.write(tmp / FAISS_FILE)

        fingerprint = self.catalog_fingerprint()
        catalog = None if fingerprint is None else {"sha256": fingerprint, "count": len(self.ids),
                                                    "text": TEXT_FUNCTION}
        manifest = {"format": FORMAT, "driftrec_version": __version__, "embedder": self.embedder,
                    "dim": self.dim, "count": len(self.ids), "metric": "inner_product",
                    "backend": self.backend_name, "catalog": catalog,
                    "faiss": None if persisted is None else {"kind": self.backend_name, "file": FAISS_FILE,
                                                             "faiss_version": faiss_module().__version__}}
        files = FILES if persisted is None else (*FILES, FAISS_FILE)
        return write_atomically(directory, ".tmp-index-", write, manifest, files)

    def _persistable(self) -> FaissBackend | None:
        """The FAISS backend to save beside the vectors (built now if needed); None for other backends.

        Flat is not saved: building it is a copy of vectors.npy into FAISS, as fast as reading a saved
        copy (measured: 0.54 s against 0.53 s at 100,000 × 384), and the file would double the directory.
        """
        if self.backend_name not in FAISS_HEADERS or self.backend_name == "flat" or not self.ids \
                or not faiss_available():
            return None
        backend = self.backend
        return backend if isinstance(backend, FaissBackend) else None

    @classmethod
    def load(cls, directory: str | Path, embedder: str | None = None, backend: str | None = None,
             catalog: Catalog | None = None) -> VectorIndex:
        """Load a saved index, verifying the manifest, checksums and, if given, the embedder and catalogue.

        Safe while another process re-saves the same directory: a read that a swap interrupts starts
        over (a bounded number of times), so it returns either the old or the new version, whole.
        A saved FAISS index (index.faiss) of the backend in use is read, checked against the vectors and
        used as is; a directory without one (numpy, or saved by an older driftrec) rebuilds it on first use.

        Args:
            directory: a directory written by `save`.
            embedder: name of the embedder in use; another one in the manifest is refused.
            backend: search backend to use (default: the one in the manifest).
            catalog: the catalogue in use; an index that embedded other ids or texts is refused.

        Raises:
            IndexStateError: missing, partial, corrupted or older-format directory, symlinked or
                non-regular files, another embedder, another catalogue (the message says what changed), or
                an index.faiss of another index type, count, dimension or vectors.
        """
        root = Path(directory)
        fix = rebuild_hint(root)

        def parse(raw: dict[str, Any]) -> IndexManifest:
            manifest = parse_manifest(root, raw)
            if embedder is not None and embedder != manifest.embedder:
                raise IndexStateError(f"{root}: built with embedder {manifest.embedder!r}, but {embedder!r} is "
                                      f"in use; {fix}")
            return manifest

        def read(manifest: IndexManifest, files: Mapping[str, IO[bytes]]) -> VectorIndex:
            return cls._from_files(root, manifest, files, backend)

        index = read_verified(root, payload_files, parse, read, "index", fix)
        if catalog is not None:
            index.check_catalog(catalog, root)
        return index

    @classmethod
    def _from_files(cls, root: Path, manifest: IndexManifest, files: Mapping[str, IO[bytes]],
                    backend: str | None) -> VectorIndex:
        fix, n = rebuild_hint(root), manifest.count
        vectors = read_vectors(files["vectors.npy"], root / "vectors.npy", n, manifest.dim, fix)
        ids = read_strings(files["ids.json"], root / "ids.json", n, fix)
        hashes = read_strings(files["texts.json"], root / "texts.json", n, fix, nullable=True)
        if len(set(ids)) != n or not all(ids):
            raise IndexStateError(f"{root / 'ids.json'}: empty or duplicate ids; {fix}")
        stamp = manifest.catalog
        if stamp is not None and (stamp.count != n or None in hashes or catalog_sha256(ids, hashes) != stamp.sha256):
            raise IndexStateError(f"{root}: the catalogue fingerprint does not match ids.json and texts.json; {fix}")
        index = cls(manifest.embedder, manifest.dim, backend or manifest.backend)
        index.ids = ids
        index._row = {item_id: r for r, item_id in enumerate(ids)}
        index._text_sha = {} if stamp is None else dict(zip(ids, hashes, strict=True))
        index.vectors = vectors
        saved = manifest.faiss
        if saved is not None and saved.kind == index.backend_name in FAISS_HEADERS and faiss_available():
            prebuilt = read_faiss(files[saved.file], root / saved.file, saved.kind, vectors, fix)
            index._backend = FaissBackend(vectors, saved.kind, prebuilt=prebuilt)
        return index

    def check_catalog(self, catalog: Catalog, where: str | Path = "index") -> None:
        """Refuse (IndexStateError) unless this index embedded exactly `catalog`'s ids and texts, in order.

        Args:
            catalog: the catalogue in use.
            where: the index directory, for the message.
        """
        fix = rebuild_hint(Path(where))
        saved = self.catalog_fingerprint()
        if saved is None:
            raise IndexStateError(f"index {where} records no catalogue fingerprint (built from bare vectors); {fix}")
        ids, texts = embedded_texts(catalog)
        hashes = [text_sha256(t) for t in texts]
        if catalog_sha256(ids, hashes) != saved:
            change = describe_change(self.ids, [self._text_sha[i] for i in self.ids], ids, hashes)
            raise IndexStateError(f"index {where} was built from another catalogue: {change}; {fix}")
