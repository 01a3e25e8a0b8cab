"""Wall time of chat turns on the embedded default: the agent `driftrec chat` builds, three turns per user.

    python -m eval.chat_latency --users 4 --seed 0

Each seeded ml-100k user gets one conversation of the same three messages (a recommendation with
constraints, a refinement, a "why"); every turn is timed, and p50 / p95 over all turns are printed with
the share of turns whose parse used the LLM and the rerank calls made.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence

import numpy as np

MESSAGES = ("recommend me a thriller from the 90s", "no more action please", "why the second one?")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.chat_latency", description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parsing", default="rules", choices=("rules", "auto", "rules+llm"))
    args = p.parse_args(argv)

    from agent.agent import AgentConfig, RecommenderAgent
    from agent.chat.session import ChatSession
    from agent.llm.backends import make_client
    from agent.llm.settings import LLMSettings
    from agent.rerank import LLMReranker
    from retrieval.candidates.registry import make_generator
    from retrieval.data.datasets import cache_dir, load_dataset
    from retrieval.vectors.build import build_index, default_cache
    from retrieval.vectors.embed import make_embedder

    # The agent `driftrec chat` builds by default (driftrec/cli/options.py: build_agent).
    dataset = load_dataset("ml-100k")
    embedder = make_embedder("sentence-transformers")
    index = build_index(dataset.catalog, embedder, "flat", cache=default_cache())
    client = make_client(LLMSettings(backend="embedded", max_tokens=120, cache_dir=cache_dir() / "llm"))
    agent = RecommenderAgent(dataset, make_generator("hybrid", index, dataset.histories, dataset.catalog.ids), index,
                             client=client, reranker=LLMReranker(client, dataset.catalog),
                             config=AgentConfig(parsing=args.parsing), embedder=embedder)
    users = random.Random(args.seed).sample(sorted(dataset.histories), args.users)
    times, llm_parsed, reranks = [], 0, 0
    for user in users:
        session = ChatSession(user=user)
        for message in MESSAGES:
            start = time.perf_counter()
            reply = agent.chat(user, message, session)
            times.append(time.perf_counter() - start)
            llm_parsed += reply.diagnostics.llm_parse_used
            reranks += reply.diagnostics.rerank is not None
    summary = {"turns": len(times), "p50_s": float(np.percentile(times, 50)),
               "p95_s": float(np.percentile(times, 95)), "llm_parse_used_share": llm_parsed / len(times),
               "turns_reranked": reranks, "parsing": args.parsing, "users": users}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
