"""Caps on the work one call may ask for, and the checks of inputs at the public edges.

`RecommenderAgent` and the CLI both call these checks, so the API and the command line refuse the
same inputs with the same one-line `ConfigError` (exit code 2):

- `MAX_K` = 1,000 items per recommendation (1 ≤ k ≤ 1,000). k is not bounded by the catalogue: a k
  above the number of items the user has not seen returns them all, flagged `diagnostics.short_list`.
- `MAX_EXPLAINED` = 20 explained items per call (`recommend(explain=True)`, `AgentConfig.chat_k`,
  `driftrec recommend --explain`, `driftrec chat -k`). Each explanation may be an LLM call, so a larger
  k with explanations is refused rather than silently left half explained.
- `MAX_CHAT_MESSAGE_CHARS` = 4,000 characters per chat message; a longer message is refused, not
  truncated. (Keyword routing is linear in the message length with or without this cap.)
- User ids, item ids and messages must be non-empty strings (whitespace alone is empty).
"""

from __future__ import annotations

from collections.abc import Iterable

from retrieval.errors import ConfigError

MAX_K = 1000
MAX_EXPLAINED = 20
MAX_CHAT_MESSAGE_CHARS = 4000


def check_count(value: object, name: str = "k", high: int | None = MAX_K, low: int = 1) -> int:
    """`value` as an int in [low, high] (no upper bound when `high` is None).

    Args:
        value: the number given by the caller.
        name: how the caller named it ("k", "-k", "--top"), quoted in the error.
        high: the largest value allowed, or None.
        low: the smallest value allowed.

    Raises:
        ConfigError: not an int (bools are not counts), or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low:,} and {high:,}" if high is not None else f"at least {low:,}"
        raise ConfigError(f"{name} must be {bounds}, got {value:,}")
    return value


def check_explained(k: int, name: str = "k") -> int:
    """`k` when it is at most `MAX_EXPLAINED` (the items explained per call); ConfigError otherwise."""
    if k > MAX_EXPLAINED:
        raise ConfigError(f"explanations are limited to {MAX_EXPLAINED} items per call, got {name} {k:,}: "
                          f"ask for {name} {MAX_EXPLAINED} or fewer, or leave explanations off")
    return k


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise ConfigError(f"{what} is empty: give an id as it appears in the data")
    return value


def check_user_id(user_id: object) -> str:
    """`user_id` when it is a non-blank string; ConfigError otherwise (it is not looked up here)."""
    return _check_id(user_id, "user id")


def check_item_ids(item_ids: Iterable[object], name: str = "item ids") -> tuple[str, ...]:
    """Each id a non-blank string; a bare string (a common slip for a one-item list) is refused."""
    if isinstance(item_ids, str | bytes):
        raise ConfigError(f"{name} must be a list of item ids, not the single string {item_ids!r}")
    return tuple(_check_id(i, f"an item id in {name}") for i in item_ids)


def check_message(message: object) -> str:
    """`message` when it is a non-blank string of at most `MAX_CHAT_MESSAGE_CHARS` characters.

    Raises:
        ConfigError: not a string, blank, or too long (refused, never truncated).
    """
    if not isinstance(message, str):
        raise ConfigError(f"a chat message must be a string, got {type(message).__name__}")
    if not message.strip():
        raise ConfigError("the chat message is empty: type what you would like")
    if len(message) > MAX_CHAT_MESSAGE_CHARS:
        raise ConfigError(f"the chat message has {len(message):,} characters; the limit is "
                          f"{MAX_CHAT_MESSAGE_CHARS:,}: shorten it")
    return message
