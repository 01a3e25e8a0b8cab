"""The typed request every chat turn is parsed into, and how two parses of one message merge.

A `ChatRequest` holds what the user asked for in one message: the intent, hard constraints (categories
to include or exclude, a release-year range, whether seen items may return), the titles the message
names (resolved against the catalogue), a position in the last list ("the second one"), free-text
preferences kept as text, and k. The deterministic parser (`agent.chat.parse`) and the LLM parser
(`agent.chat.llm_parse`) both produce one; `merge` combines them without ever inventing an item.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

ChatIntent = Literal["recommend", "more_like", "different", "explain", "interests", "refine", "unknown"]
CHAT_INTENTS: tuple[str, ...] = get_args(ChatIntent)
ParseSource = Literal["rules", "llm", "rules+llm"]

# Intents that say what to do with the constraints; "recommend" and "refine" only carry them.
SPECIFIC_INTENTS = ("more_like", "different", "explain", "interests")


class YearRange(BaseModel):
    """Release years, both ends inclusive; None = open."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: int | None = Field(default=None, ge=1800, le=2100)
    end: int | None = Field(default=None, ge=1800, le=2100)

    @model_validator(mode="after")
    def _ordered(self) -> YearRange:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"year range starts after it ends: {self.start} > {self.end}")
        return self

    def __contains__(self, year: object) -> bool:
        if not isinstance(year, int):
            return False
        return (self.start is None or year >= self.start) and (self.end is None or year <= self.end)

    def describe(self) -> str:
        """ "from 1990 to 1999", "from 1990 on", "up to 1979"."""
        if self.start is not None and self.end is not None:
            return f"from {self.start}" if self.start == self.end else f"from {self.start} to {self.end}"
        if self.start is not None:
            return f"from {self.start} on"
        return f"up to {self.end}"

    def intersect(self, other: YearRange) -> YearRange | None:
        """The years in both ranges; None when they do not overlap."""
        start = max((y for y in (self.start, other.start) if y is not None), default=None)
        end = min((y for y in (self.end, other.end) if y is not None), default=None)
        if start is not None and end is not None and start > end:
            return None
        return YearRange(start=start, end=end)


class TitleRef(BaseModel):
    """A title the message names.

    Attributes:
        text: the words as the user wrote them.
        item_id: the catalogue item they mean; None when unknown or ambiguous.
        matches: when ambiguous or unknown, the closest catalogue item ids (best first), to offer back.
        exact: True when the text is the title or one of its aliases; False for a fuzzy match.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1, max_length=200)
    item_id: str | None = None
    matches: tuple[str, ...] = ()
    exact: bool = True

    @property
    def resolved(self) -> bool:
        """True when the text names one catalogue item."""
        return self.item_id is not None


class ChatRequest(BaseModel):
    """One chat message, parsed.

    Attributes:
        intent: what the user wants: recommendations ("recommend"), items like named titles ("more_like"),
            something unlike their recent history ("different"), why an item was shown ("explain"), how
            their interests moved ("interests"), a change of the standing constraints only ("refine"),
            or nothing the agent can do ("unknown").
        include_categories: catalogue categories every returned item must have one of.
        exclude_categories: catalogue categories no returned item may have.
        lift_categories: categories whose earlier exclusion the user lifts ("comedies are fine again").
        years: release-year range returned items must fall in.
        relative_years: "older" / "newer" than the last list shown (turned into `years` by the session).
        include_seen: True when the user allows items they already rated.
        references: titles the message names (for "more like", "explain", or as a liked example).
        position: a 1-based position in the last list shown ("the second one").
        preference: free-text taste ("something dark and funny"), searched as text.
        k: how many items the user asked for.
        source: which parser produced the request.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    intent: ChatIntent = "unknown"
    include_categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    lift_categories: tuple[str, ...] = ()
    years: YearRange | None = None
    relative_years: Literal["older", "newer"] | None = None
    include_seen: bool = False
    references: tuple[TitleRef, ...] = ()
    position: int | None = Field(default=None, ge=1, le=100)
    preference: str | None = Field(default=None, max_length=300)
    k: int | None = Field(default=None, ge=1, le=100)
    source: ParseSource = "rules"

    @property
    def has_constraints(self) -> bool:
        """True when the message sets or lifts any constraint."""
        return bool(self.include_categories or self.exclude_categories or self.lift_categories or self.years
                    or self.relative_years or self.include_seen)

    @property
    def resolved_references(self) -> tuple[str, ...]:
        """Item ids of the references that name one catalogue item."""
        return tuple(r.item_id for r in self.references if r.item_id is not None)

    def facts(self) -> set[tuple[str, str]]:
        """The request as (field, value) pairs: what field-level precision and recall count.

        The free-text preference counts as one fact ("preference", "yes") when present: its wording
        is not scored, only whether the parser kept it as text.
        """
        out: set[tuple[str, str]] = {("intent", self.intent)}
        out |= {("include", c) for c in self.include_categories}
        out |= {("exclude", c) for c in self.exclude_categories}
        out |= {("lift", c) for c in self.lift_categories}
        if self.years is not None:
            if self.years.start is not None:
                out.add(("year_start", str(self.years.start)))
            if self.years.end is not None:
                out.add(("year_end", str(self.years.end)))
        if self.relative_years:
            out.add(("relative_years", self.relative_years))
        if self.include_seen:
            out.add(("include_seen", "yes"))
        out |= {("reference", r.item_id if r.item_id is not None else f"?{r.text.lower()}")
                for r in self.references}
        if self.position is not None:
            out.add(("position", str(self.position)))
        if self.preference:
            out.add(("preference", "yes"))
        if self.k is not None:
            out.add(("k", str(self.k)))
        return out


