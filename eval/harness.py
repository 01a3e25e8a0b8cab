"""The offline evaluation harness: split → fit → (tune on validation) → score the test stage → metrics.

Usage (engineers plugging in a model)
-------------------------------------
1. Write a `Recommender` in a module named `eval/models_<yours>.py` (auto-imported) and register it::

       from eval.models import Recommender, TrainData, register

       @register("sasrec")
       class SASRecModel(Recommender):
           def __init__(self, epochs: int = 20, seed: int = 0) -> None: ...   # kwargs from CLI/harness
           def fit(self, train: TrainData) -> "SASRecModel": ...   # train.histories = TRAINING events only
           def score_batch(self, inputs): ...                      # (len(inputs), len(train.item_ids))
           # optional: score_candidates(inputs, candidates) for models that only score candidates
           #   (candidates[u] is a RankedCandidates: a tuple of item ids; under `rerank` it is best-first
           #   and carries .scores = the retriever's scores, .source = its name);
           # optional: tune(validation: ValidationData) — called after fit, before the test stage,
           #   with the validation targets and the same protocol's candidates; score a setting with
           #   eval.harness.validation_metric(self, validation, "ndcg@10") (ItemKNNModel.tune does this);
           # optional: diagnostics() -> dict[str, float] (LLM rows: invalid/fallback/hallucinated rates, ...).

   A factory parameter named `seed` receives the run's seed, `progress` whether bars are on, and
   `embedder` the `--embedder` value and `embedder_model` the `--embedder-model` value (a model directory,
   e.g. one from `driftrec tune-embedder`), unless given explicitly (`--model-arg NAME.KEY=VALUE`).

2. Evaluate in Python::

       from eval.harness import EvalConfig, evaluate
       from retrieval.data.datasets import load_dataset

       result = evaluate(load_dataset("ml-100k"), ["popularity", "itemknn", "sasrec"],
                         EvalConfig(protocol="full", seed=0, n_users=None,
                                    model_kwargs={"sasrec": {"epochs": 5}}))
       print(result.models["sasrec"].metrics["ndcg@10"], result.models["sasrec"].ci95["ndcg@10"])
       result.compare("sasrec", "itemknn", "ndcg@10")      # paired bootstrap on the same users
       # instances work too: evaluate(ds, [MyModel()], cfg); protocols: "full", "llmrank", "rerank"
       # (rerank: EvalConfig(protocol="rerank", retriever="interest", rerank_k=20)).

3. From the CLI (writes results.json, report.md and PNG plots into --out)::

       driftrec eval --dataset ml-100k --protocol full --models random,popularity,itemknn,interest --out runs/full
       driftrec eval --dataset games --protocol llmrank --models popularity,sasrec --users 6000 --seed 0 --out runs/g
       driftrec eval --dataset ml-100k --protocol rerank --retriever interest -k 20 --models interest,llm-rerank \
           --model-arg llm-rerank.backend=embedded --users 200 --out runs/rr     # add --resume after a crash

Leakage by construction: `fit` gets `TrainData` whose histories are read-only and hold training
events only (checked: each is a prefix of the user's stage input); `score_*` get the events before
the target; targets never leave the harness except the validation targets passed to `tune`.
"""

from __future__ import annotations

