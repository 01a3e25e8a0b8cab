"""Does behaviour text help retrieval? Tag-next-movie on the MovieLens 10M tag applications.

Run: `python -m eval.research.behaviour_eval [--data ml10m-tags] [--embedder sentence-transformers] [--out FILE]`.

Protocol. A user's movies are ordered by the first time the user tagged each. The test target is the
movie tagged last; its input is every tag event strictly before that movie's first tag (so none of its
own tags leak in). The validation target is the movie before it, with the events before *its* first
tag. Users need a non-empty input at both stages. Every catalogue item the input has not touched is
ranked (full ranking through the index search, seen items dropped); Recall@k (one target: hit@k) and
NDCG@k per user, 95 % CIs by bootstrap over users and paired CIs of the difference to item-only pooling.

Variants: the interest retriever pooling bare item vectors ("item-only"), and pooling event vectors
= item vector + w · the tag's own embedding (`retrieval.vectors.behaviour`), w chosen on validation.
Popularity over the test inputs is a reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.research import emit_report
from eval.research.evolution_eval import _ci_dict
from retrieval.candidates.base import Candidate
from retrieval.candidates.interest import InterestRetriever
from retrieval.candidates.popularity import PopularityGenerator
from retrieval.data.model import Dataset, Event
from retrieval.vectors.behaviour import BehaviourVectors
from retrieval.vectors.embed import EMBEDDERS

WEIGHTS = (0.25, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class NextItemCase:
    """One user's input events and the item to find."""

    user: str
    inputs: tuple[Event, ...]
    target: str


def next_item_cases(dataset: Dataset) -> tuple[list[NextItemCase], list[NextItemCase]]:
    """(validation, test) cases, same users, in user order: the last and second-to-last new item per user."""
    val, test = [], []
    for user, events in dataset.histories.items():
        first: dict[str, int] = {}
        for pos, ev in enumerate(events):
            first.setdefault(ev.item, pos)
        order = sorted(first, key=lambda i: first[i])  # stable: ties keep file order
        if len(order) < 3:
            continue
        c_val, c_test = (_case(user, events, item, events[first[item]]) for item in order[-2:])
        if c_val.inputs and c_test.inputs:
            val.append(c_val)
            test.append(c_test)
    return val, test


def _case(user: str, events: tuple[Event, ...], item: str, first: Event) -> NextItemCase:
    return NextItemCase(user, tuple(ev for ev in events if ev.timestamp < first.timestamp), item)


def ranks(lists: Sequence[Sequence[Candidate]], targets: Sequence[str]) -> np.ndarray:
    """(users,) 1-based rank of each target in its list, 0 when absent."""
    out = np.zeros(len(targets), dtype=np.int64)
    for u, (cands, t) in enumerate(zip(lists, targets, strict=True)):
        for r, c in enumerate(cands, 1):
            if c.item_id == t:
                out[u] = r
                break
    return out


def hit_ndcg(r: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-user hit@k and NDCG@k from ranks (0 = not found)."""
    found = (r > 0) & (r <= k)
    return {f"recall@{k}": found.astype(np.float64),
            f"ndcg@{k}": np.where(found, 1.0 / np.log2(np.maximum(r, 1) + 1.0), 0.0)}


def evaluate(dataset: Dataset, embedder_name: str = "sentence-transformers", k: int = 20) -> dict[str, object]:
    """Run the protocol in the module docstring; returns a JSON-ready report."""
    from retrieval.vectors.build import build_index, default_cache
    from retrieval.vectors.embed import make_embedder

    embedder, cache = make_embedder(embedder_name), default_cache()
    index = build_index(dataset.catalog, embedder, "flat", cache=cache, progress=False)
    val, test = next_item_cases(dataset)
    behaviour = BehaviourVectors(embedder, cache)
    start = time.perf_counter()
    n_texts = behaviour.prepare([c.inputs for c in val + test])
    embed_s = time.perf_counter() - start
    with_text = sum(ev.text is not None for c in test for ev in c.inputs)
    report: dict[str, object] = {
        "data": dataset.name, "embedder": index.embedder, "k": k, "users": len(test),
        "test_input_events": sum(len(c.inputs) for c in test), "test_input_events_with_text": with_text,
        "distinct_texts": n_texts, "text_embed_seconds": round(embed_s, 1)}
    variants: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for stage, cases in (("validation", val), ("test", test)):
        inputs, targets = [c.inputs for c in cases], [c.target for c in cases]
        pop = PopularityGenerator({c.user: c.inputs for c in cases})
        runs = {"item-only": InterestRetriever(index, popularity=pop)}
        for w in WEIGHTS:
            runs[f"item+text w={w}"] = InterestRetriever(index, popularity=pop, behaviour=behaviour.with_weight(w))
        scores = {name: hit_ndcg(ranks(gen.generate_batch(inputs, k), targets), k) for name, gen in runs.items()}
        scores["popularity"] = hit_ndcg(ranks(pop.generate_batch(inputs, k), targets), k)
        variants[stage] = scores
    metric = f"ndcg@{k}"
    best = max(WEIGHTS, key=lambda w: variants["validation"][f"item+text w={w}"][metric].mean())
    report["validation_ndcg"] = {n: round(float(v[metric].mean()), 4) for n, v in variants["validation"].items()}
    report["chosen_weight"] = best
    test_scores = variants["test"]
    rows: dict[str, object] = {}
    for name, m in test_scores.items():
        rows[name] = {key: _ci_dict(v) for key, v in m.items()}
    chosen = test_scores[f"item+text w={best}"]
    rows["paired: item+text (chosen w) - item-only"] = {
        key: _ci_dict(chosen[key] - test_scores["item-only"][key]) for key in chosen}
    report["test"] = rows
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: print (and optionally write) the JSON report."""
    p = argparse.ArgumentParser(prog="python -m eval.research.behaviour_eval", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="ml10m-tags")
    p.add_argument("--embedder", default="sentence-transformers", choices=EMBEDDERS.names())
    p.add_argument("-k", type=int, default=20)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = p.parse_args(argv)
    from retrieval.data.datasets import load_dataset

    report = {"command": "python -m eval.research.behaviour_eval " + " ".join(argv or sys.argv[1:]),
              **evaluate(load_dataset(args.data), args.embedder, args.k)}
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
