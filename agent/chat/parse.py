"""The deterministic chat parser: a message → `ChatRequest`, over the catalogue's own vocabulary, offline.

It recognises the common phrasings: intents ("why did you suggest X", "more like X", "something
different", "what have I been into lately", "older ones"), categories with their synonyms and negations
("no more comedies", "anything but dramas", "comedies are fine again"), decades and years ("90s",
"before 1980", "in 1994"), titles (exact, without the year, with the article moved, misspelled), a
position in the last list ("the second one"), k ("give me 3"), "include ones I've seen", and keeps a
descriptive phrase ("something dark and funny") as free text. Every pattern runs in time linear in the
message length (no pattern that can retry from every position over a long message).
"""

from __future__ import annotations

import bisect
import re

from agent.chat import phrases as P
from agent.chat.request import ChatIntent, ChatRequest, TitleRef, YearRange
from agent.chat.vocabulary import CatalogVocabulary, normalise

MAX_TITLE_CHARS = 200
MAX_TITLE_WORDS = 16
_WORD = re.compile(r"[\w']+")
MAX_MENTIONS = 20  # title triggers and category mentions read per message (a longer list is not a request)

def parse_message(message: str, vocab: CatalogVocabulary) -> ChatRequest:
    """Parse one chat message with the catalogue's vocabulary (offline, deterministic).

    Args:
        message: the user's message, untrusted; only what it names from the catalogue and the patterns
            above can come out of it.
        vocab: the catalogue's vocabulary.
    """
    text = canonical(message)
    position = _position(text)
    why = _why_target(text)
    refs, spans = _references(why if why is not None else text, vocab, whole=why is not None)
    rest = _blank(text, spans) if why is None else text[: max(0, len(text) - len(why))]
    low = rest.lower()
    include, exclude, lift = _categories(low, vocab)
    years = _years(low) if vocab.has_years else None
    relative = None
    if vocab.has_years and years is None and position is None:
        relative = "older" if P.OLDER.search(low) else "newer" if P.NEWER.search(low) else None
    intent = _intent(text, low, why, refs, position, bool(include or exclude or lift or years or relative),
                     bool((exclude or lift or relative or P.SEEN.search(text)) and not include and not years),
                     bool(include))
    if intent not in ("explain", "more_like"):
        position = None
    if intent == "explain":
        refs = refs if position is None else ()
        include, exclude, lift, years, relative = (), (), (), None, None
    preference = _preference(P.SEEN.sub(" ", low), vocab) if intent not in ("explain", "interests", "refine") else None
    if intent == "unknown" and preference:
        intent = "recommend"  # "a slow, atmospheric story": a description is an ask
    return ChatRequest(
        intent=intent, include_categories=include, exclude_categories=exclude, lift_categories=lift,
        years=years, relative_years=relative, include_seen=bool(P.SEEN.search(text)), references=refs,
        position=position, preference=preference, k=_k(low), source="rules")


def canonical(message: str) -> str:
    """The message with single spaces, chat spellings read as words ("pls" → "please") and letters repeated
    three or more times read once ("loooved" → "loved")."""
    text = P.REPEATS.sub(r"\1", " ".join(message.split()))
    return P.SLANG_TOKEN.sub(lambda m: P.SLANG[m.group(0)], text)


def _intent(text: str, low: str, why: str | None, refs: tuple[TitleRef, ...], position: int | None,
            constrained: bool, only_narrowing: bool, includes: bool) -> ChatIntent:
    if why is not None or (position is not None and P.WHY.search(text)):
        return "explain"
    if P.DIFFERENT.search(text):
        return "different"
    if refs or (position is not None and P.STRONG_TRIGGER.search(text)):
        return "more_like"
    if P.INTERESTS.search(text):
        return "interests"
    narrowing = constrained and bool(P.REFINE_LEAD.search(text) or P.LIFT.search(low) or P.OLDER.search(low)
                                     or P.NEWER.search(low) or not (P.ASK.search(low) or includes))
    if narrowing or (only_narrowing and not P.FRESH_ASK.search(low)):
        return "refine"
    if constrained or P.ASK.search(low) or P.REJECT.search(low):
        return "recommend"
    if P.SEEN.search(text):
        return "refine"
    return "unknown"


