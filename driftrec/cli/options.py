"""Option groups shared by several commands, and the objects built from them at the edge.

Every `choices=` comes from a registry (`EMBEDDERS`, `BACKENDS`, `GENERATORS`), so a plugin that
registers through an entry-point group shows up in the CLI without editing it.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval.candidates.registry import GENERATORS
from retrieval.errors import ConfigError
from retrieval.log import get_logger
from retrieval.vectors.embed import EMBEDDERS
from retrieval.vectors.index import BACKENDS

if TYPE_CHECKING:
    from eval.splits import Split
    from retrieval.candidates.base import CandidateGenerator
    from retrieval.data.model import Dataset, LoadReport
    from retrieval.vectors.index import VectorIndex

# Skipped rows listed on stderr; --skipped-rows FILE has every one.
SHOWN_SKIPPED = 20
# The names `load_dataset` knows (retrieval.data.datasets.KNOWN), for commands that take a dataset.
DATASET_HELP = "'ml-100k', 'games', 'movietweetings', 'ml10m-tags' or a directory of supported files"


def data_options(p: argparse.ArgumentParser) -> None:
    """--data, --on-error and --skipped-rows: which dataset, and what to do with bad rows."""
    p.add_argument("--data", default="ml-100k", metavar="NAME_OR_PATH",
                   help="dataset: 'ml-100k' (../shared/data/ml-100k, the cache, or a verified GroupLens "
                        "download), 'games' (LLMRank Games files), 'movietweetings' (MovieTweetings 100K, "
                        "ratings 0-10 halved to 0-5), 'ml10m-tags' (MovieLens 10M tag applications), "
                        "or a directory of supported files")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="bad input rows: stop with file:line (raise) or skip and report them (skip)")
    p.add_argument("--skipped-rows", type=Path, default=None, metavar="FILE",
                   help="write every skipped row to FILE as TSV (file, line, kind, reason); stderr shows "
                        f"at most {SHOWN_SKIPPED}")


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
                   help="candidate generator: hybrid = weighted RRF of item-kNN, the attention-pooled interest "
                        "retriever and popularity, weights chosen on held-out last events (default), itemknn, "
                        "or interest")
    p.add_argument("--seq-model", default=None, metavar="DIR",
                   help="a sequential model saved by `driftrec train` on this dataset: fused into the hybrid "
                        "retriever (its weight chosen with the others')")


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
    from agent.chat.llm_parse import PARSE_MODES
    from agent.llm.packaged import CPU_FORMATS, DEFAULT_CPU_FORMAT

    p.add_argument("--llm", default="embedded", metavar="BACKEND", choices=_LLMBackendNames(),
                   help="LLM backend: embedded (llama.cpp on a packaged GGUF, offline; default), vllm, "
                        "llamacpp-server, openai, or 'none' for retrieval order and template texts")
    p.add_argument("--llm-model", default=None, help="packaged model name or GGUF path (embedded), served name")
    p.add_argument("--llm-adapter", default=None, type=Path, metavar="DIR",
                   help="transformers backend: a tuned ranker from `driftrec tune-ranker` (LoRA, merged at load)")
    p.add_argument("--llm-url", default=None, help="server URL for vllm / llamacpp-server / openai backends")
    p.add_argument("--llm-cpu-format", default=None, choices=tuple(CPU_FORMATS),
                   help="embedded: convert the GGUF once to this type for faster CPU inference (default: "
                        f"{DEFAULT_CPU_FORMAT} for packaged models, original for a GGUF path)")
    p.add_argument("--llm-api-key", default=None, metavar="KEY",
                   help="API key for server backends (default: $DRIFTREC_LLM_API_KEY, else $OPENAI_API_KEY; "
                        "prefer the variables: a flag shows in the process list)")
    p.add_argument("--llm-capabilities", default=None, metavar="NAMES", type=_capability_names,
                   help="server backends: comma-separated capabilities the endpoint supports, replacing the "
                        "backend's own (logprobs, json_schema, grammar, tools, json_mode, prompt_logprobs); "
                        "for hosted OpenAI-compatible endpoints")
    p.add_argument("--llm-timeout", type=_positive_seconds, default=60.0, metavar="SECONDS",
                   help="deadline of one LLM call, connect, read and retries included (default 60)")
    p.add_argument("--llm-budget", type=_positive_seconds, default=120.0, metavar="SECONDS",
                   help="LLM time one recommendation may spend; after it, retrieval order and template "
                        "texts, flagged (default 120)")
    p.add_argument("--no-rerank", action="store_true", help="keep retrieval order (explanations still use the LLM)")
    p.add_argument("--parsing", default="rules", choices=PARSE_MODES,
                   help="chat message parsing: rules (deterministic, offline; default: the packaged LLMs do not "
                        "improve it, docs/chat.md), rules+llm (also the LLM under constrained output, merged), "
                        "auto (the LLM only for a message the rules could not fill)")


def _capability_names(text: str) -> tuple[str, ...]:
    """`--llm-capabilities`: comma-separated names from `agent.llm.client.Capabilities.names()`."""
    from agent.llm.client import Capabilities

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(set(names) - set(Capabilities.names()))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown capability {', '.join(unknown)}; valid: "
                                         f"{', '.join(Capabilities.names())}")
    return names


def _positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text!r}")
    return value


def load_data(args: argparse.Namespace) -> Any:
    """The dataset `--data` names; skipped rows (under --on-error skip) are reported on stderr.

    Stderr shows the summary and the first `SHOWN_SKIPPED` skipped rows; `--skipped-rows FILE` gets
    all of them (just the header line when nothing was skipped), also when the load ends with an
    empty dataset.

    Raises:
        ConfigError: `--skipped-rows` cannot be written.
        DataError: a bad row under --on-error raise, or nothing left to load.
    """
    from retrieval.data.datasets import load_dataset
    from retrieval.errors import EmptyDatasetError

    out = getattr(args, "skipped_rows", None)
    try:
        dataset = load_dataset(args.data, on_error=args.on_error)
    except EmptyDatasetError as exc:
        if exc.report is not None:
            _report_skipped(exc.report, out)
        raise
    _report_skipped(dataset.report, out)
    return dataset


def _report_skipped(report: LoadReport, out: Path | None) -> None:
    """Write every skipped row to `out` (when given) and list the first ones on stderr."""
    if out is not None:
        try:
            report.write_skipped(out)
        except OSError as exc:
            raise ConfigError(f"--skipped-rows: cannot write {out} ({exc.strerror or exc}); "
                              "pass a writable file path") from None
    if not report.skipped:
        return
    if not get_logger("retrieval.data.loaders").isEnabledFor(logging.WARNING):  # else the loader logged it
        print(f"driftrec: {report.summary()}", file=sys.stderr)
    for row in report.skipped[:SHOWN_SKIPPED]:
        print(f"  skipped {row.file}:{row.line}: {row.reason}", file=sys.stderr)
    more = len(report.skipped) - SHOWN_SKIPPED
    if more > 0:
        where = f"all in {out}" if out is not None else "see --skipped-rows"
        print(f"  … {more:,} more ({where})", file=sys.stderr)


@functools.cache
def _embedder(name: str, model: str | None) -> Any:
    from retrieval.vectors.embed import make_embedder

    return make_embedder(name, model)


def embedder_for(args: argparse.Namespace) -> Any:
    """The `--embedder` / `--model` embedder, loaded once per process (the index and chat share it)."""
    return _embedder(args.embedder, args.model)


def open_index(args: argparse.Namespace, dataset: Any) -> Any:
    """The saved index `--index` names, checked against the embedder and the dataset's catalogue; without
    `--index`, one built in memory.

    With `--rebuild`, an index that does not match (or is missing, partial or corrupted) is rebuilt and
    saved in place through the same atomic write as `driftrec index`, which still refuses a directory
    that is not a driftrec index.

    Raises:
        IndexStateError: the saved index does not match and `--rebuild` was not given.
        ConfigError: `--rebuild` on a directory that is not a driftrec index.
    """
    from retrieval.errors import IndexStateError
    from retrieval.vectors.build import build_index, default_cache
    from retrieval.vectors.index import VectorIndex
    from retrieval.vectors.store import check_replaceable

    embedder = embedder_for(args)
    cache = None if args.no_cache else default_cache()
    directory = getattr(args, "index", None)
    if directory is None:
        return build_index(dataset.catalog, embedder, args.backend, cache=cache)
    try:
        return VectorIndex.load(directory, embedder=embedder.name, catalog=dataset.catalog)
    except IndexStateError as exc:
        if not getattr(args, "rebuild", False):
            raise
        check_replaceable(Path(directory), "driftrec-index")  # before the embedding work, not after it
        print(f"driftrec: rebuilding {directory}: {str(exc).split('; ')[0]}", file=sys.stderr)
    index = build_index(dataset.catalog, embedder, args.backend, cache=cache)
    index.save(directory)
    return index


def saved_index_options(p: argparse.ArgumentParser) -> None:
    """--index and --rebuild: a saved index directory, and whether a stale one is rebuilt in place."""
    p.add_argument("--index", type=Path, default=None, metavar="DIR",
                   help="saved index directory (default: build in memory); refused when it was built from "
                        "another catalogue or embedder")
    p.add_argument("--rebuild", action="store_true",
                   help="when the --index directory does not match the data and embedder, rebuild it in place")


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
                                         max_tokens=120, cache_dir=cache, cpu_format=args.llm_cpu_format,
                                         timeout_s=args.llm_timeout, api_key=getattr(args, "llm_api_key", None),
                                         capabilities=getattr(args, "llm_capabilities", None),
                                         adapter=getattr(args, "llm_adapter", None)))
        if not args.no_rerank:
            reranker = LLMReranker(client, dataset.catalog)
    config = AgentConfig(chat_k=max(1, getattr(args, "k", 5)), parsing=getattr(args, "parsing", "rules"),
                         llm_budget_s=getattr(args, "llm_budget", 120.0))
    generator = make_retriever(args, dataset, index)
    return RecommenderAgent(dataset, generator, index, client=client, reranker=reranker, config=config,
                            embedder=embedder_for(args))


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


def check_out_path(path: Path, flag: str, suffixes: tuple[str, ...] = ()) -> Path:
    """An output path checked before any work: a file ending in one of `suffixes`, else a directory.

    Missing parent directories are fine (the writer creates them); `.` and other existing directories
    are refused where a file is expected, and an existing file where a directory is expected.

    Args:
        path: the path as given.
        flag: the option that gave it ("--out"), quoted in the error.
        suffixes: lower-case file suffixes accepted (".png"); empty = a directory is expected.

    Raises:
        ConfigError: the path cannot be written as asked.
    """
    wanted = ", ".join(suffixes)
    if suffixes and path.is_dir():
        raise ConfigError(f"{flag} {path} is a directory: give a file name ending in {wanted}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{flag} {path}: give a file name ending in {wanted}")
    if not suffixes and path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a directory: give a directory to write into")
    from retrieval.vectors.store import check_not_below_a_file

    check_not_below_a_file(path, f"{flag} {path}")
    return path


def tuning_data(data: str, out: Path, artifact: str) -> tuple[Dataset, Split]:
    """The tune-* commands' start: `--out` checked before anything loads (a directory, empty or one of
    `artifact`'s, e.g. "driftrec-ranker"), then the dataset and its leave-one-out split, printed."""
    from eval.splits import leave_one_out
    from retrieval.data.datasets import load_dataset
    from retrieval.vectors.store import check_replaceable

    check_out_path(out, "--out")
    check_replaceable(out.absolute(), artifact)
    dataset = load_dataset(data)
    split = leave_one_out(dataset)
    print(f"{dataset!r}\n{split!r}")
    return dataset, split
