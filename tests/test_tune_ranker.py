"""The LLM ranker's fine-tuning: examples, the adapter artifact and its checks, the transformers backend, CLI.

Fast tests use a synthetic catalogue and a stand-in for peft's save; the `slow` ones load the packaged
SmolLM2-135M through transformers (converted once from its GGUF) and train a few LoRA steps.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.llm import LLMSettings, make_client
from agent.llm.adapter import (
    ADAPTER_FILES,
    adapter_digest,
    base_digest,
    check_adapter_base,
    check_trained_on,
    read_manifest,
    save_adapter,
)
from agent.rerank import LLMReranker, RerankConfig
from agent.tuning.examples import RankingCase, sample_candidates, training_cases, validation_cases
from agent.tuning.train import RankerTuneConfig
from driftrec.cli.main import main
from eval.models import TrainData
from eval.models_llm import LLMRerankModel
from eval.splits import leave_one_out
from retrieval.candidates.base import Candidate
from retrieval.data.model import Catalog, Dataset, Event, Item
from retrieval.errors import ConfigError, IndexStateError, LeakageError
from retrieval.vectors.fingerprint import events_fingerprint

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def chain_dataset(n_items: int = 40, users: int = 12, length: int = 8) -> Dataset:
    """Users walk item i → i+1 from different starts; titles are distinct words."""
    items = [Item(id=f"i{n}", title=f"Film number {n}", categories=("Drama",) if n % 2 else ("Comedy",))
             for n in range(n_items)]
    events = [Event(user=f"u{u}", item=f"i{(3 * u + j) % n_items}", timestamp=T0 + timedelta(hours=j))
              for u in range(users) for j in range(length)]
    return Dataset(Catalog(items), events, name="chain")


class StubPeft:
    """Stands in for a peft model: `save_pretrained` writes the two adapter files."""

    def __init__(self, payload: bytes = b"weights") -> None:
        self.payload = payload

    def save_pretrained(self, directory: str, safe_serialization: bool = True) -> None:
        Path(directory, ADAPTER_FILES[0]).write_text(json.dumps({"r": 8}))
        Path(directory, ADAPTER_FILES[1]).write_bytes(self.payload)


def fake_base(tmp_path: Path, content: bytes = b"base weights") -> Path:
    base = tmp_path / "base"
    base.mkdir(parents=True, exist_ok=True)
    (base / "model.safetensors").write_bytes(content)
    return base


def test_training_cases_use_training_events_and_unseen_negatives() -> None:
    ds = chain_dataset()
    split = leave_one_out(ds)
    cases = training_cases(split.train, ds.catalog.ids, n_candidates=10, per_user=2, seed=1)
    assert len(cases) == 2 * len(split.train)
    for case in cases:
        train = list(split.train[case.user])
        cut = len(case.history)
        assert tuple(train[:cut]) == case.history and train[cut].item == case.target  # a training event, in order
        assert len(case.shown) == 10 and case.shown.count(case.target) == 1
        seen = {e.item for e in train}
        assert not (set(case.shown) - {case.target}) & seen  # negatives are outside the user's training items
    assert training_cases(split.train, ds.catalog.ids, 10, 2, seed=1) == cases  # seeded
    positions = {c.label_index for c in cases}
    assert len(positions) > 3  # the target's label is spread over positions, not always A


def test_validation_cases_are_the_same_every_call() -> None:
    ds = chain_dataset()
    split = leave_one_out(ds)
    stage = list(zip(split.validation.users, split.validation.inputs, split.validation.target_items, strict=True))
    first = validation_cases(stage, ds.catalog.ids, 8, seed=0)
    assert first == validation_cases(stage, ds.catalog.ids, 8, seed=0)
    for case, (_, inputs, target) in zip(first, stage, strict=True):
        assert case.target == target and not (set(case.shown) - {target}) & {e.item for e in inputs}


def test_sample_candidates_refuses_a_catalogue_too_small() -> None:
    with pytest.raises(ConfigError, match="unseen items"):
        sample_candidates(random.Random(0), "a", {"b", "c"}, ["a", "b", "c", "d"], 5)
    assert RankingCase("u", (), "x", ("y", "x")).label_index == 1


@pytest.mark.parametrize("kwargs", [{"objective": "listwise"}, {"candidates": 30}, {"candidates": 1},
                                    {"batch_size": 0}, {"max_minutes": 0}, {"lr": 0}, {"target_modules": ()}])
def test_config_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        RankerTuneConfig(**kwargs)


def test_adapter_artifact_checks_files_base_and_training_events(tmp_path: Path) -> None:
    ds = chain_dataset()
    split = leave_one_out(ds)
    base = fake_base(tmp_path)
    manifest = {"base": {"name": "stub", "sha256": base_digest(base)}, "trained_on": events_fingerprint(split.train)}
    out = save_adapter(StubPeft(), tmp_path / "ranker", manifest)
    assert read_manifest(out)["format"] == "driftrec-ranker/1"
    assert len(adapter_digest(out)) == 64
    check_adapter_base(out, base)
    check_trained_on(out, split.train)
    other = {u: h[:-1] for u, h in split.train.items()}
    with pytest.raises(LeakageError, match="tuned on other events"):
        check_trained_on(out, other)
    with pytest.raises(ConfigError, match="other weights"):
        check_adapter_base(out, fake_base(tmp_path / "x", b"different base"))
    (out / ADAPTER_FILES[1]).write_bytes(b"tampered")
    with pytest.raises(IndexStateError, match="differs from the sha256"):
        adapter_digest(out)
    with pytest.raises(ConfigError, match="not a tuned ranker"):
        read_manifest(base)


def test_harness_refuses_an_adapter_tuned_on_other_events(tmp_path: Path) -> None:
    ds = chain_dataset()
    split = leave_one_out(ds)
    other = {u: h[:-1] for u, h in split.train.items()}
    base = fake_base(tmp_path)
    out = save_adapter(StubPeft(), tmp_path / "ranker", {"base": {"sha256": base_digest(base)},
                                                          "trained_on": events_fingerprint(other)})
    model = LLMRerankModel(backend="fake", adapter=str(out), base="none", cache_dir="")
    with pytest.raises(LeakageError):
        model.fit(TrainData(ds.catalog, split.train, tuple(ds.catalog.ids)))
    with pytest.raises(ConfigError, match="not a tuned ranker"):
        LLMRerankModel(backend="fake", adapter=str(base), base="none", cache_dir="").fit(
            TrainData(ds.catalog, split.train, tuple(ds.catalog.ids)))


def test_methods_benchmark_refuses_an_adapter_tuned_on_other_events(tmp_path: Path) -> None:
    import eval.bench_rerank_methods as bench

    pytest.importorskip("retrieval.data.datasets").load_dataset("ml-100k")
    base = fake_base(tmp_path)
    out = save_adapter(StubPeft(), tmp_path / "ranker", {"base": {"sha256": base_digest(base)},
                                                          "trained_on": events_fingerprint({"u": ()})})
    args = ["--dataset", "ml-100k", "--retriever", "popularity", "--users", "2", "--llm", "fake",
            "--out", str(tmp_path / "run"), "--no-progress"]
    with pytest.raises(LeakageError):
        bench.main([*args, "--llm-adapter", str(out)])
    with pytest.raises(ConfigError, match="only the retriever 'popularity'"):
        bench.main([*args, "--model-arg", "itemknn.neighbours=5"])


def test_cli_refuses_an_unrelated_out_directory_and_bad_counts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    unrelated = tmp_path / "mine"
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("keep me")
    assert main(["tune-ranker", "--data", "ml-100k", "--out", str(unrelated)]) != 0
    assert "refusing to replace" in capsys.readouterr().err and (unrelated / "notes.txt").is_file()
    assert main(["tune-ranker", "--out", str(tmp_path / "new"), "--max-examples", "-1"]) != 0
    assert "--max-examples" in capsys.readouterr().err


def test_transformers_backend_is_registered_and_takes_an_adapter() -> None:
    settings = LLMSettings(backend="transformers", model="smollm2-135m", adapter=Path("runs/ranker"))
    assert settings.adapter == Path("runs/ranker")
    with pytest.raises(ConfigError, match="neither a HF model directory"):
        make_client(LLMSettings(backend="transformers", model="no-such-model"))


# ---- real model (transformers on the packaged SmolLM2-135M) ----


@pytest.mark.slow
def test_transformers_backend_agrees_with_the_embedded_model() -> None:
    from langchain_core.messages import HumanMessage, SystemMessage

    hf = make_client(LLMSettings(backend="transformers", model="smollm2-135m"))
    gguf = make_client(LLMSettings(backend="embedded", model="smollm2-135m"))
    messages = [SystemMessage("You rank movies."),
                HumanMessage("Candidates: A. Star Wars B. Toy Story C. Fargo. Answer with one label.")]
    a, b = hf.chat(messages, max_tokens=1, top_logprobs=5), gguf.chat(messages, max_tokens=1, top_logprobs=5)
    assert a.prompt_tokens == b.prompt_tokens
    common = set(a.top_logprobs) & set(b.top_logprobs)
    assert len(common) >= 3 and max(abs(a.top_logprobs[t] - b.top_logprobs[t]) for t in common) < 0.05
    prefix = "A user's history: Star Wars, Alien.\nThe next item this user chose:\n"
    titles = ['"Aliens (1986)"', '"Toy Story (1995)"', '"X"']
    x, y = hf.score_continuations(prefix, titles), gguf.score_continuations(prefix, titles)
    assert x.tokens == y.tokens and max(abs(p - q) for p, q in zip(x.logprobs, y.logprobs, strict=True)) < 0.05
    reply = hf.chat([HumanMessage("Say hello in five words.")], max_tokens=12)
    assert reply.text.strip()


@pytest.mark.slow
def test_tune_ranker_end_to_end_serves_and_guards_its_adapter(tmp_path: Path) -> None:
    from agent.tuning.train import tune_ranker

    ds = chain_dataset()
    split = leave_one_out(ds)
    stage = list(zip(split.validation.users, split.validation.inputs, split.validation.target_items, strict=True))
    config = RankerTuneConfig(candidates=5, history_tokens=60, max_examples=4, eval_every=2, batch_size=2,
                              valid_users=3, lr=1e-3)
    report = tune_ranker(ds.catalog, split.train, stage, tmp_path / "ranker", config, progress=False)
    manifest = report.manifest
    assert manifest["examples"] == {"available": len(split.train), "used": 4, "seen": 4}
    assert [h["examples"] for h in manifest["validation"]["history"]] == [0, 2, 4]
    assert manifest["trained_on"] == events_fingerprint(split.train) and manifest["objective"] == "verbalizer"
    assert report.best_step in (0, 2, 4) and 0.0 <= report.best["ndcg@10"] <= 1.0
    check_adapter_base(report.adapter_dir, manifest["base"]["dir"])

    client = make_client(LLMSettings(backend="transformers", model=manifest["base"]["dir"],
                                     adapter=report.adapter_dir))
    assert "+ranker-" in client.model.model_id  # type: ignore[attr-defined]
    reranker = LLMReranker(client, ds.catalog, RerankConfig(method="logprobs", fusion_weight=1.0))
    history = list(split.train["u0"])
    cands = [Candidate(f"i{n}", float(-n), "retrieval") for n in (30, 31, 32, 33)]
    result = reranker.rerank(history, cands)
    assert not result.fallback and result.method == "logprobs"
    assert sorted(c.item_id for c in result.candidates) == sorted(c.item_id for c in cands)
    shorter = {u: h[:-1] for u, h in split.train.items()}  # another split of the same data
    with pytest.raises(LeakageError):
        LLMRerankModel(backend="transformers", adapter=str(report.adapter_dir), base="none",
                       cache_dir="").fit(TrainData(ds.catalog, shorter, tuple(ds.catalog.ids)))
