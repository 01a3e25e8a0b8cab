"""Embed a catalogue and build (or incrementally refresh) its vector index."""

from __future__ import annotations

from pathlib import Path

from retrieval.data.model import Catalog
from retrieval.vectors.embed import Embedder, EmbeddingCache
from retrieval.vectors.fingerprint import embedded_texts
from retrieval.vectors.index import VectorIndex


def build_index(catalog: Catalog, embedder: Embedder, backend: str = "flat",
                cache: EmbeddingCache | None = None, progress: bool | None = None) -> VectorIndex:
    """Embed every item's text and index it.

    Args:
        catalog: items to index.
        embedder: text embedder; its name is written into the index manifest, with the catalogue
            fingerprint (ids and the exact embedded texts).
        backend: index backend name (flat, hnsw, ivf, numpy).
        cache: optional embedding cache; unchanged texts are not re-embedded.
        progress: progress bar on/off (default: on for long encodes).
    """
    ids, texts = embedded_texts(catalog)  # the same texts the catalogue fingerprint is computed over
    vectors = embedder.embed(texts, cache=cache, progress=progress)
    index = VectorIndex(embedder.name, embedder.dim, backend)
    index.add(ids, vectors, texts=texts)
    return index


def default_cache(root: Path | None = None) -> EmbeddingCache:
    """The shared embedding cache under the user's cache dir (or `root`)."""
    from retrieval.data.datasets import cache_dir

    return EmbeddingCache((root or cache_dir()) / "embeddings.sqlite")
