"""Evidence from the scorers: each generator's attribution adds up to (or is measured on) its own score."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

import numpy as np
import pytest

from agent.agent import AgentConfig, RecommenderAgent
from agent.evidence import cited_items, item_evidence
from agent.explain import Explainer
from retrieval.candidates.attention import InterestConfig
from retrieval.candidates.base import Candidate, CandidateGenerator, Evidence, History
from retrieval.candidates.counterfactual import (
    GREEDY_POOL,
    MOST_CITED,
    Citation,
    rank_among_unseen,
    verified_citations,
)
from retrieval.candidates.fusion import FusionGenerator
from retrieval.candidates.interest import InterestRetriever
from retrieval.candidates.knn import ItemKNN, KNNGenerator
from retrieval.candidates.popularity import PopularityGenerator
from retrieval.candidates.registry import make_generator
from retrieval.data.model import Catalog, Event, Item
from retrieval.sequential.config import SeqConfig
from retrieval.sequential.model import SequentialGenerator, SequentialModel
from retrieval.vectors.build import build_index
from retrieval.vectors.embed import HashingEmbedder
from retrieval.vectors.index import VectorIndex
from tests.conftest import planted_shift_dataset

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _events(user: str, items: list[str]) -> list[Event]:
    return [Event(user=user, item=i, timestamp=T0 + timedelta(days=n)) for n, i in enumerate(items)]


def test_evidence_is_typed_and_candidates_default_to_none() -> None:
    c = Candidate("a", 1.0, "x")
    assert c.evidence == ()
    e = Evidence("h", 0.5, "itemknn", "co_occurrence")
    with pytest.raises(AttributeError):
        e.weight = 2.0  # type: ignore[misc]


def test_knn_evidence_terms_add_up_to_the_score() -> None:
    ds = planted_shift_dataset(n_users=12)
    knn = ItemKNN(ds.histories, ds.catalog.ids, neighbours=None, half_life=3.0)
    gen = KNNGenerator(knn)
    history = ds.history("u0")[:6]  # few items: every term is kept (≤ EVIDENCE_PER_ITEM)
    [top] = gen.generate_batch([history], 5)
    [evs] = gen.evidence_batch([history], [[c.item_id for c in top]])
    for cand, ev in zip(top, evs, strict=True):
        assert ev and all(e.kind == "co_occurrence" and e.source == "itemknn" and e.weight > 0 for e in ev)
        assert sum(e.weight for e in ev) == pytest.approx(cand.score, rel=1e-5)
        assert [e.weight for e in ev] == sorted((e.weight for e in ev), reverse=True)
        assert {e.item_id for e in ev} <= {x.item for x in history}
    # The newest event weighs most (half-life 3 events): it leads the evidence of an item it co-occurs with.
    assert evs[0][0].weight >= evs[0][-1].weight


def _positive_index(n_items: int = 12, dim: int = 8) -> tuple[Catalog, VectorIndex]:
    rng = np.random.default_rng(0)
    vecs = np.abs(rng.normal(size=(n_items, dim))).astype(np.float32)  # all inner products positive
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    catalog = Catalog([Item(id=f"i{n}", title=f"title number {n}", categories=("c",)) for n in range(n_items)])
    index = VectorIndex("test", dim, "numpy")
    index.add(catalog.ids, vecs)
    return catalog, index


def test_interest_evidence_splits_the_score_by_short_and_long_vector() -> None:
    _, index = _positive_index()
    gen = InterestRetriever(index, InterestConfig(short_weight=0.6))
    history = _events("u", ["i0", "i1", "i2", "i3"])
    [top] = gen.generate_batch([history], 4)
    [evs] = gen.evidence_batch([history], [[c.item_id for c in top]])
    for cand, ev in zip(top, evs, strict=True):
        assert {e.source for e in ev} == {"interest.short", "interest.long"} and {e.kind for e in ev} == {"content"}
        assert sum(e.weight for e in ev) == pytest.approx(cand.score, rel=1e-4)  # exact decomposition
    short = sum(e.weight for e in evs[0] if e.source == "interest.short")
    assert short == pytest.approx(0.6 * sum(e.weight for e in evs[0]), rel=0.3)  # roughly the short weight


def test_sequential_masking_drops_match_removing_each_event() -> None:
    ds = planted_shift_dataset(n_users=3)
    model = SequentialModel(ds.catalog.ids, SeqConfig(hidden=16, use_text=False, max_len=8))
    history = list(ds.history("u0"))[:10]
    items = ["cooking-5", "space-9"]
    [(window, drops)] = model.masking_drops([history], [items])
    assert window.tolist() == list(range(2, 10))  # only the newest max_len events can matter
    full = model.score([history])[0][model.rows(items)]
    for row, pos in enumerate(window.tolist()):
        without = model.score([history[:pos] + history[pos + 1:]])[0][model.rows(items)]
        np.testing.assert_allclose(drops[row], full - without, rtol=1e-4, atol=1e-5)
    gen = SequentialGenerator(model)
    [evs] = gen.evidence_batch([history], [items])
    for j, ev in enumerate(evs):
        positive = {history[p].item for p, d in zip(window.tolist(), drops[:, j].tolist(), strict=True) if d > 0}
        assert {e.item_id for e in ev} <= positive and len(ev) == min(10, len(positive))
        assert all(e.kind == "sequence" and e.weight > 0 for e in ev)


class _Fixed(CandidateGenerator):
    """A generator with a fixed list and fixed evidence (the fusion's answer key)."""

    def __init__(self, name: str, items: list[str], evidence: dict[str, tuple[Evidence, ...]]) -> None:
        self.name, self.items, self.evidence = name, items, evidence

    def generate_batch(self, histories, k):  # type: ignore[no-untyped-def]
        return [[Candidate(i, 1.0 / (r + 1), self.name) for r, i in enumerate(self.items[:k])] for _ in histories]

    def evidence_batch(self, histories, item_ids):  # type: ignore[no-untyped-def]
        return [[self.evidence.get(i, ()) for i in ids] for ids in item_ids]


def test_fusion_weights_each_source_by_its_share_of_the_fused_score() -> None:
    a = _Fixed("a", ["x", "y"], {"x": (Evidence("h1", 3.0, "a", "co_occurrence"), Evidence("h2", 1.0, "a",
                                                                                           "co_occurrence"))})
    b = _Fixed("b", ["y", "x"], {"x": (Evidence("h3", 10.0, "b", "content"),),
                                 "y": (Evidence("h3", 2.0, "b", "content"),)})
    fusion = FusionGenerator([a, b], [1.0, 0.5], rrf_k=60.0)
    [top] = fusion.with_evidence([[]], fusion.generate_batch([[]], 2))
    x = next(c for c in top if c.item_id == "x")
    share_a = (1 / 61) / (1 / 61 + 0.5 / 62)
    weights = {(e.source, e.item_id): e.weight for e in x.evidence}
    assert weights[("a", "h1")] == pytest.approx(0.75 * share_a)
    assert weights[("a", "h2")] == pytest.approx(0.25 * share_a)
    assert weights[("b", "h3")] == pytest.approx(1 - share_a)
    y = next(c for c in top if c.item_id == "y")
    # a ranked y but has no evidence for it: the merged weights say so by summing below 1.
    assert sum(e.weight for e in y.evidence) == pytest.approx((0.5 / 61) / (1 / 62 + 0.5 / 61))
    assert PopularityGenerator([]).evidence_batch([[]], [["x"]]) == [[()]]


def test_cited_items_are_the_largest_score_contributions() -> None:
    ev = (Evidence("a", 0.2, "itemknn", "co_occurrence"), Evidence("b", 0.5, "interest.short", "content"),
          Evidence("a", 0.4, "interest.long", "content"), Evidence("c", 9.0, "category", "category"))
    assert cited_items(ev, 2) == ("a", "b")  # a: 0.6 over two sources; category evidence is not a cause


def test_hybrid_evidence_flows_into_recommendations_and_explanations() -> None:
    ds = planted_shift_dataset(n_users=8)
    index = build_index(ds.catalog, HashingEmbedder(dim=64), "numpy", progress=False)
    gen = make_generator("hybrid", index, ds.histories, ds.catalog.ids)
    agent = RecommenderAgent(ds, gen, index, explainer=Explainer(ds.catalog), config=AgentConfig(llm_budget_s=None))
    rec = agent.recommend("u0", 5)
    history = {ev.item for ev in ds.history("u0")}
    assert len(rec.evidence) == len(rec.items) and all(rec.evidence)
    for item, ev, exp in zip(rec.items, rec.evidence, rec.explanations, strict=True):
        assert {e.source for e in ev} <= {"itemknn", "interest.short", "interest.long", "ease"}
        assert set(exp.evidence) <= {e.item_id for e in ev} <= history
        # The largest contributors first: as many as it takes to move the item out of the top 5 (≤ 5),
        # else the 3 largest.
        assert 1 <= len(exp.evidence) <= MOST_CITED and exp.evidence == cited_items(ev, len(exp.evidence))
        assert exp.evidence_detail and exp.item_id == item
    assert rec.diagnostics.evidence_s > 0
    unverified = RecommenderAgent(ds, gen, index, explainer=Explainer(ds.catalog),
                                  config=AgentConfig(llm_budget_s=None, verify_citations=False)).recommend("u0", 5)
    assert [e.evidence for e in unverified.explanations] == [cited_items(ev, 3) for ev in unverified.evidence]
    # Without explanations no evidence is computed: plain lists cost what they did.
    plain = agent.recommend("u0", 5, explain=False)
    assert plain.items == rec.items and plain.evidence == ((),) * 5 and plain.diagnostics.evidence_s == 0


def _rank_without(gen: CandidateGenerator, history: History, item: str, seen: set[str],
                  removed: tuple[str, ...]) -> int | None:
    """The item's rank among unseen items once `removed` are taken out of the history."""
    left = [ev for ev in history if ev.item not in set(removed)]
    return rank_among_unseen(gen.generate(left, 100), item, seen)


def test_verified_citations_are_the_shortest_evidence_prefix_that_takes_the_item_out() -> None:
    ds = planted_shift_dataset(n_users=12)
    index = build_index(ds.catalog, HashingEmbedder(dim=64), "numpy", progress=False)
    gen = make_generator("hybrid", index, ds.histories, ds.catalog.ids)
    users = sorted(ds.users)[:6]
    histories = [ds.history(u) for u in users]
    k = 5
    tops = gen.with_evidence(histories, gen.generate_batch(histories, k))
    found = verified_citations(gen, histories, tops, k)
    kinds: Counter[str] = Counter()
    for history, top, cites in zip(histories, tops, found, strict=True):
        seen = {ev.item for ev in history}
        for cand, cite in zip(top, cites, strict=True):
            order = cited_items(cand.evidence, MOST_CITED)
            rank_without = partial(_rank_without, gen, history, cand.item_id, seen)
            prefix_works = [(r := rank_without(order[:n])) is None or r > k for n in range(1, len(order) + 1)]
            if cite.verified:  # removing the cited items takes it out
                gone = rank_without(cite.items)
                assert gone is None or gone > k
            if cite.verified and cite.items == order[:len(cite.items)]:  # the shortest prefix that does
                kinds["prefix"] += 1
                assert prefix_works.index(True) == len(cite.items) - 1
            elif cite.verified:  # no prefix does; a greedy set of the largest contributors
                kinds["greedy"] += 1
                assert not any(prefix_works) and len(cite.items) <= MOST_CITED
                assert set(cite.items) <= set(cited_items(cand.evidence, GREEDY_POOL))
            else:  # neither search found a set: the 3 largest, flagged
                kinds["unverified"] += 1
                assert cite.items == order[:3] and not any(prefix_works)
    assert kinds["prefix"] > 0, kinds


def test_the_greedy_search_finds_a_pair_no_prefix_of_the_attribution_does() -> None:
    """Two history items each hold the item up alone; the attribution ranks a weaker third between them."""

    class Redundant(CandidateGenerator):
        def generate_batch(self, histories: Sequence[History], k: int) -> list[list[Candidate]]:
            out = []
            for history in histories:
                items = {ev.item for ev in history}
                scores = {"t": 3.0 * bool(items & {"a", "b"}) + 0.5 * ("c" in items), "x": 1.0, "y": 0.9}
                out.append([Candidate(i, s, "toy") for i, s in sorted(scores.items(), key=lambda t: -t[1])][:k])
            return out

    history = [Event(user="u", item=i, timestamp=T0 + timedelta(days=n)) for n, i in enumerate("abc")]
    top = [Candidate("t", 3.5, "toy", evidence=tuple(Evidence(i, w, "toy", "co_occurrence")
                                                     for i, w in (("a", 3.0), ("c", 2.0), ("b", 1.0))))]
    # The prefixes {a} and {a, c} leave b holding it up (3.5, 3.0 > 1.0); greedily, removing a (all
    # single removals tie at rank 1, a is the largest) and then b takes it to 0.5, out of the top 2.
    [[cite]] = verified_citations(Redundant(), [history], [top], k=2, most=2)
    assert cite == Citation(("a", "b"), True)
    [[cite]] = verified_citations(Redundant(), [history], [top], k=2, most=2, pool=1)
    assert cite == Citation(("a", "c"), False)  # no greedy search: the largest contributors, unverified


def test_items_without_score_evidence_cite_shared_categories_as_such() -> None:
    ds = planted_shift_dataset(n_users=2)
    history = ds.history("u0")
    ev = item_evidence(history, "cooking-39", ds.catalog)
    assert ev.supporting and set(ev.kinds.values()) == {"category"}
    assert all("cooking" in ds.catalog[i].categories for i in ev.supporting)
    assert item_evidence(history, "cooking-39", ds.catalog, evidence=(Evidence("space-0", 1.0, "x", "content"),)
                         ).supporting == ("space-0",)
