"""Catalogue fingerprints: which item texts an index embedded, so a stale index is refused, not used.

The fingerprint is a sha256 over the (id, sha256 of the embedded text) pairs in catalogue order, where
the embedded text is exactly `Item.embedding_text()`, the string `build_index` gives the embedder.
The per-item text hashes are saved beside the ids, so a mismatch can say what changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from retrieval.data.model import Catalog, Event
from retrieval.errors import LeakageError

TEXT_FUNCTION = "Item.embedding_text"


def embedded_texts(catalog: Catalog) -> tuple[list[str], list[str]]:
    """The ids and the texts `build_index` embeds, in catalogue order.

    Returns:
        (n ids, n texts), aligned.
    """
    items = list(catalog)
    return [it.id for it in items], [it.embedding_text() for it in items]


def text_sha256(text: str) -> str:
    """Hex sha256 of one embedded text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def catalog_sha256(ids: Sequence[str], text_hashes: Sequence[str]) -> str:
    """Hex sha256 over (id, text hash) pairs in order; one JSON line per item keeps it unambiguous."""
    h = hashlib.sha256()
    for item_id, digest in zip(ids, text_hashes, strict=True):
        h.update(json.dumps([item_id, digest]).encode())
        h.update(b"\n")
    return h.hexdigest()


def describe_change(saved_ids: Sequence[str], saved_hashes: Sequence[str], ids: Sequence[str],
                    text_hashes: Sequence[str]) -> str:
    """What differs between the catalogue an index embedded and another one, in a few words.

    Returns:
        e.g. "12 ids added, 3 ids removed, 40 texts changed", or "the same items in another order".
    """
    before = dict(zip(saved_ids, saved_hashes, strict=True))
    after = dict(zip(ids, text_hashes, strict=True))
    added = sum(1 for i in after if i not in before)
    removed = sum(1 for i in before if i not in after)
    changed = sum(1 for i, h in after.items() if i in before and before[i] != h)
    parts = [f"{n:,} {label}" for n, label in ((added, "ids added"), (removed, "ids removed"),
                                                (changed, "texts changed")) if n]
    return ", ".join(parts) if parts else "the same items in another order"


def events_fingerprint(histories: Mapping[str, Sequence[Event]]) -> dict[str, Any]:
    """Identity of a set of training events: sha256 over every (user, item, time) in user order, plus counts.

    Tuned embedders and sequential models record it in their manifests, so the harness can refuse one
    trained on other events than a run's training split.
    """
    h = hashlib.sha256()
    events = users = 0
    for user in sorted(histories):
        if not histories[user]:
            continue
        users += 1
        for ev in histories[user]:
            h.update(f"{user}\t{ev.item}\t{ev.timestamp.isoformat()}\n".encode())
            events += 1
    return {"sha256": h.hexdigest(), "events": events, "users": users}


def check_same_events(saved: Mapping[str, Any], histories: Mapping[str, Sequence[Event]], what: str,
                      remedy: str) -> None:
    """Refuse an artifact whose recorded training events (`saved`, an `events_fingerprint`) are not `histories`.

    Args:
        saved: the fingerprint the artifact's manifest records (may be empty).
        histories: this run's training events.
        what: the artifact, e.g. "embedding model runs/emb".
        remedy: the command that makes a matching one, e.g. "`driftrec tune-embedder`".

    Raises:
        LeakageError: other events (another split or dataset), so it may have seen held-out events.
    """
    expected = events_fingerprint(histories)
    if saved.get("sha256") != expected["sha256"]:
        raise LeakageError(
            f"{what} was tuned on other events ({saved.get('events')} events of {saved.get('users')} users) than "
            f"this run's training data ({expected['events']} events of {expected['users']} users): it may have "
            f"seen held-out events; tune it on this dataset and split with {remedy}")
