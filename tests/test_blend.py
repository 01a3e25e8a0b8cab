"""The harness `blend`: its NDCG is the harness's, the weight search finds a planted signal and never
loses to the first part on validation, and it runs under `llmrank` and full ranking from saved models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eval.metrics import per_user_metrics, rank_candidates
from eval.models_blend import BlendModel, coordinate_ascent, ndcg_at_10
from retrieval.errors import ConfigError
from tests.test_sequential import TINY, chain_dataset, loo


def test_ndcg_matches_the_harness_metric_with_pessimistic_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(200, 30)).astype(float)  # many ties
    targets = rng.integers(0, 30, size=200)
    ranks = rank_candidates(list(scores), targets, "pessimistic", None)  # as the harness ranks candidates
    expected = per_user_metrics(ranks, (10,))["ndcg@10"].mean()
    assert ndcg_at_10(scores, targets) == pytest.approx(expected)


def test_coordinate_ascent_weighs_the_informative_part_and_never_loses_to_the_first() -> None:
    rng = np.random.default_rng(1)
    users, items = 400, 20
    targets = rng.integers(0, items, size=users)
    signal = rng.normal(size=(users, items))
    signal[np.arange(users), targets] += 2.0
    noise = rng.normal(size=(users, items))
    weak = noise + 0.1 * signal
    weights, value = coordinate_ascent([weak, noise, signal], targets, (0.0, 0.5, 1.0), rounds=3)
    assert weights[0] == 1.0 and weights[2] == 1.0 and weights[1] == 0.0
    assert value >= ndcg_at_10(weak, targets)
    assert value == pytest.approx(ndcg_at_10(weak + signal, targets))
    again, same = coordinate_ascent([weak, noise, signal], targets, (0.0, 0.5, 1.0), rounds=3)
    assert np.array_equal(again, weights) and same == value  # deterministic


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="no parts"):
        BlendModel(itemknn=False, popularity=False)
    with pytest.raises(ConfigError, match="grid"):
        BlendModel(grid=(0.0,))
    with pytest.raises(ConfigError, match="rounds"):
        BlendModel(rounds=0)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from retrieval.sequential.train import fit_sequential, text_matrix
    from retrieval.vectors.embed import HashingEmbedder

    ds = chain_dataset()
    train, valid, _, _ = loo(ds)
    text = text_matrix(ds.catalog, ds.catalog.ids, HashingEmbedder(256))
    model, _ = fit_sequential(ds.catalog.ids, train, TINY, text, "hashing-256", valid, progress=False)
    return model.save(tmp_path_factory.mktemp("blend") / "seq"), ds


@pytest.mark.parametrize("protocol", ["llmrank", "full"])
def test_blend_of_a_saved_sequential_model_and_baselines_runs_in_the_harness(saved_model, protocol: str) -> None:
    from eval.harness import EvalConfig, evaluate

    directory, ds = saved_model
    config = EvalConfig(protocol=protocol, seed=0, defaults={"embedder": "hashing"},
                        model_kwargs={"blend": {"sequential": [str(directory)], "interest": True},
                                      "sasrec": {"load": str(directory)}})
    result = evaluate(ds, ["sasrec", "itemknn", "blend"], config)
    diag = result.models["blend"].diagnostics
    assert diag["weight_seq:seq"] == 1.0 and {"weight_itemknn", "weight_popularity", "weight_interest"} <= set(diag)
    # The search starts from the sequential model alone, so validation never gets worse.
    assert diag["val_ndcg@10_blend"] >= diag["val_ndcg@10_seq:seq"] - 1e-12
    assert any(m["role"] == "sequential" and m["name"] == "seq" for m in result.provenance["models"])
    blend = result.models["blend"].per_user()["ndcg@10"].mean()
    assert blend > 0.5  # the planted chain: random ≈ 0.1 (full) / 0.23 (llmrank)
