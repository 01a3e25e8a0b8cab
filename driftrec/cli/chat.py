"""`driftrec chat`: talk to the recommender agent (interactive, or one-shot with --message).

Also holds the few helpers `driftrec recommend --explain` and `driftrec demo` share with it: the LLM
options and building a `RecommenderAgent` from parsed arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from retrieval.errors import ConfigError


def llm_args(p: argparse.ArgumentParser) -> None:
    """LLM options shared by chat, recommend --explain and demo."""
    from agent.llm.packaged import CPU_FORMATS, DEFAULT_CPU_FORMAT

    p.add_argument("--llm", default="embedded", metavar="BACKEND",
                   help="LLM backend: embedded (llama.cpp on a packaged GGUF, offline; default), vllm, "
                        "llamacpp-server, openai, or 'none' for retrieval order and template texts")
    p.add_argument("--llm-model", default=None, help="packaged model name or GGUF path (embedded), served name")
    p.add_argument("--llm-url", default=None, help="server URL for vllm / llamacpp-server / openai backends")
    p.add_argument("--llm-cpu-format", default=None, choices=tuple(CPU_FORMATS),
                   help="embedded: convert the GGUF once to this type for faster CPU inference (default: "
                        f"{DEFAULT_CPU_FORMAT} for packaged models, original for a GGUF path)")
    p.add_argument("--no-rerank", action="store_true", help="keep retrieval order (explanations still use the LLM)")
    p.add_argument("--routing", default="auto", choices=("auto", "tools", "llm", "keywords"),
                   help="chat intent routing (auto: tool calling where the backend supports it, else the LLM)")


def build_agent(args: argparse.Namespace, dataset: Any, index: Any) -> Any:
    """A RecommenderAgent from parsed CLI arguments (retriever, optional LLM reranker and explainer)."""
    from agent.agent import AgentConfig, RecommenderAgent
    from retrieval.candidates.registry import make_generator

    client = None
    reranker = None
    if args.llm != "none":
        from agent.llm.client import LLMSettings, make_client
        from agent.rerank import LLMReranker
        from retrieval.data.datasets import cache_dir

        cache = None if getattr(args, "no_cache", False) else cache_dir() / "llm"
        client = make_client(LLMSettings(backend=args.llm, model=args.llm_model, base_url=args.llm_url,
                                         max_tokens=120, cache_dir=cache, cpu_format=args.llm_cpu_format))
        if not args.no_rerank:
            reranker = LLMReranker(client, dataset.catalog)
    config = AgentConfig(chat_k=max(1, getattr(args, "k", 5)), routing=getattr(args, "routing", "auto"))
    generator = make_generator(getattr(args, "retriever", "hybrid"), index, dataset.histories, dataset.catalog.ids,
                               seq_model=getattr(args, "seq_model", None))
    return RecommenderAgent(dataset, generator, index, client=client,
                            reranker=reranker, config=config)


def print_recommendation(rec: Any, index_name: str = "") -> None:
    """The ranked list with explanations, then the interest-shift text, as plain text."""
    from agent.grounding import display_title

    method = rec.flags.get("rerank_method", "none")
    note = " (LLM reranker fell back to retrieval order)" if rec.flags.get("rerank_fallback") else ""
    print(f"top {len(rec.items)} recommendations (rerank: {method}{note}{'; ' + index_name if index_name else ''}):")
    for rank, (item_id, title, score) in enumerate(zip(rec.items, rec.titles, rec.scores, strict=True), 1):
        print(f"  {rank:2d}. {display_title(title)}  score={score:.3f}")
        exp = rec.explanation(item_id)
        if exp is not None:
            print(f"      why: {exp.text.text}  [{exp.text.source}]")
    if rec.interest_shift is not None:
        print(f"how your interests moved [{rec.interest_shift.source}]:\n  {rec.interest_shift.text}")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `chat` subcommand."""
    from driftrec.cli.main import _data_args

    p = subparsers.add_parser("chat", help="chat with the recommender agent about one user")
    _data_args(p)
    p.add_argument("--user", required=True, help="user id as in the data")
    p.add_argument("--message", default=None, help="one message, answered once (default: interactive)")
    p.add_argument("-k", type=int, default=5, help="items per reply (default 5)")
    p.add_argument("--index", default=None, help="saved index directory (default: build in memory)")
    p.add_argument("--json", action="store_true", help="print each reply as JSON")
    llm_args(p)
    p.set_defaults(handler=run)


def _show(reply: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(reply.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        print(reply.text)


def run(args: argparse.Namespace) -> int:
    """Handler of `driftrec chat`."""
    from agent.types import ChatSession
    from driftrec.cli.main import _index, _load

    if args.k < 1:
        raise ConfigError("-k must be at least 1")
    dataset = _load(args)
    dataset.history(args.user)  # unknown user: fail before loading models
    agent = build_agent(args, dataset, _index(args, dataset))
    session = ChatSession(user=args.user)
    if args.message is not None:
        _show(agent.chat(args.user, args.message, session), args.json)
        return 0
    print(f"driftrec chat with user {args.user} ({len(dataset.history(args.user))} events). "
          "Empty line or Ctrl-D to quit.", file=sys.stderr)
    while True:
        try:
            message = input("you> ")
        except EOFError:
            break
        if not message.strip():
            break
        _show(agent.chat(args.user, message, session), args.json)
    return 0
