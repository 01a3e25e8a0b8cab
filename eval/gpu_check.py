"""Check what driftrec uses a GPU for, on a machine that has one: torch CUDA, the embedder, FAISS on GPU.

Run: `python -m eval.gpu_check [--n 100000] [--dim 384]`; it takes well under a few minutes. It prints
one line per check and what is missing, and exits 0 when every check passed, 1 when one failed or a
piece is missing (no CUDA torch, no faiss-gpu, or two FAISS wheels over each other).

With `--llm-url`, also the LLM rerank throughput through a vLLM server with 1 vs 8 concurrent requests
(`check_llm_throughput`).

Checks: torch sees CUDA and a matrix product agrees with the CPU; the sentence-transformers embedder on
"cuda" agrees with the CPU one; FAISS flat and IVF indexes land on the GPUs (`IndexShards` over them when
there are several, see `faiss_support.to_gpus`), flat agrees with exact numpy search, an index saved with
index.faiss loads back onto the GPUs with the same results, and new rows are appended there.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.errors import DriftrecError
from retrieval.vectors.faiss_support import faiss_available, faiss_module, installed_wheels
from retrieval.vectors.index import FaissBackend, NumpyBackend, VectorIndex


class Report:
    """Check lines as they run; `failed` counts the failures and missing pieces."""

    def __init__(self) -> None:
        self.failed = 0

    def line(self, ok: bool | None, text: str) -> None:
        """Print one result: ok True (passed), False (failed) or None (information)."""
        self.failed += ok is False
        print(f"{ {True: 'ok     ', False: 'FAILED ', None: 'info   '}[ok]} {text}", flush=True)


def check_torch(report: Report) -> bool:
    """torch sees CUDA and a (2048, 2048) product on the GPU matches the CPU one."""
    import torch

    report.line(None, f"torch {torch.__version__}, CUDA build {torch.version.cuda}")
    if not torch.cuda.is_available():
        report.line(False, "torch sees no CUDA device (a CPU-only torch wheel, or no driver)")
        return False
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    report.line(None, f"{len(names)} CUDA device(s): {', '.join(names)}")
    a = torch.randn(2048, 2048)
    gap = float((a.cuda() @ a.cuda()).cpu().sub(a @ a).abs().max())
    report.line(gap < 1e-1, f"torch matmul on cuda vs cpu: max difference {gap:.2e}")
    return True


def check_embedder(report: Report) -> None:
    """The default embedder on "cuda" gives the CPU's vectors (cosine ≥ 0.999) for 2,000 texts."""
    from retrieval.vectors.embed import SentenceTransformerEmbedder

    texts = [f"item {i}: a film about {['space', 'love', 'war', 'crime'][i % 4]} in {1950 + i % 70}"
             for i in range(2000)]
    try:
        gpu, cpu = SentenceTransformerEmbedder(device="cuda"), SentenceTransformerEmbedder(device="cpu")
    except DriftrecError as exc:
        report.line(False, f"embedder: {exc}")
        return
    t = time.perf_counter()
    on_gpu = gpu.embed_batch(texts)
    seconds = time.perf_counter() - t
    cosine = float((on_gpu * cpu.embed_batch(texts)).sum(axis=1).min())
    report.line(cosine >= 0.999, f"embedder on cuda: {len(texts):,} texts in {seconds:.2f}s, min cosine to cpu "
                                 f"{cosine:.5f}")


