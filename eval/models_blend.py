"""The harness's `blend`: a score-level ensemble of saved sequential models, co-occurrence baselines and the
interest retriever.

Registered name:
    blend     Each part scores the whole catalogue; per user, a part's scores are standardised over the
              catalogue (co-occurrence scores on a log scale first), and the blend is their weighted sum.
              `tune` chooses the weights on the validation stage of the run's own protocol.

Why beside `hybrid`: the hybrid fuses ranks (RRF over each generator's top 100) and ranks every item
outside that union below it, which is right for full ranking and for producing candidates, but under
`llmrank` a random negative that some generator lists beats a target only the sequential model ranks
well (docs/results.md). A score-level blend ranks any item set by every part's opinion of every item.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from eval.metrics import ndcg_at, rank_full
from eval.models import Recommender, TrainData, ValidationData, register
from eval.models_baselines import EASE_L2S, EASEModel, InterestModel, ItemKNNModel, PopularityModel
from eval.models_sequential import SASRecModel
from eval.protocols import seen_mask
from retrieval.data.model import Event
from retrieval.errors import ConfigError

logger = logging.getLogger(__name__)

WEIGHT_GRID: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
# Co-occurrence scores (item-kNN, EASE) are 0 for most items and heavy-tailed above; on a log scale
# (floored at LOG_FLOOR) their standardised values are comparable with a sequential model's logits.
LOG_FLOOR = 1e-3


@register("blend")
class BlendModel(Recommender):
    """Weighted sum of per-user standardised scores of several models, weights chosen on validation.

    Parts, in order: one sequential model per directory in `sequential` (each loaded, not trained),
    then item-kNN, popularity, EASE and the interest retriever when switched on. The first part's
    weight is fixed at 1 (only ratios matter). `tune` runs coordinate ascent over `grid` for the others
    from the first part alone, `rounds` passes, on validation NDCG@10 under the run's protocol (its
    validation candidates, or the full catalogue for at most `tune_users` validation users). Before
    `tune` every weight is 1.

    Args:
        sequential: `driftrec train` directories, trained on this run's training events (else
            `LeakageError`, as for `sasrec.load`).
        itemknn, popularity, ease: add that baseline as a part (item-kNN's half-life and EASE's λ and
            half-life are tuned on validation first, as for their own rows).
        ease_l2s: EASE's λ grid (each value costs one items² inverse: about 4.5 minutes on Games).
        interest: add the attention-pooled text retriever (`interest`, default pooling) as a part.
        interest_embedder_model: the interest part's sentence-transformers model directory, e.g. one
            written by `driftrec tune-embedder` (None = `embedder_model`).
        seed, embedder, embedder_model: as `sasrec` (they choose the text vectors the models were trained with).
        grid: weights tried for each part after the first.
        rounds: coordinate-ascent passes.
        tune_users: validation users used under full ranking (each costs items × parts floats).
        progress: a tqdm bar over the parts' scoring passes.

    Raises:
        ConfigError: no part, a weight grid without a positive value, or `rounds` < 1.
    """

    def __init__(self, sequential: Sequence[str] = (), itemknn: bool = True, popularity: bool = True,
                 ease: bool = False, ease_l2s: Sequence[float] = EASE_L2S, interest: bool = False,
                 interest_embedder_model: str | None = None, seed: int = 0,
                 embedder: str = "sentence-transformers", embedder_model: str | None = None,
                 grid: Sequence[float] = WEIGHT_GRID, rounds: int = 2, tune_users: int = 2000,
                 progress: bool = False) -> None:
        if isinstance(sequential, str):
            sequential = [sequential]
        self.grid, self.rounds, self.tune_users = tuple(float(w) for w in grid), int(rounds), int(tune_users)
        self.progress = progress
        if not any(w > 0 for w in self.grid) or any(w < 0 for w in self.grid) or self.rounds < 1:
            raise ConfigError("blend: grid needs non-negative weights, one of them positive, and rounds ≥ 1")
        self.parts: list[tuple[str, Recommender, bool]] = [  # (name, model, scores on a log scale)
            (f"seq:{Path(d).name}", SASRecModel(seed, embedder, load=str(d), embedder_model=embedder_model), False)
            for d in sequential]
        if itemknn:
            self.parts.append(("itemknn", ItemKNNModel(), True))
        if popularity:
            self.parts.append(("popularity", PopularityModel(), True))
        if ease:
            self.parts.append(("ease", EASEModel(l2s=ease_l2s), True))
        if interest:
            self.parts.append(("interest", InterestModel(embedder, embedder_model=interest_embedder_model
                                                         or embedder_model), False))
        if not self.parts:
            raise ConfigError("blend: no parts (give `sequential` directories or switch on a baseline)")
        names = [name for name, _, _ in self.parts]
        if len(set(names)) != len(names):
            raise ConfigError(f"blend: two parts share a name: {names}")
        self.members = [model for _, model, _ in self.parts]  # read by eval.provenance (models and files used)
        self.weights = np.ones(len(self.parts))
        self.validation: dict[str, float] = {}

    def fit(self, train: TrainData) -> BlendModel:
        self.train = train
        for _, model, _ in self.parts:
            model.fit(train)
        return self

    def tune(self, validation: ValidationData) -> None:
        """Tune the baselines as their own rows do, then the weights by coordinate ascent on validation NDCG@10."""
        if not validation.users:
            return
        full = ValidationData(validation.users, validation.inputs, validation.targets, None)
        for _, model, _ in self.parts:
            if not isinstance(model, SASRecModel):
                model.tune(full)
        if validation.candidates is not None:
            col = self._columns()
            items = [[col[i] for i in c] for c in validation.candidates]
            targets = [list(c).index(t) for c, t in zip(validation.candidates, validation.targets, strict=True)]
            inputs = validation.inputs
        else:
            keep = np.random.default_rng(0).permutation(len(validation.users))[:self.tune_users]
            inputs = tuple(validation.inputs[i] for i in keep)
            items, targets = None, [self._columns()[validation.targets[i]] for i in keep]
        per_part = self._standardised(inputs, items)
        if items is None:  # seen items never rank, as in the harness: -inf is not ranked
            seen = seen_mask(inputs, self._columns(), len(self.train.item_ids))
            for scores in per_part:
                scores[seen] = -np.inf
        self.weights, value = coordinate_ascent(per_part, np.array(targets), self.grid, self.rounds)
        self.validation = {f"val_ndcg@10_{name}": ndcg_at_10(part, np.array(targets))
                           for (name, _, _), part in zip(self.parts, per_part, strict=True)}
        self.validation["val_ndcg@10_blend"] = value
        logger.info("blend weights chosen on %d validation users: %s (NDCG@10 %.4f)", len(targets),
                    {name: float(w) for (name, _, _), w in zip(self.parts, self.weights, strict=True)}, value)

    def score_batch(self, inputs: Sequence[Sequence[Event]]) -> np.ndarray:
        return weighted_sum(self.weights, self._standardised(inputs, None))

    def score_candidates(self, inputs: Sequence[Sequence[Event]],
                         candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        col = self._columns()
        items = [[col[i] for i in c] for c in candidates]
        blended = weighted_sum(self.weights, self._standardised(inputs, items))
        return [row[:len(c)] for row, c in zip(blended, candidates, strict=True)]

    def _standardised(self, inputs: Sequence[Sequence[Event]],
                      items: list[list[int]] | None) -> list[np.ndarray]:
        """Per part, each user's scores standardised over the catalogue: (users, items), or only the columns
        `items[u]` in that order, shorter rows padded with -inf."""
        width = max((len(c) for c in items), default=0) if items is not None else 0
        out = []
        bar = tqdm(total=len(self.parts) * len(inputs), desc="blend parts", unit="user", leave=False,
                   disable=not self.progress)
        for _, model, log_scale in self.parts:
            rows = []
            for start in range(0, len(inputs), 256):
                scores = np.asarray(model.score_batch(inputs[start:start + 256]), dtype=np.float64)
                if log_scale:
                    scores = np.log(np.maximum(scores, 0.0) + LOG_FLOOR)
                scores -= scores.mean(axis=1, keepdims=True)
                scores /= scores.std(axis=1, keepdims=True) + 1e-12
                if items is not None:
                    sliced = np.full((len(scores), width), -np.inf)
                    for u, cols in enumerate(items[start:start + 256]):
                        sliced[u, :len(cols)] = scores[u, cols]
                    scores = sliced
                rows.append(scores)
                bar.update(len(scores))
            out.append(np.concatenate(rows))
        bar.close()
        return out

    def diagnostics(self) -> dict[str, float]:
        """Each part's weight and the validation NDCG@10 of each part alone and of the blend."""
        out = {f"weight_{name}": float(w) for (name, _, _), w in zip(self.parts, self.weights, strict=True)}
        out.update({k: round(v, 5) for k, v in self.validation.items()})
        return out


