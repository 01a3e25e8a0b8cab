"""Splits, protocols, leakage, baselines and the `driftrec eval` CLI end to end."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from driftrec.cli.main import main
from eval.harness import EvalConfig, LeakageError, check_no_leakage, evaluate, validation_metric
from eval.models import GeneratorModel, RankedCandidates, Recommender, TrainData, ValidationData, make_model
from eval.protocols import LLMRankSampling, ProtocolContext, RetrieveRerank
from eval.splits import Split, check_llmrank_split, leave_one_out, temporal_split
from retrieval.candidates.knn import ItemKNN, KNNGenerator
from retrieval.data.datasets import load_dataset
from retrieval.data.model import Catalog, Dataset, Event, Item
from retrieval.errors import ConfigError

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _ev(user: str, item: str, day: int) -> Event:
    return Event(user=user, item=item, timestamp=T0 + timedelta(days=day))


def chain_dataset(n_users: int = 60, n_items: int = 30, length: int = 8, seed: int = 0) -> Dataset:
    """Users walk a chain: after item i comes item i+1 (mod n). The right next item is known."""
    rng = np.random.default_rng(seed)
    items = [Item(id=f"i{i}", title=f"item {i}") for i in range(n_items)]
    events = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        events += [_ev(f"u{u}", f"i{(start + j) % n_items}", j) for j in range(length)]
    return Dataset(Catalog(items), events, name="chain")


def write_chain_dataset(data: Path) -> Path:
    """A 40-user chain dataset as items.csv + events.csv in `data` (for CLI runs)."""
    data.mkdir()
    ds = chain_dataset(n_users=40, n_items=50)
    (data / "items.csv").write_text("id,title\n" + "".join(f"{i.id},{i.title}\n" for i in ds.catalog))
    (data / "events.csv").write_text("user,item,timestamp\n" + "".join(
        f"{e.user},{e.item},{int(e.timestamp.timestamp())}\n" for h in ds.histories.values() for e in h))
    return data


# ---------------------------------------------------------------- splits

def test_leave_one_out_ties_keep_file_order_not_item_order() -> None:
    items = Catalog([Item(id=i, title=i) for i in ("a", "b", "c", "z")])
    # z and b share a timestamp; z comes first in the file, so b is the later event.
    ds = Dataset(items, [_ev("u", "c", 0), _ev("u", "a", 1), _ev("u", "z", 2), _ev("u", "b", 2)])
    split = leave_one_out(ds)
    assert split.test.target_items == ("b",) and split.validation.target_items == ("z",)
    assert [e.item for e in split.train["u"]] == ["c", "a"]
    flipped = Dataset(items, [_ev("u", "c", 0), _ev("u", "a", 1), _ev("u", "b", 2), _ev("u", "z", 2)])
    assert leave_one_out(flipped).test.target_items == ("z",)


def test_leave_one_out_inputs_and_short_users() -> None:
    ds = chain_dataset(n_users=5, length=6)
    short = Dataset(ds.catalog, [_ev("s", "i1", 0), _ev("s", "i2", 1)])
    split = leave_one_out(ds)
    for user, vin, tin, vt in zip(split.test.users, split.validation.inputs, split.test.inputs,
                                  split.validation.targets, strict=True):
        assert vin == split.train[user] and tin == (*split.train[user], vt)
        assert len(split.train[user]) == 4
    s = leave_one_out(short)
    assert len(s.test) == 0 and s.train_only_users == 1 and len(s.train["s"]) == 2


def test_temporal_split_trains_before_the_cut_only() -> None:
    ds = chain_dataset(n_users=10, length=8)
    split = temporal_split(ds, T0 + timedelta(days=6), T0 + timedelta(days=4))
    assert all(e.timestamp < T0 + timedelta(days=4) for h in split.train.values() for e in h)
    assert all(t.timestamp == T0 + timedelta(days=6) for t in split.test.targets)
    assert all(t.timestamp == T0 + timedelta(days=4) for t in split.validation.targets)
    assert all(len(i) == 6 for i in split.test.inputs)
    check_no_leakage(split.train, split.test, split.validation)
    with pytest.raises(ConfigError):
        temporal_split(ds, T0, T0 + timedelta(days=1))


@pytest.mark.slow
def test_games_split_is_llmranks_own(games_path: Path) -> None:
    split = leave_one_out(load_dataset(games_path))
    assert check_llmrank_split(split, games_path) == 2 * 50_546
    # user 0 in the files: history 0..13, test target 14, validation target 13
    i = split.test.users.index("0")
    assert split.test.targets[i].item == "14" and split.validation.targets[i].item == "13"


# ---------------------------------------------------------------- leakage

class PeekingModel(Recommender):
    """Scores 1 for every item it has ever been shown for a user (fit histories and inputs): if any
    held-out event leaked into what a model receives, this model would find the target."""

    def fit(self, train: TrainData) -> PeekingModel:
        self.train = train
        self.shown = {u: {e.item for e in h} for u, h in train.histories.items()}
        return self

    def score_batch(self, inputs: Sequence[Sequence[Event]]) -> np.ndarray:
        col = self._columns()
        out = np.zeros((len(inputs), len(self.train.item_ids)))
        for u, inp in enumerate(inputs):
            items = {e.item for e in inp} | (self.shown.get(inp[-1].user, set()) if inp else set())
            out[u, [col[i] for i in items]] = 1.0
        return out


def test_peeking_model_finds_nothing_and_training_data_is_read_only() -> None:
    ds = chain_dataset()
    split = leave_one_out(ds)
    for u, target in zip(split.test.users, split.test.targets, strict=True):
        assert target.item not in {e.item for e in split.train[u]}
    res = evaluate(ds, [PeekingModel()], EvalConfig(protocol="llmrank", n_boot=50))
    # Candidates exclude the input items, so everything it can score 1 is absent: rank is pessimistic last.
    assert res.models["model"].metrics["hr@1"] == 0.0
    assert res.models["model"].metrics["mrr"] == pytest.approx(1 / 20)
    with pytest.raises(TypeError):
        split.train["u0"] = ()  # type: ignore[index]


def test_leaky_split_is_caught() -> None:
    ds = chain_dataset(n_users=4)
    good = leave_one_out(ds)
    leaky = Split("leave-one-out", {u: ds.histories[u] for u in good.train}, good.validation, good.test)
    with pytest.raises(LeakageError):
        evaluate(ds, ["popularity"], EvalConfig(n_boot=10), split=leaky)


# ---------------------------------------------------------------- protocols

def test_llmrank_candidates_hold_the_target_once_and_nothing_seen() -> None:
    ds = chain_dataset(n_users=40, n_items=60)
    split = leave_one_out(ds)
    ctx = ProtocolContext(ds.catalog.ids, seed=5)
    cands = LLMRankSampling().candidates(split.test, ctx)
    assert cands is not None
    for c, inp, target in zip(cands, split.test.inputs, split.test.target_items, strict=True):
        assert len(c) == 20 and len(set(c)) == 20 and c.count(target) == 1
        assert not {e.item for e in inp} & set(c)
    positions = [c.index(t) for c, t in zip(cands, split.test.target_items, strict=True)]
    assert len(set(positions)) > 5  # shuffled, not always first
    again = LLMRankSampling().candidates(split.test.subset([3, 7]), ctx)
    assert again == [cands[3], cands[7]]  # per-user seeding: independent of which users are evaluated


def test_rerank_candidates_are_the_retrievers_unseen_top_k() -> None:
    ds = chain_dataset(n_users=40, n_items=60)
    split = leave_one_out(ds)
    train = TrainData(ds.catalog, split.train, ds.catalog.ids)
    retriever = make_model("itemknn").fit(train)
    cands = RetrieveRerank(k=5).candidates(split.test, ProtocolContext(ds.catalog.ids, retriever=retriever))
    assert cands is not None
    scores = retriever.score_batch(split.test.inputs)
    col = {i: c for c, i in enumerate(ds.catalog.ids)}
    for u, (c, inp) in enumerate(zip(cands, split.test.inputs, strict=True)):
        assert len(c) == 5 and len(set(c)) == 5 and not {e.item for e in inp} & set(c)
        assert c.source == "itemknn" and c.scores is not None and np.all(np.diff(c.scores) <= 0)
        unseen = sorted((s for i, s in zip(ds.catalog.ids, scores[u], strict=True)
                         if i not in {e.item for e in inp}), reverse=True)
        assert c.scores[0] == pytest.approx(unseen[0]) and scores[u, col[c[0]]] == pytest.approx(c.scores[0])


def test_rerank_ceiling_and_misses() -> None:
    ds = chain_dataset(n_users=50, n_items=40)
    res = evaluate(ds, ["popularity", "itemknn"], EvalConfig(protocol="rerank", retriever="popularity",
                                                             rerank_k=3, n_boot=50))
    ceiling = res.retriever
    assert ceiling is not None and ceiling["name"] == "popularity"
    for name in ("popularity", "itemknn"):
        assert res.models[name].metrics["recall@20"] <= ceiling["recall@3"] + 1e-12
        assert np.isinf(res.models[name].ranks).mean() == pytest.approx(1 - ceiling["recall@3"])
    # the retriever scoring its own candidates reproduces its Recall@3
    assert res.models["popularity"].metrics["recall@5"] == pytest.approx(ceiling["recall@3"])


# ---------------------------------------------------------------- baselines and tuning

def test_itemknn_learns_the_chain_and_beats_popularity() -> None:
    ds = chain_dataset(n_users=150)
    # With a short recency half-life the last item dominates; its unseen most frequent co-occurrence
    # (distance 1 in the chain) is the successor, the right answer. Tuning on validation must find that.
    res = evaluate(ds, ["random", "popularity", "itemknn"],
                   EvalConfig(n_boot=100, model_kwargs={"itemknn": {"half_lives": [20.0, 0.5, None]}}))
    knn = res.models["itemknn"].metrics
    assert res.models["itemknn"].diagnostics["half_life_events"] == 0.5
    assert knn["hr@1"] > 0.9
    assert knn["ndcg@10"] > res.models["popularity"].metrics["ndcg@10"] + 0.5
    assert res.compare("itemknn", "popularity").ci95[0] > 0
    lo, hi = res.models["itemknn"].ci95["ndcg@10"]
    assert lo <= knn["ndcg@10"] <= hi


def test_knn_generator_drops_seen_items() -> None:
    ds = chain_dataset(n_users=30)
    knn = ItemKNN(ds.histories, ds.catalog.ids, neighbours=10, half_life=None)
    cands = KNNGenerator(knn).generate_batch([ds.histories["u0"], ds.histories["u1"]], 5)
    for user, row in zip(["u0", "u1"], cands, strict=True):
        seen = {e.item for e in ds.histories[user]}
        assert row and not seen & {c.item_id for c in row} and row[0].source == "itemknn"


def test_generator_model_scores_exactly_the_generator_candidates() -> None:
    """The one harness adapter: any generator's candidates keep their order; other items rank below them."""
    ds = chain_dataset(n_users=30)
    split = leave_one_out(ds)
    model = GeneratorModel(lambda t: KNNGenerator(ItemKNN(t.histories, t.item_ids, 10, half_life=None)), depth=5)
    model.fit(TrainData(ds.catalog, split.train, ds.catalog.ids))
    inputs = list(split.test.inputs[:3])
    scores = model.score_batch(inputs)
    expected = model.generator.generate_batch(inputs, 5)
    for row, cands in zip(scores, expected, strict=True):
        assert cands and int(np.isfinite(row).sum()) == len(cands)
        top = [ds.catalog.ids[c] for c in np.argsort(-row, kind="stable")[:len(cands)]]
        assert top == [c.item_id for c in cands]


