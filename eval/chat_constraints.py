"""Constraint satisfaction of the chat: does every item a reply lists meet the hard constraints in force?

    python -m eval.chat_constraints --embedder sentence-transformers --out chat_constraints.json

Each ml-100k message of the request test sets (tests/data/chat_requests*.jsonl) is sent, in a fresh
session, for a seeded random ml-100k user. For every reply that lists items, each item is checked
against the reply's constraints (categories to include and exclude, release years) and against the
user's history (seen items never return unless the message allowed them). A reply with fewer than k
items must say so ("Only N titles ...", or "No title ..." when none match).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

SETS = ("chat_requests.jsonl", "chat_requests_heldout.jsonl", "chat_requests_heldout2.jsonl")
DATA_DIR = Path(__file__).resolve().parents[1] / "tests" / "data"


def violations(agent: Any, vocab: Any, user: str, reply: Any) -> list[str]:
    """Why items of a reply break its constraints (empty: all items satisfy them)."""
    c = reply.constraints
    seen = {ev.item for ev in agent.history(user)}
    out = []
    for item_id in reply.recommendations.items if reply.recommendations else ():
        cats = set(agent.catalog[item_id].categories)
        if c.include_categories and not cats & set(c.include_categories):
            out.append(f"{item_id}: none of {c.include_categories}")
        if cats & set(c.exclude_categories):
            out.append(f"{item_id}: excluded {sorted(cats & set(c.exclude_categories))}")
        if c.years is not None and vocab.year(item_id) not in c.years:
            out.append(f"{item_id}: year {vocab.year(item_id)} outside {c.years.describe()}")
        if not c.include_seen and item_id in seen:
            out.append(f"{item_id}: already seen")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.chat_constraints", description=__doc__.split("\n")[0])
    p.add_argument("--embedder", default="sentence-transformers", choices=("sentence-transformers", "hashing"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the summary and every violation as JSON")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from agent.agent import AgentConfig, RecommenderAgent
    from agent.chat.session import ChatSession
    from agent.chat.vocabulary import CatalogVocabulary
    from retrieval.candidates.registry import make_generator
    from retrieval.data.datasets import load_dataset
    from retrieval.vectors.build import build_index
    from retrieval.vectors.embed import make_embedder

    ds = load_dataset("ml-100k")
    embedder = make_embedder(args.embedder)
    index = build_index(ds.catalog, embedder, "flat", progress=False)
    agent = RecommenderAgent(ds, make_generator("hybrid", index, ds.histories, ds.catalog.ids), index,
                             config=AgentConfig(parsing="rules"), embedder=embedder)
    vocab = CatalogVocabulary(ds.catalog)
    rows = [json.loads(line) for name in SETS for line in (DATA_DIR / name).read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if r["dataset"] == "ml-100k"]
    rng = random.Random(args.seed)
    users = sorted(ds.histories)
    listed = items = short = short_said = empty = empty_said = 0
    bad: list[dict[str, Any]] = []
    unsaid: list[dict[str, Any]] = []
    for row in tqdm(rows, desc="messages", unit="msg"):
        user = rng.choice(users)
        reply = agent.chat(user, row["message"], ChatSession(user=user))
        if reply.intent not in ("recommend", "refine", "more_like", "different"):
            continue
        rec = reply.recommendations
        if rec is None:
            if reply.diagnostics.matching == 0:
                empty += 1
                empty_said += "No title" in reply.text or "already seen or been shown every title" in reply.text
            continue
        listed += 1
        items += len(rec.items)
        k = reply.request.k or agent.config.chat_k  # what the agent was asked for, as it parsed it
        if len(rec.items) < min(k, 20):
            short += 1
            short_said += "Only " in reply.text
            if "Only " not in reply.text:
                unsaid.append({"message": row["message"], "user": user, "items": len(rec.items), "k": k,
                               "matching": reply.diagnostics.matching})
        if why := violations(agent, vocab, user, reply):
            bad.append({"message": row["message"], "user": user, "violations": why})
    summary = {"messages": len(rows), "replies_with_items": listed, "items": items,
               "items_violating": sum(len(b["violations"]) for b in bad),
               "satisfied_share": 1 - sum(len(b["violations"]) for b in bad) / max(items, 1),
               "short_lists": short, "short_lists_said": short_said, "no_match": empty, "no_match_said": empty_said,
               "embedder": args.embedder, "seed": args.seed}
    print(json.dumps(summary, indent=1))
    if args.out is not None:
        report = {"summary": summary, "violations": bad, "short_lists_not_said": unsaid}
        args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
