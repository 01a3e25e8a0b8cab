"""Sequential next-item model: learns a planted pattern, save/load, reproducibility, serving, fusion."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from retrieval.candidates.base import Candidate, CandidateGenerator
from retrieval.candidates.fusion import FusionGenerator, recall_at, rrf_fuse, tune_weights
from retrieval.candidates.popularity import PopularityGenerator
from retrieval.data.model import Catalog, Dataset, Event, Item
from retrieval.errors import ConfigError, IndexStateError
from retrieval.sequential.model import SeqConfig, SequentialGenerator, SequentialModel
from retrieval.sequential.network import gap_buckets
from retrieval.sequential.train import fit_sequential, holdout_last, ranking_metrics, text_matrix, training_windows
from retrieval.vectors.embed import HashingEmbedder

N_ITEMS = 40
START = datetime(2024, 1, 1, tzinfo=UTC)


def chain_dataset(n_users: int = 60, length: int = 12, seed: int = 0) -> Dataset:
    """Planted order: every user walks a fixed random permutation cycle of the items from a random start.

    The right answer is known: after item p[j] comes p[j + 1]. Random full ranking of 40 items puts
    the target in the top 10 with probability ~1/4 and gives NDCG@10 ≈ 0.1.
    """
    rng = np.random.default_rng(seed)
    perm = rng.permutation(N_ITEMS)
    items = [Item(id=f"i{i}", title=f"item number {i}") for i in range(N_ITEMS)]
    events = []
    for u in range(n_users):
        pos = int(rng.integers(N_ITEMS))
        for j in range(length):
            item = perm[(pos + j) % N_ITEMS]
            events.append(Event(user=f"u{u}", item=f"i{item}", timestamp=START + timedelta(hours=j)))
    return Dataset(Catalog(items), events, name="chain")


TINY = SeqConfig(max_len=16, hidden=32, blocks=1, dropout=0.1, epochs=40, patience=40, lr=5e-3, batch_size=32,
                 eval_every=5)


def loo(dataset: Dataset) -> tuple[dict[str, tuple[Event, ...]], list[tuple[tuple[Event, ...], str]],
                                   list[tuple[Event, ...]], list[str]]:
    train = {u: h[:-2] for u, h in dataset.histories.items()}
    valid = [(h[:-2], h[-2].item) for h in dataset.histories.values()]
    return train, valid, [h[:-1] for h in dataset.histories.values()], [h[-1].item for h in dataset.histories.values()]


@pytest.fixture(scope="module")
def trained() -> tuple[SequentialModel, Dataset]:
    ds = chain_dataset()
    train, valid, _, _ = loo(ds)
    text = text_matrix(ds.catalog, ds.catalog.ids, HashingEmbedder(64))
    model, report = fit_sequential(ds.catalog.ids, train, TINY, text, "hashing-64", valid, progress=False)
    assert report.best_epoch > 0 and report.n_valid == 60
    return model, ds


def test_learns_planted_sequential_pattern(trained: tuple[SequentialModel, Dataset]) -> None:
    model, ds = trained
    _, _, test_in, test_t = loo(ds)
    ndcg, recall = ranking_metrics(model, [model.arrays(x) for x in test_in], model.rows(test_t))
    assert ndcg > 0.6, ndcg  # random ≈ 0.1
    assert recall > 0.8, recall


@pytest.mark.slow
def test_bce_and_ablations_learn_too() -> None:
    ds = chain_dataset()
    train, valid, test_in, test_t = loo(ds)
    cfg = TINY.model_copy(update={"loss": "bce", "use_text": False, "use_time": False, "epochs": 40})
    model, _ = fit_sequential(ds.catalog.ids, train, cfg, valid=valid, progress=False)
    ndcg, _ = ranking_metrics(model, [model.arrays(x) for x in test_in], model.rows(test_t))
    assert ndcg > 0.3, ndcg


@pytest.mark.slow
def test_time_features_learn_a_pattern_only_time_reveals() -> None:
    """The next item depends only on the gap before the last event: short gap → item a, long gap → b."""
    items = [Item(id=i, title=f"thing {i}") for i in ("a", "b", *[f"x{j}" for j in range(10)])]
    rng = np.random.default_rng(1)
    events = []
    for u in range(120):
        t = START
        for j in range(6):
            events.append(Event(user=f"u{u}", item=f"x{(u + j) % 10}", timestamp=t))
            t += timedelta(days=1)
        long_gap = bool(rng.integers(2))
        t += timedelta(days=60) if long_gap else timedelta(minutes=1)
        events.append(Event(user=f"u{u}", item=f"x{(u + 6) % 10}", timestamp=t))
        events.append(Event(user=f"u{u}", item="b" if long_gap else "a", timestamp=t + timedelta(minutes=1)))
    ds = Dataset(Catalog(items), events)
    inputs = [h[:-1] for h in ds.histories.values()]
    targets = [h[-1].item for h in ds.histories.values()]
    scores = {}
    for use_time in (True, False):
        cfg = TINY.model_copy(update={"use_text": False, "use_time": use_time, "epochs": 30})
        # Training data = whole sequences: the pattern itself is what is learned and checked.
        model, _ = fit_sequential(ds.catalog.ids, ds.histories, cfg, valid=list(zip(inputs, targets, strict=True)),
                                  progress=False)
        s = model.score(inputs)[:, model.rows(["a", "b"])]
        scores[use_time] = np.mean((s[:, 0] > s[:, 1]) == np.array([t == "a" for t in targets]))
    assert scores[True] > 0.95, scores
    assert scores[False] < 0.75, scores  # without time the choice is a coin flip


def test_save_load_round_trip_gives_identical_scores(trained: tuple[SequentialModel, Dataset], tmp_path) -> None:
    model, ds = trained
    inputs = [h[:-1] for h in ds.histories.values()]
    model.save(tmp_path / "m")
    loaded = SequentialModel.load(tmp_path / "m", item_ids=ds.catalog.ids, text_embedder="hashing-64")
    assert np.array_equal(loaded.score(inputs), model.score(inputs))
    assert loaded.fingerprint() == model.fingerprint()
    assert loaded.config == model.config


def test_load_rejects_other_catalogue_embedder_and_corruption(trained: tuple[SequentialModel, Dataset],
                                                              tmp_path) -> None:
    model, ds = trained
    path = model.save(tmp_path / "m")
    with pytest.raises(IndexStateError, match="another catalogue"):
        SequentialModel.load(path, item_ids=list(reversed(ds.catalog.ids)))
    with pytest.raises(IndexStateError, match="all-MiniLM"):
        SequentialModel.load(path, text_embedder="all-MiniLM-L6-v2")
    ids = json.loads((path / "ids.json").read_text())
    (path / "ids.json").write_text(json.dumps(ids[::-1]))
    with pytest.raises(IndexStateError, match="checksum"):
        SequentialModel.load(path)
    (path / "model.pt").unlink()
    with pytest.raises(IndexStateError, match="missing"):
        SequentialModel.load(path)
    with pytest.raises(IndexStateError, match="no manifest"):
        SequentialModel.load(tmp_path / "nothing")


def test_training_is_reproducible_with_a_seed() -> None:
    ds = chain_dataset(n_users=20, length=8)
    train, valid, test_in, _ = loo(ds)
    cfg = TINY.model_copy(update={"epochs": 3, "use_text": False})
    runs = [fit_sequential(ds.catalog.ids, train, cfg, valid=valid, progress=False)[0] for _ in range(2)]
    other = fit_sequential(ds.catalog.ids, train, cfg.model_copy(update={"seed": 1}), valid=valid, progress=False)[0]
    assert runs[0].fingerprint() == runs[1].fingerprint()
    assert np.array_equal(runs[0].score(test_in), runs[1].score(test_in))
    assert other.fingerprint() != runs[0].fingerprint()


def test_generator_drops_seen_items_and_matches_exact_scores(trained: tuple[SequentialModel, Dataset]) -> None:
    model, ds = trained
    hist = dict(ds.histories)
    hist["empty"] = ()
    gen = SequentialGenerator(model, PopularityGenerator(ds.histories))
    users = ["u0", "u1", "empty"]
    out = gen.generate_batch([hist[u] for u in users], 5)
    scores = model.score([hist["u0"], hist["u1"]])
    for u, cands, row in zip(users[:2], out[:2], scores, strict=False):
        seen = {ev.item for ev in hist[u]}
        assert len(cands) == 5 and not seen & {c.item_id for c in cands}
        exact = [model.item_ids[c] for c in np.argsort(-row) if model.item_ids[c] not in seen][:5]
        assert [c.item_id for c in cands] == exact
        assert all(c.source == "sequential" for c in cands)
    assert out[2] and all(c.source == "popularity" for c in out[2])
    assert SequentialGenerator(model).generate((), 3) == []  # no fallback given
    assert gen.cache_key() == model.fingerprint()  # what the hybrid's stored fusion choice is keyed on


def test_windows_cover_every_target_once() -> None:
    rows = np.arange(10, dtype=np.int64)
    items, times, targets = training_windows([(rows, rows.astype(float) * 60)], max_len=4)
    got = sorted(int(t) - 1 for t in targets[targets > 0])
    assert got == list(range(1, 10))
    for it, tg in zip(items, targets, strict=True):
        keep = tg > 0
        assert np.array_equal(tg[keep] - 1, it[keep] - 1 + 1)  # each target is the next item
    assert times.min() >= 0


def test_gap_buckets_are_log2_and_capped() -> None:
    import torch

    b = gap_buckets(torch.tensor([0.0, 1.0, 3.0, 1e12]), 8)
    assert b.tolist() == [1, 2, 3, 7]


def test_config_errors_are_typed() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        SequentialModel(["a"], SeqConfig(hidden=30, heads=4, use_text=False))
    with pytest.raises(ConfigError, match="text matrix"):
        SequentialModel(["a", "b"], SeqConfig(use_text=True), text=np.zeros((3, 8), np.float32))
    with pytest.raises(ConfigError, match="no training targets"):
        fit_sequential(["a"], {"u": ()}, SeqConfig(use_text=False), valid=[], progress=False)


def test_holdout_last_never_trains_on_the_target() -> None:
    ds = chain_dataset(n_users=3, length=4)
    train, valid = holdout_last(ds.histories)
    for (inp, target), (user, hist) in zip(valid, train.items(), strict=True):
        assert inp == hist and ds.histories[user][-1].item == target and len(hist) == 3


class _Fixed(CandidateGenerator):
    """Fixed lists per user; a history is identified by its events' user."""

    def __init__(self, name: str, lists: dict[str, list[str]]) -> None:
        self.name, self.lists = name, lists

    def generate_batch(self, histories, k):  # type: ignore[no-untyped-def]
        return [[Candidate(i, 1.0, self.name) for i in self.lists[h[0].user][:k]] for h in histories]


