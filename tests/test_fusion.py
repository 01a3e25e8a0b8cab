"""Fusion tuning: the tuner's fused ranks are rrf_fuse's, it maximises the metric it is given, and the
agent's hybrid chooses its weights on held-out last events."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from retrieval.candidates import registry
from retrieval.candidates.base import Candidate, CandidateGenerator, Histories, History
from retrieval.candidates.fusion import FusionGenerator, fused_metric, rrf_fuse, tune_on_holdout, tune_weights
from retrieval.candidates.registry import make_generator
from retrieval.data.model import Dataset, Event
from retrieval.errors import ConfigError
from retrieval.vectors.build import build_index
from retrieval.vectors.embed import HashingEmbedder


def _lists(*ids: str) -> list[Candidate]:
    return [Candidate(i, 0.0, "g") for i in ids]


def _brute(per: Sequence[Sequence[Sequence[Candidate]]], targets: Sequence[str], weights: Sequence[float],
           rrf_k: float, metric: str, k: int) -> float:
    """The metric of `rrf_fuse`'s own lists: the answer key for the vectorised tuner."""
    values = []
    for u, t in enumerate(targets):
        fused = [c.item_id for c in rrf_fuse([p[u] for p in per], weights, 10_000, rrf_k)]
        rank = fused.index(t) + 1 if t in fused else np.inf
        hit = rank <= k
        values.append(float(hit) if metric == "recall" else (1 / np.log2(rank + 1) if hit else 0.0))
    return float(np.mean(values))


def _conflict() -> tuple[list[list[list[Candidate]]], list[str]]:
    """Generator A puts the target first for users 0-2; B puts it 12th for users 3-9 (never in A's list).

    Up-weighting B wins Recall@20 (0.7 vs 0.3) but loses every top-10 hit (NDCG@10 0 vs 0.3).
    """
    a, b, targets = [], [], []
    for u in range(10):
        t = f"t{u}"
        fill_a = [f"a{u}_{r}" for r in range(30)]
        fill_b = [f"b{u}_{r}" for r in range(30)]
        a.append(_lists(t, *fill_a) if u < 3 else _lists(*fill_a))
        b.append(_lists(*fill_b) if u < 3 else _lists(*fill_b[:11], t, *fill_b[11:]))
        targets.append(t)
    return [a, b], targets


def test_ndcg_and_recall_tuning_choose_different_weights_each_the_right_one() -> None:
    per, targets = _conflict()
    by_ndcg = tune_weights(per, targets, "ndcg", 10, grid=(0.0, 2.0), rrf_ks=(60.0,))
    by_recall = tune_weights(per, targets, "recall", 20, grid=(0.0, 2.0), rrf_ks=(60.0,))
    assert by_ndcg.weights == (1.0, 0.0) and by_ndcg.value == pytest.approx(0.3)
    assert by_recall.weights == (1.0, 2.0) and by_recall.value == pytest.approx(0.7)
    assert (by_ndcg.metric, by_recall.metric) == ("ndcg@10", "recall@20")


@pytest.mark.parametrize("metric,k", [("ndcg", 10), ("recall", 20), ("ndcg", 1)])
def test_every_tried_setting_scores_exactly_what_rrf_fuse_gives(metric: str, k: int) -> None:
    rng = random.Random(3)
    n_users, pool = 40, 25
    # Short lists from a small pool: many items tie on fused score, so first-appearance order matters.
    per = [[_lists(*(f"i{j}" for j in rng.sample(range(pool), rng.randint(0, 12)))) for _ in range(n_users)]
           for _ in range(3)]
    targets = [f"i{rng.randrange(pool)}" for _ in range(n_users)]
    found = tune_weights(per, targets, metric, k, grid=(0.0, 0.5, 1.0), rrf_ks=(1.0, 60.0))  # type: ignore[arg-type]
    assert len(found.tried) == 2 * 3 * 3
    for trial in found.tried:
        assert trial.value == pytest.approx(_brute(per, targets, trial.weights, trial.rrf_k, metric, k), abs=1e-12)
    assert found.value == max(t.value for t in found.tried)


