"""`driftrec chat`: talk to the recommender agent (interactive, or one-shot with --message)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent.limits import MAX_CHAT_MESSAGE_CHARS, MAX_EXPLAINED, check_count, check_message, check_user_id
from driftrec.cli.options import build_agent, dataset_options, llm_options, load_data, open_index, saved_index_options
from retrieval.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `chat` subcommand."""
    p = subparsers.add_parser("chat", help="chat with the recommender agent about one user")
    dataset_options(p)
    p.add_argument("--user", required=True, help="user id as in the data")
    p.add_argument("--message", default=None,
                   help=f"one message of at most {MAX_CHAT_MESSAGE_CHARS:,} characters, answered once "
                        "(default: interactive)")
    p.add_argument("--session", default=None, metavar="FILE",
                   help="chat session file: resumed when it exists, saved after every reply (constraints, items "
                        "shown and their explanations carry over between calls)")
    p.add_argument("-k", type=int, default=5, help=f"items per reply, 1 to {MAX_EXPLAINED} (default 5)")
    saved_index_options(p)
    p.add_argument("--json", action="store_true", help="print each reply as JSON")
    llm_options(p)
    p.set_defaults(handler=run)


def _show(reply: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(reply.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        print(reply.text)


def run(args: argparse.Namespace) -> int:
    """Handler of `driftrec chat`."""

    check_count(args.k, "-k", MAX_EXPLAINED)
    check_user_id(args.user)
    if args.message is not None:
        check_message(args.message)
    dataset = load_data(args)
    dataset.history(args.user)  # unknown user: fail before loading models
    session = _open_session(args.session, args.user)
    agent = build_agent(args, dataset, open_index(args, dataset))
    if args.message is not None:
        _answer(agent, args, session, args.message)
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
        try:
            check_message(message)
        except ConfigError as exc:  # one bad line does not end the conversation
            print(f"driftrec: {exc}", file=sys.stderr)
            continue
        _answer(agent, args, session, message)
    return 0


def _open_session(path: str | None, user: str) -> Any:
    """The session in `path` (it must belong to `user`), a new one when the file does not exist yet."""
    from pathlib import Path

    from agent.chat.session import ChatSession

    if path is None:
        return ChatSession(user=user)
    from retrieval.vectors.store import check_not_below_a_file

    check_not_below_a_file(Path(path), f"--session {path}")  # before the models load, not at the first save
    if not Path(path).exists():
        return ChatSession(user=user)
    session = ChatSession.load(path)
    if session.user != user:
        raise ConfigError(f"chat session {path} belongs to user {session.user!r}, not {user!r}")
    return session


def _answer(agent: Any, args: argparse.Namespace, session: Any, message: str) -> None:
    reply = agent.chat(args.user, message, session)
    if args.session is not None:
        session.save(args.session)
    _show(reply, args.json)