def _one_event(user: str) -> tuple[Event, ...]:
    return (Event(user=user, item="seen", timestamp=datetime(2020, 1, 1, tzinfo=UTC)),)


def test_rrf_fusion_orders_by_weighted_reciprocal_rank() -> None:
    a = [Candidate(i, 0.0, "a") for i in ("x", "y", "z")]
    b = [Candidate(i, 0.0, "b") for i in ("y", "w")]
    fused = rrf_fuse([a, b], [1.0, 1.0], 4, rrf_k=1.0)
    assert [c.item_id for c in fused] == ["y", "x", "w", "z"]  # y: 1/3 + 1/2; x: 1/2; w: 1/3; z: 1/4
    assert fused[0].score == pytest.approx(1 / 3 + 1 / 2)
    assert [c.item_id for c in rrf_fuse([a, b], [1.0, 0.0], 2)] == ["x", "y"]
    with pytest.raises(ConfigError):
        rrf_fuse([a], [1.0, 1.0], 2)


def test_fusion_generator_and_tuning_prefer_the_generator_that_finds_targets() -> None:
    names = [f"u{i}" for i in range(10)]
    users = [_one_event(u) for u in names]
    good = _Fixed("good", {u: [f"t{u}", "g1", "g2"] for u in names})
    bad = _Fixed("bad", {u: ["p", "q", "r"] for u in names})
    targets = [f"t{u}" for u in names]
    # The first generator's weight is fixed at 1, so tuning must up-weight the second to let targets win.
    per = [bad.generate_batch(users, 3), good.generate_batch(users, 3)]
    found = tune_weights(per, targets, k=1, grid=(0.0, 0.5, 2.0))
    assert found.weights == (1.0, 2.0) and found.value == 1.0
    fused = FusionGenerator([bad, good], found.weights, depth=3).generate_batch(users, 1)
    assert recall_at(fused, targets, 1) == 1.0
    # Plain RRF ties t and p at 1/61; ties keep first appearance, so the bad generator's p wins.
    assert recall_at(FusionGenerator([bad, good]).generate_batch(users, 1), targets, 1) == 0.0
    with pytest.raises(ConfigError):
        FusionGenerator([bad, good], [0.0, 0.0])


