"""End to end and smoke runs of the code behind published figures: the sequential models inside the harness,
`driftrec train` → `sasrec.load=`, report writing, and the grounding, interest-evolution and LLM benchmark scripts.

Everything runs on tiny synthetic data whose right answer is known; caches and outputs live in tmp_path.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import BaseMessage

from agent.llm import LLMClient, LLMSettings
from driftrec.cli.main import main as driftrec
from eval.harness import EvalConfig, EvalResult, evaluate
from eval.metrics import rank_candidates, rank_full
from eval.models import Recommender, TrainData, ValidationData, make_model
from eval.models_hybrid import HybridModel
from eval.protocols import ProtocolContext, make_protocol, seen_mask
from eval.splits import leave_one_out
from retrieval.candidates.base import Candidate
from retrieval.candidates.popularity import PopularityGenerator
from retrieval.data.datasets import load_dataset
from retrieval.data.model import Catalog, Dataset, Event
from tests.conftest import planted_shift_dataset
from tests.fakes import FakeChatModel, LogprobReply
from tests.test_eval_harness import chain_dataset, write_chain_dataset

# Small enough to train in seconds on two loaded cores; the chain is learnt within ~10 epochs.
SEQ: dict[str, Any] = {"use_text": False, "hidden": 32, "blocks": 1, "max_len": 16, "dropout": 0.1, "lr": 5e-3,
                       "batch_size": 32, "epochs": 60, "patience": 2}
# The same settings as `driftrec train` flags.
SEQ_FLAGS = ["--no-text", "--hidden", "32", "--blocks", "1", "--max-len", "16", "--dropout", "0.1", "--lr", "0.005",
             "--batch-size", "32", "--epochs", "60", "--patience", "2"]
INVENTED = 'You will love it, just as you loved "Zorblax Returns".'
TITLE = re.compile(r"\b[a-z]+ [a-z]+ story \d+\b")  # titles of `planted_shift_dataset`


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedding caches and converted GGUFs go to tmp_path, never to the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DRIFTREC_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory: pytest.TempPathFactory) -> EvalResult:
    """popularity and the harness-trained sasrec on a chain dataset (after item i comes i+1), full ranking."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        return evaluate(chain_dataset(n_users=60, length=10), ["popularity", "sasrec"],
                        EvalConfig(n_boot=200, model_kwargs={"sasrec": SEQ}))


def write_movielens_csv(dataset: Dataset, root: Path) -> Path:
    """`dataset` as MovieLens movies.csv + ratings.csv (the CSV layout whose loader keeps categories)."""
    root.mkdir(parents=True)
    (root / "movies.csv").write_text("movieId,title,genres\n" + "".join(
        f"{i.id},{i.title},{'|'.join(i.categories)}\n" for i in dataset.catalog))
    (root / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{e.user},{e.item},4,{int(e.timestamp.timestamp())}\n" for h in dataset.histories.values() for e in h))
    return root


def invent_then_cite(messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]) -> str:
    """A fake LLM's text reply: first an invented title; once told off, the evidence titles and a category."""
    if "rejected" not in str(messages[-1].content):
        return INVENTED
    prompt = str(messages[1].content)  # the first user message: the evidence
    titles = list(dict.fromkeys(TITLE.findall(prompt)))[:3]
    topic = next(c for c in ("cooking", "space") if c in prompt)
    return f"You enjoyed {' and '.join(titles)}, so more {topic} titles suit you now."


# ---------------------------------------------------------------- sequential models in the harness

def test_sasrec_in_the_harness_learns_the_chain_and_stops_early(chain_run: EvalResult) -> None:
    pop, seq = chain_run.models["popularity"], chain_run.models["sasrec"]
    assert seq.metrics["ndcg@10"] > 0.8 > 0.4 > pop.metrics["ndcg@10"], (seq.metrics, pop.metrics)
    paired = chain_run.compare("sasrec", "popularity")
    assert paired.ci95[0] > 0.3 and paired.wins > paired.losses
    d = seq.diagnostics
    assert chain_run.info["tuned"] == ["sasrec"] and d["early_stop_on_validation_stage"] == 1.0
    # Early stopping on the validation stage: patience evaluations after the best epoch, long before the cap.
    assert d["epochs_run"] == d["best_epoch"] + SEQ["patience"] < SEQ["epochs"], d
    assert d["val_ndcg@10"] > 0.8


