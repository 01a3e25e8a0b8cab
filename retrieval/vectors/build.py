"""Embed a catalogue and build (or incrementally refresh) its vector index."""

from __future__ import annotations

from pathlib import Path

from retrieval.data.model import Catalog
from retrieval.vectors.embed import Embedder, EmbeddingCache
from retrieval.vectors.index import VectorIndex


def build_index(catalog: Catalog, embedder: Embedder, backend: str = "flat",
                cache: EmbeddingCache | None = None, progress: bool | None = None) -> VectorIndex:
    """Embed every item's text and index it.

    Args:
        catalog: items to index.
        embedder: text embedder; its name is written into the index manifest.
        backend: index backend name (flat, hnsw, ivf, numpy).
        cache: optional embedding cache; unchanged texts are not re-embedded.
        progress: progress bar on/off (default: on for long encodes).
    """
    items = list(catalog)
    vectors = embedder.embed([it.embedding_text() for it in items], cache=cache, progress=progress)
    index = VectorIndex(embedder.name, embedder.dim, backend)
    index.add([it.id for it in items], vectors)
    return index


def default_cache(root: Path | None = None) -> EmbeddingCache:
    """The shared embedding cache under the user's cache dir (or `root`)."""
    from retrieval.data.datasets import cache_dir

    return EmbeddingCache((root or cache_dir()) / "embeddings.sqlite")
