"""Option groups shared by several commands, and the objects built from them at the edge.

Every `choices=` comes from a registry (`EMBEDDERS`, `BACKENDS`, `GENERATORS`), so a plugin that
registers through an entry-point group shows up in the CLI without editing it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from retrieval.candidates.registry import GENERATORS
from retrieval.vectors.embed import EMBEDDERS
from retrieval.vectors.index import BACKENDS

if TYPE_CHECKING:
    from retrieval.candidates.base import CandidateGenerator
    from retrieval.data.model import Dataset
    from retrieval.vectors.index import VectorIndex


def data_options(p: argparse.ArgumentParser) -> None:
    """--data and --on-error: which dataset, and what to do with bad rows."""
    p.add_argument("--data", default="ml-100k", metavar="NAME_OR_PATH",
                   help="dataset: 'ml-100k' (../shared/data/ml-100k, the cache, or a verified GroupLens "
                        "download), 'games' (LLMRank Games files), or a directory of supported files")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="bad input rows: stop with file:line (raise) or skip and report them (skip)")


def index_options(p: argparse.ArgumentParser) -> None:
    """--embedder, --model, --backend, --no-cache: how item vectors are made and searched."""
    p.add_argument("--embedder", default="sentence-transformers", choices=EMBEDDERS.names(),
                   help="text embedder backend (default: packaged all-MiniLM-L6-v2, offline)")
    p.add_argument("--model", default=None, help="embedding model name or path (sentence-transformers backend)")
    p.add_argument("--backend", default="flat", choices=BACKENDS.names(),
                   help="vector index backend (flat = exact FAISS inner product)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the on-disk embedding cache")


def retriever_options(p: argparse.ArgumentParser) -> None:
    """--retriever and --seq-model: the candidate generator."""
    p.add_argument("--retriever", default="hybrid", choices=GENERATORS.names(),
                   help="candidate generator: hybrid = RRF of item-kNN and the attention-pooled interest "
                        "retriever (default), itemknn, or interest")
    p.add_argument("--seq-model", default=None, metavar="DIR",
                   help="a sequential model saved by `driftrec train` on this dataset: fused into the hybrid "
                        "retriever with weight 1")


def dataset_options(p: argparse.ArgumentParser) -> None:
    """The data, index and retriever groups together (what every data-reading command takes)."""
    data_options(p)
    index_options(p)
    retriever_options(p)


class _LLMBackendNames:
    """The choices of --llm: the LLM-backend registry's names and "none".

    Read only when --llm is given (argparse checks choices of given values, never of the default), so
    that other commands and --help do not import LangChain.
    """

    def _names(self) -> tuple[str, ...]:
        from agent.llm.backends import BACKENDS

        return (*BACKENDS.names(), "none")

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def llm_options(p: argparse.ArgumentParser) -> None:
    """LLM options shared by chat, recommend --explain and demo."""
    from agent.llm.packaged import CPU_FORMATS, DEFAULT_CPU_FORMAT
    from agent.types import ROUTINGS

    p.add_argument("--llm", default="embedded", metavar="BACKEND", choices=_LLMBackendNames(),
                   help="LLM backend: embedded (llama.cpp on a packaged GGUF, offline; default), vllm, "
                        "llamacpp-server, openai, or 'none' for retrieval order and template texts")
    p.add_argument("--llm-model", default=None, help="packaged model name or GGUF path (embedded), served name")
    p.add_argument("--llm-url", default=None, help="server URL for vllm / llamacpp-server / openai backends")
    p.add_argument("--llm-cpu-format", default=None, choices=tuple(CPU_FORMATS),
                   help="embedded: convert the GGUF once to this type for faster CPU inference (default: "
                        f"{DEFAULT_CPU_FORMAT} for packaged models, original for a GGUF path)")
    p.add_argument("--no-rerank", action="store_true", help="keep retrieval order (explanations still use the LLM)")
    p.add_argument("--routing", default="auto", choices=ROUTINGS,
                   help="chat intent routing (auto: tool calling where the backend supports it, else the LLM)")


def load_data(args: argparse.Namespace) -> Any:
    """The dataset `--data` names; skipped rows (under --on-error skip) are reported on stderr."""
    from retrieval.data.datasets import load_dataset

    dataset = load_dataset(args.data, on_error=args.on_error)
    if dataset.report.skipped:
        print(f"driftrec: {dataset.report.summary()}", file=sys.stderr)
        for row in dataset.report.skipped[:20]:
            print(f"  skipped {row.file}:{row.line}: {row.reason}", file=sys.stderr)
    return dataset


def open_index(args: argparse.Namespace, dataset: Any) -> Any:
    """The saved index `--index` names (checked against the embedder), else one built in memory."""
    from retrieval.vectors.build import build_index, default_cache
    from retrieval.vectors.embed import make_embedder

    embedder = make_embedder(args.embedder, args.model)
    if getattr(args, "index", None):
        from retrieval.vectors.index import VectorIndex

        return VectorIndex.load(args.index, embedder=embedder.name)
    cache = None if args.no_cache else default_cache()
    return build_index(dataset.catalog, embedder, args.backend, cache=cache)


def build_agent(args: argparse.Namespace, dataset: Any, index: Any) -> Any:
    """A RecommenderAgent from parsed CLI arguments (retriever, optional LLM reranker and explainer)."""
    from agent.agent import AgentConfig, RecommenderAgent

    client = None
    reranker = None
    if args.llm != "none":
        from agent.llm.backends import make_client
        from agent.llm.settings import LLMSettings
        from agent.rerank import LLMReranker
        from retrieval.data.datasets import cache_dir

        cache = None if getattr(args, "no_cache", False) else cache_dir() / "llm"
        client = make_client(LLMSettings(backend=args.llm, model=args.llm_model, base_url=args.llm_url,
                                         max_tokens=120, cache_dir=cache, cpu_format=args.llm_cpu_format))
        if not args.no_rerank:
            reranker = LLMReranker(client, dataset.catalog)
    config = AgentConfig(chat_k=max(1, getattr(args, "k", 5)), routing=getattr(args, "routing", "auto"))
    generator = make_retriever(args, dataset, index)
    return RecommenderAgent(dataset, generator, index, client=client,
                            reranker=reranker, config=config)


def make_retriever(args: argparse.Namespace, dataset: Dataset, index: VectorIndex) -> CandidateGenerator:
    """The `--retriever` generator, with the `--seq-model` sequential model fused into the hybrid."""
    from retrieval.candidates.popularity import PopularityGenerator
    from retrieval.candidates.registry import check_fusable, make_generator

    name, seq_model = getattr(args, "retriever", "hybrid"), getattr(args, "seq_model", None)
    extra: list[CandidateGenerator] = []
    if seq_model is not None:
        check_fusable(name, True)
        from retrieval.sequential.model import SequentialGenerator, SequentialModel  # torch: only when asked for

        model = SequentialModel.load(seq_model, item_ids=dataset.catalog.ids)
        extra.append(SequentialGenerator(model, PopularityGenerator(dataset.histories)))
    return make_generator(name, index, dataset.histories, dataset.catalog.ids, extra=extra)
