"""Query latency of the Qdrant backend next to FAISS on the same vectors, through `VectorIndex`.

Run: `OMP_NUM_THREADS=1 python -m eval.bench_qdrant [--items 100000 --dim 384 --queries 1000 -k 10]`
(one thread each, so that other work on the machine slows every backend alike).
Item and query vectors are random unit vectors (seeded). For each backend it reports the build time
(FAISS: add; Qdrant: create the collection and upsert every point), single-query latency (p50/p95 over
`--queries` calls of `search`; the backends take turns query by query), batch throughput (one
`search_batch` over all queries) and recall@k against the first backend (FAISS flat). Qdrant runs in
local embedded mode unless DRIFTREC_QDRANT_URL names a server.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from retrieval.vectors.index import VectorIndex

DEFAULT_BACKENDS = ("flat", "hnsw", "qdrant", "qdrant-hnsw")


def unit_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """(n, dim) float32 random unit vectors."""
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def build(backend: str, ids: list[str], vectors: np.ndarray) -> tuple[VectorIndex, float]:
    """A `VectorIndex` over `vectors` with its backend built, and the build time in seconds."""
    index = VectorIndex("bench", vectors.shape[1], backend)
    index.add(ids, vectors)
    start = time.perf_counter()
    _ = index.backend  # built lazily: this is the build (upload) time
    return index, time.perf_counter() - start


def single_latencies(indexes: dict[str, VectorIndex], queries: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Seconds per `search` call, shape (q,) per backend; the backends take turns query by query, so a
    change in machine load falls on all of them alike."""
    times = {name: np.zeros(len(queries)) for name in indexes}
    for r, q in enumerate(queries):
        for name, index in indexes.items():
            start = time.perf_counter()
            index.search(q, k)
            times[name][r] = time.perf_counter() - start
    return times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=100_000, help="indexed vectors (default 100000)")
    ap.add_argument("--dim", type=int, default=384, help="dimension (default 384, as all-MiniLM-L6-v2)")
    ap.add_argument("--queries", type=int, default=1000, help="queries (default 1000)")
    ap.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    ap.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                    help=f"comma-separated index backends; the first is the recall reference "
                         f"(default {','.join(DEFAULT_BACKENDS)})")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    vectors = unit_vectors(args.items, args.dim, rng)
    queries = unit_vectors(args.queries, args.dim, rng)
    ids = [f"i{r}" for r in range(args.items)]
    where = os.environ.get("DRIFTREC_QDRANT_URL") or "local embedded mode"
    print(f"{args.items:,} × {args.dim} unit vectors, {args.queries:,} queries, k={args.k}; Qdrant: {where}")
    print(f"{'backend':<12} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'batch q/s':>10} {'recall@k':>9}")
    indexes, build_s = {}, {}
    for backend in args.backends.split(","):
        indexes[backend], build_s[backend] = build(backend, ids, vectors)
        indexes[backend].search(queries[0], args.k)  # warm-up
    single = single_latencies(indexes, queries, args.k)
    reference: list[set[str]] | None = None
    for backend, index in indexes.items():
        start = time.perf_counter()
        top = [{i for i, _ in row} for row in index.search_batch(queries, args.k)]
        qps = len(queries) / (time.perf_counter() - start)
        reference = reference or top
        recall = np.mean([len(a & b) / len(b) for a, b in zip(top, reference, strict=True)])
        p50, p95 = 1000 * np.percentile(single[backend], [50, 95])
        print(f"{backend:<12} {build_s[backend]:>8.2f} {p50:>8.2f} {p95:>8.2f} {qps:>10,.0f} {recall:>9.3f}",
              flush=True)

if __name__ == "__main__":
    main()