def test_tuning_is_deterministic_and_ties_go_to_the_first_setting() -> None:
    per, targets = _conflict()
    first = tune_weights(per, targets, grid=(0.0, 2.0), rrf_ks=(60.0, 1.0))
    assert first == tune_weights(per, targets, grid=(0.0, 2.0), rrf_ks=(60.0, 1.0))
    # Weight 0 for B gives NDCG@10 0.3 under every rrf_k: the first rrf_k tried wins the tie.
    assert (first.weights, first.rrf_k) == ((1.0, 0.0), 60.0)
    assert fused_metric(per, targets, first.weights, first.rrf_k) == pytest.approx(first.value)


def test_tuning_refuses_bad_input() -> None:
    per, targets = _conflict()
    with pytest.raises(ConfigError):
        tune_weights([], targets)
    with pytest.raises(ConfigError):
        tune_weights(per, targets[:5])
    with pytest.raises(ConfigError):
        tune_weights(per, targets, grid=(-1.0,))
    with pytest.raises(ConfigError):
        fused_metric(per, targets, (1.0,), 60.0)


class _LastSeen(CandidateGenerator):
    """Recommends, for every user, the item that followed the user's last item in any history it learnt from."""

    name = "next"

    def __init__(self, seen: Histories) -> None:
        self.next: dict[str, str] = {}
        for events in seen.values():
            for before, after in zip(events, events[1:], strict=False):
                self.next.setdefault(before.item, after.item)

    def generate_batch(self, histories: Sequence[History], k: int) -> list[list[Candidate]]:
        out = []
        for h in histories:
            nxt = self.next.get(h[-1].item) if h else None
            out.append([Candidate(nxt, 1.0, self.name)] if nxt and nxt not in {e.item for e in h} else [])
        return out


def _chain_histories(n_users: int, length: int = 6) -> dict[str, list[Event]]:
    """Each user walks its own items u_0 → u_1 → …: only a generator that saw a user's last step knows it."""
    start = datetime(2020, 1, 1, tzinfo=UTC)
    return {f"u{u}": [Event(user=f"u{u}", item=f"u{u}_{i}", timestamp=start + timedelta(days=i)) for i in range(length)]
            for u in range(n_users)}


def test_holdout_tuning_never_lets_a_generator_see_the_held_out_events() -> None:
    histories = _chain_histories(30)
    seen_by_build: list[Histories] = []

    def build(seen: Histories) -> list[CandidateGenerator]:
        seen_by_build.append(seen)
        return [_LastSeen(seen)]

    found = tune_on_holdout(build, histories, users=10, seed=1)
    assert found is not None
    # The held-out step u_4 → u_5 is unseen, so the generator cannot find any target: no leak.
    assert found.value == 0.0
    held = [u for u, h in seen_by_build[0].items() if len(h) == len(histories[u]) - 1]
    assert len(held) == 10 and all(histories[u][-1] not in seen_by_build[0][u] for u in held)
    assert found == tune_on_holdout(lambda seen: [_LastSeen(seen)], histories, users=10, seed=1)
    assert tune_on_holdout(build, {"u0": histories["u0"][:1]}) is None  # nobody has two events


