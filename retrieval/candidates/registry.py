"""Candidate generators by name: the one place the CLI and the agent turn a name into a generator.

`GENERATORS` maps a name to a factory `(index, histories, item_ids, extra) -> CandidateGenerator`.
Third parties register under the entry-point group "driftrec.generators".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from retrieval.candidates.base import CandidateGenerator, Histories
from retrieval.candidates.ease import EASE, EASEGenerator
from retrieval.candidates.fusion import RRF_KS, WEIGHT_GRID, FusionGenerator, tune_on_holdout
from retrieval.candidates.fusion_cache import choice_key, load_choice, save_choice
from retrieval.candidates.interest import InterestRetriever
from retrieval.candidates.knn import ItemKNN, KNNGenerator
from retrieval.candidates.popularity import PopularityGenerator
from retrieval.errors import ConfigError
from retrieval.log import get_logger
from retrieval.registry import Registry
from retrieval.vectors.index import VectorIndex

GeneratorFactory = Callable[[VectorIndex, Histories, Sequence[str], Sequence[CandidateGenerator]], CandidateGenerator]
GENERATORS: Registry[GeneratorFactory] = Registry("retriever", "driftrec.generators")
log = get_logger(__name__)
# Users whose last event the hybrid holds out to choose its fusion (docs/foundation.md has the cost).
TUNING_USERS = 1000
# Item-kNN settings the harness tuned on ml-100k validation (docs/results.md): recency matters.
KNN_NEIGHBOURS = 50
KNN_HALF_LIFE = 1.0
# EASE settings the harness chose on ml-100k validation (docs/results.md, "EASE in the fusion").
EASE_L2 = 400.0
EASE_HALF_LIFE = 10.0
# The hybrid fuses EASE only up to this many items: its dense items² solve grows with the cube of the
# catalogue (under a second for ml-100k's 1,682 items, minutes and gigabytes at Games' 16,859).
HYBRID_EASE_MAX_ITEMS = 5_000


def make_generator(name: str, index: VectorIndex, histories: Histories, item_ids: Sequence[str],
                   extra: Sequence[CandidateGenerator] = ()) -> CandidateGenerator:
    """A candidate generator by name.

    Args:
        name: a `GENERATORS` name: "hybrid" (weighted RRF of item-kNN, `extra`, the attention-pooled
            interest retriever, popularity and, for catalogues up to `HYBRID_EASE_MAX_ITEMS` items, EASE;
            the weights chosen on held-out last events), "itemknn",
            "interest", "ease" (dense: for catalogues up to `retrieval.candidates.ease.MAX_ITEMS`
            items), or a plugin's (entry-point group "driftrec.generators").
        index: item vectors (the interest retriever's index).
        histories: user → events, oldest first: what the generators may see.
        item_ids: the catalogue's item ids (item-kNN's columns).
        extra: further generators (e.g. a trained `retrieval.sequential.model.SequentialGenerator`)
            fused into "hybrid" (their weights are chosen with the others').

    Raises:
        ConfigError: unknown name (the message lists the valid ones), or `extra` with a retriever
            other than "hybrid".
    """
    check_fusable(name, bool(extra))
    return GENERATORS.get(name)(index, histories, item_ids, extra)


def check_fusable(name: str, has_extra: bool) -> None:
    """Fail early (before loading extra models) on an unknown name or extras for a non-hybrid retriever."""
    GENERATORS.get(name)
    if has_extra and name != "hybrid":
        raise ConfigError(f"a sequential model is fused only into the hybrid retriever, not {name!r}")


def _knn(histories: Histories, item_ids: Sequence[str]) -> KNNGenerator:
    return KNNGenerator(ItemKNN(histories, item_ids, neighbours=KNN_NEIGHBOURS, half_life=KNN_HALF_LIFE))


@GENERATORS.register("hybrid")
def _hybrid(index: VectorIndex, histories: Histories, item_ids: Sequence[str],
            extra: Sequence[CandidateGenerator] = ()) -> CandidateGenerator:
    """Weighted RRF of item-kNN, `extra`, the interest retriever, popularity and EASE, tuned for NDCG@10.

    EASE is fused only when the catalogue has at most `HYBRID_EASE_MAX_ITEMS` items (its solve is dense).

    The weights and rank offset are chosen by `tune_on_holdout` on the last events of a seeded sample of
    `TUNING_USERS` users (plain RRF when no user has two events) and stored on disk
    (`retrieval.candidates.fusion_cache`), so the next build on the same events, vectors and generators
    reads the choice back; the choice and its cost are logged.
    """
    with_ease = len(item_ids) <= HYBRID_EASE_MAX_ITEMS

    def build(seen: Histories) -> list[CandidateGenerator]:
        popularity = PopularityGenerator(seen)
        ease = [_ease(index, seen, item_ids, ())] if with_ease else []
        return [_knn(seen, item_ids), *extra, InterestRetriever(index, popularity=popularity), popularity, *ease]

    start = time.perf_counter()
    tuning: dict[str, Any] = {"users": TUNING_USERS, "seed": 0, "depth": 100, "metric": "ndcg", "k": 10}
    key = choice_key(histories, index, extra, {**tuning, "knn": [KNN_NEIGHBOURS, KNN_HALF_LIFE],
                                               "ease": [EASE_L2, EASE_HALF_LIFE] if with_ease else None,
                                               "grid": WEIGHT_GRID, "rrf_ks": RRF_KS})
    found = load_choice(key) if key is not None else None
    origin = "read from the stored choice" if found is not None else "chosen"
    if found is None:
        found = tune_on_holdout(build, histories, **tuning)
        if found is not None and key is not None:
            save_choice(key, found)
    generators = build(histories)
    fusion = (FusionGenerator(generators, found.weights, rrf_k=found.rrf_k) if found is not None
              else FusionGenerator(generators))
    log.info("hybrid fusion %s in %.1f s: %r (%s)", origin, time.perf_counter() - start, fusion,
             f"{found.metric} {found.value:.4f} on {found.n_users} held-out last events" if found is not None
             else "no user has two events: plain RRF")
    return fusion


@GENERATORS.register("itemknn")
def _itemknn(index: VectorIndex, histories: Histories, item_ids: Sequence[str],
             extra: Sequence[CandidateGenerator] = ()) -> CandidateGenerator:
    return _knn(histories, item_ids)


@GENERATORS.register("interest")
def _interest(index: VectorIndex, histories: Histories, item_ids: Sequence[str],
              extra: Sequence[CandidateGenerator] = ()) -> CandidateGenerator:
    return InterestRetriever(index, popularity=PopularityGenerator(histories))


@GENERATORS.register("ease")
def _ease(index: VectorIndex, histories: Histories, item_ids: Sequence[str],
          extra: Sequence[CandidateGenerator] = ()) -> CandidateGenerator:
    return EASEGenerator(EASE(histories, item_ids, l2=EASE_L2, half_life=EASE_HALF_LIFE))
