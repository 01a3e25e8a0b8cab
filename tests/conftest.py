"""Shared fixtures: real data paths, a synthetic dataset with a planted interest shift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from retrieval.data.model import Catalog, Dataset, Event, Item

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ML100K = SHARED / "ml-100k"
GAMES = SHARED / "amazon-games-llmrank"


@pytest.fixture(scope="session")
def ml100k_path() -> Path:
    if not (ML100K / "u.data").is_file():
        pytest.fail(f"real data missing at {ML100K}: tests need ../shared/data beside the repo")
    return ML100K


@pytest.fixture(scope="session")
def games_path() -> Path:
    if not (GAMES / "Games-6k.item").is_file():
        pytest.fail(f"real data missing at {GAMES}")
    return GAMES


def planted_shift_dataset(n_users: int = 20, per_phase: int = 12) -> Dataset:
    """Users watch only 'space' items for `per_phase` weeks, then only 'cooking' items.

    The right answer is known: a user's recent interest is cooking, the long past is space.
    """
    topics = {"space": ["rocket", "orbit", "galaxy", "astronaut", "planet"],
              "cooking": ["recipe", "kitchen", "baking", "chef", "sauce"]}
    items = []
    for topic, words in topics.items():
        for i in range(40):
            w1, w2 = words[i % 5], words[(i * 3 + 1) % 5]
            items.append(Item(id=f"{topic}-{i}", title=f"{w1} {w2} story {i}", categories=(topic,)))
    events = []
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for u in range(n_users):
        for j in range(per_phase):
            events.append(Event(user=f"u{u}", item=f"space-{(u + j) % 40}", timestamp=start + timedelta(days=7 * j)))
        for j in range(per_phase):
            events.append(Event(user=f"u{u}", item=f"cooking-{(u * 2 + j) % 40}",
                                timestamp=start + timedelta(days=7 * (per_phase + j))))
    return Dataset(Catalog(items), events, name="planted-shift")


@pytest.fixture()
def shift_dataset() -> Dataset:
    return planted_shift_dataset()


@pytest.fixture(scope="session")
def ml100k_retrieval_agent(ml100k_path: Path) -> Any:
    """The agent `driftrec recommend --llm none --embedder hashing` builds on ml-100k (no reranker, no LLM)."""
    import argparse

    from agent.agent import RecommenderAgent
    from driftrec.cli.options import load_data, make_retriever, open_index

    ns = argparse.Namespace(data=str(ml100k_path), on_error="raise", embedder="hashing", model=None,
                            backend="flat", no_cache=True, retriever="hybrid", seq_model=None, index=None)
    dataset = load_data(ns)
    index = open_index(ns, dataset)
    return RecommenderAgent(dataset, make_retriever(ns, dataset, index), index)
