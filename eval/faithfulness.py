"""Faithfulness of explanations: remove the items an explanation cites, re-score, see whether the item falls.

    python -m eval.faithfulness --data ml-100k --users 500                       # default hybrid generator
    python -m eval.faithfulness --data ml-100k --users 500 --seq-model DIR       # hybrid + sequential model

For each seeded user (full history, as `driftrec recommend` sees it) the generator's top-k items are
taken (no LLM rerank). For each item, four sets of history items are compared (the last two as large as the evidence):

- "evidence": what the explanation cites, as the agent chooses it by default: the shortest prefix of
  the generator's largest contributions whose removal takes the item out of the top k, else a greedy
  set of its 10 largest, verified by asking the generator again
  (`retrieval.candidates.counterfactual.verified_citations`, up to 5 items); when neither exists, the
  3 largest;
- "attribution": the 3 largest contributions, unverified (`AgentConfig(verify_citations=False)`);
- "similarity": the previous choice, the history items closest to the item by embedding similarity plus
  shared categories (`similarity_evidence`, kept here for the comparison only);
- "random": as many history items drawn at random (seeded).

Each set is removed from the history, the same generator re-scores, and the item's new rank among the
items the user had not seen is recorded (censored at `--depth` + 1 when it leaves the generator's list).
An explanation is faithful when removing its items pushes the item out of the top-k. Rows go to a JSONL
file as they are made (`--resume` continues); the summary (shares and mean rank drops with bootstrap
CIs over users, evidence latency p50/p95) is printed as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agent.evidence import LIKED_RATING, RECENT_EVENTS, item_evidence, join_words
from agent.grounding import display_title
from eval.metrics import bootstrap_ci
from eval.resume import resume_rows
from retrieval.candidates.base import Candidate, CandidateGenerator, History
from retrieval.candidates.counterfactual import rank_among_unseen, verified_citations
from retrieval.data.model import Catalog, Event
from retrieval.vectors.index import VectorIndex

CHOICES: tuple[str, ...] = ("evidence", "attribution", "similarity", "random")


def sample_users(users: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """A seeded sample whose first m users are the sample of size m (so smaller runs nest in larger ones)."""
    order = list(users)
    random.Random(seed).shuffle(order)
    return order[:n]


def similarity_evidence(history: Sequence[Event], item_id: str, catalog: Catalog, index: VectorIndex | None,
                        n: int = 3) -> tuple[str, ...]:
    """The previous explanations' choice: history items closest to the item, chosen after the fact.

    Score = cosine similarity of item vectors + 0.3 × share of the item's categories the history item
    has, over the newest `RECENT_EVENTS` events, liked items (rating ≥ 4 or unrated) preferred when
    there are at least n of them.
    """
    item = catalog[item_id]
    latest = {ev.item: ev for ev in history[-RECENT_EVENTS:] if ev.item != item_id}
    liked = [i for i, ev in latest.items() if ev.rating is None or ev.rating >= LIKED_RATING]
    pool = liked if len(liked) >= n else list(latest)
    sims = np.zeros(len(pool), dtype=np.float32)
    if index is not None and item_id in index and pool:
        present = [p in index for p in pool]
        rows = index.rows([p for p, ok in zip(pool, present, strict=True) if ok])
        sims[np.flatnonzero(present)] = index.vectors[rows] @ index.vector(item_id)
    cats = set(item.categories)
    overlap = np.array([len(cats & set(catalog[i].categories)) / max(1, len(cats)) for i in pool], dtype=np.float32)
    order = np.argsort(-(sims + 0.3 * overlap), kind="stable")
    return tuple(pool[j] for j in order[:n])


def similarity_text(history: Sequence[Event], item_id: str, cited: Sequence[str], catalog: Catalog,
                    verb: str = "watched") -> str:
    """The previous template sentence over `similarity_evidence` (for side-by-side examples)."""
    item = catalog[item_id]
    title = display_title(item.title)
    if not cited:
        return f"{title} is popular with users like you; your history has nothing close to it yet."
    rating = {ev.item: ev.rating for ev in history}
    sharing = [i for i in cited if set(catalog[i].categories) & set(item.categories)]
    shown = (sharing or list(cited))[:2]
    if all(rating.get(i) is not None for i in shown):
        head = "You rated " + join_words([f"{display_title(catalog[i].title)} {rating[i]:g}/5" for i in shown])
    else:
        head = f"You {verb} " + join_words([display_title(catalog[i].title) for i in shown])
    shared = [c for c in item.categories if any(c in catalog[i].categories for i in shown)]
    if shared:
        cats = join_words(shared)
        return f"{head}; {title} is also {'an' if cats[:1].lower() in 'aeiou' else 'a'} {cats} title."
    return f"{head}, and {title} is close to them in content."


def _cited(history: Sequence[Event], cand: Candidate, catalog: Catalog, index: VectorIndex | None, n: int,
           rng: random.Random, verified: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The four cited sets of one item; similarity and random have as many items as the explanation cites."""
    attribution = item_evidence(history, cand.item_id, catalog, evidence=cand.evidence, n=n).supporting
    own = item_evidence(history, cand.item_id, catalog, evidence=cand.evidence, n=n, cited=verified).supporting
    items = sorted({e.item for e in history})
    return {"evidence": own, "attribution": attribution,
            "similarity": similarity_evidence(history, cand.item_id, catalog, index, len(own) or n),
            "random": tuple(rng.sample(items, min(len(own) or n, len(items))))}


