"""On-disk LLM response cache (sqlite), keyed by (model, prompt, parameters).

Evaluation runs that call an LLM write every reply here; a rerun (or a resumed, interrupted run)
reads them back instead of calling the model, so results are reproducible and resumable.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# Bump when the stored value layout changes: old entries then miss instead of being misread.
SCHEMA_VERSION = 1


class ResponseCache:
    """A persistent key → JSON value store for LLM replies.

    Args:
        path: sqlite file (parent directories are created).

    Attributes:
        hits, misses: lookups served and not served since this object was created.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, value TEXT)")
        self._db.commit()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"<ResponseCache {self.path} {len(self):,} entries>"

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    @staticmethod
    def key(model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> str:
        """sha256 over the canonical JSON of (schema version, model, messages, parameters)."""
        blob = json.dumps([SCHEMA_VERSION, model, list(messages), dict(params)], sort_keys=True,
                          ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value, or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        value: dict[str, Any] = json.loads(row[0])
        return value

    def put(self, key: str, value: Mapping[str, Any], model: str = "") -> None:
        """Store (or replace) a value; committed at once so an interrupted run keeps what it did."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses (key, model, value) VALUES (?, ?, ?)",
                             (key, model, json.dumps(dict(value), ensure_ascii=False)))
            self._db.commit()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