def _why_target(text: str) -> str | None:
    """The text a "why" asks about ("why did you suggest X" → "X", "why is X on my list?" → "X"); None when
    the message asks no why."""
    if (why := P.WHY.search(text)) is None:
        return None
    target = None
    if verb := P.WHY_VERB.search(text, why.end()):
        target = text[verb.end():]
    if (target is None or len(normalise(P.WHY_TAIL.sub("", " " + target))) < 3) and (
            lead := P.WHY_LEAD.match(text)):
        target = text[lead.end():]
    if (target is None or len(normalise(target)) < 3) and why.start() > 0:
        target = text[:why.start()]  # "Heat?? why tho"
    if target is None:
        return None
    return P.WHY_TAIL.sub("", target).strip()


def _position(text: str) -> int | None:
    m = P.POSITION.search(text)
    if m is None:
        return None
    if m["ord"]:
        return P.ORDINALS[m["ord"].lower()]
    if m["num"]:
        n = int(m["num"]) if m["num"].isdigit() else P.WORD_NUMBERS[m["num"].lower()]
        return n if 1 <= n <= 100 else None
    return None


def _references(text: str, vocab: CatalogVocabulary, whole: bool) -> tuple[tuple[TitleRef, ...],
                                                                           list[tuple[int, int]]]:
    """Titles named in `text`: after a trigger ("more like", "similar to", "I loved"), in quotes, at the start
    of a message that goes on "... was amazing" / "... type of thing", listed after another title ("a mix of
    Heat and Ronin"), or `text` itself when `whole` (what a "why" asks about); with the character spans
    they cover (removed before the constraints are read)."""
    refs: list[TitleRef] = []
    spans: list[tuple[int, int]] = []
    quoted = {m.start(1): m.end(1) for m in P.QUOTED.finditer(text)}
    strong = set(quoted) | {m.end() for m in P.STRONG_TRIGGER.finditer(text) if m.end() + 1 not in quoted}
    weak = {m.end() for m in P.LIKE_TRIGGER.finditer(text) if m.end() + 1 not in quoted} - strong
    if whole and not strong and not weak and text:
        strong = {0}
    if not whole and P.LEADING_TITLE_CUE.search(text):
        weak.add(0)
    todo = sorted(strong | weak)[:MAX_MENTIONS]
    listed: set[int] = set()  # starts found after another title: any resolved title counts there
    while todo and len(refs) < MAX_MENTIONS:
        start = todo.pop(0)
        chunk = text[start:quoted.get(start, start + MAX_TITLE_CHARS)]
        first = normalise(chunk).split()[:2]
        if not first or P.POSITION.match(chunk):
            continue
        ref = vocab.resolve(chunk)
        generic = (first[0] in P.NOT_A_TITLE or " ".join(first) in P.NOT_A_TITLE or bool(P.DECADE.match(chunk))
                   or bool(vocab.categories_in(first[0])) or first[0].isdigit())
        if start in strong:
            # "more like Blorfvorp" is said back as unknown; "more like that" / "like 90s comedies" name no title
            if ref.item_id is None and generic:
                continue
        elif ref.item_id is None or (start in listed and not ref.exact) or (
                generic and start not in listed and not _starts_with_title(chunk, vocab, ref.item_id)):
            continue
        if any(r.item_id == ref.item_id and ref.item_id is not None for r in refs):
            continue
        refs.append(ref)
        end = _title_end(chunk, vocab, ref.item_id) if ref.item_id is not None else None
        spans.append((start, start + (end if end is not None else _title_span(chunk))))
        if end is not None and (join := P.TITLE_JOIN.match(chunk[end:])) is not None:
            nxt = start + end + join.end()
            listed.add(nxt)
            todo = sorted({*todo, nxt})
    return tuple(refs), spans


def _title_end(chunk: str, vocab: CatalogVocabulary, item_id: str) -> int | None:
    """Characters of `chunk` that an exact title or alias of the item takes; None for an inexact match."""
    words = list(_WORD.finditer(chunk))[:MAX_TITLE_WORDS]
    for n in range(len(words), 0, -1):
        if item_id in vocab.exact(" ".join(w.group().lower().strip("'") for w in words[:n])):
            end = words[n - 1].end()
            return end + 1 if chunk[end:end + 1] == ")" else end
    return None


def _starts_with_title(chunk: str, vocab: CatalogVocabulary, item_id: str) -> bool:
    """True when the text begins with the item's own title as written ("I.Q." after "like"), year aside."""
    bare = P.YEAR_SUFFIX.sub("", vocab.catalog[item_id].title).lower()
    return bool(bare) and chunk.lower().startswith(bare)


def _title_span(chunk: str) -> int:
    """Characters of `chunk` a title takes: up to the clause end or a word that starts a constraint."""
    m = P.TITLE_END.search(chunk)
    return m.start() if m is not None else len(chunk)


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    out = list(text)
    for start, end in spans:
        for i in range(start, min(end, len(out))):
            out[i] = " "
    return "".join(out)


