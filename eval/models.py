"""The one interface every evaluated model implements, and the registry of models by name.

Leakage by construction: `fit` receives training histories only; `score_batch` receives each user's
input sequence (what precedes the held-out event) and nothing else. A model never sees a target.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from retrieval.candidates.base import CandidateGenerator
from retrieval.data.model import Catalog, Event
from retrieval.errors import ConfigError
from retrieval.registry import Registry

Sequence_ = Sequence[Event]


@dataclass(frozen=True)
class TrainData:
    """What a model may learn from.

    Attributes:
        catalog: all items (texts are not behaviour, so the whole catalogue is allowed).
        histories: user → training events, oldest first (validation and test events removed).
        item_ids: column order of every score matrix (= catalog.ids).
    """

    catalog: Catalog
    histories: Mapping[str, tuple[Event, ...]]
    item_ids: tuple[str, ...]


class RankedCandidates(tuple[str, ...]):
    """One user's candidate item ids (a tuple of str) carrying optional generator scores.

    Under the `rerank` protocol candidates arrive best-first with `scores` = the retriever's scores
    (aligned with the ids) and `source` = the retriever's name, so a reranker can fuse with them.
    Under `llmrank` they are shuffled and `scores` is None.
    """

    scores: np.ndarray | None
    source: str

    def __new__(cls, ids: Sequence[str], scores: np.ndarray | None = None, source: str = "") -> RankedCandidates:
        self = super().__new__(cls, ids)
        if scores is not None and len(scores) != len(self):
            raise ConfigError(f"{len(scores)} scores for {len(self)} candidates")
        self.scores = None if scores is None else np.asarray(scores, dtype=np.float64)
        self.source = source
        return self


@dataclass(frozen=True)
class ValidationData:
    """What `Recommender.tune` receives: the validation stage, targets included (never test data).

    Attributes:
        users: validation user ids.
        inputs: per user, the training events (what precedes the validation target).
        targets: per user, the validation target item id.
        candidates: per user, the protocol's candidates for the validation target (None under `full`).
    """

    users: tuple[str, ...]
    inputs: tuple[tuple[Event, ...], ...]
    targets: tuple[str, ...]
    candidates: tuple[RankedCandidates, ...] | None


class Recommender:
    """Base class. Implement `fit` (may be a no-op) and `score_batch`.

    Higher scores are better. The harness masks seen items itself; models need not.
    """

    name: str = "model"

    def fit(self, train: TrainData) -> Recommender:
        """Learn from training data only; returns self."""
        self.train = train
        return self

    def score_batch(self, inputs: Sequence[Sequence_]) -> np.ndarray:
        """Score every catalogue item for each input sequence.

        Args:
            inputs: per user, the events before the held-out one, oldest first.

        Returns:
            float array of shape (len(inputs), len(train.item_ids)).
        """
        raise NotImplementedError

    def score_candidates(self, inputs: Sequence[Sequence_], candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Score only the given candidate items per user (the `llmrank` and `rerank` protocols).

        The default slices `score_batch`; models that cannot score the whole catalogue (an LLM
        reranker) override this instead.

        Args:
            inputs: per user, the events before the held-out one, oldest first.
            candidates: per user, candidate item ids (each in `train.item_ids`).

        Returns:
            per user, a float array of shape (len(candidates[u]),), higher is better.
        """
        full = self.score_batch(inputs)
        col = self._columns()
        return [full[u, [col[i] for i in cands]] for u, cands in enumerate(candidates)]

    def tune(self, validation: ValidationData) -> None:
        """Optional: set hyper-parameters (e.g. a fusion weight) on the validation stage.

        The harness calls this after `fit` and before the test stage, with the same protocol's
        candidates. The default does nothing.
        """
        return None

    def diagnostics(self) -> dict[str, float]:
        """Counters the harness reports beside the metrics (LLM rows: invalid-output, fallback and
        hallucinated-id rates, prompt tokens, latency). Empty for plain models."""
        return {}

    def _columns(self) -> dict[str, int]:
        found: dict[str, int] | None = getattr(self, "_column_cache", None)
        if found is None:
            found = {item: c for c, item in enumerate(self.train.item_ids)}
            self._column_cache = found
        return found