import hashlib
import inspect
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from eval.metrics import (
    KS,
    PairedComparison,
    Ties,
    bootstrap_ci,
    paired_comparison,
    per_user_metrics,
    rank_candidates,
    rank_full,
)
from eval.models import (
    RankedCandidates,
    Recommender,
    TrainData,
    ValidationData,
    make_model,
    model_factory,
    with_defaults,
)
from eval.protocols import ProtocolContext, ProtocolName, make_protocol, seen_mask, top_columns
from eval.provenance import build_provenance
from eval.resume import RankStore
from eval.splits import Split, Stage, leave_one_out
from retrieval.data.model import Dataset
from retrieval.errors import ConfigError, LeakageError


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation run.

    Attributes:
        protocol: "full", "llmrank" or "rerank".
        ks: metric cut-offs.
        seed: seeds user sampling, candidate sampling, random ties, bootstrap, the random baseline.
        n_users: evaluate a seeded sample of this many users (None = all).
        retriever: registered model whose top-`rerank_k` are the `rerank` candidates.
        rerank_k: candidates per user under `rerank`.
        ties: tie policy of ranks ("pessimistic" or "random"; see eval.metrics).
        n_boot: bootstrap resamples for CIs and paired comparisons.
        batch_size: users scored per model call.
        tune: call `Recommender.tune` on the validation stage when a model overrides it.
        coverage_k: list length for catalogue coverage.
        model_kwargs: per model name, constructor keyword arguments.
        defaults: keyword arguments given to every factory that declares them (e.g. embedder).
        progress: tqdm progress bars.
        resume_dir: when set, each model's per-user ranks are saved there as it finishes.
        resume: reuse ranks saved in `resume_dir` by an earlier run with the same fingerprint (dataset,
            users, protocol and its settings, model name and its arguments, declared defaults
            included), so an interrupted multi-model run restarts at the first unfinished model.
        max_concurrency: LLM calls in flight at once, given to every factory that declares
            `max_concurrency` (the `llm-rerank` model); None = each model's default (embedded LLM 1,
            servers 8).
    """

    protocol: ProtocolName = "full"
    ks: tuple[int, ...] = KS
    seed: int = 0
    n_users: int | None = None
    retriever: str = "interest"
    rerank_k: int = 20
    ties: Ties = "pessimistic"
    n_boot: int = 1000
    batch_size: int = 256
    tune: bool = True
    coverage_k: int = 10
    model_kwargs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = False
    resume_dir: Path | None = None
    resume: bool = False
    max_concurrency: int | None = None


@dataclass
class ModelResult:
    """One model's figures on the test stage.

    Attributes:
        name: model name.
        metrics: metric → mean over users (0..1), plus "coverage@K".
        ci95: metric → (low, high) bootstrap interval of the mean.
        ranks: (n_users,) 1-based target ranks, inf for a miss.
        diagnostics: the model's `diagnostics()` after scoring.
        timings: seconds for fit, tune, score.
    """

    name: str
    metrics: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    ranks: np.ndarray
    diagnostics: dict[str, float]
    timings: dict[str, float]

    def per_user(self, ks: Sequence[int] = KS) -> dict[str, np.ndarray]:
        """Per-user metric values, (n_users,) each."""
        return per_user_metrics(self.ranks, ks)


@dataclass
class EvalResult:
    """A whole run: every model on the same users and candidates.

    Attributes:
        dataset, protocol, seed: what was run.
        users: evaluated users, in order; `history_lengths` (n_users,) their test input lengths.
        models: name → result.
        retriever: under `rerank`, the retriever's name, k and Recall@k (the ceiling) with its CI.
        info: counts and settings (n_items, split, ties, train events, timings).
        provenance: versions, git commit, model and data checksums, command line (`eval.provenance`).
    """

    dataset: str
    protocol: str
    seed: int
    users: tuple[str, ...]
    history_lengths: np.ndarray
    models: dict[str, ModelResult]
    ks: tuple[int, ...] = KS
    retriever: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.users)

    def compare(self, a: str, b: str, metric: str = "ndcg@10", n_boot: int = 1000) -> PairedComparison:
        """Paired bootstrap of model `a` minus model `b` on the same users."""
        va = self.models[a].per_user(self.ks)[metric]
        vb = self.models[b].per_user(self.ks)[metric]
        return paired_comparison(va, vb, metric, n_boot, self.seed)


def evaluate(dataset: Dataset, models: Sequence[str | Recommender], config: EvalConfig | None = None,
             split: Split | None = None) -> EvalResult:
    """Evaluate models on one dataset and protocol.

    Args:
        dataset: the data (its catalogue fixes the item columns).
        models: registered names or model instances (instances are fitted here).
        config: run settings.
        split: a precomputed split (default: temporal leave-one-out of `dataset`).

    Returns:
        the run's results; every model sees the same users and candidates.
    """
    config = config or EvalConfig()
    protocol = make_protocol(config.protocol, config.rerank_k)
    started = time.perf_counter()
    split = split or leave_one_out(dataset)
    test, validation = _sample_users(split, config)
    if len(test) == 0:
        raise ConfigError(f"{dataset.name}: no user has enough events to evaluate")
    item_ids = tuple(dataset.catalog.ids)
    train = TrainData(dataset.catalog, split.train, item_ids)
    check_no_leakage(split.train, test, validation)
    instances = [_instance(m, config) for m in models]
    names = [m.name for m in instances]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be unique, got {names}")

    fit_times: dict[str, float] = {}
    retriever = None
    if config.protocol == "rerank":
        retriever = next((m for m in instances if m.name == config.retriever), None)
        if retriever is None:
            retriever = _instance(config.retriever, config)
        t0 = time.perf_counter()
        retriever.fit(train)
        if config.tune and _overrides_tune(retriever) and len(validation):
            # The retriever ranks the whole catalogue, so it is tuned as under `full`, before it
            # produces any candidates; it is not re-tuned on its own candidates below.
            retriever.tune(ValidationData(validation.users, validation.inputs, validation.target_items, None))
        fit_times[retriever.name] = time.perf_counter() - t0
    context = ProtocolContext(item_ids, config.seed, retriever, config.batch_size, config.progress)
    test_cands = protocol.candidates(test, context)
    wants_tune = config.tune and any(_overrides_tune(m) for m in instances)
    val_cands = protocol.candidates(validation, context) if wants_tune and len(validation) else None

    results: dict[str, ModelResult] = {}
    store = RankStore(config.resume_dir) if config.resume_dir is not None else None
    for model in instances:
        key = _fingerprint(dataset, split, test, config, model, models)
        saved = store.load(model.name, key) if store is not None and config.resume else None
        if saved is not None:
            results[model.name] = _summarise(model, *saved, len(item_ids), config)
            continue
        timings = {"fit_s": fit_times.get(model.name, 0.0)}
        if model is not retriever:
            t0 = time.perf_counter()
            model.fit(train)
            timings["fit_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if wants_tune and _overrides_tune(model) and len(validation) and model is not retriever:
            model.tune(ValidationData(validation.users, validation.inputs, validation.target_items,
                                      None if val_cands is None else tuple(val_cands)))
        timings["tune_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ranks, tops = _score(model, test, test_cands, item_ids, config)
        timings["score_s"] = time.perf_counter() - t0
        diagnostics = dict(model.diagnostics())
        if store is not None:
            store.save(model.name, key, ranks, tops, diagnostics, timings)
        results[model.name] = _summarise(model, ranks, tops, diagnostics, timings, len(item_ids), config)

    ceiling = None
    if retriever is not None and test_cands is not None:
        hit = np.array([t in c for t, c in zip(test.target_items, test_cands, strict=True)], dtype=np.float64)
        ceiling = {"name": retriever.name, "k": config.rerank_k, f"recall@{config.rerank_k}": float(hit.mean()),
                   "ci95": list(bootstrap_ci(hit, config.n_boot, config.seed))}
    return EvalResult(
        dataset=dataset.name, protocol=config.protocol, seed=config.seed, users=test.users,
        history_lengths=np.array([len(i) for i in test.inputs]), models=results, ks=tuple(config.ks),
        retriever=ceiling,
        info={"n_items": len(item_ids), "split": split.kind, "ties": config.ties,
              "train_users": len(split.train), "train_events": split.n_train_events,
              "users_available": len(split.test), "train_only_users": split.train_only_users,
              "tuned": [m.name for m in instances if wants_tune and _overrides_tune(m)],
              "wall_s": time.perf_counter() - started},
        provenance=build_provenance(dataset, [*instances, *([retriever] if retriever is not None else [])]))


def validation_metric(model: Recommender, validation: ValidationData, metric: str = "ndcg@10",
                      ties: Ties = "pessimistic", batch_size: int = 256) -> float:
    """Mean `metric` of a fitted model on the validation stage, ranked exactly as the test stage is.

    For `Recommender.tune` implementations: call it once per candidate setting and keep the best.

    Args:
        model: a fitted model.
        validation: what `tune` received (candidates None = full ranking of unseen items).
        metric: a `per_user_metrics` name at K in {1, 5, 10, 20}, e.g. "ndcg@10", "recall@20", or "mrr".
        ties: tie policy (pessimistic, as in the default test run).
        batch_size: users per model call.
    """
    col = model._columns()
    ranks = []
    for start in range(0, len(validation.users), batch_size):
        inputs = validation.inputs[start:start + batch_size]
        targets = validation.targets[start:start + batch_size]
        if validation.candidates is None:
            scores = np.asarray(model.score_batch(inputs), dtype=np.float64)
            excluded = seen_mask(inputs, col, scores.shape[1])
            ranks.append(rank_full(scores, np.array([col[t] for t in targets]), excluded, ties))
        else:
            part = validation.candidates[start:start + batch_size]
            got = [np.asarray(s, dtype=np.float64) for s in model.score_candidates(inputs, part)]
            pos = np.array([c.index(t) if t in c else -1 for c, t in zip(part, targets, strict=True)])
            ranks.append(rank_candidates(got, pos, ties))
    if not ranks:
        return 0.0
    return float(per_user_metrics(np.concatenate(ranks))[metric].mean())


def check_no_leakage(train: Mapping[str, tuple], *stages: Stage) -> None:
    """Every training history must be a strict prefix of each evaluated input + target.

    Raises:
        LeakageError: a user's training events include a held-out event or anything after it.
    """
    for stage in stages:
        for user, inp, target in zip(stage.users, stage.inputs, stage.targets, strict=True):
            hist = train.get(user, ())
            if len(hist) > len(inp) or tuple(inp[:len(hist)]) != tuple(hist):
                raise LeakageError(f"user {user!r}: training events are not a prefix of the {stage.name} input")
            if hist and hist[-1].timestamp > target.timestamp:
                raise LeakageError(f"user {user!r}: a training event is later than the {stage.name} target")


def _sample_users(split: Split, config: EvalConfig) -> tuple[Stage, Stage]:
    test, validation = split.test, split.validation
    if config.n_users is None or config.n_users >= len(test):
        return test, validation
    if config.n_users < 1:
        raise ConfigError("n_users must be ≥ 1")
    keep = np.sort(np.random.default_rng(config.seed).choice(len(test), config.n_users, replace=False))
    chosen = set(test.users[i] for i in keep)
    v_pos = [i for i, u in enumerate(validation.users) if u in chosen]
    return test.subset(keep.tolist()), validation.subset(v_pos)


def _instance(model: str | Recommender, config: EvalConfig) -> Recommender:
    if isinstance(model, Recommender):
        return model
    extra = {} if config.max_concurrency is None else {"max_concurrency": config.max_concurrency}
    kwargs = with_defaults(model, config.model_kwargs.get(model, {}),
                           {"seed": config.seed, "progress": config.progress, **extra, **config.defaults}, strict=True)
    return make_model(model, **kwargs)


def _overrides_tune(model: Recommender) -> bool:
    return type(model).tune is not Recommender.tune


def _score(model: Recommender, stage: Stage, cands: list[RankedCandidates] | None, item_ids: tuple[str, ...],
           config: EvalConfig) -> tuple[np.ndarray, list[list[str]]]:
    """Target ranks (n_users,) and each user's top `coverage_k` item ids."""
    col = {item: c for c, item in enumerate(item_ids)}
    rng = np.random.default_rng([config.seed, 7]) if config.ties == "random" else None
    ranks: list[np.ndarray] = []
    tops: list[list[str]] = []
    bar = tqdm(total=len(stage), desc=f"score {model.name}", unit="user", disable=not config.progress, leave=False)
    for start in range(0, len(stage), config.batch_size):
        inputs = stage.inputs[start:start + config.batch_size]
        targets = stage.target_items[start:start + config.batch_size]
        if cands is None:
            scores = np.asarray(model.score_batch(inputs), dtype=np.float64)
            if scores.shape != (len(inputs), len(item_ids)):
                raise ConfigError(f"model {model.name!r}: score_batch returned shape {scores.shape}, "
                                  f"expected {(len(inputs), len(item_ids))}")
            excluded = seen_mask(inputs, col, len(item_ids))
            ranks.append(rank_full(scores, np.array([col[t] for t in targets]), excluded, config.ties, rng))
            masked = np.where(excluded | np.isnan(scores), -np.inf, scores)
            tops.extend([item_ids[c] for c in row] for row in top_columns(masked, config.coverage_k))
        else:
            part = cands[start:start + config.batch_size]
            got = model.score_candidates(inputs, part)
            if len(got) != len(part):
                raise ConfigError(f"model {model.name!r}: score_candidates returned {len(got)} rows for {len(part)}")
            arrays = []
            for c, s in zip(part, got, strict=True):
                s = np.asarray(s, dtype=np.float64)
                if s.shape != (len(c),):
                    raise ConfigError(f"model {model.name!r}: {s.shape} scores for {len(c)} candidates")
                arrays.append(s)
                order = np.argsort(-np.where(np.isnan(s), -np.inf, s), kind="stable")[:config.coverage_k]
                tops.append([c[i] for i in order])
            pos = np.array([c.index(t) if t in c else -1 for c, t in zip(part, targets, strict=True)])
            ranks.append(rank_candidates(arrays, pos, config.ties, rng))
        bar.update(len(inputs))
    bar.close()
    return np.concatenate(ranks) if ranks else np.zeros(0), tops


