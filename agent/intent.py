"""Route a chat message to one of a fixed set of intents: tool calling, LLM routing, or keywords.

Every route is validated: the intent must be in `INTENTS`, and a title the LLM extracts must occur in
the user's own message (an LLM cannot invent the title to act on). Any failure falls back to the
deterministic keyword router and is flagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.llm.client import LLMClient, to_messages
from agent.llm.json_reply import extract_json_object
from agent.types import INTENTS, Intent, Routing
from prompts import data_block, quote, render
from retrieval.errors import LLMError
from retrieval.log import get_logger

log = get_logger(__name__)

RouteMethod = Literal["tools", "llm", "keywords"]
MAX_MESSAGE_CHARS = 500

_DESCRIPTIONS = {
    "recommend": "the user wants recommendations, or more of them",
    "more_like": "the user wants items similar to a title they name",
    "different": "the user wants something different from what they watched lately",
    "why": "the user asks why a title was suggested",
    "recent_interests": "the user asks what they have been into lately or how their taste changed",
    "help": "anything else",
}
_TITLE_INTENTS = ("more_like", "why")
_SPECIFIC = ("more_like", "why", "different", "recent_interests")


@dataclass(frozen=True)
class Route:
    """The routed intent of one message.

    Attributes:
        intent: one of INTENTS.
        title: the title text the message names (more_like, why), as written by the user.
        method: how the intent was decided.
        fallback: True when an LLM route failed and keywords decided instead.
        error: why the LLM route failed (None when it did not).
        overridden: True when a specific keyword pattern overruled the LLM's intent (mode "auto").
    """

    intent: Intent
    title: str | None = None
    method: RouteMethod = "keywords"
    fallback: bool = False
    error: str | None = None
    overridden: bool = False


class IntentReply(BaseModel):
    """What the LLM must return when routing: an intent from the fixed set, and an optional title."""

    model_config = ConfigDict(extra="forbid")

    intent: Literal["recommend", "more_like", "different", "why", "recent_interests", "help"]
    title: str | None = Field(default=None, max_length=200)


# ---------------------------------------------------------------------- keywords (deterministic)
#
# Every check below runs in time linear in the message length. A pattern such as `why.*?suggest` or
# `[chars]+$` is retried from every start position, so it costs O(n²) on a message that repeats its
# first part without the second ("why why why ..."). Each two-part pattern is therefore split: find the
# first part once, then search for the second part after it (a later first part sees only less text),
# and the title's ends are stripped by scanning characters, not by a `+$` pattern.

MAX_TITLE_CHARS = 200

_LEADING_QUOTE = re.compile(r"^[\"“«']([^\"“”«»]{1,200}?)[\"”»']")
_TITLE_LEAD = frozenset("\"'“”‘’«")
_TITLE_TRAIL = frozenset("\"'“”‘’»?!.,;:")
_POLITE = re.compile(r"\s(?:please|pls|thanks|thank you)\Z", re.IGNORECASE)
_POLITE_SPAN = len(" thank you")  # the longest `_POLITE` match
_WHY_WORD = re.compile(r"\bwhy\b", re.IGNORECASE)
_WHY_VERB = re.compile(r"\b(?:suggest|recommend|pick|show|choose|chose)(?:ed|en)?\b\s*(?:me\s+)?", re.IGNORECASE)
_WHY_BARE = re.compile(r"^\s*why\b(?P<title>.*)", re.IGNORECASE | re.DOTALL)
_LIKE = re.compile(r"\b(?:like|similar to|resembling|in the vein of|along the lines of)\s+(?P<title>.+)",
                   re.IGNORECASE | re.DOTALL)
_DIFFERENT = re.compile(r"\b(?:different|something new|something else|change of pace|switch it up|"
                        r"out of my comfort zone|not (?:like|what) (?:what )?i)", re.IGNORECASE)
_RECENT = re.compile(r"\b(?:lately|recently|my (?:recent )?(?:interests|taste|history)|interest shift|"
                     r"how ha(?:s|ve) my)", re.IGNORECASE)
_RECENT_ASK = re.compile(r"\bwhat (?:have|did|do) i\b", re.IGNORECASE)
_RECENT_VERB = re.compile(r"\b(?:into|watch\w*|lik\w*|enjoy\w*)", re.IGNORECASE)
_RECOMMEND = re.compile(r"\b(?:recommend|suggest|something to|anything to|what should i|more|another|"
                        r"give me|show me|pick)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.?!]")
_MORE_LIKE_HEAD = re.compile(r"\b(?:more|something|anything|films?|movies?|items?|games?|titles?|stuff|things?|"
                             r"recommend\w*|suggest\w*|similar)\b", re.IGNORECASE)
_MORE_LIKE_TAIL = re.compile(r"\b(?:like|similar to)\s", re.IGNORECASE)


def _strip_polite(text: str) -> str:
    """`text` without a trailing "please", "thanks", ... and the non-word characters after it."""
    end = len(text)
    while end and not (text[end - 1].isalnum() or text[end - 1] == "_"):  # the `\W*` tail
        end -= 1
    polite = _POLITE.search(text, max(0, end - _POLITE_SPAN), end)
    if polite is None:
        return text
    start = polite.start()
    while start and text[start - 1].isspace():
        start -= 1
    return text[:start]


def _strip_ends(text: str) -> str:
    """`text` without leading whitespace/opening quotes and trailing whitespace/quotes/punctuation."""
    start, end = 0, len(text)
    while start < end and (text[start].isspace() or text[start] in _TITLE_LEAD):
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in _TITLE_TRAIL):
        end -= 1
    return text[start:end]


def clean_title(text: str) -> str:
    """Strip quotes, trailing punctuation and polite words around a title the user typed.

    Linear in `len(text)`; the result has at most `MAX_TITLE_CHARS` characters.
    """
    text = text.strip()
    if quoted := _LEADING_QUOTE.match(text):
        return quoted[1].strip()[:MAX_TITLE_CHARS]
    return _strip_ends(_strip_polite(text))[:MAX_TITLE_CHARS]


def _why_title(text: str) -> str | None:
    """The text after "why ... suggest|recommend|pick|..." or after a leading "why"; None: not a why."""
    if (why := _WHY_WORD.search(text)) and (verb := _WHY_VERB.search(text, why.end())):
        return text[verb.end():]
    if bare := _WHY_BARE.match(text):
        return bare["title"]
    return None


def _asks_recent(text: str) -> bool:
    """True for "lately", "my taste", ... or "what have/did/do I ... into/watch/like/enjoy" in one line."""
    if _RECENT.search(text):
        return True
    for line in text.split("\n"):
        if (ask := _RECENT_ASK.search(line)) and _RECENT_VERB.search(line, ask.end()):
            return True
    return False


def _asks_more_like(text: str) -> bool:
    """True for "more / something / films ... like / similar to " within one sentence."""
    for sentence in _SENTENCE_END.split(text):
        if (head := _MORE_LIKE_HEAD.search(sentence)) and _MORE_LIKE_TAIL.search(sentence, head.end()):
            return True
    return False


def keyword_route(message: str) -> Route:
    """The deterministic router: ordered patterns, most specific first; linear in the message length."""
    text = message.strip()
    if (why := _why_title(text)) is not None:
        return Route("why", clean_title(why) or None)
    if _DIFFERENT.search(text):
        return Route("different")
    if _asks_more_like(text) and (m := _LIKE.search(text)):
        return Route("more_like", clean_title(m["title"]) or None)
    if _asks_recent(text):
        return Route("recent_interests")
    if _RECOMMEND.search(text):
        return Route("recommend")
    return Route("help")


# ---------------------------------------------------------------------- LLM routes


def _validate(intent: str, title: Any, message: str, method: RouteMethod) -> Route:
    """A validated Route from raw LLM output; raises ValueError with the reason."""
    try:
        reply = IntentReply(intent=intent, title=title)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ValueError(f"invalid intent reply: {exc.errors()[0]['msg']}") from None
    found = clean_title(reply.title) if reply.title else None
    if reply.intent in _TITLE_INTENTS:
        # The title to act on must be the user's own words: take the keyword extraction when the LLM's
        # title is missing or does not occur in the message.
        if not found or found.lower() not in message.lower():
            found = keyword_route(message).title
    else:
        found = None
    return Route(reply.intent, found, method)


def llm_route(client: LLMClient, message: str) -> Route:
    """Route with one constrained JSON reply from the LLM (grammar/JSON schema where supported)."""
    intents = "\n".join(f"- {name}: {_DESCRIPTIONS[name]}" for name in INTENTS)
    user = render("intent", message=data_block("message", [quote(message, MAX_MESSAGE_CHARS)]), intents=intents)
    reply = client.chat(to_messages(render("system"), user), max_tokens=60,
                        json_schema=IntentReply.model_json_schema())
    data = extract_json_object(reply.text)
    return _validate(str(data.get("intent")), data.get("title"), message, "llm")


def tool_specs() -> list[dict[str, Any]]:
    """OpenAI-format function specs, one per intent; titled intents take a `title` string."""
    specs = []
    for name in INTENTS:
        params: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        if name in _TITLE_INTENTS:
            params["properties"]["title"] = {"type": "string", "maxLength": 200,
                                             "description": "the title exactly as the user wrote it"}
            params["required"] = ["title"]
        specs.append({"type": "function", "function": {"name": name, "description": _DESCRIPTIONS[name],
                                                       "parameters": params}})
    return specs


def tool_route(client: LLMClient, message: str) -> Route:
    """Route with the backend's native tool calling (the model picks one tool per message)."""
    messages = [SystemMessage(render("chat_system")),
                HumanMessage(data_block("message", [quote(message, MAX_MESSAGE_CHARS)]))]
    reply = client.chat(messages, max_tokens=80, tools=tool_specs(), tool_choice="auto")
    if not reply.tool_calls:
        raise ValueError("the model called no tool")
    call = reply.tool_calls[0]
    return _validate(call.name, call.args.get("title"), message, "tools")


