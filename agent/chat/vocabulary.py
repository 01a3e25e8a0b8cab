"""The catalogue's own vocabulary for parsing chat messages: category names and synonyms, release years,
titles with their aliases, and fuzzy title matching.

Everything a parser may recognise comes from the catalogue: a category synonym maps only to a category
the catalogue has, and a title resolves only to a catalogue item.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence

from agent.chat.request import TitleRef
from agent.grounding import title_aliases
from retrieval.data.model import Catalog

_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")
_ALNUM = re.compile(r"[^\w\s']+")

# Ways people name common genres, by the catalogue category they mean (applied only when the catalogue has
# that category, under any spelling of its name).
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "action": ("action", "action-packed", "action packed"),
    "adventure": ("adventures", "adventure"),
    "animation": ("animated", "animation", "cartoon", "cartoons", "anime"),
    "biography": ("biopic", "biopics", "biographical", "biography", "biographies"),
    "children's": ("children's", "childrens", "children", "kids", "kid", "kids'", "family-friendly",
                   "for children", "for kids"),
    "comedy": ("comedy", "comedies", "comedic", "funny ones", "funny movies", "funny films", "funny stuff", "laughs"),
    "crime": ("crime", "crimes", "gangster", "gangsters", "heist"),
    "documentary": ("documentary", "documentaries", "docs", "docu"),
    "drama": ("drama", "dramas", "dramatic"),
    "family": ("family", "family films", "family movies"),
    "fantasy": ("fantasy", "fantasies"),
    "film-noir": ("film-noir", "film noir", "noir", "noirs"),
    "history": ("history", "historical"),
    "horror": ("horror", "horrors", "scary", "slasher", "slashers"),
    "music": ("music",),
    "musical": ("musical", "musicals"),
    "mystery": ("mystery", "mysteries", "whodunit", "whodunits", "whodunnit", "whodunnits"),
    "romance": ("romance", "romances", "romantic", "love stories", "love story"),
    "sci-fi": ("sci-fi", "scifi", "sci fi", "science fiction", "science-fiction", "sf"),
    "sport": ("sport", "sports"),
    "thriller": ("thriller", "thrillers", "suspense", "suspenseful"),
    "war": ("war", "war films", "war movies", "wartime"),
    "western": ("western", "westerns", "cowboy", "cowboys"),
}
# Phrases that name two categories at once.
_COMPOUNDS: dict[str, tuple[str, ...]] = {
    "romcom": ("comedy", "romance"), "romcoms": ("comedy", "romance"), "rom-com": ("comedy", "romance"),
    "rom-coms": ("comedy", "romance"), "romantic comedy": ("comedy", "romance"),
    "romantic comedies": ("comedy", "romance"),
}
_PLATFORM = re.compile(r"^(?P<name>.+?) - (?:[\w.&/' ]{2,40})$")
# A clause ends at punctuation, but not at the dot of an initial or a short title word ("G.I. Jane", "Dr. No").
_CLAUSE_END = re.compile(r"[,;!?]\s|[;!?]|(?<![A-Z])(?<!\b(?:Dr|Mr|Ms|St|Jr|vs))\.(?:\s|$)")
# Words that end a title inside a sentence ("like heat but older", "star wars please").
_FILLER = frozenset({"please", "pls", "thanks", "but", "and", "or", "from", "with", "without", "in", "for",
                     "that", "which", "any", "anything", "something", "only", "not", "no", "too", "again",
                     "if", "so", "as", "though", "maybe", "instead", "now", "then", "more", "less", "movies",
                     "movie", "films", "film", "games", "game", "titles", "ones", "one", "by", "made", "released"})
# Category names that are not a taste (MovieLens' "unknown").
_NOT_A_TASTE = frozenset({"unknown", "other", "misc", "none", "(no genres listed)"})


def _plural(word: str) -> str:
    if word.endswith("s"):
        return word
    if word.endswith("y") and not word.endswith("ey"):
        return word[:-1] + "ies"
    return word + "s"


def _aliases(title: str) -> set[str]:
    """`agent.grounding.title_aliases`, plus the name before a trailing " - Platform" (Games)."""
    out = title_aliases(title)
    if (m := _PLATFORM.match(title)) is not None:
        out |= title_aliases(m["name"])
    return out


def normalise(text: str) -> str:
    """Lower case, punctuation other than apostrophes turned into spaces, single spaces."""
    return " ".join(w for w in (w.strip("'") for w in _ALNUM.sub(" ", text.lower()).split()) if w)


class CatalogVocabulary:
    """Category phrases, years and title aliases of one catalogue.

    Args:
        catalog: the catalogue.
        popularity: item id → interaction count; breaks ties between titles (the more popular wins).
    """

    def __init__(self, catalog: Catalog, popularity: Mapping[str, int] | None = None) -> None:
        self.catalog = catalog
        self.popularity = popularity or {}
        names = sorted({c for item in catalog for c in item.categories if c.lower() not in _NOT_A_TASTE})
        self.categories: tuple[str, ...] = tuple(names)
        by_lower = {c.lower(): c for c in names}
        # phrase (normalised) → categories it names
        self.category_phrases: dict[str, tuple[str, ...]] = {}
        for low, cat in by_lower.items():
            for phrase in {low, _plural(low), *_SYNONYMS.get(low, ())}:
                self.category_phrases.setdefault(normalise(phrase), (cat,))
        for phrase, parts in _COMPOUNDS.items():
            if all(p in by_lower for p in parts):
                self.category_phrases[normalise(phrase)] = tuple(by_lower[p] for p in parts)
        phrases = sorted(self.category_phrases, key=len, reverse=True)
        self.category_pattern = re.compile(
            "|".join(rf"(?<![\w']){re.escape(p)}(?![\w'])" for p in phrases)) if phrases else None
        self._aliases: dict[str, list[str]] = {}
        for item in catalog:
            for alias in _aliases(item.title):
                key = normalise(alias)
                if key:
                    self._aliases.setdefault(key, []).append(item.id)
        # alias keys by the first three letters of each of their words: fuzzy matching compares a text
        # only with the aliases that share a word start with it (a full scan of 17k Games titles takes seconds)
        self._by_stem: dict[str, set[str]] = {}
        self._by_end: dict[str, set[str]] = {}
        for key in self._aliases:
            for word in key.split():
                self._by_stem.setdefault(word[:3], set()).add(key)
            self._by_end.setdefault(key[-3:], set()).add(key)
        self._years: dict[str, int | None] = {}

    def __repr__(self) -> str:
        return f"<CatalogVocabulary {len(self.categories)} categories, {len(self._aliases):,} title aliases>"

    def year(self, item_id: str) -> int | None:
        """The item's release year from its title's trailing "(1995)", or None."""
        if item_id not in self._years:
            m = _TITLE_YEAR.search(self.catalog[item_id].title)
            self._years[item_id] = int(m[1]) if m else None
        return self._years[item_id]

    @property
    def has_years(self) -> bool:
        """True when at least one item carries a release year."""
        return any(self.year(i) is not None for i in self.catalog.ids[:200])

    def categories_in(self, text: str) -> list[tuple[int, int, tuple[str, ...]]]:
        """Category phrases in normalised `text`: (start, end, categories), left to right."""
        if self.category_pattern is None:
            return []
        return [(m.start(), m.end(), self.category_phrases[m.group(0)])
                for m in self.category_pattern.finditer(text)]

    def _best(self, ids: Sequence[str], among: set[str] | None) -> list[str]:
        ids = [i for i in ids if among is None or i in among]
        return sorted(ids, key=lambda i: -self.popularity.get(i, 0))

    def exact(self, text: str, among: set[str] | None = None) -> list[str]:
        """Items whose title or alias is exactly `text` (normalised): those whose own title (without its year)
        it is first ("Super Smash Bros. Brawl" before its "... - Nintendo Wii" edition), then by popularity."""
        key = normalise(text)
        ids = self._best(self._aliases.get(key, ()), among)
        return sorted(ids, key=lambda i: normalise(_TITLE_YEAR.sub("", self.catalog[i].title)) != key)

    def resolve(self, text: str, among: Sequence[str] | None = None, max_words: int = 10) -> TitleRef:
        """The catalogue item a user's title text means; ambiguous or unknown texts get `matches` to offer.

        Over the leading parts of the text, longest first ("toy story please" → "toy story"):
        1. an exact title or alias ("the godfather", "heat (1995)") → that item (the most popular of
           several items with one title);
        2. the words inside titles (≥ 5 letters): one title → that item; several ("godfather") → ambiguous;
        3. a close spelling ("pulp fictoin") → that item, unless two titles are about as close (ambiguous).
        Nothing → `item_id` None with up to three close titles in `matches`.

        Args:
            text: the title as the user wrote it.
            among: restrict to these item ids (e.g. the items shown in a session).
            max_words: longest leading part tried.
        """
        allowed = set(among) if among is not None else None
        clause = _CLAUSE_END.split(text, maxsplit=1)[0]
        shown = clause.strip().strip("\"'“”‘’«».,;:!?").strip()[:200] or text.strip()[:200] or "?"
        # Exact titles may run past the clause ("the good, the bad and the ugly"): all leading parts.
        every = normalise(text).split()[:max_words + 4]
        for n in range(len(every), 0, -1):
            prefix = " ".join(every[:n])
            hits = self.exact(prefix, allowed)
            if hits and (n > 1 or len(prefix) >= 3):
                said = text.strip()[:200] if n > len(normalise(clause).split()) else shown
                return TitleRef(text=said, item_id=hits[0])
        words = normalise(clause).split()[:max_words]
        prefixes = [" ".join(words[:n]) for n in range(len(words), 0, -1)]
        # Inexact matches only over the whole clause or a part that ends where a filler word starts
        # ("mario kart" must not become "Super Mario Bros." by dropping "kart").
        prefixes = [p for n, p in zip(range(len(words), 0, -1), prefixes, strict=True)
                    if n == len(words) or words[n] in _FILLER]
        for prefix in prefixes:
            if len(prefix) < 5:
                break
            titles = self._containing(prefix, allowed)
            if len(titles) == 1:
                return TitleRef(text=shown, item_id=titles[0], exact=False)
            if titles:
                return TitleRef(text=shown, matches=tuple(titles[:3]), exact=False)
        close: list[str] = []
        for prefix in prefixes[:4]:
            if len(prefix) < 4:
                break
            if len(prefix) < 5:
                found = self._one_edit(prefix, allowed)
                if found:
                    return TitleRef(text=shown, item_id=found[0] if len(found) == 1 else None,
                                    matches=tuple(found) if len(found) > 1 else (), exact=False)
                break
            keys = sorted({k for w in prefix.split() for k in self._by_stem.get(w[:3], ())
                           if allowed is None or any(i in allowed for i in self._aliases[k])})
            found = self._close(prefix, keys, 0.86) or self._one_edit(prefix, allowed)
            if len(found) == 1:
                return TitleRef(text=shown, item_id=found[0], exact=False)
            if found:
                return TitleRef(text=shown, matches=tuple(found[:3]), exact=False)
            close = close or self._close(prefix, keys, 0.6)
        return TitleRef(text=shown, matches=tuple(close[:3]), exact=False)

    def _containing(self, words: str, allowed: set[str] | None) -> list[str]:
        """One item per distinct title whose alias contains `words` as whole words, most popular first."""
        pattern = re.compile(rf"(?<![\w']){re.escape(words)}(?![\w'])")
        ids: list[str] = []
        seen_titles: set[str] = set()
        for key, items in self._aliases.items():
            if words in key and pattern.search(key):
                for item_id in self._best(items, allowed)[:1]:
                    title = self.catalog[item_id].title
                    if title not in seen_titles:
                        seen_titles.add(title)
                        ids.append(item_id)
        return self._best(ids, None)

    def _one_edit(self, text: str, allowed: set[str] | None) -> list[str]:
        """Items of a one-word alias one edit (insert, delete, substitute, swap) from a one-word text of ≥ 4
        letters ("motehr" → "mother", "mmic" → "mimic"): difflib's ratio is too low on short words."""
        if " " in text or len(text) < 4:
            return []
        keys = self._by_stem.get(text[:3], set()) | self._by_end.get(text[-3:], set())
        hits = sorted(k for k in keys if " " not in k and _osa_at_most_one(text, k))
        ids = [i for k in hits for i in self._best(self._aliases[k], allowed)[:1]]
        return ids if len({self.catalog[i].title for i in ids}) == 1 else ids[:3] if len(ids) > 1 else ids

    def _close(self, text: str, keys: Sequence[str], cutoff: float) -> list[str]:
        """Items of the aliases spelled closest to `text` (ratio ≥ cutoff): one item when one title is
        clearly closest, several when the runner-up is within 0.03 of it."""
        found = difflib.get_close_matches(text, keys, n=4, cutoff=cutoff)
        if not found:
            return []
        ratio = [difflib.SequenceMatcher(None, text, k).ratio() for k in found]
        out: list[str] = []
        for key, r in zip(found, ratio, strict=True):
            if r < ratio[0] - 0.03 and out:
                break
            for item_id in self._best(self._aliases[key], None)[:1]:
                if item_id not in out and self.catalog[item_id].title not in {self.catalog[o].title for o in out}:
                    out.append(item_id)
        return out


def _osa_at_most_one(a: str, b: str) -> bool:
    """True when `b` is `a` with at most one insertion, deletion, substitution or swap of neighbours."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1:] == b[i + 1:] or (a[i + 2:] == b[i + 2:] and a[i:i + 2] == b[i:i + 2][::-1])
    return a[i + 1:] == b[i:] if len(a) > len(b) else a[i:] == b[i + 1:]
