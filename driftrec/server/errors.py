"""Errors as HTTP responses: a `DriftrecError` becomes `{"error": {"type", "message", "exit_code"}}`.

The status follows what went wrong: an unknown user, item or session is 404, a refused input 422
(`ConfigError`, and request bodies that do not fit the schema), a data problem 400, a failed LLM 502
(504 for a deadline), anything else 500. The message is the CLI's one-line message.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from driftrec.server.models import ErrorBody, ErrorDetail
from retrieval.errors import (
    ConfigError,
    DataError,
    DatasetNotFoundError,
    DriftrecError,
    LLMError,
    LLMTimeoutError,
    UnknownItemError,
    UnknownSessionError,
    UnknownUserError,
)

log = logging.getLogger("driftrec.server")


def http_status(exc: DriftrecError) -> int:
    """The HTTP status of a driftrec error."""
    if isinstance(exc, UnknownUserError | UnknownItemError | UnknownSessionError):
        return 404
    if isinstance(exc, ConfigError):
        return 422
    if isinstance(exc, DataError | DatasetNotFoundError):
        return 400
    if isinstance(exc, LLMTimeoutError):
        return 504
    if isinstance(exc, LLMError):
        return 502
    return 500


def error_response(status: int, kind: str, message: str, exit_code: int) -> JSONResponse:
    """A JSON error response in the API's one error shape."""
    body = ErrorBody(error=ErrorDetail(type=kind, message=message, exit_code=exit_code))
    return JSONResponse(body.model_dump(), status_code=status)


async def _driftrec_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DriftrecError)  # registered for DriftrecError only
    status = http_status(exc)
    (log.warning if status >= 500 else log.info)("%s %s -> %d %s: %s", request.method, request.url.path, status,
                                                 type(exc).__name__, exc)
    return error_response(status, type(exc).__name__, str(exc), exc.exit_code)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # registered for RequestValidationError only
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    message = f"{where}: {first.get('msg', 'invalid')}{more}; see /docs for the request schema"
    log.info("%s %s -> 422 %s", request.method, request.url.path, message)
    return error_response(422, ConfigError.__name__, message, ConfigError.exit_code)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)  # registered for HTTPException only
    return error_response(exc.status_code, "HTTPError", f"{request.method} {request.url.path}: {exc.detail}", 1)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s -> 500: unexpected %s", request.method, request.url.path, type(exc).__name__)
    return error_response(500, "InternalError", f"internal error ({type(exc).__name__}); the server log has "
                                                "the traceback", 1)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the `ErrorBody` shape."""
    app.add_exception_handler(DriftrecError, _driftrec_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