def _fingerprint(dataset: Dataset, split: Split, test: Stage, config: EvalConfig, model: Recommender,
                 requested: Sequence[str | Recommender]) -> str:
    named = model.name in [m for m in requested if isinstance(m, str)]
    # The split's kind, cuts and training size: two splits with the same test targets can train on
    # different events, and their ranks must not be reused for each other.
    facts = [dataset.name, len(dataset.catalog), dataset.n_events, split.kind, sorted(split.notes.items()),
             split.n_train_events, test.users, test.target_items,
             config.protocol, config.seed, config.ties, config.ks, config.coverage_k, config.tune,
             config.retriever if config.protocol == "rerank" else "", config.rerank_k,
             sorted(config.model_kwargs.get(config.retriever, {}).items()) if config.protocol == "rerank" else "",
             sorted(config.defaults.items()), model.name,
             _arguments(model.name, config.model_kwargs.get(model.name, {})) if named else repr(vars(model))]
    return hashlib.sha256(repr(facts).encode("utf-8")).hexdigest()[:16]


def _arguments(name: str, kwargs: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """A registered model's effective constructor arguments: its declared defaults, overridden by `kwargs`.

    Saved ranks are reused only by the same arguments, so a default that changes between releases
    (e.g. `hybrid`'s `ease`) is a different run, not a resumed one.
    """
    params = inspect.signature(model_factory(name)).parameters
    out = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    out.update(kwargs)
    return sorted(out.items())


def _summarise(model: Recommender, ranks: np.ndarray, tops: list[list[str]], diagnostics: dict[str, float],
               timings: dict[str, float], n_items: int, config: EvalConfig) -> ModelResult:
    values = per_user_metrics(ranks, config.ks)
    metrics = {name: float(v.mean()) for name, v in values.items()}
    ci = {name: bootstrap_ci(v, config.n_boot, config.seed) for name, v in values.items()
          if not name.startswith("hr@")}  # hr@K equals recall@K here: one interval is enough
    metrics[f"coverage@{config.coverage_k}"] = len({i for row in tops for i in row}) / n_items
    return ModelResult(model.name, metrics, ci, ranks, diagnostics, timings)
