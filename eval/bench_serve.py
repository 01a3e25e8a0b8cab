"""Load test of a running `driftrec serve`: N concurrent clients POST /recommend for a fixed time.

Each request asks for the next user of the dataset (a shared counter over all users), so consecutive
requests never repeat a user until every user was asked once: per-user caches do not flatter the
figure (start the server with `--no-cache` as well, so the LLM response cache is off).

Prints one JSON object: clients, seconds, requests, requests/s, p50/p95/p99 latency (s), errors
(non-200 answers and transport failures), LLM rerank fallbacks, and the 1-minute load average
before and after (timings on a shared machine are comparable only at similar load).

    driftrec serve --data ml-100k --llm none --no-cache --port 8765 &
    python -m eval.bench_serve --url http://127.0.0.1:8765 --data ml-100k --clients 8 --seconds 120
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import threading
import time
from collections.abc import Sequence

import httpx
import numpy as np

from retrieval.data.datasets import load_dataset


def run_load(url: str, users: Sequence[str], clients: int, seconds: float, k: int,
             explain: bool) -> dict[str, object]:
    """Drive `clients` threads against `url`/recommend for `seconds`; the figures as a dict.

    Args:
        url: server root, e.g. "http://127.0.0.1:8765".
        users: user ids, asked in turn.
        clients: concurrent clients (one thread and one keep-alive connection each).
        seconds: how long to send new requests (requests in flight at the end are awaited and counted).
        k: items per request.
        explain: ask for explanations.
    """
    turn = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    fallbacks = 0
    stop_at = time.monotonic() + seconds

    def client() -> None:
        nonlocal fallbacks
        with httpx.Client(base_url=url, timeout=300) as http:
            while time.monotonic() < stop_at:
                with lock:
                    user = users[next(turn) % len(users)]
                started = time.perf_counter()
                try:
                    resp = http.post("/recommend", json={"user_id": user, "k": k, "explain": explain})
                    ok = resp.status_code == 200
                    why = "" if ok else f"{resp.status_code} {resp.text[:200]}"
                    fell_back = ok and bool(resp.json()["diagnostics"]["rerank_fallback"])
                except httpx.HTTPError as exc:
                    ok, why, fell_back = False, f"{type(exc).__name__}: {exc}", False
                elapsed = time.perf_counter() - started
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors.append(why)
                    fallbacks += fell_back

    load_before = os.getloadavg()[0]
    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"clients": clients, "seconds": round(wall, 1), "requests": len(latencies) + len(errors),
            "requests_per_s": round((len(latencies) + len(errors)) / wall, 2),
            "p50_s": round(float(np.percentile(lat, 50)), 3), "p95_s": round(float(np.percentile(lat, 95)), 3),
            "p99_s": round(float(np.percentile(lat, 99)), 3), "errors": len(errors), "first_errors": errors[:3],
            "rerank_fallbacks": fallbacks, "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:8765")
    p.add_argument("--data", default="ml-100k", help="the dataset the server serves (its users are asked in turn)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--explain", action="store_true")
    args = p.parse_args(argv)
    users = load_dataset(args.data).users
    print(json.dumps(run_load(args.url.rstrip("/"), users, args.clients, args.seconds, args.k, args.explain)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
