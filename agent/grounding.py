"""Grounding check: find the catalogue categories and titles a generated text mentions, compare with the evidence.

A mention is *ungrounded* when it names a catalogue category or title that is not in the evidence the
LLM was given, when it puts a quoted title-like phrase in the text that is neither an evidence title
nor an evidence category (an invented title), or when it names a year (outside a title) that the
evidence does not contain (an invented date). Matching is deliberately strict: a false alarm costs a
regeneration or a template sentence; a missed invention would reach the user.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from agent.types import GroundingReport
from retrieval.data.model import Catalog

_YEAR = re.compile(r"\s*\((?:\d{4}|\d{4}\s*[-–]\s*\d{0,4})\)\s*$")
_PAREN = re.compile(r"\s*\([^)]*\)\s*$")
_ARTICLE = re.compile(r"^(?P<body>.+), (?P<article>The|A|An|La|Le|Les|L'|Il|Das|Der|Die|El)$")
_YEAR_WORD = re.compile(r"(?<!\d)(1[89]\d\d|20\d\d)(?!\d)")
_QUOTED = re.compile(r"[\"“”«»]([^\"“”«»\n]{3,80})[\"“”«»]")
_WORD_START = re.compile(r"(?<![\w'])[\w'(\[]")  # a title may open with a bracket: "[2 Pack] ..."
_WORD_CHAR = re.compile(r"[\w']")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n\s*)$")
# Category names too generic to be a claim when they appear as ordinary words.
_GENERIC_CATEGORIES = frozenset({"unknown", "other", "misc", "none", "general", "games", "video games"})
# Common spellings of MovieLens genres; any catalogue gets its own names plus simple plurals.
_SYNONYMS = {
    "sci-fi": ("science fiction", "science-fiction", "scifi", "sci fi"),
    "film-noir": ("film noir", "noir"),
    "children's": ("children", "childrens", "kids' films", "family films"),
    "musical": ("musicals",),
    "comedy": ("comedies", "comedic"),
    "mystery": ("mysteries",),
    "romance": ("romances", "romantic"),
    "documentary": ("documentaries",),
    "animation": ("animated",),
    "western": ("westerns",),
    "war": ("war films", "war movies"),
}


def title_aliases(title: str) -> set[str]:
    """Ways a text may write a catalogue title: as is, without the year, with a trailing article moved.

    "Godfather, The (1972)" → {"Godfather, The (1972)", "Godfather, The", "The Godfather", "The Godfather (1972)"}.
    """
    out = {title.strip()}
    bare = _YEAR.sub("", title).strip()
    bare2 = _PAREN.sub("", bare).strip()  # alternative names in a second pair of parentheses
    for b in {bare, bare2}:
        if not b:
            continue
        out.add(b)
        m = _ARTICLE.match(b)
        if m:
            moved = f"{m['article']} {m['body']}"
            out.add(moved)
            year = title[len(bare):].strip() if title.startswith(bare) else ""
            if year:
                out.add(f"{moved} {year}")
    return {a for a in out if len(a) >= 3}


def display_title(title: str) -> str:
    """A catalogue title in reading order: "Godfather, The (1972)" → "The Godfather (1972)"."""
    bare = _YEAR.sub("", title).strip()
    m = _ARTICLE.match(bare)
    if not m:
        return title
    return f"{m['article']} {m['body']}{title[len(bare):]}"


def _category_aliases(category: str) -> set[str]:
    low = category.lower()
    out = {low}
    if not low.endswith("s"):
        out.add(low + ("ies" if low.endswith("y") and not low.endswith("ey") else "s"))
    out.update(_SYNONYMS.get(low, ()))
    return out


class GroundingChecker:
    """Finds category and title mentions in text and checks them against evidence.

    Args:
        catalog: the catalogue whose category vocabulary and titles define what counts as a mention.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._title_of_alias: dict[str, set[str]] = {}
        for item in catalog:
            for alias in title_aliases(item.title):
                self._title_of_alias.setdefault(alias, set()).add(item.title)
        # Aliases bucketed by their first three characters: a scan tries only the few that can start at
        # each word, longest first (a regex alternation over thousands of titles is ~30x slower).
        self._by_prefix: dict[str, list[str]] = {}
        for alias in sorted(self._title_of_alias, key=len, reverse=True):
            self._by_prefix.setdefault(alias[:3], []).append(alias)
        self._category_of_alias: dict[str, str] = {}
        for item in catalog:
            for cat in item.categories:
                if cat.lower() in _GENERIC_CATEGORIES or len(cat) < 3:
                    continue
                for alias in _category_aliases(cat):
                    self._category_of_alias.setdefault(alias, cat)
        cats = sorted(self._category_of_alias, key=len, reverse=True)
        self._category_re = re.compile("|".join(rf"(?<![\w-]){re.escape(a)}(?![\w-])" for a in cats),
                                       re.IGNORECASE) if cats else None

    def find(self, text: str) -> tuple[list[tuple[str, set[str]]], list[str], list[str]]:
        """Mentions in text.

        Returns:
            (titles, categories, quoted): title mentions as (alias written, catalogue titles it may mean),
            canonical category names, and quoted phrases that matched no catalogue title.
        """
        titles: list[tuple[str, set[str]]] = []
        masked = text
        pos_end = 0
        for start in (m.start() for m in _WORD_START.finditer(text)):
            if start < pos_end:
                continue
            for alias in self._by_prefix.get(text[start:start + 3], ()):
                end = start + len(alias)
                if not text.startswith(alias, start) or (end < len(text) and _WORD_CHAR.match(text[end])):
                    continue
                # A one-word title at a sentence start is usually an ordinary word ("Speed matters...").
                if " " in alias or not _SENTENCE_START.search(text[:start]):
                    titles.append((alias, self._title_of_alias[alias]))
                    masked = masked[:start] + " " * len(alias) + masked[end:]
                    pos_end = end
                break
        categories: list[str] = []
        if self._category_re is not None:
            for m in self._category_re.finditer(masked):
                categories.append(self._category_of_alias[m.group(0).lower()])
        quoted = []
        for m in _QUOTED.finditer(text):
            phrase = m.group(1).strip().strip(".,;:!?")
            if phrase and phrase not in self._title_of_alias:
                quoted.append(phrase)
        return titles, categories, quoted

    def check(self, text: str, evidence_titles: Iterable[str], evidence_categories: Iterable[str],
              evidence_text: str = "") -> GroundingReport:
        """Check every mention against the evidence.

        Args:
            text: generated text.
            evidence_titles: catalogue titles the generator was given.
            evidence_categories: category names the generator was given.
            evidence_text: the evidence as shown to the generator; a quoted phrase copied from it
                (a label such as "Rising lately") is not a title claim, and a year outside a title
                must occur in it (without it, years are not checked).
        """
        context = evidence_text.lower()
        ev_titles = set(evidence_titles)
        ev_aliases = {a for t in ev_titles for a in title_aliases(t)}
        ev_cats = {c.lower() for c in evidence_categories}
        titles, categories, quoted = self.find(text)
        ungrounded: list[str] = []
        found_titles: list[str] = []
        for alias, meanings in titles:
            hit = sorted(meanings & ev_titles)
            found_titles.append(hit[0] if hit else sorted(meanings)[0])
            if not hit:
                ungrounded.append(alias)
        for cat in categories:
            if cat.lower() not in ev_cats:
                ungrounded.append(cat)
        for phrase in quoted:
            low = phrase.lower()
            # A quoted evidence category or a quoted part of an evidence title is fine; anything else
            # quoted reads as a title claim the evidence does not support.
            if (low in ev_cats or low in self._category_of_alias or any(phrase in a for a in ev_aliases)
                    or (context and low in context)):
                continue
            found_titles.append(phrase)
            ungrounded.append(phrase)
        # Years outside titles and quotes ("moved towards Romance in 2000") must be evidence dates
        # (checked when the evidence text is given).
        plain = _QUOTED.sub(" ", text) if context else ""
        for alias in sorted(ev_aliases | {a for a, _ in titles}, key=len, reverse=True):
            plain = plain.replace(alias, " ")
        for year in _YEAR_WORD.findall(plain):
            if year not in context and not any(year in t for t in ev_titles):
                ungrounded.append(year)
        return GroundingReport(categories=tuple(dict.fromkeys(categories)),
                               titles=tuple(dict.fromkeys(found_titles)),
                               ungrounded=tuple(dict.fromkeys(ungrounded)))
