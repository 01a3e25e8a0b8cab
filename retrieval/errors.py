"""The one exception tree of driftrec. The CLI maps these to exit codes; nothing else does."""

from __future__ import annotations

from typing import Any


class DriftrecError(Exception):
    """Root of every error driftrec raises on purpose."""

    exit_code = 1


class DataError(DriftrecError):
    """Input data is malformed; the message names the file and line."""

    exit_code = 2


class EmptyDatasetError(DataError):
    """A load left no items or no events. `report` is the loader's `LoadReport` (every skipped row)."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class DatasetNotFoundError(DriftrecError):
    """No dataset could be located, read locally or downloaded."""

    exit_code = 2


class UnknownUserError(DriftrecError):
    """A user id that the loaded events do not contain."""

    exit_code = 3


class UnknownItemError(DriftrecError):
    """An item id that the catalogue does not contain."""

    exit_code = 3


class UnknownSessionError(DriftrecError):
    """A chat session id the server does not hold (never issued, or evicted as least recently used)."""

    exit_code = 3


class IndexStateError(DriftrecError):
    """An index directory is missing, partial, corrupted or built with another embedder."""

    exit_code = 4


class ConfigError(DriftrecError):
    """A setting is invalid, e.g. an unknown backend name."""

    exit_code = 2


class MissingDependencyError(DriftrecError):
    """An optional dependency is not installed; the message says what to install."""

    exit_code = 5


class LeakageError(DriftrecError):
    """Training data overlaps what a model is evaluated on (the evaluation would be optimistic)."""

    exit_code = 7


class LLMError(DriftrecError):
    """An LLM backend failed in a way the caller must see (the reranker never raises this)."""

    exit_code = 6


class LLMReplyError(LLMError):
    """An LLM backend answered, but its reply could not be read (not JSON, missing fields, wrong types).

    Callers treat it as an invalid output: count it, re-ask, then fall back.
    """


class LLMTimeoutError(LLMError):
    """An LLM call did not finish by its deadline (`LLMSettings.timeout_s` or the caller's budget)."""
