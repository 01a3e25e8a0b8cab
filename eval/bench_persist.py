"""Load time of a saved index with its FAISS index on disk (index.faiss) against rebuilding it on load.

Run: `python -m eval.bench_persist [--n 100000] [--dim 384] [--kinds flat,hnsw,ivf]`. For each kind the
synthetic index (n random unit vectors) is saved once. "rebuild" loads a copy of that directory without
index.faiss (as a directory saved before index.faiss existed) and "read" loads the directory as saved;
flat writes no index.faiss, so both of its loads are the rebuild. Both times run until the first search
has answered, from a warm page cache (the files were just written). "add, append" adds `--add` new
items to the loaded index and answers one search; "add, rebuild" does the same but builds the backend
again over all rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from retrieval.vectors.index import VectorIndex
from retrieval.vectors.index_files import FAISS_FILE
from retrieval.vectors.store import sha256_file


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """(n, dim) float32 rows of unit length, standard normal directions."""
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def without_faiss_file(src: Path, dst: Path) -> Path:
    """A copy of the saved index `src` as a driftrec without saved FAISS indexes wrote it."""
    shutil.copytree(src, dst)
    (dst / FAISS_FILE).unlink()
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest.pop("faiss")
    manifest["sha256"] = {f: sha256_file(dst / f) for f in manifest["sha256"] if f != FAISS_FILE}
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return dst


def timed_load(directory: Path, query: np.ndarray) -> tuple[float, VectorIndex]:
    """Seconds to load `directory` and answer one search, and the index."""
    t = time.perf_counter()
    index = VectorIndex.load(directory)
    index.search(query, 10)
    return time.perf_counter() - t, index


def timed_add(index: VectorIndex, extra: np.ndarray, query: np.ndarray, rebuild: bool) -> float:
    """Seconds to add `extra` as new items and answer one search; `rebuild` drops the built backend
    after the add, as every add() did before rows were appended to the FAISS index."""
    t = time.perf_counter()
    index.add([f"new{r}" for r in range(len(extra))], extra)
    if rebuild:
        index._backend = None
    index.search(query, 10)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000, help="items (default 100000)")
    ap.add_argument("--dim", type=int, default=384, help="dimension (default 384, as all-MiniLM-L6-v2)")
    ap.add_argument("--kinds", default="flat,hnsw,ivf", help="FAISS kinds, comma-separated")
    ap.add_argument("--add", type=int, default=1000, help="items added to the built index (default 1000)")
    ap.add_argument("--queries", type=int, default=100, help="queries compared after loading (default 100)")
    args = ap.parse_args(argv)

    vectors = unit_vectors(args.n, args.dim, seed=0)
    queries = unit_vectors(args.queries, args.dim, seed=1)
    extra = unit_vectors(args.add, args.dim, seed=2)
    ids = [f"i{r}" for r in range(args.n)]
    print(f"{args.n:,} unit vectors, dim {args.dim}; load = read the directory and answer one search")
    print("| kind | build + save (s) | index.faiss (MB) | load, rebuild (s) | load, read (s) | speed-up | "
          "same top-10 | add, append (s) | add, rebuild (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            index = VectorIndex("synthetic", args.dim, kind)
            index.add(ids, vectors)
            t = time.perf_counter()
            saved = index.save(Path(tmp) / kind)
            t_save = time.perf_counter() - t
            has_file = (saved / FAISS_FILE).exists()  # flat saves none: its load is the rebuild
            size = (saved / FAISS_FILE).stat().st_size / 1e6 if has_file else 0.0
            old = without_faiss_file(saved, Path(tmp) / f"{kind}-old") if has_file else saved
            t_rebuild, _ = timed_load(old, queries[0])
            if has_file:
                shutil.rmtree(old)
            t_read, loaded = timed_load(saved, queries[0])
            same = [[i for i, _ in r] for r in loaded.search_batch(queries, 10)] == \
                   [[i for i, _ in r] for r in index.search_batch(queries, 10)]
            t_append = timed_add(loaded, extra, queries[0], rebuild=False)
            t_full = timed_add(VectorIndex.load(saved), extra, queries[0], rebuild=True)
            print(f"| {kind} | {t_save:.2f} | {size:.0f} | {t_rebuild:.2f} | {t_read:.2f} | "
                  f"{t_rebuild / t_read:.1f}x | {same} | {t_append:.2f} | {t_full:.2f} |", flush=True)
            del index, loaded
            shutil.rmtree(saved)


if __name__ == "__main__":
    main()