class Tunable(Recommender):
    """Records what tune() receives."""

    def tune(self, validation: ValidationData) -> None:
        self.got = validation

    def score_batch(self, inputs: Sequence[Sequence[Event]]) -> np.ndarray:
        return np.zeros((len(inputs), len(self.train.item_ids)))


def test_tune_gets_validation_targets_and_candidates_never_test() -> None:
    ds = chain_dataset(n_users=20)
    split = leave_one_out(ds)
    model = Tunable()
    evaluate(ds, [model], EvalConfig(protocol="llmrank", n_boot=10))
    got = model.got
    assert got.targets == split.validation.target_items and got.inputs == split.validation.inputs
    assert got.candidates is not None and all(isinstance(c, RankedCandidates) for c in got.candidates)
    assert all(c.count(t) == 1 for c, t in zip(got.candidates, got.targets, strict=True))


def test_random_on_llmrank_hits_the_anchor(ml100k_path: Path) -> None:
    ds = load_dataset(ml100k_path)
    res = evaluate(ds, ["random"], EvalConfig(protocol="llmrank", n_boot=200))
    lo, hi = res.models["random"].ci95["ndcg@10"]
    assert res.n_users == 943 and lo < 0.2272 < hi


def test_bad_model_output_shape_is_an_error() -> None:
    class Bad(Recommender):
        def score_batch(self, inputs: Sequence[Sequence[Event]]) -> np.ndarray:
            return np.zeros((len(inputs), 3))

    with pytest.raises(ConfigError, match="shape"):
        evaluate(chain_dataset(n_users=4), [Bad()], EvalConfig(n_boot=10))


