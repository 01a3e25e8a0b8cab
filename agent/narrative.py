"""The user's behaviour as a timestamped narrative for prompts, within a token budget.

Recent events are kept verbatim, one dated line each, newest last:

    - 1998-03-02 (12 days before the last event): rated 4/5 "Star Wars (1977)" [Action, Sci-Fi]

Older events that do not fit are summarised per calendar month (per block of events when the source
has only an order), with their top categories; the oldest summaries are dropped last-resort and
counted. Every title, category and review is untrusted: it passes through `prompts.quote`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prompts import quote
from retrieval.data.model import Catalog, Event
from retrieval.errors import ConfigError
from retrieval.evolution.timeline import build_timeline

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class NarrativeConfig:
    """Narrative settings.

    Attributes:
        max_tokens: budget for the whole narrative text.
        min_recent: events kept verbatim even if summaries then get dropped (newest ones).
        review_chars: review text is cut to this many characters.
        title_chars: titles are cut to this many characters.
        summary_categories: top categories listed per summarised period.
        max_categories: categories listed per verbatim event.
        summary_share: budget share kept for period summaries when not every event fits verbatim.
    """

    max_tokens: int = 700
    min_recent: int = 5
    review_chars: int = 120
    title_chars: int = 80
    summary_categories: int = 3
    max_categories: int = 3
    summary_share: float = 0.25

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or self.min_recent < 0 or not 0.0 <= self.summary_share < 1.0:
            raise ConfigError(f"bad narrative config: {self}")


@dataclass(frozen=True)
class Narrative:
    """A rendered history.

    Attributes:
        text: the lines joined by newlines (summaries first, then verbatim events, newest last).
        n_verbatim: events shown verbatim.
        n_summarised: events folded into period summaries.
        n_dropped: events neither shown nor summarised (budget exhausted).
        tokens: token count of `text` under the counter used.
    """

    text: str
    n_verbatim: int
    n_summarised: int
    n_dropped: int
    tokens: int


def event_line(event: Event, catalog: Catalog, last: Event, config: NarrativeConfig, position: int = 0,
               total: int = 0) -> str:
    """One verbatim line: date, age relative to the last event, action, rating, title, categories, review."""
    if event.synthetic_time:
        when = f"#{position} of {total}"
    else:
        days = (last.timestamp - event.timestamp).days
        age = "the last event" if event is last else f"{days} day{'s' if days != 1 else ''} before the last event"
        when = f"{event.timestamp:%Y-%m-%d} ({age})"
    action = {"rate": "rated", "review": "reviewed", "purchase": "bought", "view": "watched",
              "click": "clicked", "interact": "interacted with"}.get(event.action, event.action)
    if event.rating is not None:
        action = f"rated {event.rating:g}/5"
    item = catalog[event.item]
    line = f"- {when}: {action} {quote(item.title, config.title_chars)}"
    if item.categories:
        line += " " + quote(", ".join(item.categories[: config.max_categories]))
    if event.text:
        line += " review: " + quote(event.text, config.review_chars)
    return line


def period_lines(events: Sequence[Event], catalog: Catalog, config: NarrativeConfig) -> list[tuple[str, int]]:
    """(summary line, event count) per month (or per 10 events without real time), oldest first."""
    if not events:
        return []
    synthetic = any(ev.synthetic_time for ev in events)
    windows = build_timeline(events, catalog, period="events:10" if synthetic else "month")
    out = []
    for w in windows:
        cats = ", ".join(f"{c} {share:.0%}" for c, share in list(w.categories.items())[: config.summary_categories])
        label = f"events {w.index * 10 + 1}-{w.index * 10 + len(w.items)}" if synthetic else f"{w.start:%Y-%m}"
        rated = [ev.rating for ev in events if w.start <= ev.timestamp < w.end and ev.rating is not None]
        mean = f", mean rating {sum(rated) / len(rated):.1f}" if rated else ""
        out.append((f"- {label}: {len(w.items)} events{mean}; top categories {quote(cats)}", len(w.items)))
    return out


def _omitted(n: int) -> str:
    return f"- ({n} older events omitted)"


def _recent_lines(events: Sequence[Event], catalog: Catalog, config: NarrativeConfig, count: TokenCounter,
                  budget: int) -> tuple[list[str], int]:
    """Verbatim lines of the newest events that fit `budget` (at least `min_recent`), oldest first."""
    last, total = events[-1], len(events)
    recent: list[str] = []
    used = 0
    # Walk back from the newest event; each line costs its tokens plus one for the newline.
    for pos in range(total - 1, -1, -1):
        line = event_line(events[pos], catalog, last, config, pos + 1, total)
        cost = count(line) + 1
        if used + cost > budget and len(recent) >= config.min_recent:
            break
        recent.append(line)
        used += cost
    recent.reverse()
    return recent, used


def build_narrative(events: Sequence[Event], catalog: Catalog, config: NarrativeConfig | None = None,
                    count_tokens: TokenCounter | None = None) -> Narrative:
    """Render a history within `config.max_tokens`.

    Args:
        events: the user's events, oldest first.
        catalog: items (titles, categories).
        config: budget and truncation settings.
        count_tokens: the model's tokenizer (`LLMClient.count_tokens`); default a conservative estimate.

    Returns:
        The narrative with counts of verbatim, summarised and dropped events.
    """
    from agent.llm.client import estimate_tokens

    config = config or NarrativeConfig()
    count = count_tokens or estimate_tokens
    if not events:
        return Narrative("(no history)", 0, 0, 0, count("(no history)"))
    total = len(events)
    budget = config.max_tokens
    recent, used = _recent_lines(events, catalog, config, count, budget)
    if len(recent) < total:
        # Not everything fits: leave a share of the budget for the period summaries of older events.
        recent, used = _recent_lines(events, catalog, config, count, int(budget * (1 - config.summary_share)))
    older = events[: total - len(recent)]
    summaries = period_lines(older, catalog, config)
    kept: list[str] = []
    summarised = 0
    # Newest summaries first: the period just before the verbatim lines matters most.
    for line, n in reversed(summaries):
        cost = count(line) + 1
        if used + cost > budget:
            break
        kept.append(line)
        used += cost
        summarised += n
    kept.reverse()
    sizes = [n for _, n in summaries[len(summaries) - len(kept):]]
    dropped = len(older) - summarised
    # The "omitted" marker costs tokens too: give up the oldest kept summaries until it fits.
    while dropped and kept and used + count(_omitted(dropped)) + 1 > budget:
        used -= count(kept.pop(0)) + 1
        dropped += sizes.pop(0)
        summarised = len(older) - dropped
    lines = kept + recent
    if dropped:
        lines.insert(0, _omitted(dropped))
    text = "\n".join(lines)
    return Narrative(text, len(recent), summarised, dropped, count(text))