def route(client: LLMClient | None, message: str, mode: Routing = "auto") -> Route:
    """Route one message.

    Args:
        client: LLM client, or None for keywords only.
        message: the user's message (untrusted).
        mode: "auto" (tools when the backend supports them, else LLM routing checked by the specific
            keyword patterns), "tools", "llm" (LLM alone) or "keywords".
    """
    keywords = keyword_route(message)
    if client is None or mode == "keywords":
        return keywords
    use_tools = mode == "tools" or (mode == "auto" and client.capabilities.tools)
    try:
        routed = tool_route(client, message) if use_tools else llm_route(client, message)
    except (LLMError, ValueError) as exc:
        # The error may quote the message: its text stays at DEBUG, WARNING has the length only.
        log.warning("intent routing (%s) fell back to keywords for a %d-character message: %s",
                    "tools" if use_tools else "llm", len(message), type(exc).__name__)
        log.debug("intent routing error: %s", exc)
        return Route(keywords.intent, keywords.title, "keywords", fallback=True, error=str(exc)[:300])
    # Small embedded models misroute plain requests (measured, docs/llm.md); a specific pattern
    # ("why did you suggest", "more like", "lately", "different") is high-precision, so it wins.
    if mode == "auto" and not use_tools and keywords.intent in _SPECIFIC and keywords.intent != routed.intent:
        return Route(keywords.intent, keywords.title, "keywords", overridden=True)
    return routed
