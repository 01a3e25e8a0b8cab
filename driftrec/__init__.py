"""driftrec: recommendations that follow how a user's interests evolve.

The public API, imported lazily so that `import driftrec` stays cheap (torch, FAISS and LangChain load
only when the name that needs them is first used)::

    from driftrec import load_dataset, make_embedder, build_index, make_generator, RecommenderAgent

    dataset = load_dataset("ml-100k")
    index = build_index(dataset.catalog, make_embedder("hashing"), "numpy")
    agent = RecommenderAgent(dataset, make_generator("hybrid", index, dataset.histories, dataset.catalog.ids), index)
    rec = agent.recommend("196", k=5, explain=False)

Extension points are `Registry` objects (`EMBEDDERS`, `INDEX_BACKENDS`, `GENERATORS`, `FORECASTERS`,
`LLM_BACKENDS`, `MODELS`); third parties register through their entry-point groups
("driftrec.embedders", "driftrec.index_backends", "driftrec.generators", "driftrec.forecasters",
"driftrec.llm_backends", "driftrec.models").

Inputs are checked at this edge: `RecommenderAgent.recommend`, `.chat` and `.history` refuse blank user
or item ids, k outside 1..`MAX_K`, more than `MAX_EXPLAINED` explained items per call and chat messages
over `MAX_CHAT_MESSAGE_CHARS` characters with a one-line `ConfigError`; an unknown user or item raises
`UnknownUserError` / `UnknownItemError`. Every error driftrec raises on purpose is a `DriftrecError`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> (module, attribute in that module)
_EXPORTS: dict[str, tuple[str, str]] = {
    # data
    "load_dataset": ("retrieval.data.datasets", "load_dataset"),
    "Dataset": ("retrieval.data.model", "Dataset"),
    "Catalog": ("retrieval.data.model", "Catalog"),
    "Item": ("retrieval.data.model", "Item"),
    "Event": ("retrieval.data.model", "Event"),
    # vectors
    "Embedder": ("retrieval.vectors.embed", "Embedder"),
    "HashingEmbedder": ("retrieval.vectors.embed", "HashingEmbedder"),
    "make_embedder": ("retrieval.vectors.embed", "make_embedder"),
    "EMBEDDERS": ("retrieval.vectors.embed", "EMBEDDERS"),
    "VectorIndex": ("retrieval.vectors.index", "VectorIndex"),
    "INDEX_BACKENDS": ("retrieval.vectors.index", "BACKENDS"),
    "build_index": ("retrieval.vectors.build", "build_index"),
    # candidates
    "Candidate": ("retrieval.candidates.base", "Candidate"),
    "CandidateGenerator": ("retrieval.candidates.base", "CandidateGenerator"),
    "make_generator": ("retrieval.candidates.registry", "make_generator"),
    "GENERATORS": ("retrieval.candidates.registry", "GENERATORS"),
    # evolution
    "Forecaster": ("retrieval.evolution.forecast", "Forecaster"),
    "make_forecaster": ("retrieval.evolution.forecast", "make_forecaster"),
    "FORECASTERS": ("retrieval.evolution.forecast", "FORECASTERS"),
    # LLM
    "LLMSettings": ("agent.llm.settings", "LLMSettings"),
    "make_client": ("agent.llm.backends", "make_client"),
    "LLM_BACKENDS": ("agent.llm.backends", "BACKENDS"),
    # agent
    "RecommenderAgent": ("agent.agent", "RecommenderAgent"),
    "AgentConfig": ("agent.agent", "AgentConfig"),
    "LLMReranker": ("agent.rerank", "LLMReranker"),
    "RerankResult": ("agent.types", "RerankResult"),
    "Recommendation": ("agent.types", "Recommendation"),
    "Diagnostics": ("agent.types", "Diagnostics"),
    "ChatReply": ("agent.chat.reply", "ChatReply"),
    "ChatSession": ("agent.chat.session", "ChatSession"),
    # harness
    "make_model": ("eval.models", "make_model"),
    "MODELS": ("eval.models", "MODELS"),
    # limits
    "MAX_K": ("agent.limits", "MAX_K"),
    "MAX_EXPLAINED": ("agent.limits", "MAX_EXPLAINED"),
    "MAX_CHAT_MESSAGE_CHARS": ("agent.limits", "MAX_CHAT_MESSAGE_CHARS"),
    # registry and errors
    "Registry": ("retrieval.registry", "Registry"),
    "DriftrecError": ("retrieval.errors", "DriftrecError"),
    "ConfigError": ("retrieval.errors", "ConfigError"),
    "DataError": ("retrieval.errors", "DataError"),
    "UnknownUserError": ("retrieval.errors", "UnknownUserError"),
    "UnknownItemError": ("retrieval.errors", "UnknownItemError"),
    "IndexStateError": ("retrieval.errors", "IndexStateError"),
    "MissingDependencyError": ("retrieval.errors", "MissingDependencyError"),
    "LLMError": ("retrieval.errors", "LLMError"),
}

__all__ = ["AgentConfig", "Candidate", "CandidateGenerator", "Catalog", "ChatReply", "ChatSession", "ConfigError",
    "DataError", "Dataset", "Diagnostics", "DriftrecError", "EMBEDDERS", "Embedder", "Event", "FORECASTERS",
    "Forecaster", "GENERATORS", "HashingEmbedder", "INDEX_BACKENDS", "IndexStateError", "Item", "LLMError",
    "LLMReranker", "LLMSettings", "LLM_BACKENDS", "MAX_CHAT_MESSAGE_CHARS", "MAX_EXPLAINED", "MAX_K", "MODELS",
    "MissingDependencyError", "Recommendation", "RecommenderAgent", "Registry", "RerankResult", "UnknownItemError",
    "UnknownUserError", "VectorIndex", "build_index", "load_dataset", "make_client", "make_embedder",
    "make_forecaster", "make_generator", "make_model"]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'driftrec' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # static checkers and IDEs see the real objects
    from agent.agent import AgentConfig, RecommenderAgent
    from agent.chat.reply import ChatReply
    from agent.chat.session import ChatSession
    from agent.limits import MAX_CHAT_MESSAGE_CHARS, MAX_EXPLAINED, MAX_K
    from agent.llm.backends import BACKENDS as LLM_BACKENDS
    from agent.llm.backends import make_client
    from agent.llm.settings import LLMSettings
    from agent.rerank import LLMReranker
    from agent.types import Diagnostics, Recommendation, RerankResult
    from eval.models import MODELS, make_model
    from retrieval.candidates.base import Candidate, CandidateGenerator
    from retrieval.candidates.registry import GENERATORS, make_generator
    from retrieval.data.datasets import load_dataset
    from retrieval.data.model import Catalog, Dataset, Event, Item
    from retrieval.errors import (
        ConfigError,
        DataError,
        DriftrecError,
        IndexStateError,
        LLMError,
        MissingDependencyError,
        UnknownItemError,
        UnknownUserError,
    )
    from retrieval.evolution.forecast import FORECASTERS, Forecaster, make_forecaster
    from retrieval.registry import Registry
    from retrieval.vectors.build import build_index
    from retrieval.vectors.embed import EMBEDDERS, Embedder, HashingEmbedder, make_embedder
    from retrieval.vectors.index import BACKENDS as INDEX_BACKENDS
    from retrieval.vectors.index import VectorIndex
