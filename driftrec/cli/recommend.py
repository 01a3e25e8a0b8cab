"""`driftrec recommend`: recommend items for one user (retrieval only, or LLM-reranked and explained)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agent.limits import MAX_EXPLAINED, MAX_K, check_count, check_explained, check_user_id
from driftrec.cli.export import top_k_lists
from driftrec.cli.options import (
    build_agent,
    dataset_options,
    llm_options,
    load_data,
    make_retriever,
    open_index,
    saved_index_options,
)
from retrieval.errors import DataError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `recommend` subcommand."""
    p = sub.add_parser("recommend", help="recommend items for one user")
    dataset_options(p)
    p.add_argument("--user", required=True, help="user id as in the data")
    p.add_argument("-k", type=int, default=10,
                   help=f"number of items, 1 to {MAX_K:,} (default 10; at most {MAX_EXPLAINED} with --explain)")
    saved_index_options(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--explain", action="store_true",
                   help="rerank with the LLM, explain each item and describe the interest shift")
    llm_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of `driftrec recommend` (and of `driftrec demo`, whose --user may be absent)."""
    check_count(args.k, "-k")
    if args.explain:
        check_explained(args.k, "-k")
    if args.user is not None:
        check_user_id(args.user)
    dataset = load_data(args)
    user = args.user if args.user is not None else first_user(dataset)
    dataset.history(user)  # an unknown user fails here, before the index is built
    index = open_index(args, dataset)
    if args.explain:
        return _explained(args, dataset, index, user)
    generator = make_retriever(args, dataset, index)
    # The agent's list (and `driftrec export`'s): seen items and other copies of seen titles left out.
    candidates = next(top_k_lists(dataset, generator, [user], args.k))[1]
    if args.json:
        print(json.dumps({"user": user, "items": [
            {"item_id": c.item_id, "title": dataset.catalog[c.item_id].title, "score": round(c.score, 6),
             "source": c.source} for c in candidates]}, indent=2))
        return 0
    print_history(dataset, user)
    print(f"top {len(candidates)} recommendations ({index}):")
    for rank, c in enumerate(candidates, 1):
        item = dataset.catalog[c.item_id]
        print(f"  {rank:2d}. {item.title}  [{', '.join(item.categories)}]  score={c.score:.3f} via {c.source}")
    return 0


def first_user(dataset: Any) -> str:
    """The dataset's first user (`driftrec demo` without --user); DataError when it has no events."""
    if not dataset.users:
        raise DataError(f"{dataset.name} has no events, so there is no user to recommend for")
    return str(dataset.users[0])


def _explained(args: argparse.Namespace, dataset: Any, index: Any, user: str) -> int:
    rec = build_agent(args, dataset, index).recommend(user, args.k, explain=True)
    if args.json:
        print(json.dumps(rec.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return 0
    print_history(dataset, user)
    print_recommendation(rec, repr(index))
    return 0


def print_history(dataset: Any, user: str) -> None:
    """The dataset, the user's event count and five most recent events."""
    history = dataset.history(user)
    print(f"{dataset!r}\nuser {user}: {len(history)} events; most recent:")
    for ev in history[-5:]:
        item = dataset.catalog[ev.item]
        print(f"  {ev.timestamp:%Y-%m-%d}  {item.title}  [{', '.join(item.categories)}]")


def print_recommendation(rec: Any, index_name: str = "") -> None:
    """The ranked list with explanations, then the interest-shift text, as plain text."""
    from agent.grounding import display_title

    diag = rec.diagnostics
    note = " (LLM reranker fell back to retrieval order)" if diag.rerank_fallback else ""
    print(f"top {len(rec.items)} recommendations (rerank: {diag.rerank_method}{note}"
          f"{'; ' + index_name if index_name else ''}):")
    for rank, (item_id, title, score) in enumerate(zip(rec.items, rec.titles, rec.scores, strict=True), 1):
        print(f"  {rank:2d}. {display_title(title)}  score={score:.3f}")
        exp = rec.explanation(item_id)
        if exp is not None:
            print(f"      why: {exp.text.text}  [{exp.text.source}]")
    if rec.interest_shift is not None:
        print(f"how your interests moved [{rec.interest_shift.source}]:\n  {rec.interest_shift.text}")