def merge(rules: ChatRequest, llm: ChatRequest) -> ChatRequest:
    """Combine the deterministic parse with a validated LLM parse of the same message.

    The rules are precise where they fire, so each field the rules filled is kept; the LLM fills only
    the fields the rules left empty. The intent is the rules' when it is specific ("more like",
    "explain", ...), else the LLM's when the LLM's is specific, else the rules'. The LLM's references
    are already validated against the message and the catalogue (`agent.chat.llm_parse`), so no item
    enters that the user did not name.
    """
    if rules.intent in SPECIFIC_INTENTS or llm.intent not in SPECIFIC_INTENTS:
        intent = rules.intent if rules.intent != "unknown" else llm.intent
    else:
        intent = llm.intent
    update = {
        "intent": intent,
        "include_categories": rules.include_categories or tuple(
            c for c in llm.include_categories if c not in rules.exclude_categories),
        "exclude_categories": rules.exclude_categories or tuple(
            c for c in llm.exclude_categories if c not in rules.include_categories),
        "lift_categories": rules.lift_categories or llm.lift_categories,
        "years": rules.years or llm.years,
        "relative_years": rules.relative_years or llm.relative_years,
        "include_seen": rules.include_seen or llm.include_seen,
        "references": rules.references or llm.references,
        "position": rules.position if rules.position is not None else llm.position,
        "preference": rules.preference or llm.preference,
        "k": rules.k if rules.k is not None else llm.k,
        "source": "rules+llm",
    }
    return rules.model_copy(update=update)


class Constraints(BaseModel):
    """Hard constraints in force for a conversation.

    Attributes:
        include_categories: a returned item must have one of these (empty: any).
        exclude_categories: a returned item must have none of these (stays until lifted).
        years: release years a returned item must fall in (None: any).
        include_seen: items the user already rated may return.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    include_categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    years: YearRange | None = None
    include_seen: bool = False

    @property
    def empty(self) -> bool:
        """True when nothing restricts the items."""
        return not (self.include_categories or self.exclude_categories or self.years)

    def apply(self, request: ChatRequest, last_years: Sequence[int]) -> Constraints:
        """The constraints after one message.

        A message's exclusions add to the standing ones and stay until lifted ("comedies are fine
        again") or asked for again; its inclusions and years replace the standing ones; "older" /
        "newer" narrow the years to before / after the median release year of the last list shown.

        Args:
            request: the parsed message.
            last_years: release years of the last list shown (for "older" / "newer").
        """
        exclude = [c for c in self.exclude_categories
                   if c not in request.lift_categories and c not in request.include_categories]
        exclude += [c for c in request.exclude_categories if c not in exclude]
        include = request.include_categories or self.include_categories
        include = tuple(c for c in include if c not in exclude)
        years = request.years or self.years
        if request.relative_years and last_years:
            middle = int(statistics.median(last_years))
            bound = (YearRange(end=middle - 1) if request.relative_years == "older"
                     else YearRange(start=middle + 1))
            years = (years.intersect(bound) if years is not None else bound) or bound
        return Constraints(include_categories=include, exclude_categories=tuple(exclude), years=years,
                           include_seen=self.include_seen or request.include_seen)

    def describe(self) -> str:
        """The constraints in words: "Thriller, not Horror, from 1990 to 1999"."""
        parts = []
        if self.include_categories:
            parts.append(" or ".join(self.include_categories))
        if self.exclude_categories:
            parts.append("not " + " or ".join(self.exclude_categories))
        if self.years is not None:
            parts.append(self.years.describe())
        return ", ".join(parts)