def weighted_sum(weights: Sequence[float] | np.ndarray, parts: Sequence[np.ndarray]) -> np.ndarray:
    """Σ wᵢ · partᵢ over the parts with a non-zero weight (so a zero weight never meets a -inf score)."""
    out = np.zeros_like(parts[0])
    for w, part in zip(weights, parts, strict=True):
        if w:
            out += w * part
    return out


def ndcg_at_10(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean NDCG@10 of each row's target column, ranked as the harness ranks (pessimistic ties); -inf
    entries (padding, seen items) are not ranked."""
    return float(ndcg_at(rank_full(scores, targets, np.isneginf(scores)), 10).mean())


def coordinate_ascent(parts: Sequence[np.ndarray], targets: np.ndarray, grid: Sequence[float],
                      rounds: int) -> tuple[np.ndarray, float]:
    """Weights (first fixed at 1) maximising `ndcg_at_10` of the weighted sum, one weight at a time.

    The search starts from the first part alone (so the result is never worse than it on these
    targets); each pass sets every other weight in turn to its best grid value given the rest; ties keep
    the current value, so the search is deterministic and stops early when a pass changes nothing.
    """
    weights = np.zeros(len(parts))
    weights[0] = 1.0

    def value(w: np.ndarray) -> float:
        return ndcg_at_10(weighted_sum(w, parts), targets)

    best = value(weights)
    for _ in range(rounds):
        changed = False
        for i in range(1, len(parts)):
            for w in grid:
                trial = weights.copy()
                trial[i] = w
                got = value(trial)
                if got > best:
                    best, weights, changed = got, trial, True
        if not changed:
            break
    return weights, best
