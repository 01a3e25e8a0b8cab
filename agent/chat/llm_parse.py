"""Parsing with the LLM under constrained output, validated and merged with the deterministic parse.

The LLM fills the same request schema with its output constrained to JSON (llama.cpp's JSON-schema
grammar in-process, vLLM's `json_schema`, a llama.cpp server's `json_object`), its category fields
restricted to the catalogue's own categories. Its reply is validated (a title must occur in the message
and resolve to one catalogue item; years must be ordered) and merged with the rules' parse
(`agent.chat.request.merge`); any failure leaves the rules' parse, flagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from agent.chat import phrases as P
from agent.chat.parse import normalise_keep_clauses, parse_message
from agent.chat.request import CHAT_INTENTS, ChatRequest, TitleRef, YearRange, merge
from agent.chat.vocabulary import CatalogVocabulary, normalise
from agent.llm.client import LLMClient, to_messages
from agent.llm.json_reply import extract_json_object
from prompts import data_block, quote, render
from retrieval.errors import LLMError
from retrieval.log import get_logger

log = get_logger(__name__)

ParseMode = Literal["auto", "rules", "rules+llm"]
# "auto": the rules, and the LLM only for a message the rules could not fill (`needs_llm`)
PARSE_MODES: tuple[str, ...] = ("auto", "rules", "rules+llm")
MAX_MESSAGE_CHARS = 500
_NUMBER = re.compile(r"\d+")
_NUMBER_WORD = re.compile(r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|dozen|couple)\b", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedMessage:
    """A parsed message and how it was parsed.

    Attributes:
        request: the merged request.
        llm_asked: the LLM was asked to parse the message.
        llm_used: the LLM's parse added or changed something in the request.
        fallback: the LLM was asked but its reply was unusable (the rules' parse stands).
        error: why the LLM's reply was unusable.
    """

    request: ChatRequest
    llm_asked: bool = False
    llm_used: bool = False
    fallback: bool = False
    error: str | None = None


def reply_model(vocab: CatalogVocabulary) -> type[BaseModel]:
    """The schema the LLM fills: categories restricted to the catalogue's (no category fields without any)."""
    fields: dict[str, Any] = {
        "intent": (Literal[CHAT_INTENTS], ...),  # type: ignore[valid-type]
        "titles": (list[str], Field(default_factory=list, max_length=3)),
        "preference": (str | None, Field(default=None, max_length=200)),
        "k": (int | None, Field(default=None, ge=1, le=20)),
        "position": (int | None, Field(default=None, ge=1, le=20)),
    }
    if vocab.categories:
        category: Any = Literal[vocab.categories]  # type: ignore[valid-type]
        fields["include_categories"] = (list[category], Field(default_factory=list, max_length=4))  # type: ignore[valid-type]
        fields["exclude_categories"] = (list[category], Field(default_factory=list, max_length=4))  # type: ignore[valid-type]
    if vocab.has_years:
        fields["year_from"] = (int | None, Field(default=None, ge=1800, le=2100))
        fields["year_to"] = (int | None, Field(default=None, ge=1800, le=2100))
    return create_model("ChatParseReply", __config__=ConfigDict(extra="ignore"), **fields)


def llm_parse(client: LLMClient, message: str, vocab: CatalogVocabulary) -> ChatRequest:
    """The LLM's parse of one message, validated.

    Raises:
        LLMError: the backend failed.
        ValueError: the reply is not valid JSON for the schema, or its years are not ordered.
    """
    model = reply_model(vocab)
    categories = ", ".join(vocab.categories) if vocab.categories else "(this catalogue has none)"
    user = render("chat_parse", message=data_block("message", [quote(message, MAX_MESSAGE_CHARS)]),
                  categories=categories)
    reply = client.chat(to_messages(render("system"), user), max_tokens=120,
                        json_schema=model.model_json_schema())
    try:
        data = model.model_validate(extract_json_object(reply.text))
    except ValidationError as exc:
        raise ValueError(f"invalid parse reply: {exc.errors()[0]['msg']}") from None
    raw = data.model_dump()
    years = None
    if raw.get("year_from") is not None or raw.get("year_to") is not None:
        try:
            years = YearRange(start=raw.get("year_from"), end=raw.get("year_to"))
        except ValidationError:
            raise ValueError("invalid parse reply: year_from after year_to") from None
    include = tuple(dict.fromkeys(raw.get("include_categories", ())))
    exclude = tuple(c for c in dict.fromkeys(raw.get("exclude_categories", ())) if c not in include)
    preference = (raw["preference"] or "").strip() or None
    if preference is not None and normalise(preference) not in normalise(message):
        preference = None  # the user's own words, or nothing
    parsed = ChatRequest(intent=raw["intent"], include_categories=include, exclude_categories=exclude, years=years,
                         references=_titles(raw["titles"], message, vocab), position=raw["position"],
                         preference=preference, k=raw["k"], source="llm")
    return grounded(parsed, message, vocab)


def grounded(request: ChatRequest, message: str, vocab: CatalogVocabulary) -> ChatRequest:
    """The LLM's parse without the values the message gives no sign of.

    Small models fill empty fields with guesses (a year range no one asked for empties the list): a
    category is kept only when the message names it (any of its catalogue phrases), a year bound only when
    the message writes that year or a decade, k and a position only when the message writes a number or
    an ordinal.
    """
    named = {c for _, _, cats in vocab.categories_in(normalise_keep_clauses(message.lower())) for c in cats}
    numbers = set(_NUMBER.findall(message.lower()))
    years = request.years
    if years is not None and not P.DECADE.search(message.lower()):
        written = {int(n) for n in numbers if len(n) == 4}
        if any(y is not None and y not in written for y in (years.start, years.end)):
            years = None
    counted = bool(numbers & {str(n) for n in range(1, 101)}) or bool(_NUMBER_WORD.search(message))
    return request.model_copy(update={
        "include_categories": tuple(c for c in request.include_categories if c in named),
        "exclude_categories": tuple(c for c in request.exclude_categories if c in named),
        "years": years,
        "k": request.k if counted else None,
        "position": request.position if (counted or P.POSITION.search(message)) else None,
    })


def _titles(titles: list[str], message: str, vocab: CatalogVocabulary) -> tuple[TitleRef, ...]:
    """The LLM's titles that occur in the message and name one catalogue item (never an invented item)."""
    said = normalise(message)
    out: list[TitleRef] = []
    for title in titles:
        words = normalise(title)
        if not words or words not in said:
            continue
        ref = vocab.resolve(title)
        if ref.item_id is not None and all(r.item_id != ref.item_id for r in out):
            out.append(ref)
    return tuple(out)


def needs_llm(rules: ChatRequest) -> bool:
    """True when the rules' parse may have missed the point: no intent found, or an ask with nothing in it
    but the intent ("auto" asks the LLM only then; a parse the rules filled costs no LLM call)."""
    return rules.intent == "unknown" or (rules.intent in ("recommend", "refine") and len(rules.facts()) == 1)


def parse_request(client: LLMClient | None, message: str, vocab: CatalogVocabulary,
                  mode: ParseMode = "auto") -> ParsedMessage:
    """Parse one message: the rules, then the LLM, merged. Mode "rules+llm" always asks the LLM; "auto" asks it
    when the backend can constrain its output and the rules' parse `needs_llm`.

    Args:
        client: LLM client; None = rules only.
        message: the user's message (untrusted).
        vocab: the catalogue's vocabulary.
        mode: "rules", "rules+llm", or "auto".
    """
    rules = parse_message(message, vocab)
    if client is None or mode == "rules":
        return ParsedMessage(rules)
    caps = client.capabilities
    if mode == "auto" and not ((caps.grammar or caps.json_schema or caps.json_mode) and needs_llm(rules)):
        return ParsedMessage(rules)
    try:
        llm = llm_parse(client, message, vocab)
    except (LLMError, ValueError) as exc:
        # The error may quote the message: its text stays at DEBUG, WARNING has the length only.
        log.warning("chat parsing by the LLM failed for a %d-character message: %s", len(message),
                    type(exc).__name__)
        log.debug("chat parsing error: %s", exc)
        return ParsedMessage(rules, llm_asked=True, fallback=True, error=str(exc)[:300])
    merged = merge(rules, llm)
    used = merged.facts() != rules.facts()
    return ParsedMessage(merged if used else rules, llm_asked=True, llm_used=used)