def _categories(low: str, vocab: CatalogVocabulary) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(include, exclude, lift): category mentions, negated by a cue earlier in the same clause."""
    include: list[str] = []
    exclude: list[str] = []
    lift: list[str] = []
    text = normalise_keep_clauses(low)
    found = vocab.categories_in(text)
    if not found:
        return (), (), ()
    clause_starts = [0] + [m.end() for m in P.CLAUSE.finditer(text)]
    for start, end, cats in found[:MAX_MENTIONS]:
        at = bisect.bisect_right(clause_starts, start)
        clause_start = clause_starts[at - 1]
        clause_end = clause_starts[at] if at < len(clause_starts) else len(text)
        before = text[clause_start:start]
        clause = text[clause_start:clause_end]
        if P.LIFT.search(clause):
            target = lift
        elif not P.NEGATION.search(clause) and P.AGAIN.search(clause):  # "show me comedies again"
            target = lift
        elif P.NEGATION.search(before) or P.POST_NEGATION.match(text, end, clause_end):
            target = exclude
        elif clause_start > 0 and P.EXCEPT_END.search(text, 0, clause_start):
            target = exclude
        else:
            target = include
        for cat in cats:
            if cat not in target:
                target.append(cat)
    include = [c for c in include if c not in exclude and c not in lift]
    return tuple(include), tuple(exclude), tuple(c for c in lift if c not in exclude)


def normalise_keep_clauses(low: str) -> str:
    """Lower-case text with clause punctuation kept as " , " and other punctuation as spaces."""
    text = re.sub(r"[,;.!?]+", " , ", low)
    text = re.sub(r"[^\w\s',]+", " ", text)
    return " ".join(text.split())


def _years(low: str) -> YearRange | None:
    if m := P.NOT_BEFORE.search(low):
        return YearRange(start=int(m[1]))
    if m := P.NOT_AFTER.search(low):
        return YearRange(end=int(m[1]))
    if m := P.OR_EARLIER.search(low):
        return YearRange(end=int(m[1]))
    if m := P.OR_LATER.search(low):
        return YearRange(start=int(m[1]))
    if m := P.BETWEEN.search(low):
        a, b = (int(g) for g in m.groups() if g is not None)
        return YearRange(start=min(a, b), end=max(a, b))
    if m := P.BEFORE.search(low):
        return YearRange(end=int(m[1] or m[2]) - 1)
    if m := P.AFTER.search(low):
        return YearRange(start=int(m[1] or m[2]) + 1)
    if m := P.SINCE.search(low):
        return YearRange(start=int(next(g for g in m.groups() if g)))
    if m := P.DECADE.search(low):
        if m["word"]:
            start = P.DECADE_WORDS[m["word"].lower()]
        else:
            digit = int(m["d"] if m["d"] is not None else m["d2"])
            century = int(m["century"]) * 100 if m["century"] else (2000 if digit <= 2 else 1900)
            start = century + 10 * digit
        end = start + 9
        if part := P.EARLY_LATE.search(low[: m.start()]):
            start, end = {"early": (start, start + 3), "mid": (start + 3, start + 6),
                          "late": (start + 6, start + 9)}[part["part"].lower()]
        return YearRange(start=start, end=end)
    if m := P.IN_YEAR.search(low):
        return YearRange(start=int(m[1]), end=int(m[1]))
    return None


def _k(low: str) -> int | None:
    m = P.K.search(low) or P.K_VERB.search(low)
    if m is None:
        return None
    n = m["n"].lower()
    value = int(n) if n.isdigit() else P.WORD_NUMBERS[n]
    return value if 1 <= value <= 100 else None


def _preference(low: str, vocab: CatalogVocabulary) -> str | None:
    """A descriptive phrase kept as text ("dark and funny"), without category words, years and fillers."""
    for m in P.PREFERENCE.finditer(low):
        if m["pref"] is not None:
            phrase = P.PREFERENCE_END.split(m["pref"])[0]
        else:
            phrase = f"{m['pre']}{m['noun']}{P.PREFERENCE_END.split(m['post'] or '')[0]}"
        kept = normalise(phrase)
        if vocab.category_pattern is not None:  # category words first: "love story" is Romance, not a taste
            kept = vocab.category_pattern.sub(" ", kept)
        kept = " ".join(w for w in kept.split() if w not in P.STOP and not w.isdigit())
        if [w for w in kept.split() if not P.DECADE.fullmatch(w) and w not in P.DECADE_WORDS]:
            return phrase.strip()[:300]
    return None
