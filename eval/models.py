"""The one interface every evaluated model implements, and the registry of models by name.

Leakage by construction: `fit` receives training histories only; `score_batch` receives each user's
input sequence (what precedes the held-out event) and nothing else. A model never sees a target.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.data.model import Catalog, Event
from retrieval.errors import ConfigError

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
    uses_llm: bool = False

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


MODELS: dict[str, Callable[..., Recommender]] = {}
BROKEN: dict[str, str] = {}  # model module → why it failed to import


def register(name: str) -> Callable[[Callable[..., Recommender]], Callable[..., Recommender]]:
    """Class decorator: make a model available to the harness and CLI by `name`."""
    def deco(factory: Callable[..., Recommender]) -> Callable[..., Recommender]:
        MODELS[name] = factory
        return factory
    return deco


def model_factory(name: str) -> Callable[..., Recommender]:
    """The registered factory of `name`; unknown names raise ConfigError listing the valid ones."""
    if name not in MODELS:
        _load_builtin_models(until=name)
    try:
        return MODELS[name]
    except KeyError:
        broken = "".join(f"; eval.{m} failed to import ({why})" for m, why in sorted(BROKEN.items()))
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}{broken}") from None


def available_models() -> list[str]:
    """Every registered model name, sorted."""
    _load_builtin_models()
    return sorted(MODELS)


def make_model(name: str, **kwargs: object) -> Recommender:
    """A model by registered name; unknown names raise ConfigError listing the valid ones."""
    factory = model_factory(name)
    model = factory(**kwargs)
    model.name = name
    return model


def _load_builtin_models(until: str | None = None) -> None:
    """Import `eval/models_*.py` modules so their @register decorators run.

    Baselines first; with `until`, stop once that name is registered (other model modules import
    torch or LangChain, 10+ s on a loaded machine, which a baseline-only run need not pay).
    """
    import importlib
    import pkgutil

    import eval as pkg

    names = sorted((m.name for m in pkgutil.iter_modules(pkg.__path__)), key=lambda n: n != "models_baselines")
    for mod_name in names:
        if until is not None and until in MODELS:
            return
        if mod_name.startswith("models_") and mod_name not in BROKEN:
            try:
                importlib.import_module(f"eval.{mod_name}")
            except ImportError as exc:
                # One model module with a missing optional dependency must not hide all the others;
                # the failure is reported when a name it would have registered is asked for.
                BROKEN[mod_name] = f"{type(exc).__name__}: {exc}"
