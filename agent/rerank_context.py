"""Optional context in the rerank prompts: the user's chat request and a short interest-shift summary.

Both are untrusted or data-derived text: each goes in its own `<data>` block with every value quoted
(`prompts.quote`), and the system prompt tells the model never to follow instructions inside one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from prompts import data_block, quote
from retrieval.data.model import Catalog, Event

# Events that count as "recent" in the shift summary, and the fewest events worth summarising.
RECENT_EVENTS = 20
MIN_EVENTS = 10
REQUEST_CHARS = 300


def category_shares(events: Sequence[Event], catalog: Catalog, top: int = 3) -> list[tuple[str, float]]:
    """The `top` categories of `events` with their share of all category mentions, largest first."""
    counts: Counter[str] = Counter()
    for e in events:
        if e.item in catalog:
            counts.update(catalog[e.item].categories)
    total = sum(counts.values())
    return [(c, n / total) for c, n in counts.most_common(top)] if total else []


def shift_summary(history: Sequence[Event], catalog: Catalog) -> str | None:
    """One line comparing the categories of the newest `RECENT_EVENTS` events with the earlier ones.

    None when the history is shorter than `MIN_EVENTS` or its items have no categories.
    """
    if len(history) < MIN_EVENTS:
        return None
    split = max(len(history) // 2, len(history) - RECENT_EVENTS)
    earlier, recent = category_shares(history[:split], catalog), category_shares(history[split:], catalog)
    if not earlier or not recent:
        return None

    def show(shares: list[tuple[str, float]]) -> str:
        return ", ".join(f"{quote(c)} {round(100 * s)}%" for c, s in shares)

    return f"earlier: {show(earlier)}; newest {len(history) - split} events: {show(recent)}"


def context_block(request: str | None = None, shift: str | None = None) -> str:
    """"" or a newline plus `<data>` blocks for the request (quoted, cut to `REQUEST_CHARS`) and the shift line."""
    parts = []
    if request is not None and request.strip():
        parts.append("The user's request:\n" + data_block("request", [quote(request.strip(), REQUEST_CHARS)]))
    if shift:
        parts.append("How the user's interests moved:\n" + data_block("interest_shift", [shift]))
    return "".join("\n" + p for p in parts)
