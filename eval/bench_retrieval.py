"""Retrieval benchmark: a 100k-item index, driftrec's interest retrieval next to raw FAISS in one run.

Run: `python -m eval.bench_retrieval [--items 100000 --users 2000 --backend hnsw]`.
Item vectors are synthetic clustered unit vectors (embedding 100k texts would take ~5 min on 2 cores
and measure the embedder, not retrieval); histories are 50 events per user over 200 days.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from retrieval.candidates.interest import InterestRetriever
from retrieval.data.model import Event
from retrieval.vectors.index import VectorIndex


def clustered_vectors(n: int, dim: int, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """(n, dim) unit vectors around `n_clusters` random centres."""
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    v = centres[rng.integers(0, n_clusters, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def synthetic_histories(n_users: int, n_items: int, length: int,
                        rng: np.random.Generator) -> dict[str, tuple[Event, ...]]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    out = {}
    for u in range(n_users):
        items = rng.integers(0, n_items, length)
        days = np.sort(rng.uniform(0, 200, length))
        out[f"u{u}"] = tuple(Event.model_construct(user=f"u{u}", item=f"i{i}",
                                                   timestamp=start + timedelta(days=float(d)), action="view",
                                                   rating=None, text=None, synthetic_time=False)
                             for i, d in zip(items, days, strict=True))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--history", type=int, default=50)
    ap.add_argument("--backend", default="hnsw", choices=("flat", "hnsw", "ivf"))
    ap.add_argument("--single", type=int, default=300, help="users timed one at a time for p50/p95")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)

    t = time.perf_counter()
    index = VectorIndex("synthetic", args.dim, args.backend)
    index.add([f"i{r}" for r in range(args.items)], clustered_vectors(args.items, args.dim, 200, rng))
    _ = index.backend  # build now, not inside the timed search
    print(f"index: {index} built in {time.perf_counter() - t:.1f}s")
    histories = synthetic_histories(args.users, args.items, args.history, rng)
    users = list(histories)
    seqs = [histories[u] for u in users]
    retriever = InterestRetriever(index)
    retriever.generate_batch(seqs[:10], args.k)  # warm-up

    # driftrec, batched (history arrays are built inside the timed region)
    t = time.perf_counter()
    results = retriever.generate_batch(seqs, args.k)
    ours_batch = time.perf_counter() - t
    assert all(len(r) == args.k for r in results)
    # raw FAISS on the same queries and the same depth (k + seen items)
    queries, _ = retriever.queries(seqs)
    depth = args.k + args.history
    t = time.perf_counter()
    index.backend.search_batch(queries, depth)
    raw_batch = time.perf_counter() - t

    lat_ours, lat_raw = [], []
    for seq, q in zip(seqs[: args.single], queries[: args.single], strict=True):
        t = time.perf_counter()
        retriever.generate(seq, args.k)
        lat_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        index.backend.search_batch(q[None, :], depth)
        lat_raw.append(time.perf_counter() - t)
    p = lambda xs, q: 1000 * float(np.percentile(xs, q))  # noqa: E731
    print(f"batched: driftrec {len(users) / ours_batch:,.0f} users/s ({ours_batch:.3f}s) | raw FAISS "
          f"{len(users) / raw_batch:,.0f} queries/s ({raw_batch:.3f}s) | ratio {ours_batch / raw_batch:.2f}x")
    print(f"per user: driftrec p50 {p(lat_ours, 50):.2f} ms p95 {p(lat_ours, 95):.2f} ms | raw FAISS "
          f"p50 {p(lat_raw, 50):.2f} ms p95 {p(lat_raw, 95):.2f} ms | "
          f"p50 ratio {np.median(lat_ours) / np.median(lat_raw):.2f}x")


if __name__ == "__main__":
    main()
