"""Read the JSON object out of an LLM reply (small models wrap it in prose or code fences)."""

from __future__ import annotations

import json
import re
from typing import Any

# Greedy: from the first "{" to the last "}", so nested objects stay whole.
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def extract_json_object(text: str) -> dict[str, Any]:
    """The JSON object spanning the first "{" to the last "}" of `text`.

    Raises:
        ValueError: empty reply, no object, or invalid JSON; the message says which, short enough
            to send back to the model in a re-ask.
    """
    if not text.strip():
        raise ValueError("empty reply")
    match = _OBJECT.search(text)
    if match is None:
        if "{" in text:
            raise ValueError("invalid JSON (truncated: no closing '}')")
        raise ValueError(f"no JSON object in the reply: {text[:60]!r}")
    try:
        # Text from "{" to "}" that parses is an object, never a list or scalar.
        data: dict[str, Any] = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at char {exc.pos})") from None
    return data
