"""The `driftrec` command line. The only place errors become exit codes and one-line messages."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from retrieval.errors import ConfigError, DriftrecError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn
    return register


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="ml-100k", metavar="NAME_OR_PATH",
                   help="dataset: 'ml-100k' (../shared/data/ml-100k, the cache, or a verified GroupLens "
                        "download), 'games' (LLMRank Games files), or a directory of supported files")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="bad input rows: stop with file:line (raise) or skip and report them (skip)")
    p.add_argument("--embedder", default="sentence-transformers", choices=("sentence-transformers", "hashing"),
                   help="text embedder backend (default: packaged all-MiniLM-L6-v2, offline)")
    p.add_argument("--model", default=None, help="embedding model name or path (sentence-transformers backend)")
    p.add_argument("--backend", default="flat", choices=("flat", "hnsw", "ivf", "numpy"),
                   help="vector index backend (flat = exact FAISS inner product)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the on-disk embedding cache")
    p.add_argument("--retriever", default="hybrid", choices=("hybrid", "itemknn", "interest"),
                   help="candidate generator: hybrid = RRF of item-kNN and the attention-pooled interest "
                        "retriever (default), itemknn, or interest")
    p.add_argument("--seq-model", default=None, metavar="DIR",
                   help="a sequential model saved by `driftrec train` on this dataset: fused into the hybrid "
                        "retriever with weight 1")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from driftrec.cli.chat import llm_args

    parser = argparse.ArgumentParser(prog="driftrec", description="Recommendations that follow how interests drift.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="embed a catalogue and save its vector index")
    _data_args(p)
    p.add_argument("--out", required=True, type=Path, help="index directory to write (atomic replace)")

    p = sub.add_parser("recommend", help="recommend items for one user")
    _data_args(p)
    p.add_argument("--user", required=True, help="user id as in the data")
    p.add_argument("-k", type=int, default=10, help="number of items (default 10)")
    p.add_argument("--index", type=Path, default=None, help="saved index directory (default: build in memory)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--explain", action="store_true",
                   help="rerank with the LLM, explain each item and describe the interest shift")
    llm_args(p)

    p = sub.add_parser("demo", help="load a dataset, build the index, recommend for a user, print the list")
    _data_args(p)
    p.add_argument("--user", default=None, help="user id (default: the first user in the data)")
    p.add_argument("-k", type=int, default=5, help="number of items (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    llm_args(p)
    p.set_defaults(explain=True)
    for mod in _command_modules():
        mod.register(sub)
    return parser


def _command_modules() -> list:  # type: ignore[type-arg]
    import importlib
    import pkgutil

    import driftrec.cli as pkg

    modules = [importlib.import_module(f"driftrec.cli.{m.name}") for m in pkgutil.iter_modules(pkg.__path__)
               if m.name != "main"]
    return [m for m in modules if hasattr(m, "register")]


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from retrieval.data.datasets import load_dataset

    dataset = load_dataset(args.data, on_error=args.on_error)
    if dataset.report.skipped:
        print(f"driftrec: {dataset.report.summary()}", file=sys.stderr)
        for row in dataset.report.skipped[:20]:
            print(f"  skipped {row.file}:{row.line}: {row.reason}", file=sys.stderr)
    return dataset


def _index(args: argparse.Namespace, dataset):  # type: ignore[no-untyped-def]
    from retrieval.vectors.build import build_index, default_cache
    from retrieval.vectors.embed import make_embedder

    embedder = make_embedder(args.embedder, args.model)
    if getattr(args, "index", None):
        from retrieval.vectors.index import VectorIndex

        return VectorIndex.load(args.index, embedder=embedder.name)
    cache = None if args.no_cache else default_cache()
    return build_index(dataset.catalog, embedder, args.backend, cache=cache)


@command("index")
def _cmd_index(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    dataset = _load(args)
    index = _index(args, dataset)
    index.save(args.out)
    print(f"{index} written to {args.out} in {time.perf_counter() - start:.1f}s")
    return 0


def _recommend(args: argparse.Namespace, user: str | None) -> int:
    from retrieval.candidates.registry import make_generator

    if args.k < 1:
        raise ConfigError("-k must be at least 1")
    dataset = _load(args)
    user = user or dataset.users[0]
    history = dataset.history(user)
    index = _index(args, dataset)
    if args.explain:
        return _explained(args, dataset, index, user)
    generator = make_generator(args.retriever, index, dataset.histories, dataset.catalog.ids,
                               seq_model=args.seq_model)
    candidates = generator.generate(user, args.k)
    if args.json:
        print(json.dumps({"user": user, "items": [
            {"item_id": c.item_id, "title": dataset.catalog[c.item_id].title, "score": round(c.score, 6),
             "source": c.source} for c in candidates]}, indent=2))
        return 0
    print(f"{dataset!r}\nuser {user}: {len(history)} events; most recent:")
    for ev in history[-5:]:
        item = dataset.catalog[ev.item]
        print(f"  {ev.timestamp:%Y-%m-%d}  {item.title}  [{', '.join(item.categories)}]")
    print(f"top {len(candidates)} recommendations ({index}):")
    for rank, c in enumerate(candidates, 1):
        item = dataset.catalog[c.item_id]
        print(f"  {rank:2d}. {item.title}  [{', '.join(item.categories)}]  score={c.score:.3f} via {c.source}")
    return 0


def _explained(args: argparse.Namespace, dataset, index, user: str) -> int:  # type: ignore[no-untyped-def]
    from driftrec.cli.chat import build_agent, print_recommendation

    rec = build_agent(args, dataset, index).recommend(user, args.k, explain=True)
    if args.json:
        print(json.dumps(rec.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return 0
    print(f"{dataset!r}\nuser {user}: {len(dataset.history(user))} events; most recent:")
    for ev in dataset.history(user)[-5:]:
        item = dataset.catalog[ev.item]
        print(f"  {ev.timestamp:%Y-%m-%d}  {item.title}  [{', '.join(item.categories)}]")
    print_recommendation(rec, repr(index))
    return 0


@command("recommend")
def _cmd_recommend(args: argparse.Namespace) -> int:
    return _recommend(args, args.user)


@command("demo")
def _cmd_demo(args: argparse.Namespace) -> int:
    return _recommend(args, args.user)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `driftrec` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        handler = getattr(args, "handler", None) or COMMANDS[args.command]
        return int(handler(args))
    except DriftrecError as exc:
        print(f"driftrec: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("driftrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
