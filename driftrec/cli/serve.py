"""`driftrec serve`: the REST API (FastAPI + uvicorn) over one recommender agent, in one process."""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys

from agent.limits import check_count
from driftrec.cli.options import build_agent, dataset_options, llm_options, load_data, open_index, saved_index_options
from retrieval.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `serve` subcommand."""
    from driftrec.server import MAX_BODY_BYTES, MAX_SESSIONS

    p = sub.add_parser("serve", help="serve recommendations, chat, explanations and timelines over HTTP "
                                     "(OpenAPI docs at /docs)")
    dataset_options(p)
    saved_index_options(p)
    llm_options(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port, 1 to 65535 (default 8000)")
    p.add_argument("--max-sessions", type=int, default=MAX_SESSIONS,
                   help=f"chat sessions kept; more evict the least recently used (default {MAX_SESSIONS:,})")
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES,
                   help=f"largest request body; larger ones get HTTP 413 (default {MAX_BODY_BYTES:,})")
    p.add_argument("--access-log", action="store_true", help="log one line per request (uvicorn's access log)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler: load the data, index and LLM once, then serve until SIGTERM or Ctrl-C.

    On SIGTERM uvicorn finishes the requests in flight, then ends the process by that signal.
    """
    from driftrec.server import require_serve_dependencies

    check_count(args.port, "--port", 65535)
    check_count(args.max_sessions, "--max-sessions", None)
    check_count(args.max_body_bytes, "--max-body-bytes", None)
    require_serve_dependencies()
    _check_bindable(args.host, args.port)  # before minutes of model loading, not after
    import uvicorn

    from driftrec.server.app import create_app

    dataset = load_data(args)
    agent = build_agent(args, dataset, open_index(args, dataset))
    app = create_app(agent, llm=args.llm, max_sessions=args.max_sessions, max_body_bytes=args.max_body_bytes)
    print(f"driftrec: serving {dataset!r} on http://{args.host}:{args.port} (llm: {args.llm}; "
          f"OpenAPI docs at /docs)", file=sys.stderr, flush=True)
    level = min(logging.getLogger("driftrec").getEffectiveLevel(), logging.WARNING)
    uvicorn.run(app, host=args.host, port=args.port, log_level=logging.getLevelName(level).lower(),
                access_log=args.access_log)
    return 0


def _check_bindable(host: str, port: int) -> None:
    """Fail fast when `host:port` cannot be listened on.

    Raises:
        ConfigError: the address is in use, not local, or not an address.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r} is not an address this machine resolves ({exc.strerror}): "
                          "give an IP address or host name") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror})"
            raise ConfigError(f"{host}:{port} {why}: choose another --port or --host") from None
