"""Behaviour-text vectors: event vector = item vector + w · text vector, and pooling over them in retrieval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from eval.research.behaviour_eval import hit_ndcg, next_item_cases, ranks
from retrieval.candidates.base import Candidate
from retrieval.candidates.interest import InterestRetriever
from retrieval.data.model import Catalog, Dataset, Event, Item
from retrieval.errors import ConfigError
from retrieval.vectors.behaviour import BehaviourVectors
from retrieval.vectors.build import build_index
from retrieval.vectors.embed import HashingEmbedder

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _catalog() -> Catalog:
    """Neutral films whose titles say nothing, plus cooking and space titles."""
    items = [Item(id=f"film-{i}", title=f"untitled reel number {i}") for i in range(30)]
    items += [Item(id=f"cook-{i}", title=f"cooking recipe kitchen baking chef {i}") for i in range(10)]
    items += [Item(id=f"space-{i}", title=f"rocket orbit galaxy planet {i}") for i in range(10)]
    return Catalog(items)


def _tagged(items: list[str], tag: str | None) -> tuple[Event, ...]:
    return tuple(Event(user="u", item=i, timestamp=T0 + timedelta(days=d), action="tag", text=tag)
                 for d, i in enumerate(items))


def test_event_vectors_add_the_text_vector_and_keep_items_without_text() -> None:
    emb = HashingEmbedder(64)
    index = build_index(_catalog(), emb, "numpy")
    history = _tagged(["film-1"], "cooking kitchen") + (Event(user="u", item="film-2", timestamp=T0 + timedelta(9)),)
    vecs = BehaviourVectors(emb, text_weight=0.5).event_vectors(history, index)
    want = index.vector("film-1") + 0.5 * emb.embed(["cooking kitchen"])[0]
    np.testing.assert_allclose(vecs[0], want / np.linalg.norm(want), atol=1e-6)
    np.testing.assert_allclose(vecs[1], index.vector("film-2"), atol=1e-7)
    assert vecs.shape == (2, 64) and vecs.dtype == np.float32
    np.testing.assert_array_equal(BehaviourVectors(emb, text_weight=0.0).event_vectors(history, index),
                                  index.vectors[index.rows(["film-1", "film-2"])])


def test_behaviour_vectors_refuse_another_embedders_space_and_bad_weights() -> None:
    index = build_index(_catalog(), HashingEmbedder(64), "numpy")
    other = HashingEmbedder(64)
    other.name = "other-embedder"
    with pytest.raises(ConfigError, match="same embedder"):
        BehaviourVectors(other).event_vectors(_tagged(["film-1"], "x"), index)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ConfigError, match="text_weight"):
            BehaviourVectors(other, text_weight=bad)


def test_tags_steer_the_interest_query_where_item_vectors_cannot() -> None:
    """Neutral films tagged "cooking …": only the tag text says what the user likes."""
    emb = HashingEmbedder(256)
    index = build_index(_catalog(), emb, "numpy")
    history = _tagged([f"film-{i}" for i in range(6)], "cooking recipe kitchen baking")
    behaviour = BehaviourVectors(emb, text_weight=1.0)
    assert behaviour.prepare([history]) == 1 and behaviour.prepare([history]) == 0  # each text once
    with_text = InterestRetriever(index, behaviour=behaviour).generate(history, 5)
    item_only = InterestRetriever(index).generate(history, 5)
    assert sum(c.item_id.startswith("cook-") for c in with_text) >= 4
    assert sum(c.item_id.startswith("cook-") for c in item_only) <= 1


def test_batched_queries_equal_the_one_history_reference_with_behaviour() -> None:
    emb = HashingEmbedder(64)
    index = build_index(_catalog(), emb, "numpy")
    histories = [_tagged(["film-1", "space-2"], "dark"), _tagged(["cook-1"], None),
                 _tagged([f"film-{i}" for i in range(9)], "slow burn"), ()]
    retriever = InterestRetriever(index, behaviour=BehaviourVectors(emb, text_weight=0.7))
    queries, has = retriever.queries(histories, batch_events=10)
    assert has == [True, True, True, False]
    for q, h in zip(queries[:3], histories[:3], strict=True):
        ref = retriever.history_vectors(h)
        assert ref is not None
        short, long = ref
        cfg = retriever.config
        np.testing.assert_allclose(q, cfg.short_weight * short + (1 - cfg.short_weight) * long, atol=1e-5)


def test_next_item_cases_hold_out_the_last_new_item_without_its_tags() -> None:
    items = Catalog([Item(id=i, title=i) for i in "abcd"])
    evs = [Event(user="u", item=i, timestamp=T0 + timedelta(days=d), action="tag", text=t)
           for i, d, t in [("a", 0, "x"), ("b", 1, "y"), ("a", 2, "z"), ("c", 3, "w"), ("c", 4, "v"), ("d", 3, "s")]]
    evs.append(Event(user="short", item="a", timestamp=T0))
    val, test = next_item_cases(Dataset(items, evs))
    # c and d are both first tagged on day 3: the file order breaks the tie, so d is the newest item
    assert [(c.user, c.target) for c in test] == [("u", "d")] and val[0].target == "c"
    assert [ev.text for ev in test[0].inputs] == ["x", "y", "z"]  # nothing from day 3 on: not c's tags either
    assert [ev.text for ev in val[0].inputs] == ["x", "y", "z"]
    r = ranks([[Candidate("a", 1.0, "s"), Candidate("c", 0.5, "s")], []], ["c", "c"])
    assert r.tolist() == [2, 0]
    m = hit_ndcg(r, 20)
    np.testing.assert_allclose(m["ndcg@20"], [1 / np.log2(3), 0.0])
