"""The hybrid's fusion choice kept on disk, so building the default retriever does not re-tune it every time.

Choosing the fusion (`tune_on_holdout`) costs 8–9 s on ml-100k, paid by every CLI command that builds
the default hybrid. The same events, item vectors, extra generators and settings always give the same
choice, so it is stored under `<cache>/fusion/<key>.json`, where the key is a sha256 over:

- the cache format and driftrec's version;
- the histories the generators learn from (`events_fingerprint`);
- the item vectors the interest retriever searches (ids and bytes);
- the tuning settings (users held out, seed, depth, metric, grid);
- each extra generator's `cache_key()` (a trained sequential model: a digest of its weights).

An extra generator without `cache_key` (a plugin's) turns the cache off for that build. A cache file
that cannot be read is ignored (logged) and rewritten.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval import __version__
from retrieval.candidates.base import CandidateGenerator, Histories
from retrieval.candidates.fusion import FusionTuning
from retrieval.data.datasets import cache_dir
from retrieval.log import get_logger
from retrieval.vectors.fingerprint import events_fingerprint
from retrieval.vectors.index import VectorIndex
from retrieval.vectors.store import write_file_atomically

FORMAT = "driftrec-fusion-choice/1"
log = get_logger(__name__)


def choice_key(histories: Histories, index: VectorIndex, extra: Sequence[CandidateGenerator],
               settings: Mapping[str, Any]) -> str | None:
    """The cache key of one fusion choice, or None when an extra generator has no `cache_key`."""
    parts: list[str] = []
    for gen in extra:
        key = getattr(gen, "cache_key", None)
        if not callable(key):
            return None
        parts.append(f"{type(gen).__name__}:{key()}")
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT, __version__, events_fingerprint(histories), index.embedder, index.ids,
                         dict(settings), parts], sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(index.vectors).data)
    return h.hexdigest()


def choice_path(key: str, root: Path | None = None) -> Path:
    """Where the choice with this key lives (default root: `<cache>/fusion`)."""
    return (root or cache_dir() / "fusion") / f"{key}.json"


def load_choice(key: str, root: Path | None = None) -> FusionTuning | None:
    """The stored choice, or None when there is none or it cannot be read."""
    path = choice_path(key, root)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc["format"] != FORMAT or doc["key"] != key:
            raise ValueError(f"format {doc['format']!r}, key {doc['key']!r}")
        return FusionTuning(tuple(float(w) for w in doc["weights"]), float(doc["rrf_k"]), str(doc["metric"]),
                            float(doc["value"]), int(doc["n_users"]), ())
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring unreadable fusion choice %s (%s); choosing it again", path, exc)
        return None


def save_choice(key: str, tuning: FusionTuning, root: Path | None = None) -> Path | None:
    """Store a choice atomically; returns its path, or None when the cache cannot be written (logged)."""
    path = choice_path(key, root)
    doc = {"format": FORMAT, "key": key, "weights": list(tuning.weights), "rrf_k": tuning.rrf_k,
           "metric": tuning.metric, "value": tuning.value, "n_users": tuning.n_users}
    try:
        write_file_atomically(path, lambda f: json.dump(doc, f))
    except OSError as exc:
        log.warning("could not store the fusion choice in %s (%s)", path, exc)
        return None
    return path