def check_faiss(report: Report, n: int, dim: int) -> None:
    """FAISS flat and IVF on the GPUs: placement, agreement with numpy, save/load, append."""
    wheels = installed_wheels()
    report.line(len(wheels) == 1, f"FAISS wheels installed: {', '.join(wheels) or 'none'} (exactly one expected)")
    if not faiss_available():
        report.line(False, "faiss does not import: pip install 'driftrec[gpu]'")
        return
    faiss = faiss_module()
    ngpu = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    report.line(ngpu > 0, f"faiss {faiss.__version__} sees {ngpu} GPU(s)"
                          + ("" if ngpu else ": a CPU wheel; pip uninstall faiss-cpu, pip install 'driftrec[gpu]'"))
    if ngpu == 0:
        return
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.choice(n, 1000, replace=False)] + 0.1 * rng.standard_normal((1000, dim)).astype(np.float32)
    exact = NumpyBackend(vectors).search_batch(queries, 10)[1]
    for kind in ("flat", "ivf"):
        index = VectorIndex("synthetic", dim, kind)
        index.add([f"i{r}" for r in range(n)], vectors)
        backend = index.backend
        where = _placement(backend)
        report.line(_on_gpu(where, ngpu), f"{kind}: index is {where}")
        t = time.perf_counter()
        rows = index.search_rows(queries, 10)[1]
        seconds = time.perf_counter() - t
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact, strict=True)]))
        report.line(recall >= (0.99 if kind == "flat" else 0.5),
                    f"{kind}: 1,000 queries in {seconds * 1e3:.1f} ms, recall@10 vs exact numpy {recall:.3f}")
        with tempfile.TemporaryDirectory() as tmp:
            back = VectorIndex.load(index.save(Path(tmp) / kind))
            same = np.array_equal(back.search_rows(queries, 10)[1], rows)
            report.line(same and _on_gpu(_placement(back.backend), ngpu),
                        f"{kind}: saved with index.faiss, loaded onto {_placement(back.backend)}, same results: {same}")
        fresh = queries[:10] / np.linalg.norm(queries[:10], axis=1, keepdims=True)
        index.add([f"new{r}" for r in range(10)], fresh)
        found = [row[0][0] for row in index.search_batch(fresh, 1)]
        report.line(found == [f"new{r}" for r in range(10)] and index.backend is backend,
                    f"{kind}: 10 rows appended on the GPUs without a rebuild, each its own nearest")


def _placement(backend: Any) -> str:
    return type(backend.index).__name__ if isinstance(backend, FaissBackend) else type(backend).__name__


def _on_gpu(where: str, ngpu: int) -> bool:
    return where == "IndexShards" if ngpu > 1 else where.startswith("GpuIndex")


def check_llm_throughput(report: Report, url: str, model: str | None, users: int, min_ratio: float) -> None:
    """Reranks/s through a vLLM server with 1 vs 8 concurrent requests, both rerank methods.

    The same measurement as `python -m eval.bench_throughput --url URL` (direct path). On a GPU the
    server batches concurrent requests, so 8 in flight must give at least `min_ratio` times the
    reranks/s of one; every rerank must come back without falling back to retrieval order.
    """
    from agent.llm import LLMSettings
    from eval.bench_throughput import direct_run, workload

    settings = LLMSettings(backend="vllm", base_url=url, model=model, timeout_s=120.0)
    catalog, pool = workload(4 * users + 2, seed=0)
    direct_run(settings, "logprobs", 1, pool[-2:], catalog)  # connect and warm up outside the timings
    for m_i, method in enumerate(("logprobs", "pointwise")):
        rows = [direct_run(settings, method, level, pool[(2 * m_i + c_i) * users:(2 * m_i + c_i + 1) * users],
                           catalog) for c_i, level in enumerate((1, 8))]
        for row in rows:
            report.line(row.fallbacks == 0, f"{method}: {row.concurrency} concurrent: {row.reranks_per_s:.2f} "
                                            f"reranks/s, p50 {row.latency_p50_s:.2f} s, {row.fallbacks} fallbacks")
        ratio = rows[1].reranks_per_s / rows[0].reranks_per_s
        report.line(ratio >= min_ratio, f"{method}: 8 vs 1 concurrent = {ratio:.2f}x (want ≥ {min_ratio:g}x)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000, help="synthetic vectors for the FAISS checks (default 100000)")
    ap.add_argument("--dim", type=int, default=384, help="their dimension (default 384)")
    ap.add_argument("--skip-embedder", action="store_true", help="skip the sentence-transformers check")
    ap.add_argument("--skip-faiss", action="store_true", help="skip the FAISS checks")
    ap.add_argument("--llm-url", default=None,
                    help="also check rerank throughput against this vLLM server (e.g. http://127.0.0.1:8000/v1)")
    ap.add_argument("--llm-model", default=None, help="the served model name for --llm-url")
    ap.add_argument("--llm-users", type=int, default=32, help="reranks per throughput run (default 32)")
    ap.add_argument("--llm-min-ratio", type=float, default=2.0,
                    help="required reranks/s gain of 8 concurrent requests over 1 (default 2)")
    args = ap.parse_args(argv)
    report = Report()
    if check_torch(report) and not args.skip_embedder:
        check_embedder(report)
    if not args.skip_faiss:
        check_faiss(report, args.n, args.dim)
    if args.llm_url:
        check_llm_throughput(report, args.llm_url, args.llm_model, args.llm_users, args.llm_min_ratio)
    print("all checks passed" if not report.failed else f"{report.failed} check(s) failed or missing")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