class GeneratorModel(Recommender):
    """Any candidate generator as an evaluated model: the harness's one generator adapter.

    Each input sequence is passed to the generator as the user's history; its top `depth` candidates
    get their generator scores, every other item -inf (ranked below all candidates).

    Args:
        build: makes the generator from the training data (called by `fit`).
        depth: candidates scored per user.
    """

    def __init__(self, build: Callable[[TrainData], CandidateGenerator], depth: int = 100) -> None:
        self.build, self.depth = build, int(depth)

    def fit(self, train: TrainData) -> GeneratorModel:
        self.train = train
        self.generator = self.build(train)
        return self

    def score_batch(self, inputs: Sequence[Sequence_]) -> np.ndarray:
        scores = np.full((len(inputs), len(self.train.item_ids)), -np.inf)
        col = self._columns()
        for u, cands in enumerate(self.generator.generate_batch(inputs, self.depth)):
            if cands:
                scores[u, [col[c.item_id] for c in cands]] = [c.score for c in cands]
        return scores


# name -> model factory. Built-in models register with `@register(name)` in eval/models_*.py; third
# parties register under the entry-point group "driftrec.models".
MODELS: Registry[Callable[..., Recommender]] = Registry("model", "driftrec.models")
BROKEN: dict[str, str] = {}  # model module → why it failed to import
# The modules holding the built-in models, baselines first (the others import torch or LangChain).
BUILTIN_MODULES = ("eval.models_baselines", "eval.models_sequential", "eval.models_hybrid", "eval.models_blend",
                   "eval.models_llm")


def register(name: str) -> Callable[[Callable[..., Recommender]], Callable[..., Recommender]]:
    """Class decorator: make a model available to the harness and CLI by `name` (in `MODELS`)."""
    return MODELS.register(name)


def model_factory(name: str) -> Callable[..., Recommender]:
    """The registered factory of `name`; unknown names raise ConfigError listing the valid ones."""
    if name not in MODELS:
        _load_builtin_models(until=name)
    try:
        return MODELS.get(name)
    except ConfigError as exc:
        broken = "".join(f"; {m} failed to import ({why})" for m, why in sorted(BROKEN.items()))
        raise ConfigError(f"{exc}{broken}") from None


def with_defaults(name: str, kwargs: Mapping[str, Any], defaults: Mapping[str, Any],
                  strict: bool = False) -> dict[str, Any]:
    """`kwargs` plus each of `defaults` that the factory of `name` declares by name and `kwargs` lacks.

    Args:
        name: registered model name.
        kwargs: explicit constructor arguments (they win over defaults).
        defaults: arguments given only to factories that declare them (e.g. seed, embedder).
        strict: raise ConfigError for a key of `kwargs` the factory does not take (unless it takes **kwargs).
    """
    params = inspect.signature(model_factory(name)).parameters
    out = dict(kwargs)
    if strict:
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = sorted(set(out) - set(params))
        if unknown and not takes_any:
            raise ConfigError(f"model {name!r} has no option {', '.join(unknown)}; "
                              f"valid: {', '.join(params) or 'none'}")
    for key, value in defaults.items():
        if key in params and key not in out:
            out[key] = value
    return out


def make_model(name: str, **kwargs: object) -> Recommender:
    """A model by registered name; unknown names raise ConfigError listing the valid ones."""
    factory = model_factory(name)
    model = factory(**kwargs)
    model.name = name
    return model


def _load_builtin_models(until: str | None = None) -> None:
    """Import the `BUILTIN_MODULES` so their @register decorators run.

    Baselines first; with `until`, stop once that name is registered (other model modules import
    torch or LangChain, 10+ s on a loaded machine, which a baseline-only run need not pay).
    """
    import importlib

    for module in BUILTIN_MODULES:
        if until is not None and until in MODELS:
            return
        if module not in BROKEN:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                # One model module with a missing optional dependency must not hide all the others;
                # the failure is reported when a name it would have registered is asked for.
                BROKEN[module] = f"{type(exc).__name__}: {exc}"


def parse_model_args(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """["itemknn.neighbours=50", ...] → {"itemknn": {"neighbours": 50}} (values read as JSON, else text)."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        model, dot, name = key.partition(".")
        if not sep or not dot or not model or not name:
            raise ConfigError(f"--model-arg {pair!r}: expected MODEL.KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(model, {})[name] = value
    return out