def _rank(cands: Sequence[Candidate], item: str, seen: set[str], depth: int) -> int:
    """1-based rank of item among candidates the user had not seen; depth + 1 when absent."""
    rank = rank_among_unseen(cands, item, seen)
    return depth + 1 if rank is None else rank


def run_batch(users: Sequence[str], histories: Sequence[History], generator: CandidateGenerator, catalog: Catalog,
              index: VectorIndex | None, k: int = 5, depth: int = 100, n: int = 3,
              seed: int = 0) -> Iterator[dict[str, Any]]:
    """Faithfulness rows for a batch of users: one per (user, top-k item, choice).

    Args:
        users: user ids (for the rows).
        histories: their events, oldest first.
        generator: the generator under test (re-scores the shortened histories).
        catalog: titles and categories.
        index: item vectors for the similarity choice.
        k: items per user, and the cut-off an item must fall below.
        depth: candidates re-scored per shortened history (ranks beyond are censored at depth + 1).
        n: most items an explanation cites.
        seed: seeds the random choice (per user, so users do not depend on the batch).
    """
    tops = generator.generate_batch(histories, k)
    start = time.perf_counter()
    tops = generator.with_evidence(histories, tops)
    evidence_s = (time.perf_counter() - start) / max(1, len(histories))
    start = time.perf_counter()
    citations = verified_citations(generator, histories, tops, k, fallback=n)
    verify_s = (time.perf_counter() - start) / max(1, len(histories))
    jobs: list[tuple[int, int, str, tuple[str, ...]]] = []
    shortened: list[list[Event]] = []
    for u, (user, history, top) in enumerate(zip(users, histories, tops, strict=True)):
        rng = random.Random(f"{seed}:{user}")
        for rank, (cand, cite) in enumerate(zip(top, citations[u], strict=True), 1):
            verified = cite.items if cite.verified else ()
            for choice, cited in _cited(history, cand, catalog, index, n, rng, verified).items():
                jobs.append((u, rank, choice, cited))
                shortened.append([ev for ev in history if ev.item not in set(cited)])
    again = generator.generate_batch(shortened, depth)
    for (u, rank, choice, cited), cands in zip(jobs, again, strict=True):
        item = tops[u][rank - 1]
        seen = {ev.item for ev in histories[u]}
        new = _rank(cands, item.item_id, seen, depth)
        yield {"user": users[u], "item": item.item_id, "rank": rank, "choice": choice, "cited": list(cited),
               "kinds": sorted({e.kind for e in item.evidence if e.item_id in cited}), "new_rank": new,
               "out": bool(new > k), "drop": new - rank, "evidence_s_per_user": round(evidence_s, 5),
               "verify_s_per_user": round(verify_s, 5)}