def test_default_hybrid_chooses_its_fusion_on_held_out_events_and_stores_the_choice(
        shift_dataset: Dataset, caplog: pytest.LogCaptureFixture, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    index = build_index(shift_dataset.catalog, HashingEmbedder(dim=64), "flat", progress=False)
    with caplog.at_level(logging.INFO, logger="driftrec"):
        gen = make_generator("hybrid", index, shift_dataset.histories, shift_dataset.catalog.ids)
    assert isinstance(gen, FusionGenerator)
    assert [g.name for g in gen.generators] == ["itemknn", "interest", "popularity", "ease"]
    assert any("hybrid fusion chosen" in r.getMessage() for r in caplog.records)
    stored = list((tmp_path / "driftrec" / "fusion").glob("*.json"))
    assert len(stored) == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="driftrec"):
        again = make_generator("hybrid", index, shift_dataset.histories, shift_dataset.catalog.ids)
    assert any("hybrid fusion read from the stored choice" in r.getMessage() for r in caplog.records)
    assert isinstance(again, FusionGenerator) and (again.weights, again.rrf_k) == (gen.weights, gen.rrf_k)
    # Other events: another key, chosen again.
    fewer = {u: h[:-1] for u, h in shift_dataset.histories.items()}
    make_generator("hybrid", index, fewer, shift_dataset.catalog.ids)
    assert len(list(stored[0].parent.glob("*.json"))) == 2
    # A damaged file is ignored and rewritten.
    stored[0].write_text("{not json")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="driftrec"):
        third = make_generator("hybrid", index, shift_dataset.histories, shift_dataset.catalog.ids)
    assert any("unreadable fusion choice" in r.getMessage() for r in caplog.records)
    assert isinstance(third, FusionGenerator) and (third.weights, third.rrf_k) == (gen.weights, gen.rrf_k)
    assert '"weights"' in stored[0].read_text()
    # A catalogue above the EASE limit: no EASE, and its own stored choice.
    monkeypatch.setattr(registry, "HYBRID_EASE_MAX_ITEMS", len(shift_dataset.catalog) - 1)
    large = make_generator("hybrid", index, shift_dataset.histories, shift_dataset.catalog.ids)
    assert isinstance(large, FusionGenerator)
    assert [g.name for g in large.generators] == ["itemknn", "interest", "popularity"]
    assert len(list(stored[0].parent.glob("*.json"))) == 3


def test_an_extra_generator_without_a_cache_key_turns_the_stored_choice_off(shift_dataset: Dataset) -> None:
    from retrieval.candidates.fusion_cache import choice_key

    index = build_index(shift_dataset.catalog, HashingEmbedder(dim=64), "flat", progress=False)
    histories = shift_dataset.histories
    assert choice_key(histories, index, [_LastSeen(histories)], {}) is None
    keyed = _LastSeen(histories)
    keyed.cache_key = lambda: "v1"  # type: ignore[attr-defined]
    first = choice_key(histories, index, [keyed], {})
    keyed.cache_key = lambda: "v2"  # type: ignore[attr-defined]
    assert first is not None and choice_key(histories, index, [keyed], {}) not in (None, first)
    assert choice_key(histories, index, [], {"users": 1}) != choice_key(histories, index, [], {"users": 2})


def test_harness_hybrid_chooses_half_life_and_fusion_on_validation(shift_dataset: Dataset) -> None:
    from eval.harness import validation_metric
    from eval.models import TrainData, ValidationData, make_model
    from eval.models_hybrid import HybridModel
    from eval.splits import leave_one_out

    split = leave_one_out(shift_dataset)
    val = split.validation
    validation = ValidationData(val.users, val.inputs, val.target_items, None)
    model = make_model("hybrid", embedder="hashing", sequential=False, ease_l2s=[1.0, 50.0])
    assert isinstance(model, HybridModel)
    model.fit(TrainData(shift_dataset.catalog, split.train, shift_dataset.catalog.ids)).tune(validation)
    per = [g.generate_batch(val.inputs, model.depth) for g in model.generators()]
    found = tune_weights(per, val.target_items)
    diag = model.diagnostics()
    assert model.names == ("itemknn", "interest", "popularity", "ease")
    assert (model.weights, model.rrf_k) == (found.weights, found.rrf_k)
    assert diag["rrf_k"] == found.rrf_k and diag["val_ndcg@10_fusion"] == pytest.approx(found.value, abs=1e-5)
    assert diag["half_life_events"] in [h or 0.0 for h in model.knn_model.half_lives]
    assert diag["ease_l2"] in (1.0, 50.0) and "ease_validation_ndcg@10" in diag
    assert diag["val_ndcg@10_fusion"] >= diag["val_ndcg@10_itemknn"]  # item-kNN alone is in the grid
    # The harness ranks ties pessimistically, the tuner in rrf_fuse's order: never better than tuned.
    assert validation_metric(model, validation) <= found.value + 1e-9
