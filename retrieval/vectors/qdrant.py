"""Qdrant backend: the inner-product search of FAISS flat, served from a Qdrant collection.

Registered in `retrieval.vectors.index.BACKENDS` as "qdrant" (exact search) and "qdrant-hnsw" (Qdrant's
HNSW graph, approximate); qdrant-client is imported only when one of them is built.

Where the collection lives:
    - local embedded mode (default): qdrant-client's in-process store. It always searches by brute force,
      so both names give exact answers there; for tests and catalogues up to some 100k items.
    - a Qdrant server, when `QdrantSettings.url` is set (from the environment: DRIFTREC_QDRANT_URL, with
      DRIFTREC_QDRANT_API_KEY when the server needs a key).

Scores are raw inner products (`Distance.DOT`), the metric of every driftrec index, so rows and scores
match FAISS flat whether or not the vectors are normalised. Point ids are the index's row numbers; the
`VectorIndex` keeps the mapping to external ids, as for every backend.

A collection is named after a sha256 of its vectors (`driftrec-<dim>-<count>-<16 hex>`), so loading a saved index
against a server that already holds the same vectors reuses that collection instead of uploading again.
After `add`/`remove` the index holds other vectors and gets a new collection; `QdrantBackend.drop()`
deletes one that is no longer wanted.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from retrieval.errors import ConfigError, MissingDependencyError
from retrieval.vectors.index import Backend

SearchMode = Literal["exact", "hnsw"]

URL_VAR = "DRIFTREC_QDRANT_URL"
API_KEY_VAR = "DRIFTREC_QDRANT_API_KEY"

# Queries per request to a server: keeps each request body small (a few MB at dim 1024).
_QUERY_CHUNK = 256
_UPLOAD_CHUNK = 1024


@dataclass(frozen=True)
class QdrantSettings:
    """Where the collection lives and how it is searched.

    Attributes:
        url: a Qdrant server ("http://host:6333"); None for local embedded mode.
        api_key: the server's API key, if it requires one.
        search: "exact" (full scan: the same answers as FAISS flat) or "hnsw" (the server's HNSW graph).
        hnsw_ef: HNSW search beam width ("hnsw" only; larger is slower and more accurate).
        timeout_s: per-request timeout for a server.
    """

    url: str | None = None
    api_key: str | None = None
    search: SearchMode = "exact"
    hnsw_ef: int = 128
    timeout_s: int = 60

    def __post_init__(self) -> None:
        if self.search not in ("exact", "hnsw"):
            raise ConfigError(f"unknown Qdrant search mode {self.search!r}; valid: exact, hnsw")
        if self.hnsw_ef < 1 or self.timeout_s < 1:
            raise ConfigError("Qdrant hnsw_ef and timeout_s must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, search: SearchMode = "exact") -> QdrantSettings:
        """Settings from DRIFTREC_QDRANT_URL and DRIFTREC_QDRANT_API_KEY (unset or empty: local mode).

        Args:
            environ: the environment to read (default `os.environ`, read when called).
            search: the search mode.
        """
        env = os.environ if environ is None else environ
        return cls(url=env.get(URL_VAR) or None, api_key=env.get(API_KEY_VAR) or None, search=search)

    @property
    def where(self) -> str:
        """The server URL or "local mode", for messages."""
        return self.url or "local mode"


def _qdrant() -> tuple[Any, Any, type[Exception]]:
    """qdrant_client's (QdrantClient, models, ApiException), or MissingDependencyError naming the fix."""
    try:
        from qdrant_client import QdrantClient, models
        from qdrant_client.http.exceptions import ApiException
    except ImportError as exc:
        raise MissingDependencyError("qdrant-client is missing: pip install 'driftrec[qdrant]'") from exc
    return QdrantClient, models, ApiException


def collection_name(vectors: np.ndarray) -> str:
    """The content-addressed collection name of an (n, dim) float32 matrix."""
    digest = hashlib.sha256(np.ascontiguousarray(vectors, dtype=np.float32).tobytes()).hexdigest()
    return f"driftrec-{vectors.shape[1]}-{len(vectors)}-{digest[:16]}"


def search_params(settings: QdrantSettings) -> Any:
    """The `SearchParams` sent with each query: None in local mode (it always scans, and warns about them),
    `exact=True` for "exact", the HNSW beam width for "hnsw"."""
    if settings.url is None:
        return None
    _, models, _ = _qdrant()
    if settings.search == "exact":
        return models.SearchParams(exact=True)
    return models.SearchParams(exact=False, hnsw_ef=settings.hnsw_ef)


class QdrantBackend(Backend):
    """Inner-product search over the rows of `vectors`, stored as the points of one Qdrant collection.

    Args:
        vectors: (n, dim) float32; point id r is row r.
        settings: server and search mode (default: local embedded mode, exact search).

    Raises:
        MissingDependencyError: qdrant-client is not installed.
        ConfigError: the server cannot be reached or refuses a request.
    """

    def __init__(self, vectors: np.ndarray, settings: QdrantSettings | None = None) -> None:
        super().__init__(vectors)
        client_cls, self._models, self._api_error = _qdrant()
        self.settings = settings or QdrantSettings()
        self.local = self.settings.url is None
        self.name = "qdrant" if self.settings.search == "exact" else "qdrant-hnsw"
        self.exact = self.local or self.settings.search == "exact"  # local mode always scans everything
        self.collection = collection_name(vectors)
        if self.local:
            self.client = client_cls(location=":memory:")
        else:
            self.client = client_cls(url=self.settings.url, api_key=self.settings.api_key,
                                     timeout=self.settings.timeout_s, check_compatibility=False)
        self._call(self._ensure_collection)

    def __repr__(self) -> str:
        return f"<QdrantBackend {len(self.vectors):,} vectors, {self.settings.search}, {self.settings.where}>"

    def _call(self, fn: Any, *args: Any) -> Any:
        """Run a client call, turning the client's errors into one ConfigError line."""
        try:
            return fn(*args)
        except self._api_error as exc:
            reason = " ".join(str(exc).split())[:200]
            raise ConfigError(f"Qdrant at {self.settings.where} failed: {reason}; start the server or check "
                              f"{URL_VAR} (unset it for local mode)") from None

    def _ensure_collection(self) -> None:
        name, models = self.collection, self._models
        if self.client.collection_exists(name):
            # the name fixes the content; an interrupted upload leaves fewer points, so it is redone
            if self.client.count(name, exact=True).count == len(self.vectors):
                return
            self.client.delete_collection(name)
        self.client.create_collection(name, vectors_config=models.VectorParams(
            size=self.vectors.shape[1], distance=models.Distance.DOT))
        self._upsert(0, self.vectors)

    def _upsert(self, first: int, rows: np.ndarray) -> None:
        """Store (m, dim) `rows` as points first … first + m - 1, in requests of `_UPLOAD_CHUNK`."""
        for start in range(0, len(rows), _UPLOAD_CHUNK):
            chunk = np.asarray(rows[start:start + _UPLOAD_CHUNK], dtype=np.float32)
            ids = list(range(first + start, first + start + len(chunk)))
            self.client.upsert(self.collection, wait=True, points=self._models.Batch(ids=ids, vectors=chunk.tolist()))

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by inner product; see `Backend.search_batch` (shapes (q, k), row -1 pads)."""
        models, params = self._models, search_params(self.settings)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        for start in range(0, len(queries), _QUERY_CHUNK):
            chunk = queries[start:start + _QUERY_CHUNK]
            requests = [models.QueryRequest(query=q.tolist(), limit=k, params=params, with_payload=False)
                        for q in chunk]
            replies = self._call(self.client.query_batch_points, self.collection, requests)
            for offset, reply in enumerate(replies):
                hits = reply.points[:k]
                scores[start + offset, :len(hits)] = [p.score for p in hits]
                rows[start + offset, :len(hits)] = [int(p.id) for p in hits]
        return scores, rows

    def append(self, vectors: np.ndarray, matrix: np.ndarray) -> bool:
        """Upsert rows appended to the index (local mode only; see `Backend.append`).

        A server collection is named after its vectors and may be shared by every index holding them, so
        it is never changed: False makes the caller build a new collection for the new vectors.
        """
        if not self.local:
            return False
        self._call(self._upsert, len(self.vectors), vectors)
        self.vectors = matrix
        return True

    def drop(self) -> None:
        """Delete this backend's collection (on a server: when no saved index uses these vectors any more)."""
        self._call(self.client.delete_collection, self.collection)


def build(vectors: np.ndarray, search: SearchMode = "exact") -> QdrantBackend:
    """The registry's factory: a backend over `vectors` with settings from the environment.

    Args:
        vectors: (n, dim) float32.
        search: "exact" or "hnsw".
    """
    return QdrantBackend(vectors, QdrantSettings.from_env(search=search))
