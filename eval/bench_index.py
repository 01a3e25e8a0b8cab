"""Time to embed and index a real catalogue, from a cold embedding cache and from a warm one.

Run: `python -m eval.bench_index [--data ml-100k]`. The cold run uses a fresh, empty cache in a
temporary directory (the model itself is loaded before timing starts, so the figure is the encode and
index build); the warm run repeats the build with that now-filled cache, in the same process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from retrieval.data.datasets import load_dataset
from retrieval.vectors.build import build_index
from retrieval.vectors.embed import EmbeddingCache, make_embedder


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="ml-100k", help="dataset name or path (default ml-100k)")
    ap.add_argument("--backend", default="flat", help="index backend (default flat)")
    args = ap.parse_args(argv)

    t = time.perf_counter()
    dataset = load_dataset(args.data)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    embedder = make_embedder()
    embedder.embed_batch(["warm-up"])  # model load is a one-off, timed separately
    t_model = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(Path(tmp) / "embeddings.sqlite")
        t = time.perf_counter()
        cold = build_index(dataset.catalog, embedder, args.backend, cache=cache, progress=False)
        t_cold = time.perf_counter() - t
        t = time.perf_counter()
        warm = build_index(dataset.catalog, embedder, args.backend, cache=cache, progress=False)
        t_warm = time.perf_counter() - t
    same = np.allclose(cold.vectors, warm.vectors, atol=1e-6)
    n = len(dataset.catalog)
    print(f"{dataset!r}: load {t_load:.2f}s, embedder load {t_model:.2f}s ({embedder.name})")
    print(f"cold cache: {t_cold:.2f}s for {n:,} items ({n / t_cold:,.0f} items/s)")
    print(f"warm cache: {t_warm:.2f}s ({t_cold / t_warm:,.0f}x faster); identical vectors: {same}")


if __name__ == "__main__":
    main()