def summarize(rows: Sequence[dict[str, Any]], n_boot: int = 1000) -> dict[str, dict[str, float]]:
    """Per choice: share of items pushed out of the top-k and mean rank drop, with 95% CIs over users."""
    out: dict[str, dict[str, float]] = {}
    users = sorted({r["user"] for r in rows})
    for choice in CHOICES:
        part = [r for r in rows if r["choice"] == choice and r["cited"]]
        if not part:
            continue
        by_user: dict[str, list[dict[str, Any]]] = {}
        for r in part:
            by_user.setdefault(r["user"], []).append(r)
        share = np.array([np.mean([r["out"] for r in rs]) for rs in by_user.values()])
        drop = np.array([np.mean([r["drop"] for r in rs]) for rs in by_user.values()])
        lo, hi = bootstrap_ci(share, n_boot)
        dlo, dhi = bootstrap_ci(drop, n_boot)
        out[choice] = {"users": float(len(by_user)), "items": float(len(part)),
                       "pushed_out": float(np.mean([r["out"] for r in part])), "pushed_out_lo": lo,
                       "pushed_out_hi": hi, "rank_drop": float(np.mean([r["drop"] for r in part])),
                       "rank_drop_lo": dlo, "rank_drop_hi": dhi,
                       "cited_per_item": float(np.mean([len(r["cited"]) for r in part]))}
    lat = np.array([r["evidence_s_per_user"] for r in rows if r["choice"] == "evidence"])
    ver = np.array([r.get("verify_s_per_user", 0.0) for r in rows if r["choice"] == "evidence"])
    if len(lat):
        out["latency"] = {"users": float(len(users)),
                          "evidence_ms_per_user_p50": float(np.percentile(lat, 50) * 1000),
                          "evidence_ms_per_user_p95": float(np.percentile(lat, 95) * 1000),
                          "verify_ms_per_user_p50": float(np.percentile(ver, 50) * 1000),
                          "verify_ms_per_user_p95": float(np.percentile(ver, 95) * 1000)}
    return out


def markdown(summary: dict[str, dict[str, float]], title: str) -> str:
    """The summary as a Markdown table, one row per choice."""
    lines = [title, "", "| cited items | users | items | cited per item | pushed out of top-k [95% CI] "
             "| mean rank drop [95% CI] |", "|---|---|---|---|---|---|"]
    for choice in CHOICES:
        if choice not in summary:
            continue
        s = summary[choice]
        lines.append(f"| {choice} | {s['users']:.0f} | {s['items']:.0f} | {s['cited_per_item']:.2f} "
                     f"| {s['pushed_out']:.3f} [{s['pushed_out_lo']:.3f}, {s['pushed_out_hi']:.3f}] "
                     f"| {s['rank_drop']:.1f} [{s['rank_drop_lo']:.1f}, {s['rank_drop_hi']:.1f}] |")
    return "\n".join(lines)


def measure_latency(users: Sequence[str], dataset: Any, generator: CandidateGenerator, k: int,
                    depth: int = 20) -> dict[str, float]:
    """Per recommendation, one user at a time as the agent serves: generation vs the added evidence steps.

    Generation is `generate(history, depth)` (the agent's candidate depth); the added costs are
    `with_evidence` on the top-k and the verification of the citations (`verified_citations`), as
    `RecommenderAgent._package` runs them. Milliseconds, p50/p95.
    """
    times: dict[str, list[float]] = {"generate": [], "evidence": [], "verify": []}
    for user in tqdm(users, desc="latency", unit="user"):
        history = dataset.history(user)
        t0 = time.perf_counter()
        top = generator.generate(history, depth)[:k]
        t1 = time.perf_counter()
        top = generator.with_evidence([history], [top])[0]
        t2 = time.perf_counter()
        verified_citations(generator, [history], [top], k)
        t3 = time.perf_counter()
        for key, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            times[key].append(seconds * 1000)
    out = {"users": float(len(users))}
    for key, values in times.items():
        out[f"{key}_ms_p50"] = float(np.percentile(values, 50))
        out[f"{key}_ms_p95"] = float(np.percentile(values, 95))
    return out


def examples(users: Sequence[str], dataset: Any, generator: CandidateGenerator, index: VectorIndex | None,
             k: int, count: int, verb: str = "watched") -> str:
    """`count` explanations side by side (each user's first item, as the agent shows it, citing its
    verified set): the previous similarity template and the new evidence template."""
    from agent.explain import ExplainConfig, Explainer
    from agent.seen_titles import SeenTitles

    explainer = Explainer(dataset.catalog, config=ExplainConfig(verb=verb))
    seen = SeenTitles(dataset.catalog)
    lines = ["| user | item | previous (similarity, chosen after the fact) | new (the generator's evidence) |",
             "|---|---|---|---|"]
    for user in users[:count]:
        history = dataset.history(user)
        # The agent's first item: other copies of a title the user has rated are dropped.
        first = seen.keep(history, generator.generate(history, seen.depth(history, k)))[:1]
        top = generator.with_evidence([history], [first])[0]
        if not top:
            continue
        cand = top[0]
        [cite] = verified_citations(generator, [history], [top], k)[0]
        old = similarity_text(history, cand.item_id, similarity_evidence(history, cand.item_id, dataset.catalog,
                                                                         index), dataset.catalog, verb)
        [new] = explainer.explain(history, [cand.item_id], evidence={cand.item_id: cand.evidence},
                                  cited={cand.item_id: cite.items} if cite.verified else None)
        title = display_title(dataset.catalog[cand.item_id].title)
        lines.append(f"| {user} | {title} | {old} | {new.text.text} |")
    return "\n".join(lines)