# ---------------------------------------------------------------- CLI end to end

def test_cli_eval_writes_results_report_and_plots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = write_chain_dataset(tmp_path / "data")
    out = tmp_path / "run"
    code = main(["eval", "--dataset", str(data), "--protocol", "llmrank", "--models",
                 "random,popularity,itemknn,interest", "--embedder", "hashing", "--users", "30", "--seed", "3",
                 "--model-arg", "itemknn.neighbours=20", "--n-boot", "50", "--no-progress", "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["dataset"] == "data" and doc["protocol"] == "llmrank" and doc["seed"] == 3 and doc["n_users"] == 30
    assert set(doc["models"]) == {"random", "popularity", "itemknn", "interest"}
    row = doc["models"]["itemknn"]
    assert row["ndcg@10"] > 0.8 and {"recall@10", "mrr", "ci95", "coverage@10"} <= set(row)
    assert row["ci95"]["ndcg@10"][0] <= row["ndcg@10"] <= row["ci95"]["ndcg@10"][1]
    assert "| itemknn |" in (out / "report.md").read_text()
    for png in ("metric_vs_k.png", "ndcg_by_history.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert main(["eval", "--dataset", str(data), "--models", "nope", "--out", str(out)]) == 2


def test_resume_reuses_saved_ranks_only_for_the_same_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = chain_dataset(n_users=30)
    cfg = EvalConfig(protocol="llmrank", n_boot=20, resume_dir=tmp_path, resume=True)
    first = evaluate(ds, ["random", "itemknn"], cfg)
    again = evaluate(ds, ["random", "itemknn"], cfg)
    for name in ("random", "itemknn"):
        assert "resumed" not in first.models[name].timings and again.models[name].timings["resumed"] == 1.0
        np.testing.assert_array_equal(first.models[name].ranks, again.models[name].ranks)
    assert again.models["itemknn"].diagnostics == first.models["itemknn"].diagnostics
    other_seed = evaluate(ds, ["random"], EvalConfig(protocol="llmrank", seed=1, n_boot=20, resume_dir=tmp_path,
                                                     resume=True))
    assert "resumed" not in other_seed.models["random"].timings
    # A default changed between runs is another run: the saved ranks are not reused.
    from eval.models_baselines import ItemKNNModel

    monkeypatch.setattr(ItemKNNModel.__init__, "__defaults__", (60, 0.5, 2.0, ItemKNNModel.__init__.__defaults__[3]))
    changed = evaluate(ds, ["itemknn"], cfg)
    assert "resumed" not in changed.models["itemknn"].timings


def test_validation_metric_matches_the_test_ranking_code() -> None:
    ds = chain_dataset(n_users=40)
    split = leave_one_out(ds)
    model = make_model("popularity").fit(TrainData(ds.catalog, split.train, ds.catalog.ids))
    val = ValidationData(split.test.users, split.test.inputs, split.test.target_items, None)
    res = evaluate(ds, ["popularity"], EvalConfig(n_boot=10))
    assert validation_metric(model, val, "ndcg@10") == pytest.approx(res.models["popularity"].metrics["ndcg@10"])


def test_rerank_ceiling_equals_the_tuned_retrievers_full_ranking_recall() -> None:
    ds = chain_dataset(n_users=80, n_items=60)
    full = evaluate(ds, ["itemknn"], EvalConfig(n_boot=10))
    rerank = evaluate(ds, ["itemknn"], EvalConfig(protocol="rerank", retriever="itemknn", rerank_k=5, n_boot=10))
    assert rerank.retriever is not None
    assert rerank.retriever["recall@5"] == pytest.approx(full.models["itemknn"].metrics["recall@5"])
    np.testing.assert_array_equal(np.minimum(full.models["itemknn"].ranks, 6), np.minimum(
        rerank.models["itemknn"].ranks, 6))  # same ranks within the top 5, misses beyond


def test_model_options_are_checked(tmp_path: Path, ml100k_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt option or an option for a model the run does not use is an error, not ignored."""
    base = ["eval", "--dataset", str(ml100k_path), "--protocol", "full", "--models", "popularity",
            "--users", "20", "--out", str(tmp_path)]
    assert main([*base, "--model-arg", "popularity.bogus=1"]) == 2
    assert "model 'popularity' has no option bogus" in capsys.readouterr().err
    assert main([*base, "--model-arg", "itemkn.neighbours=5"]) == 2
    assert "--model-arg names itemkn, which this run does not use" in capsys.readouterr().err


def test_compare_runs_pairs_one_model_across_runs_on_the_same_users(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from eval.compare_runs import compare, load_run, to_markdown

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = write_chain_dataset(tmp_path / "data")

    def run(name: str, neighbours: int, seed: int = 3) -> Path:
        out = tmp_path / name
        assert main(["eval", "--dataset", str(data), "--protocol", "llmrank", "--models", "popularity,itemknn",
                     "--model-arg", f"itemknn.neighbours={neighbours}", "--users", "30", "--seed", str(seed),
                     "--n-boot", "50", "--no-progress", "--out", str(out)]) == 0
        return out

    wide, narrow = load_run(run("wide", 20)), load_run(run("narrow", 1))
    rows = compare([wide, narrow], "itemknn", "popularity", "ndcg@10", n_boot=50)
    doc = json.loads((wide.path / "results.json").read_text())
    assert rows[0].mean == pytest.approx(doc["models"]["popularity"]["ndcg@10"], abs=1e-6)
    assert rows[1].mean == pytest.approx(doc["models"]["itemknn"]["ndcg@10"], abs=1e-6)
    assert rows[1].vs_first is not None and rows[1].vs_first.diff == 0.0
    assert rows[2].vs_first is not None and rows[2].vs_first.diff == pytest.approx(rows[2].mean - rows[1].mean)
    assert rows[1].vs_anchor is not None and rows[1].vs_anchor.n_users == 30
    assert "| popularity (anchor) |" in to_markdown(rows, "itemknn", "ndcg@10")
    assert compare([wide], "popularity", "popularity", "ndcg@10", n_boot=20)[1].same_top1 == 1.0
    assert rows[1].same_top1 < 1.0  # item-kNN does not just repeat popularity's top item
    with pytest.raises(ConfigError, match="was run with"):
        compare([wide, load_run(run("other-seed", 20, seed=4))], "itemknn", "popularity", "ndcg@10")
    tampered = tmp_path / "tampered"
    shutil.copytree(wide.path, tampered)
    ranks_file = next((tampered / "ranks").glob("popularity-*.json"))
    saved = json.loads(ranks_file.read_text())
    saved["ranks"] = saved["ranks"][::-1]
    ranks_file.write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="cannot be paired"):
        compare([wide, load_run(tampered)], "itemknn", "popularity", "ndcg@10")
    with pytest.raises(ConfigError, match="no model 'sasrec'"):
        compare([wide], "sasrec", "popularity", "ndcg@10")


def test_rank_store_keys_belong_to_one_model_only(tmp_path: Path) -> None:
    from eval.resume import RankStore

    store = RankStore(tmp_path)
    for name, key in (("llm", "0a1b"), ("llm-rerank", "ffee"), ("llm-rerank", "0123")):
        store.save(name, key, np.array([1.0, np.inf]), [["a"], ["b"]], {}, {})
    assert store.keys("llm") == ["0a1b"] and store.keys("llm-rerank") == ["0123", "ffee"]
    assert store.keys("sasrec") == []


def test_compare_runs_cli_reports_a_bad_directory_in_one_line(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from eval.compare_runs import main as compare_main

    with pytest.raises(SystemExit) as stop:
        compare_main([str(tmp_path / "nope")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().endswith("is not a driftrec eval output directory (no results.json)")


def test_leakage_guard_branches_each_raise() -> None:
    """Both refusals of `check_no_leakage`: training not a prefix of the input; training later than the target."""
    from eval.splits import Stage

    early, late, target = _ev("u", "i1", 1), _ev("u", "i5", 5), _ev("u", "i2", 2)
    check_no_leakage({"u": (early,)}, Stage("test", ("u",), ((early, late),), (_ev("u", "i6", 6),)))
    with pytest.raises(LeakageError, match="not a prefix"):
        check_no_leakage({"u": (late,)}, Stage("test", ("u",), ((early,),), (target,)))
    # An input out of time order can hold the training events as a prefix and still end before the target.
    with pytest.raises(LeakageError, match="later than the test target"):
        check_no_leakage({"u": (late,)}, Stage("test", ("u",), ((late, early),), (target,)))