def _candidate_ranks(model: Recommender, inputs: Sequence[tuple[Event, ...]], targets: Sequence[str],
                     cands: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """(full-catalogue ranks, ranks among candidates) of each target, (n_users,) each."""
    col = model._columns()
    full = model.score_batch(inputs)
    excluded = seen_mask(inputs, col, full.shape[1])
    full_ranks = rank_full(full, np.array([col[t] for t in targets]), excluded)
    got = model.score_candidates(inputs, cands)
    return full_ranks, rank_candidates(got, np.array([list(c).index(t) for c, t in zip(cands, targets,
                                                                                          strict=True)]))


def test_sequential_models_score_llmrank_candidates_as_they_rank_the_catalogue() -> None:
    """`score_candidates` must give each candidate the model's own score of that item, in candidate order."""
    ds = chain_dataset(n_users=60, length=10)
    split = leave_one_out(ds)
    train = TrainData(ds.catalog, split.train, ds.catalog.ids)
    val, test = split.validation, split.test
    cands = make_protocol("llmrank", 20).candidates(test, ProtocolContext(ds.catalog.ids, 0, None, 256, False))
    assert cands is not None
    for name in ("sasrec", "hybrid"):
        model = make_model(name, embedder="hashing", **SEQ).fit(train)
        model.tune(ValidationData(val.users, val.inputs, val.target_items, None))
        if isinstance(model, HybridModel):
            model.weights = (1.0,) * len(model.names)  # every generator counts, so fusion reorders the sequential list
        full = model.score_batch(test.inputs)
        col = model._columns()
        for u, (c, s) in enumerate(zip(cands, model.score_candidates(test.inputs, cands), strict=True)):
            sliced = full[u, [col[i] for i in c]]
            assert s.shape == (len(c),)
            np.testing.assert_array_equal(np.argsort(-s, kind="stable"), np.argsort(-sliced, kind="stable"),
                                          err_msg=f"{name}: user {u}")
        full_ranks, cand_ranks = _candidate_ranks(model, test.inputs, test.target_items, cands)
        assert (cand_ranks <= full_ranks).all(), name  # candidates are a subset of the unseen items
        if name == "sasrec":
            assert float(np.mean(cand_ranks == 1)) > 0.8


def test_sasrec_reranks_the_retrievers_candidates_under_the_rerank_protocol() -> None:
    ds = chain_dataset(n_users=60, length=10)
    res = evaluate(ds, ["sasrec"], EvalConfig(protocol="rerank", retriever="popularity", rerank_k=10, n_boot=20,
                                              model_kwargs={"sasrec": SEQ}))
    assert res.retriever is not None and res.retriever["name"] == "popularity"
    ranks = res.models["sasrec"].ranks
    hit = np.isfinite(ranks)
    assert float(hit.mean()) == pytest.approx(res.retriever["recall@10"])  # misses are exactly the ceiling
    assert hit.sum() >= 5 and float(np.mean(ranks[hit] == 1)) > 0.8  # found targets go to the top
    assert res.models["sasrec"].metrics["recall@1"] > 0.8 * res.retriever["recall@10"]


def test_a_model_from_driftrec_train_loads_in_the_harness_and_refuses_another_split(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_chain_dataset(tmp_path / "data")
    model_dir = tmp_path / "model"
    assert driftrec(["train", "--data", str(data), "--out", str(model_dir), *SEQ_FLAGS, "--quiet"]) == 0
    saved = json.loads((model_dir / "train_report.json").read_text())
    assert saved["stopped_early"] and saved["epochs_run"] == saved["best_epoch"] + 2 < 60
    assert f"best epoch {saved['best_epoch']} of {saved['epochs_run']} (early stop)" in capsys.readouterr().out

    ds = load_dataset(data)
    load = {"sasrec": {"load": str(model_dir), "use_text": False}}
    loaded = evaluate(ds, ["sasrec"], EvalConfig(n_boot=50, model_kwargs=load)).models["sasrec"]
    trained = evaluate(ds, ["sasrec"], EvalConfig(n_boot=50, model_kwargs={"sasrec": SEQ})).models["sasrec"]
    assert loaded.diagnostics["loaded"] == 1.0 and loaded.diagnostics["best_epoch"] == saved["best_epoch"]
    assert trained.diagnostics["best_epoch"] == saved["best_epoch"]  # same data, settings and seed
    np.testing.assert_array_equal(loaded.ranks, trained.ranks)
    assert loaded.metrics["ndcg@10"] > 0.7

    base = ["eval", "--data", str(data), "--models", "sasrec", "--model-arg", f"sasrec.load={model_dir}",
            "--model-arg", "sasrec.use_text=false", "--n-boot", "20", "--no-progress"]
    assert driftrec([*base, "--out", str(tmp_path / "loo")]) == 0
    doc = json.loads((tmp_path / "loo" / "results.json").read_text())
    assert doc["models"]["sasrec"]["ndcg@10"] == pytest.approx(loaded.metrics["ndcg@10"], abs=1e-6)
    capsys.readouterr()
    # Temporal split: training stops at day 4, so the model has seen events this split holds out.
    code = driftrec([*base, "--split", "temporal", "--test-cut", "2024-01-07", "--validation-cut", "2024-01-05",
                     "--out", str(tmp_path / "temporal")])
    err = capsys.readouterr().err
    assert code == 7 and "trained on other events" in err and "Traceback" not in err
    assert not (tmp_path / "temporal" / "results.json").exists()


def test_report_writes_every_row_with_its_numbers(chain_run: EvalResult, tmp_path: Path) -> None:
    from eval.report import write_report

    paths = write_report(chain_run, tmp_path / "run", command="driftrec eval --models popularity,sasrec")
    assert [p.name for p in paths] == ["results.json", "report.md", "metric_vs_k.png", "ndcg_by_history.png"]
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    md = (tmp_path / "run" / "report.md").read_text()
    assert doc["command"] == "driftrec eval --models popularity,sasrec" and "popularity,sasrec" in md
    for name in ("popularity", "sasrec"):
        m = chain_run.models[name].metrics
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:4] == [f"{100 * m[k]:.2f}" for k in ("hr@1", "ndcg@5", "ndcg@10")], row
        assert cells[7] == f"{100 * m['mrr']:.2f}"
        assert doc["models"][name]["ndcg@10"] == pytest.approx(m["ndcg@10"], abs=1e-6)
        lo, hi = doc["models"][name]["ci95"]["ndcg@10"]
        assert lo <= doc["models"][name]["ndcg@10"] <= hi
    lines = md.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| model | ") and "best_epoch" in line)
    keys = [c.strip() for c in lines[head].strip("|").split("|")]
    diag = [c.strip() for c in next(ln for ln in lines[head:] if ln.startswith("| sasrec |")).strip("|").split("|")]
    assert diag[keys.index("best_epoch")] == f"{chain_run.models['sasrec'].diagnostics['best_epoch']:.4g}"
    (pair,) = doc["paired_ndcg@10"]
    assert (pair["a"], pair["b"]) == ("popularity", "sasrec") and pair["diff"] < -0.3
    assert pair["diff"] == pytest.approx(chain_run.models["popularity"].metrics["ndcg@10"]
                                         - chain_run.models["sasrec"].metrics["ndcg@10"], abs=1e-5)
    for png in paths[2:]:
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000


# ---------------------------------------------------------------- scripts

def test_grounding_eval_counts_invented_titles_before_the_check_and_none_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import agent.llm
    from eval.grounding_eval import main

    data = write_movielens_csv(planted_shift_dataset(n_users=12, per_phase=6), tmp_path / "data")
    common = ["--data", str(data), "--users", "3", "-k", "2", "--embedder", "hashing"]
    assert main([*common, "--llm", "none", "--out", str(tmp_path / "none.jsonl")]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "none.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * (2 + 1) and {r["source"] for r in rows} == {"template"}
    assert all(r["attempts"] == 0 and r["ungrounded_final"] == 0 for r in rows)
    assert "model none (templates)" in out and "| llm_calls | 0 | 0 |" in out

    # An LLM that first invents a title, then (told off) cites the evidence: every text is regenerated.
    fake = FakeChatModel(default=invent_then_cite)
    monkeypatch.setattr(agent.llm, "make_client", lambda settings: LLMClient(fake))
    rows_file = tmp_path / "fake.jsonl"
    assert main([*common, "--llm", "fake", "--out", str(rows_file)]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert len(rows) == 9 and len(fake.calls) == 2 * 9
    assert {r["source"] for r in rows} == {"regenerated"} and {r["attempts"] for r in rows} == {2}
    assert all(r["ungrounded_first"] >= 1 and r["ungrounded_final"] == 0 for r in rows)
    assert all("Zorblax" not in r["text"] and TITLE.search(r["text"]) for r in rows)
    for line in ("| zero_ungrounded_before | 0.0% | 0.0% |", "| zero_ungrounded_after | 100.0% | 100.0% |",
                 "| regenerated | 100.0% | 100.0% |", "| llm_calls | 12 | 6 |", "| texts | 6 | 3 |",
                 "rejected explanation attempts by reason: mentions something outside the evidence 6",
                 "rejected shift attempts by reason: mentions something outside the evidence 3"):
        assert line in out, line
    # Resuming a finished run asks the LLM nothing and reports the same rows.
    assert main([*common, "--llm", "fake", "--out", str(rows_file), "--resume"]) == 0
    assert len(fake.calls) == 18 and "| texts | 6 | 3 |" in capsys.readouterr().out
    # Re-checking replays the stored texts through the current check, without the LLM: all pass, until
    # one is edited to claim what the evidence cannot hold.
    assert main([*common, "--out", str(rows_file), "--recheck"]) == 0
    out = capsys.readouterr().out
    assert "explanation: 6 written by the LLM" in out and "rejects 0 of them (none)" in out and len(fake.calls) == 18
    rows[0]["text"] = rows[0]["text"].rstrip(".") + ", praised by critics."
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([*common, "--out", str(rows_file), "--recheck"]) == 0
    assert "explanation: 6 written by the LLM in" in (out := capsys.readouterr().out)
    assert "rejects 1 of them (states what the evidence cannot support 1)" in out
    assert "shift: 3 written by the LLM" in out and len(fake.calls) == 18


def test_evolution_eval_forecasts_the_planted_shift_and_detects_planted_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import eval.research.evolution_synthetic as synthetic
    from eval.research.evolution_eval import main

    # 40 synthetic users and one test draw instead of 200 × 5: the same code, a fraction of the time.
    monkeypatch.setattr(synthetic, "tune_and_test", functools.partial(synthetic.tune_and_test, n_users=40,
                                                                      test_seeds=(2,)))
    data = write_movielens_csv(planted_shift_dataset(n_users=12, per_phase=6), tmp_path / "data")
    out = tmp_path / "evo.json"
    # Weeks 0-5 space, 6-11 cooking; the cut (a Monday) leaves the last week of every user to forecast.
    assert main(["all", "--data", str(data), "--embedder", "hashing", "--cut", "2024-03-18", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert report["embedder"].startswith("hashing")

    fc = report["forecast"]
    assert fc["eval_users"] == 12 and fc["train_sequences"] == 12
    rows = fc["forecasters"]
    assert {"last-window", "history-mean", "exp-smoothing-tuned", "gru"} <= set(rows)
    # The last weeks are all cooking: repeating the last window is exact, the all-history mean is half space.
    assert rows["last-window"]["js"]["mean"] == 0.0 and rows["history-mean"]["js"]["mean"] > 0.2
    assert rows["last-window"]["js_minus_history-mean"]["hi"] < 0
    assert rows["exp-smoothing-tuned"]["js"]["mean"] < rows["history-mean"]["js"]["mean"]
    assert all(r["hit3"]["mean"] == 1.0 for r in rows.values())

    rt = report["retrieval"]
    assert rt["users"] == 12 and rt["chosen_beta"] in (0.1, 0.25, 0.5, 1.0)
    assert [n for n in rt["test_recall"] if n.startswith("blend")] == [f"blend β={rt['chosen_beta']}"]
    assert rt["validation_recall"][f"blend β={rt['chosen_beta']}"] == max(
        v for n, v in rt["validation_recall"].items() if n.startswith("blend"))
    for ci in rt["test_recall"].values():
        assert ci["lo"] <= ci["mean"] <= ci["hi"]

    sh = report["shifts"]
    assert sh["n_users"] == 40 and list(sh["windowed (tuned)"]["per_seed"]) == ["2"]
    tuned = sh["windowed (tuned)"]
    assert tuned["min_precision"] > 0.8 and tuned["min_recall"] > 0.8, tuned


def _tiny_workload(n_users: int, history_len: int = 50, k: int = 20,
                   seed: int = 0) -> tuple[Catalog, list[tuple[Sequence[Event], list[Candidate]]]]:
    """`eval.bench_llm.workload` on the planted-shift data: 10-event histories, 8 popular candidates."""
    ds = planted_shift_dataset(n_users=6, per_phase=6)
    users = list(ds.histories)[:n_users]
    cands = PopularityGenerator(ds.histories).generate_batch([ds.histories[u] for u in users], 8)
    return ds.catalog, [(ds.histories[u][-11:-1], c) for u, c in zip(users, cands, strict=True)]


def test_bench_llm_rows_from_a_scripted_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every plan of `bench_llm.main` runs; q8_0's scores disagree with the original's, f16's agree exactly."""
    import eval.bench_llm as bench

    def make_chat_model(settings: LLMSettings) -> FakeChatModel:
        favour = {"A": -0.05, "B": -3.0} if settings.cpu_format != "q8_0" else {"B": -0.05, "A": -3.0}

        def reply(messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]) -> Any:
            return LogprobReply(favour) if kwargs.get("logprobs") else invent_then_cite(messages, kwargs)
        return FakeChatModel(supports_logprobs=True, default=reply)

    monkeypatch.setattr(bench, "workload", _tiny_workload)
    monkeypatch.setattr(bench, "make_chat_model", make_chat_model)
    monkeypatch.setattr(bench, "locate", lambda name: tmp_path / "unused.gguf")
    out = tmp_path / "rows" / "bench.json"
    bench.main(["--models", "smollm2-135m", "--cpu-formats", "original,f16,q8_0", "--users", "3",
                "--vllm-url", "http://127.0.0.1:9/v1", "--out", str(out)])
    rows = {r["backend"]: r for r in json.loads(out.read_text())}
    assert list(rows) == ["embedded:smollm2-135m:original", "embedded:smollm2-135m:f16",
                          "embedded:smollm2-135m:q8_0", "vllm"]
    for row in rows.values():
        assert row["reranks"] == 3 and row["methods"] == "logprobs" and row["fallbacks"] == 0
        assert row["prompt_tokens_max"] >= row["prompt_tokens_mean"] > 50
        assert row["explain_llm_share"] == 1.0 and row["explain_prompt_tokens_mean"] > 20  # regenerated answers
    assert rows["embedded:smollm2-135m:original"]["spearman_vs_original"] is None
    assert rows["vllm"]["spearman_vs_original"] is None
    assert rows["embedded:smollm2-135m:f16"]["spearman_vs_original"] == 1.0
    assert rows["embedded:smollm2-135m:q8_0"]["spearman_vs_original"] < 1.0


@pytest.mark.slow
def test_bench_llm_with_the_packaged_smollm2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One real rerank and explanation with the embedded SmolLM2 (converted to F16 inside tmp_path)."""
    import eval.bench_llm as bench
    from agent.llm.packaged import locate
    from retrieval.errors import MissingDependencyError

    try:
        locate("smollm2-135m")
    except MissingDependencyError as exc:
        pytest.fail(f"the packaged SmolLM2 is part of the dev install: {exc}")
    monkeypatch.setattr(bench, "workload", _tiny_workload)
    out = tmp_path / "bench.json"
    bench.main(["--models", "smollm2-135m", "--cpu-formats", "f16", "--users", "1", "--threads", "2",
                "--out", str(out)])
    (row,) = json.loads(out.read_text())
    assert row["backend"] == "embedded:smollm2-135m:f16" and row["reranks"] == 1
    assert row["methods"] == "logprobs" and row["fallbacks"] == 0
    assert 100 < row["prompt_tokens_mean"] < 1500 and row["latency_p50_s"] > 0 and row["load_s"] > 0
    assert 0.0 <= row["explain_llm_share"] <= 1.0 and row["explain_p50_s"] > 0
