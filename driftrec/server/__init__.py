"""The REST API behind `driftrec serve`: a FastAPI app over one `RecommenderAgent`.

`driftrec.server.app.create_app(agent)` builds the app; FastAPI and uvicorn are the `serve` extra
(`pip install 'driftrec[serve]'`), imported only by `driftrec serve` and by `driftrec.server.app`.
"""

from __future__ import annotations

from retrieval.errors import MissingDependencyError

# Defaults of `driftrec serve --max-body-bytes / --max-sessions` and of `create_app`.
MAX_BODY_BYTES = 64 * 1024
MAX_SESSIONS = 1000


def require_serve_dependencies() -> None:
    """Check that FastAPI and uvicorn import.

    Raises:
        MissingDependencyError: either is missing; the message names the pip command.
    """
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"driftrec serve needs FastAPI and uvicorn ({exc.name} is missing): "
                                     "pip install 'driftrec[serve]'") from None
