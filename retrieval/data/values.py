"""Turning raw field values (text from files, JSON values, DataFrame cells) into typed fields.

Each function accepts exactly the values listed in its docstring and raises `BadValue` (a typed
bad row) for anything else, so no value is coerced silently. Rules shared by all of them:
a text value containing a NUL byte, or longer than `MAX_FIELD_CHARS`, is a bad row; `None` means
"missing" (DataFrame loaders turn pandas' NaN/NaT/NA into None first; files never do).
"""

from __future__ import annotations

import math
import numbers
from datetime import UTC, datetime
from typing import Any

from retrieval.data.model import SkipReason

# csv.field_size_limit()'s default; applied to every format so that all loaders agree.
MAX_FIELD_CHARS = 131_072
# Epoch seconds beyond 2100-01-01 are a unit or parsing error (see model.MAX_TIME).
MAX_EPOCH = 4_102_444_800


class BadValue(ValueError):
    """A field value that cannot become the typed field; `kind` is the skip reason."""

    def __init__(self, kind: SkipReason, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _checked_text(value: str, field: str) -> str:
    if "\x00" in value:
        raise BadValue(SkipReason.NUL_BYTE, f"NUL byte in {field}")
    if len(value) > MAX_FIELD_CHARS:
        raise BadValue(SkipReason.FIELD_TOO_LARGE,
                       f"field too large: {field} has {len(value):,} characters (limit {MAX_FIELD_CHARS:,})")
    return value


def _number_text(value: Any, field: str) -> str | None:
    """Decimal text of an int, or of a finite float (integral floats without `.0`); None if not a number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if isinstance(value, numbers.Integral):
        return str(int(value))
    number = float(value)
    if not math.isfinite(number):
        raise BadValue(SkipReason.INVALID_VALUE, f"invalid value: {field} is {number}")
    return str(int(number)) if number.is_integer() else repr(number)


def identifier(value: Any, field: str) -> str:
    """A user or item id: text (surrounding whitespace stripped) or a number (7 and 7.0 → "7").

    Raises:
        BadValue: None, empty text, NaN/inf, a bool, a list/dict or another type.
    """
    if value is None:
        raise BadValue(SkipReason.MISSING_VALUE, f"missing value: {field} is null")
    text = value.strip() if isinstance(value, str) else _number_text(value, field)
    if text is None:
        raise BadValue(SkipReason.INVALID_VALUE,
                       f"invalid value: {field} must be text or a number, got {type(value).__name__}")
    if not text:
        raise BadValue(SkipReason.MISSING_VALUE, f"missing value: empty {field}")
    return _checked_text(text, field)


def title(value: Any) -> str:
    """An item title: text, or a number written in decimal (a film called 1917).

    Raises:
        BadValue: None, NaN/inf, a bool, a list/dict or another type (blank text fails in `Item`).
    """
    if value is None:
        raise BadValue(SkipReason.MISSING_VALUE, "missing value: title is null")
    return _text_or_number(value, "title")


def _text_or_number(value: Any, field: str) -> str:
    text = value if isinstance(value, str) else _number_text(value, field)
    if text is None:
        raise BadValue(SkipReason.INVALID_VALUE,
                       f"invalid value: {field} must be text, got {type(value).__name__}")
    return _checked_text(text, field)


def optional_text(value: Any, field: str) -> str | None:
    """Free text (item text, review): None or empty text → None; text or a number → text.

    Raises:
        BadValue: a bool, a list/dict or another type.
    """
    if value is None or value == "":
        return None
    return _text_or_number(value, field)


def categories(value: Any) -> tuple[str, ...]:
    """Category labels: text split on `|` or `,`, or a list of texts; None → no categories.

    Labels are stripped; empty labels and MovieLens' "(no genres listed)" are dropped.

    Raises:
        BadValue: a label that is not text, or a value that is neither text nor a list.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        labels = value.replace(",", "|").split("|")
    elif isinstance(value, list | tuple):
        labels = list(value)
        if not all(isinstance(v, str) for v in labels):
            raise BadValue(SkipReason.INVALID_VALUE, "invalid value: categories must be a list of texts")
    else:
        raise BadValue(SkipReason.INVALID_VALUE,
                       f"invalid value: categories must be text or a list, got {type(value).__name__}")
    out = tuple(_checked_text(c.strip(), "categories") for c in labels)
    return tuple(c for c in out if c and c != "(no genres listed)")


def rating(value: Any, required: bool = False) -> float | None:
    """A rating: a number or numeric text, finite and >= 0; None or empty text → no rating.

    Raises:
        BadValue: NaN, inf, a negative number, a bool, non-numeric text, another type, or no
            rating where `required`.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BadValue(SkipReason.MISSING_VALUE, "missing value: empty rating")
        return None
    if isinstance(value, bool) or not isinstance(value, str | numbers.Real):
        raise BadValue(SkipReason.INVALID_VALUE,
                       f"invalid value: rating must be a number, got {type(value).__name__}")
    try:
        number = float(_checked_text(value, "rating") if isinstance(value, str) else value)
    except ValueError:
        raise BadValue(SkipReason.INVALID_VALUE, f"invalid value: rating {str(value)[:40]!r} is not a number") from None
    if not (math.isfinite(number) and number >= 0):
        raise BadValue(SkipReason.INVALID_VALUE, f"invalid value: rating must be a finite number >= 0, got {number}")
    return number


def epoch(value: str | float) -> datetime:
    """Epoch seconds (number or numeric text) in 1970..2100 as an aware UTC datetime."""
    seconds = float(value)
    if not 0 <= seconds < MAX_EPOCH:
        raise ValueError(f"timestamp {str(value)[:40]} out of range 1970..2100")
    return datetime.fromtimestamp(seconds, tz=UTC)


def parse_time(value: Any) -> datetime:
    """Epoch seconds (number or numeric text) or ISO 8601 text; naive times are taken as UTC.

    Raises:
        BadValue: None (missing timestamp).
        ValueError: a bool, NaN, a time outside 1970..2100, unreadable text or another type.
    """
    if value is None:
        raise BadValue(SkipReason.MISSING_VALUE, "missing value: timestamp is null")
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        return epoch(float(value))
    elif isinstance(value, str):
        text = _checked_text(value.strip(), "timestamp")
        if text.lstrip("-").replace(".", "", 1).isdigit():
            return epoch(text)
        dt = datetime.fromisoformat(text)
    else:
        raise ValueError(f"unreadable timestamp of type {type(value).__name__}")
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
