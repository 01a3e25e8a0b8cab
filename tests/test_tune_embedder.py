"""Recommendation-tuned embeddings: pairs, the cached-layer encoder, manifest, cache name, leakage guard, CLI."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from driftrec.cli.main import main
from eval.harness import EvalConfig, evaluate
from eval.models import TrainData
from eval.models_baselines import InterestModel
from eval.splits import leave_one_out
from retrieval.candidates.attention import InterestConfig, interest_vectors, interest_vectors_batch
from retrieval.data.model import Catalog, Dataset, Event, Item
from retrieval.errors import ConfigError, IndexStateError, LeakageError
from retrieval.vectors.embed import make_embedder, packaged_minilm_path
from retrieval.vectors.fingerprint import events_fingerprint
from retrieval.vectors.store import sha256_file
from retrieval.vectors.tune import (
    WEIGHTS,
    TuneConfig,
    _Encoder,
    _load_model,
    check_tuned_on,
    training_pairs,
    tune_embedder,
    tuned_name,
)

WORDS = ["rocket", "garden", "violin", "castle", "river", "pirate", "robot", "desert", "jungle", "winter"]
TINY = TuneConfig(epochs=1, batch_size=10, max_pairs=16, train_layers=1, lr=1e-3)  # 2 steps


def tiny_dataset() -> Dataset:
    """20 items; every user walks the chain item i → i+1 from a different start (known next items)."""
    items = [Item(id=f"i{n}", title=f"{WORDS[n % 10]} {WORDS[(3 * n + 1) % 10]} tale {n}") for n in range(20)]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    events = [Event(user=f"u{u}", item=f"i{(u + j) % 20}", timestamp=start + timedelta(hours=j))
              for u in range(12) for j in range(6)]
    return Dataset(Catalog(items), events, name="tiny-chain")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Path, dict]:
    dataset = tiny_dataset()
    split = leave_one_out(dataset)
    validation = list(zip(split.validation.inputs, split.validation.target_items, strict=True))
    out = tmp_path_factory.mktemp("a") / "model"
    report = tune_embedder(dataset.catalog, split.train, validation, out, TINY, progress=False)
    return dataset, out, report.manifest


def test_training_pairs_follow_histories_and_skip_excluded_items() -> None:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    hist = {"u": tuple(Event(user="u", item=i, timestamp=t + timedelta(hours=n)) for n, i in enumerate("abacd"))}
    assert training_pairs(hist) == [("a", "b"), ("b", "a"), ("a", "c"), ("c", "d")]
    assert training_pairs(hist, window=2)[:3] == [("a", "b"), ("b", "a"), ("b", "c")]  # never ("a", "a")
    assert training_pairs(hist, excluded=["c"]) == [("a", "b"), ("b", "a"), ("a", "d")]


def test_cached_top_layers_reproduce_the_full_model() -> None:
    texts = [it.embedding_text() for it in tiny_dataset().catalog]
    model = _load_model(None)
    reference = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    got = _Encoder(model, texts, train_layers=2).all_vectors()
    assert got.shape == reference.shape
    assert np.abs(got - reference).max() < 1e-3  # frozen states are kept in float16


def test_manifest_records_training_data_and_weights(tuned: tuple[Dataset, Path, dict]) -> None:
    dataset, out, manifest = tuned
    split = leave_one_out(dataset)
    assert manifest["format"].startswith("driftrec-embedder/")
    assert manifest["base_model"] == "all-MiniLM-L6-v2"
    assert manifest["trained_on"] == events_fingerprint(split.train)
    assert manifest["pairs"]["used"] == 16 and manifest["pairs"]["available"] == 12 * 3
    assert manifest["epochs_run"] == 1 and manifest["best_epoch"] in (0, 1)
    assert "InfoNCE" in manifest["objective"] and manifest["seconds"] > 0
    assert len(manifest["validation"]["per_epoch"]) == 2 and 0 <= manifest["validation"]["best"]["ndcg@10"] <= 1
    assert manifest["sha256"][WEIGHTS] == sha256_file(out / WEIGHTS)
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_cache_name_comes_from_the_weights_not_the_directory(tuned: tuple[Dataset, Path, dict],
                                                             tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    _, out, manifest = tuned
    embedder = make_embedder("sentence-transformers", str(out))
    assert embedder.name == f"model-{manifest['sha256'][WEIGHTS][:12]}" == tuned_name(out)
    vecs = embedder.embed(["rocket garden tale 0"])
    assert vecs.shape == (1, 384) and abs(float(np.linalg.norm(vecs)) - 1) < 1e-4
    other = tmp_path / "model"  # same directory name, other weights
    shutil.copytree(out, other)
    weights = load_file(other / WEIGHTS)
    first = next(iter(weights))
    weights[first] = weights[first] + 0.01
    save_file(weights, other / WEIGHTS, metadata={"format": "pt"})
    with pytest.raises(IndexStateError, match="differs from the sha256"):
        tuned_name(other)  # weights changed behind the manifest's back
    changed = json.loads((other / "manifest.json").read_text())
    changed["sha256"][WEIGHTS] = sha256_file(other / WEIGHTS)
    (other / "manifest.json").write_text(json.dumps(changed))
    renamed = tuned_name(other)
    assert renamed is not None and renamed != tuned_name(out) and renamed.startswith("model-")


def test_leakage_guard_refuses_a_model_tuned_on_other_events(tuned: tuple[Dataset, Path, dict]) -> None:
    dataset, out, _ = tuned
    split = leave_one_out(dataset)
    check_tuned_on(out, split.train)  # the run's own training events: fine
    with pytest.raises(LeakageError, match="tuned on other events"):
        check_tuned_on(out, dataset.histories)  # validation and test events included
    train = TrainData(dataset.catalog, dataset.histories, tuple(dataset.catalog.ids))
    with pytest.raises(LeakageError):
        InterestModel(embedder_model=str(out), cache=False).fit(train)
    result = evaluate(dataset, ["interest"], EvalConfig(defaults={"embedder_model": str(out)}, n_boot=50,
                                                         model_kwargs={"interest": {"cache": False}}))
    assert result.models["interest"].ranks.shape == (12,)
    recorded = [m for m in result.provenance["models"] if m["role"] == "embedding"]
    assert [m["path"] for m in recorded] == [str(out.resolve())]  # the tuned directory, not the packaged model
    shorter = dataset.with_histories({u: evs[:-1] for u, evs in dataset.histories.items()})
    with pytest.raises(LeakageError):  # another split of the same data: its training events differ
        evaluate(shorter, ["interest"], EvalConfig(defaults={"embedder_model": str(out)},
                                                    model_kwargs={"interest": {"cache": False}}))
    packaged = packaged_minilm_path()
    assert packaged is not None
    check_tuned_on(packaged, split.train)  # a plain model directory: nothing to check


def test_interest_model_refuses_a_model_dir_for_the_hashing_embedder(tuned: tuple[Dataset, Path, dict]) -> None:
    with pytest.raises(ConfigError, match="sentence-transformers"):
        InterestModel(embedder="hashing", embedder_model=str(tuned[1]))


def test_event_half_life_batch_matches_reference_and_favours_the_last_event() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(2, 6, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=2, keepdims=True)
    times = np.tile(np.arange(6, dtype=np.float64) * 60, (2, 1))  # one session: days say nothing
    mask = np.ones((2, 6), dtype=bool)
    mask[1, :2] = False
    config = InterestConfig(short_half_life_events=0.05, long_half_life_events=3.0)
    short, long = interest_vectors_batch(vecs, times, mask, config)
    for b in range(2):
        ref_s, ref_l = interest_vectors(vecs[b][mask[b]], times[b][mask[b]], config)
        assert np.allclose(short[b], ref_s, atol=1e-5) and np.allclose(long[b], ref_l, atol=1e-5)
        assert np.allclose(short[b], vecs[b, -1], atol=1e-3)  # half-life ≪ 1 event: the newest item
    with pytest.raises(ConfigError):
        InterestConfig(short_half_life_events=0.0)


def write_csv(dataset: Dataset, root: Path) -> Path:
    root.mkdir()
    (root / "items.csv").write_text("id,title\n" + "".join(f"{it.id},{it.title}\n" for it in dataset.catalog))
    (root / "events.csv").write_text("user,item,timestamp\n" + "".join(
        f"{ev.user},{ev.item},{ev.timestamp.isoformat()}\n" for evs in dataset.histories.values() for ev in evs))
    return root


def test_cli_tunes_saves_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_csv(tiny_dataset(), tmp_path / "data")
    out = tmp_path / "m"
    args = ["tune-embedder", "--data", str(data), "--out", str(out), "--quiet"]
    assert main([*args, "--epochs", "1", "--max-pairs", "16", "--batch-size", "10"]) == 0
    printed = capsys.readouterr().out
    assert f"saved to {out.absolute()}" in printed and "validation (last-item neighbours, 12 users)" in printed
    assert json.loads((out / "manifest.json").read_text())["pairs"]["used"] == 16


@pytest.mark.parametrize(("extra", "message"), [
    (["--epochs", "0"], "epochs must be ≥ 1, got 0"),
    (["--batch-size", "1"], "batch_size must be ≥ 2"),
    (["--max-pairs", "-1"], "--max-pairs must be ≥ 0"),
    (["--max-minutes", "0"], "max_minutes must be > 0"),
    (["--valid-users", "0"], "valid_users must be ≥ 1"),
])
def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                 message: str) -> None:
    assert main(["tune-embedder", "--data", "ml-100k", "--out", str(tmp_path / "m"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("driftrec: error: ") and message in err and "\n" not in err


def test_cli_refuses_to_replace_a_foreign_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("keep")
    assert main(["tune-embedder", "--out", str(victim)]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (victim / "notes.txt").read_text() == "keep"


def test_cold_items_are_seeded_and_select_users_by_test_target() -> None:
    from eval.research.cold_items import cold_items, cold_split

    dataset = tiny_dataset()
    cold = cold_items(dataset, 0.25, seed=3)
    assert len(cold) == 5 and cold == cold_items(dataset, 0.25, seed=3) != cold_items(dataset, 0.25, seed=4)
    sub = cold_split(leave_one_out(dataset), set(cold))
    assert len(sub.test) > 0 and all(t in cold for t in sub.test.target_items)
    assert set(sub.validation.users) == set(sub.test.users)
    with pytest.raises(ConfigError):
        cold_items(dataset, 1.0, seed=0)
