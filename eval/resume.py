"""Results saved as they finish, so an interrupted evaluation run can resume: per-model rank files
(`RankStore`) and the JSONL rows the benchmarks append one user at a time (`resume_rows`)."""

from __future__ import annotations

import glob
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.errors import DataError
from retrieval.log import get_logger
from retrieval.vectors.store import write_file_atomically

log = get_logger(__name__)

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


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one per line ([] when the file does not exist).

    A run killed while writing leaves at most its last line cut short: that line is left out with a
    warning. Any other line that is not a JSON object raises `DataError` naming the file and line.
    """
    return _read_rows(path)[0]


def resume_rows(path: Path, resume: bool) -> list[dict[str, Any]]:
    """The rows an earlier run appended to `path`, to continue from; [] and no file unless `resume`.

    When resuming, a cut-short last line is removed from the file, so the rows appended next start on
    a line of their own.
    """
    if not resume:
        path.unlink(missing_ok=True)
        return []
    rows, cut = _read_rows(path)
    if cut:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        write_file_atomically(path, lambda f: f.write(text))
    return rows


def _read_rows(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """(rows, whether a cut-short last line was left out)."""
    if not path.is_file():
        return [], False
    lines = path.read_text(encoding="utf-8").splitlines()
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if lineno == len(lines):
                log.warning("%s: last line %d is cut short (an interrupted write); it is left out", path, lineno)
                return rows, True
            raise DataError(f"{path}:{lineno}: not a JSON line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: not a JSON object")
        rows.append(row)
    return rows, False