def test_sampled_softmax_learns_the_planted_pattern() -> None:
    ds = chain_dataset(n_users=30, length=10)
    train, valid, test_in, test_t = loo(ds)
    cfg = TINY.model_copy(update={"loss": "sampled", "negatives": 8, "epochs": 10, "use_text": False})
    model, _ = fit_sequential(ds.catalog.ids, train, cfg, valid=valid, progress=False)
    ndcg, _ = ranking_metrics(model, [model.arrays(x) for x in test_in], model.rows(test_t))
    assert ndcg > 0.5, ndcg  # random ≈ 0.1


def test_a_saved_model_is_refused_on_a_split_it_was_not_trained_on(trained: tuple[SequentialModel, Dataset],
                                                                   tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`sasrec.load=` on another split (or a model that does not record its training data) is LeakageError."""
    from eval.models import TrainData
    from eval.models_sequential import SASRecModel
    from eval.splits import leave_one_out, temporal_split
    from retrieval.errors import LeakageError

    model, ds = trained
    assert model.trained_on is not None and model.trained_on["events"] == 60 * 10
    model.save(tmp_path / "m")

    def fit(train: dict[str, tuple[Event, ...]]) -> SASRecModel:
        return SASRecModel(load=str(tmp_path / "m"), use_text=False).fit(TrainData(ds.catalog, train, ds.catalog.ids))

    fit(dict(leave_one_out(ds).train))  # the split it was trained on: accepted
    later = temporal_split(ds, START + timedelta(hours=9))  # training = 9 events per user, not 10
    with pytest.raises(LeakageError, match="trained on other events"):
        fit(dict(later.train))
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    del manifest["trained_on"]
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LeakageError, match="does not record"):
        fit(dict(leave_one_out(ds).train))


def test_chunked_full_ce_on_real_positions_equals_naive_padded_ce() -> None:
    """Gathering the real positions and chunking gives the naive (B, L) CE with padding ignored, grads too."""
    import torch
    from torch.nn import functional as F

    from retrieval.sequential.network import SASRecNet
    from retrieval.sequential.train import full_ce

    torch.manual_seed(0)
    net = SASRecNet(N_ITEMS, SeqConfig(max_len=8, hidden=16, blocks=1, dropout=0.0, use_text=False))
    lengths = torch.tensor([8, 5, 2, 1])
    pos = torch.arange(8)[None, :] < lengths[:, None]
    items = torch.randint(1, N_ITEMS + 1, (4, 8)) * pos
    targets = torch.randint(1, N_ITEMS + 1, (4, 8)) * pos
    times = torch.zeros(4, 8)

    def grads(loss: torch.Tensor) -> list[torch.Tensor]:
        return [g.clone() for g in torch.autograd.grad(loss, list(net.parameters()), allow_unused=False)]

    naive = F.cross_entropy((net(items, times) @ net.item_vectors().T).reshape(-1, N_ITEMS),
                            (targets - 1).reshape(-1), ignore_index=-1)
    mask = targets > 0
    chunked = full_ce(net(items, times)[mask], net.item_vectors(), targets[mask] - 1, chunk=5)
    assert float(chunked.detach()) == pytest.approx(float(naive.detach()), rel=1e-6)
    for a, b in zip(grads(naive), grads(full_ce(net(items, times)[mask], net.item_vectors(), targets[mask] - 1,
                                                chunk=5)), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # Padding counted as a class-0 target would change the loss: the test can tell the two apart.
    wrong = F.cross_entropy((net(items, times) @ net.item_vectors().T).reshape(-1, N_ITEMS),
                            (targets - 1).clamp(min=0).reshape(-1))
    assert abs(float(wrong.detach()) - float(naive.detach())) > 1e-3


def test_harness_model_passes_the_embedder_model_on() -> None:
    """`sasrec.embedder_model=` reaches the embedder (here: the hashing embedder's dimension)."""
    from eval.models import TrainData
    from eval.models_sequential import SASRecModel

    ds = chain_dataset(n_users=3, length=4)
    train = {u: h[:-2] for u, h in ds.histories.items()}
    model = SASRecModel(embedder="hashing", embedder_model="24").fit(TrainData(ds.catalog, train, ds.catalog.ids))
    assert model.text is not None and model.text.shape == (N_ITEMS, 24) and model.text_embedder == "hashing-24"
