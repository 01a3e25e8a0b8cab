"""EASE: the closed form is the per-item ridge regression it claims, its scores split exactly into
history terms, and the harness model chooses λ and the half-life on validation."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.candidates import ease as ease_module
from retrieval.candidates.ease import EASE, EASEGenerator
from retrieval.errors import ConfigError, UnknownItemError
from tests.conftest import planted_shift_dataset


def _binary(histories: dict, item_ids: tuple[str, ...]) -> np.ndarray:
    col = {item: c for c, item in enumerate(item_ids)}
    x = np.zeros((len(histories), len(item_ids)))
    for u, events in enumerate(histories.values()):
        x[u, [col[ev.item] for ev in events]] = 1.0
    return x


def test_each_column_is_the_ridge_regression_of_that_item_on_all_others() -> None:
    ds = planted_shift_dataset(n_users=15, per_phase=6)
    model = EASE(ds.histories, ds.catalog.ids, l2=7.0)
    x = _binary(ds.histories, ds.catalog.ids)
    b = model.weights_matrix
    assert np.all(np.diag(b) == 0.0)
    for j in (0, 3, 41, 60):  # min ‖x_j − X₋ⱼ β‖² + λ‖β‖², solved directly
        others = np.delete(np.arange(x.shape[1]), j)
        a = x[:, others]
        beta = np.linalg.solve(a.T @ a + 7.0 * np.eye(len(others)), a.T @ x[:, j])
        np.testing.assert_allclose(b[others, j], beta, atol=1e-5)


def test_scores_are_the_recency_weighted_sum_of_history_terms() -> None:
    ds = planted_shift_dataset(n_users=12)
    model = EASE(ds.histories, ds.catalog.ids, l2=5.0, half_life=3.0)
    history = ds.history("u1")[:8]
    scores = model.score_sequences([history])[0]
    items = ["space-20", "cooking-5", "space-2"]
    terms = model.terms(history, items)
    assert terms.shape == (len(history), 3)
    np.testing.assert_allclose(terms.sum(axis=0), scores[[model.column[i] for i in items]], rtol=1e-4, atol=1e-6)
    assert terms[-1].any() and abs(terms[-1]).max() > 0  # the newest event weighs 1
    model.half_life = None
    np.testing.assert_allclose(model.terms(history, items)[0], model.weights_matrix[model.column[history[0].item],
                                                                                  [model.column[i] for i in items]])


def test_generator_drops_seen_items_and_cites_positive_terms_as_co_occurrence() -> None:
    ds = planted_shift_dataset(n_users=12)
    gen = EASEGenerator(EASE(ds.histories, ds.catalog.ids, l2=5.0, half_life=3.0))
    history = ds.history("u0")[:6]
    [top] = gen.generate_batch([history], 5)
    assert len(top) == 5 and not {c.item_id for c in top} & {ev.item for ev in history}
    assert all(c.source == "ease" and c.score > 0 for c in top)
    assert [c.score for c in top] == sorted((c.score for c in top), reverse=True)
    [evs] = gen.evidence_batch([history], [[c.item_id for c in top]])
    terms = gen.knn.terms(history, [c.item_id for c in top])
    for j, ev in enumerate(evs):
        assert ev and all(e.source == "ease" and e.kind == "co_occurrence" and e.weight > 0 for e in ev)
        assert sum(e.weight for e in ev) == pytest.approx(float(terms[:, j][terms[:, j] > 0].sum()), rel=1e-5)


def test_bad_settings_fail_with_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = planted_shift_dataset(n_users=4, per_phase=3)
    with pytest.raises(ConfigError, match="l2 must be positive"):
        EASE(ds.histories, ds.catalog.ids, l2=0.0)
    with pytest.raises(ConfigError, match="half_life"):
        EASE(ds.histories, ds.catalog.ids, half_life=-1.0)
    with pytest.raises(UnknownItemError):
        EASE(ds.histories, ds.catalog.ids[:10])
    monkeypatch.setattr(ease_module, "MAX_ITEMS", 50)
    with pytest.raises(ConfigError, match="at most 50 items"):
        EASE(ds.histories, ds.catalog.ids)


def test_harness_ease_chooses_l2_and_half_life_on_validation() -> None:
    from eval.harness import validation_metric
    from eval.models import TrainData, ValidationData, make_model
    from eval.models_baselines import EASEModel
    from eval.splits import leave_one_out

    ds = planted_shift_dataset(n_users=20)
    split = leave_one_out(ds)
    val = split.validation
    validation = ValidationData(val.users, val.inputs, val.target_items, None)
    model = make_model("ease", l2s=[1.0, 50.0], half_lives=[1.0, None])
    assert isinstance(model, EASEModel)
    model.fit(TrainData(ds.catalog, split.train, ds.catalog.ids)).tune(validation)
    assert set(model.validation_ndcg) == {(1.0, 1.0), (1.0, None), (50.0, 1.0), (50.0, None)}
    best = max(model.validation_ndcg.values())
    assert model.validation_ndcg[(model.l2, model.half_life)] == best
    assert (model.ease.l2, model.ease.half_life) == (model.l2, model.half_life)
    assert validation_metric(model, validation) == pytest.approx(best)  # the chosen setting is the one in use
    assert model.diagnostics()["validation_ndcg@10"] == best


def test_registry_builds_ease_for_the_agent() -> None:
    from retrieval.candidates.registry import EASE_HALF_LIFE, EASE_L2, make_generator
    from retrieval.vectors.build import build_index
    from retrieval.vectors.embed import HashingEmbedder

    ds = planted_shift_dataset(n_users=8)
    gen = make_generator("ease", build_index(ds.catalog, HashingEmbedder()), ds.histories, ds.catalog.ids)
    assert isinstance(gen, EASEGenerator)
    assert (gen.knn.l2, gen.knn.half_life) == (EASE_L2, EASE_HALF_LIFE)
    [top] = gen.generate_batch([ds.history("u2")], 3)
    assert len(top) == 3 and all(c.source == "ease" for c in top)


def test_the_matrix_is_solved_once_per_lambda_and_only_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = planted_shift_dataset(n_users=10)
    solves = []
    inv = np.linalg.inv
    monkeypatch.setattr(ease_module.np.linalg, "inv", lambda g: solves.append(1) or inv(g))
    model = EASE(ds.histories, ds.catalog.ids, l2=5.0)
    assert not solves  # building does not solve
    first = model.weights_matrix.copy()
    model.set_l2(5.0)
    model.score_sequences([ds.history("u0")[:4]])
    assert len(solves) == 1  # same λ: kept
    model.set_l2(50.0)
    model.set_l2(5.0)
    np.testing.assert_array_equal(model.weights_matrix, first)
    assert len(solves) == 2  # λ changed and changed back: one solve, on use
