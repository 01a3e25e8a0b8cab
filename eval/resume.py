"""Per-model results saved as each model finishes, so an interrupted evaluation run can resume."""

from __future__ import annotations

import glob
import json
import math
import re
from pathlib import Path

import numpy as np

from retrieval.vectors.store import write_file_atomically

Saved = tuple[np.ndarray, list[list[str]], dict[str, float], dict[str, float]]


class RankStore:
    """One JSON file per (model, run fingerprint) under `root`: ranks, top items, diagnostics, timings.

    Args:
        root: directory (created on first save).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, name: str, key: str) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        return self.root / f"{safe}-{key}.json"

    def keys(self, name: str) -> list[str]:
        """Fingerprints saved for model `name` (a model named "llm" does not see "llm-rerank"'s)."""
        prefix = self._path(name, "").stem
        found = (p.stem[len(prefix):] for p in self.root.glob(glob.escape(prefix) + "*.json"))
        return sorted(k for k in found if re.fullmatch(r"[0-9a-f]+", k))

    def load(self, name: str, key: str) -> Saved | None:
        """(ranks (n_users,), tops, diagnostics, timings) saved under this fingerprint, or None."""
        path = self._path(name, key)
        if not path.is_file():
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
        ranks = np.array([math.inf if r is None else r for r in doc["ranks"]], dtype=np.float64)
        return ranks, doc["tops"], doc["diagnostics"], {**doc["timings"], "resumed": 1.0}

    def save(self, name: str, key: str, ranks: np.ndarray, tops: list[list[str]],
             diagnostics: dict[str, float], timings: dict[str, float]) -> None:
        """Write one model's results atomically (a killed run never leaves a half-written file)."""
        doc = {"ranks": [None if math.isinf(r) else float(r) for r in ranks.tolist()], "tops": tops,
               "diagnostics": diagnostics, "timings": timings}
        write_file_atomically(self._path(name, key), lambda f: json.dump(doc, f))