def build(data: str, seq_model: Path | None, embedder: str = "sentence-transformers") -> tuple[Any, Any, Any]:
    """(dataset, index, generator): the default hybrid, with the sequential model fused when given."""
    from retrieval.candidates.popularity import PopularityGenerator
    from retrieval.candidates.registry import make_generator
    from retrieval.data.datasets import load_dataset
    from retrieval.vectors.build import build_index, default_cache
    from retrieval.vectors.embed import make_embedder

    dataset = load_dataset(data)
    index = build_index(dataset.catalog, make_embedder(embedder), cache=default_cache())
    extra: list[CandidateGenerator] = []
    if seq_model is not None:
        from retrieval.sequential.model import SequentialGenerator, SequentialModel

        model = SequentialModel.load(seq_model, item_ids=dataset.catalog.ids)
        extra.append(SequentialGenerator(model, PopularityGenerator(dataset.histories)))
    return dataset, index, make_generator("hybrid", index, dataset.histories, dataset.catalog.ids, extra=extra)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.faithfulness", description=__doc__.split("\n")[0])
    p.add_argument("--data", default="ml-100k")
    p.add_argument("--users", type=_positive, default=500, help="users sampled (seeded; smaller runs nest in larger)")
    p.add_argument("-k", type=_positive, default=5, help="items per user and the top-k an item must leave")
    p.add_argument("--cite", type=_positive, default=3, help="most history items an explanation cites")
    p.add_argument("--depth", type=_positive, default=100, help="candidates re-scored (ranks beyond are censored)")
    p.add_argument("--seq-model", type=Path, default=None, help="a `driftrec train` model fused into the hybrid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=_positive, default=25, help="users re-scored per batch")
    p.add_argument("--embedder", default="sentence-transformers", choices=("sentence-transformers", "hashing"))
    p.add_argument("--latency-users", type=int, default=200, help="users timed one at a time (0 = skip)")
    p.add_argument("--examples", type=int, default=0, help="print this many old/new explanations side by side")
    p.add_argument("--verb", default="watched", help="past-tense verb of the templates (e.g. played)")
    p.add_argument("--out", type=Path, default=Path("faithfulness_rows.jsonl"), help="JSONL rows")
    p.add_argument("--resume", action="store_true", help="skip users already in --out")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    dataset, index, generator = build(args.data, args.seq_model, args.embedder)
    users = sample_users([u for u in dataset.users if dataset.history(u)], args.users, args.seed)
    done = resume_rows(args.out, args.resume)
    finished = {r["user"] for r in done}
    todo = [u for u in users if u not in finished]
    start = time.perf_counter()
    with args.out.open("a", encoding="utf-8") as fh, tqdm(total=len(todo), desc="users", unit="user") as bar:
        for b in range(0, len(todo), args.batch):
            part = todo[b:b + args.batch]
            rows = list(run_batch(part, [dataset.history(u) for u in part], generator, dataset.catalog, index,
                                  args.k, args.depth, args.cite, args.seed))
            for row in rows:
                fh.write(json.dumps(row) + "\n")
            fh.flush()
            done.extend(rows)
            bar.update(len(part))
    rows = [r for r in done if r["user"] in set(users)]
    name = f"{args.data}, hybrid{' + sequential' if args.seq_model else ''}, top-{args.k}"
    print(markdown(summarize(rows), f"Faithfulness on {len({r['user'] for r in rows})} users ({name})"))
    if args.latency_users:
        lat = measure_latency(users[:args.latency_users], dataset, generator, args.k)
        print(f"\nLatency per recommendation, {lat['users']:.0f} users one at a time: generation p50 "
              f"{lat['generate_ms_p50']:.1f} ms / p95 {lat['generate_ms_p95']:.1f} ms; evidence for the top-{args.k} "
              f"adds p50 {lat['evidence_ms_p50']:.1f} ms / p95 {lat['evidence_ms_p95']:.1f} ms, verifying the "
              f"citations p50 {lat['verify_ms_p50']:.1f} ms / p95 {lat['verify_ms_p95']:.1f} ms")
    if args.examples:
        print("\n" + examples(users, dataset, generator, index, args.k, args.examples, args.verb))
    print(f"\nwall time this run: {time.perf_counter() - start:.0f}s; rows in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
