from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from retrieval.candidates.attention import InterestConfig, attention_weights
from retrieval.candidates.interest import InterestRetriever
from retrieval.candidates.popularity import PopularityGenerator
from retrieval.data.model import Catalog, Dataset, Event, Item
from retrieval.errors import ConfigError
from retrieval.vectors.build import build_index
from retrieval.vectors.embed import HashingEmbedder


def test_recent_interest_dominates_short_term(shift_dataset: Dataset) -> None:
    index = build_index(shift_dataset.catalog, HashingEmbedder(128), "numpy")
    retriever = InterestRetriever(index)
    cands = retriever.generate_batch(list(shift_dataset.histories.values()), 10)
    topics = Counter(c.item_id.split("-")[0] for row in cands for c in row)
    assert topics["cooking"] >= 0.9 * sum(topics.values())
    for user, row in zip(shift_dataset.users, cands, strict=True):
        seen = {e.item for e in shift_dataset.history(user)}
        assert len(row) == 10 and not seen & {c.item_id for c in row}
        assert all(c.source == "interest" for c in row)
        assert [c.score for c in row] == sorted((c.score for c in row), reverse=True)
    short, long = retriever.history_vectors(shift_dataset.history("u0"))  # type: ignore[misc]
    cook = index.vectors[index.rows([f"cooking-{i}" for i in range(40)])].mean(0)
    space = index.vectors[index.rows([f"space-{i}" for i in range(40)])].mean(0)
    assert short @ cook - short @ space > long @ cook - long @ space  # long term remembers space more


def test_batch_equals_single(shift_dataset: Dataset) -> None:
    index = build_index(shift_dataset.catalog, HashingEmbedder(64), "flat")
    r = InterestRetriever(index)
    batch = r.generate_batch([shift_dataset.history("u1"), shift_dataset.history("u2")], 5)
    assert [c.item_id for c in batch[1]] == [c.item_id for c in r.generate(shift_dataset.history("u2"), 5)]


def test_empty_history_gets_flagged_popularity(shift_dataset: Dataset) -> None:
    index = build_index(shift_dataset.catalog, HashingEmbedder(64), "flat")
    popularity = PopularityGenerator(shift_dataset.histories)
    cands = InterestRetriever(index, popularity=popularity).generate((), 5)
    assert len(cands) == 5 and all(c.source == "popularity" for c in cands)
    assert [c.item_id for c in cands] == [c.item_id for c in popularity.generate((), 5)]
    assert InterestRetriever(index).generate((), 5) == []  # no fallback given: nothing


def test_attention_weights_recency_and_similarity() -> None:
    v = np.eye(3, dtype=np.float32)[[0, 0, 1, 1]]
    t = np.array([0, 1, 2, 3], dtype=np.float64) * 86_400
    w = attention_weights(v, t, half_life_days=1.0, config=InterestConfig(recent_events=2))
    assert w.sum() == pytest.approx(1.0)
    assert w[3] > w[2] > w[1] > w[0]
    with pytest.raises(ConfigError):
        InterestConfig(temperature=0)


def test_catalog_find_title() -> None:
    cat = Catalog([Item(id="1", title="Heat"), Item(id="2", title="Heat Wave")])
    assert [i.id for i in cat.find_title("heat")] == ["1", "2"]
    assert cat.find_title("nothing") == []
    ds = Dataset(cat, [Event(user="u", item="1", timestamp=datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=1))])
    assert ds.item_popularity()["1"] == 1


def test_batched_pooling_equals_per_user(shift_dataset: Dataset) -> None:
    from retrieval.candidates.attention import fused_query

    histories = dict(shift_dataset.histories)
    histories["u0"] = histories["u0"][:3]  # uneven lengths exercise the padding
    index = build_index(shift_dataset.catalog, HashingEmbedder(64), "numpy")
    r = InterestRetriever(index)
    queries, has = r.queries(list(histories.values()))
    assert all(has)
    for row, user in zip(queries, histories, strict=True):
        short, long = r.history_vectors(histories[user])  # type: ignore[misc]
        np.testing.assert_allclose(row, fused_query(short, long, r.config.short_weight), atol=1e-5)


def test_generators_by_name(shift_dataset: Dataset) -> None:
    from retrieval.candidates.registry import make_generator

    index = build_index(shift_dataset.catalog, HashingEmbedder(64), "numpy")
    h, ids = shift_dataset.histories, shift_dataset.catalog.ids
    with pytest.raises(ConfigError, match="valid: hybrid, itemknn, interest"):
        make_generator("nope", index, h, ids)
    for name in ("hybrid", "itemknn", "interest"):
        picks = make_generator(name, index, h, ids).generate(h["u0"], 10)
        seen = {ev.item for ev in h["u0"]}
        assert len(picks) == 10 and not seen & {c.item_id for c in picks}
        # every planted user ends in the cooking phase: each generator must follow it
        assert sum(c.item_id.startswith("cooking") for c in picks) >= 6, (name, picks)


def test_batched_pooling_keeps_whole_long_histories(shift_dataset: Dataset) -> None:
    """A history longer than a batch's event budget is pooled whole, exactly as one user alone."""
    from retrieval.candidates.attention import fused_query

    histories = dict(shift_dataset.histories)
    long_user = tuple(ev.model_copy(update={"user": "long"}) for u in list(histories)[:10] for ev in histories[u])
    histories["long"] = tuple(sorted(long_user, key=lambda e: e.timestamp))  # 240 events
    index = build_index(shift_dataset.catalog, HashingEmbedder(64), "numpy")
    r = InterestRetriever(index)
    queries, _ = r.queries(list(histories.values()), batch_events=100)
    for row, user in zip(queries, histories, strict=True):
        short, long = r.history_vectors(histories[user])  # type: ignore[misc]
        np.testing.assert_allclose(row, fused_query(short, long, r.config.short_weight), atol=1e-5)


def test_sequential_model_joins_only_the_hybrid(shift_dataset: Dataset, tmp_path: Path) -> None:
    import argparse

    from driftrec.cli.options import make_retriever
    from retrieval.candidates.popularity import PopularityGenerator
    from retrieval.candidates.registry import make_generator
    from retrieval.errors import IndexStateError

    index = build_index(shift_dataset.catalog, HashingEmbedder(64), "numpy")
    h, ids = shift_dataset.histories, shift_dataset.catalog.ids
    with pytest.raises(ConfigError, match="only into the hybrid"):
        make_generator("itemknn", index, h, ids, extra=[PopularityGenerator(h)])
    with pytest.raises(ConfigError, match="only into the hybrid"):  # refused before the model is read
        make_retriever(argparse.Namespace(retriever="itemknn", seq_model=tmp_path), shift_dataset, index)
    with pytest.raises(IndexStateError):
        make_retriever(argparse.Namespace(retriever="hybrid", seq_model=tmp_path / "missing"), shift_dataset, index)
