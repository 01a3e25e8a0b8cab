"""Post-conditions of cases, run in the worker: silent-loss accounting and named checks on files and output.

The accounting never trusts the loader's own counters: what was loaded is counted from the returned
catalogue and histories, what was written comes from the generator (`tests.badinputs.filebuilder`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Findings:
    """Problems found by a check; `lost` marks a silent loss among them."""

    problems: list[str] = field(default_factory=list)
    lost: bool = False

    def add(self, problem: str, lost: bool = False) -> None:
        """Record one problem (a silent loss when `lost`)."""
        self.problems.append(problem)
        self.lost = self.lost or lost

    def extend(self, other: Findings) -> None:
        """Merge another check's findings."""
        self.problems += other.problems
        self.lost = self.lost or other.lost


def _row_index(rows: list[list[int]], line: int) -> int | None:
    firsts = [r[0] for r in rows]
    i = bisect_right(firsts, line) - 1
    return i if i >= 0 and rows[i][0] <= line <= rows[i][1] else None


def reported_rows(acc: dict[str, Any], skipped: Iterable[tuple[str, int]]) -> tuple[dict[str, dict[int, int]], int]:
    """Map reported (file, line) pairs onto written rows.

    Returns:
        per file name, row index → reported records (capped at the row's records), and the number of
        records reported in all.
    """
    per_file: dict[str, dict[int, int]] = {}
    for file, line in skipped:
        name = Path(file).name
        rows = acc["files"].get(name, {}).get("rows")
        if not rows:
            continue
        i = _row_index(rows, int(line))
        if i is None:
            continue  # a header or blank line: not a data row
        seen = per_file.setdefault(name, {})
        seen[i] = min(seen.get(i, 0) + 1, rows[i][2])
    return per_file, sum(n for seen in per_file.values() for n in seen.values())


def probe_holds(dataset: Any, probe: dict[str, Any]) -> bool:
    """True when the probed row is in `dataset` exactly as written."""
    if probe["kind"] == "item":
        return probe["id"] in dataset.catalog and dataset.catalog[probe["id"]].title == probe["value"]
    for ev in dataset.histories.get(probe["user"], ()):
        if ev.item == probe["item"] and ("field" not in probe or getattr(ev, probe["field"]) == probe["value"]):
            return True
    return False


def account(dataset: Any, skipped: list[tuple[str, int]], acc: dict[str, Any], mode: str) -> Findings:
    """Compare a load's result with what was written.

    Args:
        dataset: the loaded Dataset.
        skipped: (file, line) of every row the loader reported.
        acc: the accounting record of the written files.
        mode: "skip" or "raise" (the on_error the load ran with).
    """
    out = Findings()
    written = sum(r[2] for f in acc["files"].values() for r in f["rows"])
    loaded = len(dataset.catalog) + int(dataset.n_events)
    per_file, reported = reported_rows(acc, skipped)
    if loaded + reported < written:
        out.add(f"silent loss: wrote {written} records, loaded {loaded}, reported {reported}; "
                f"{written - loaded - reported} neither loaded nor reported", lost=True)
    elif loaded + reported > written:
        out.add(f"miscount: loaded {loaded} + reported {reported} > {written} records written")
    for name, f in acc["files"].items():
        seen = per_file.get(name, {})
        for index, why in f["must_report"]:
            if index not in seen:
                line = f["rows"][index][0]
                verb = "loaded without a report" if mode == "skip" else "loaded without an error"
                out.add(f"{name}:{line} ({why}) {verb}", lost=True)
        for probe in f["probes"]:
            line = f["rows"][probe["row"]][0]
            if probe["row"] in seen:
                if probe["policy"] == "faithful":
                    out.add(f"{name}:{line} is valid but was reported as bad")
            elif not probe_holds(dataset, probe):
                out.add(f"{name}:{line} was not loaded as written ({_probe_text(probe)}) and not reported", lost=True)
    return out


def _probe_text(probe: dict[str, Any]) -> str:
    if probe["kind"] == "item":
        return f"item {probe['id'][:20]!r} titled {probe['value'][:30]!r}"
    what = f"event of user {probe['user'][:20]!r} on item {probe['item']!r}"
    return what + (f" with {probe['field']} {probe['value']!r}" if "field" in probe else "")


def refusal_ok(acc: dict[str, Any], mode: str) -> bool:
    """Whether stopping the whole load with one clear error is a correct outcome."""
    if acc["refusable"]:
        return True
    if mode == "skip":
        return False
    return any(f["must_report"] or f["may_report"] or any(p["policy"] == "faithful_or_reported" for p in f["probes"])
               for f in acc["files"].values())


# ------------------------------------------------------------------ named checks after a case


def tree_digest(path: Path) -> str:
    """sha256 over the relative paths, link targets and contents under `path` (a file or a directory)."""
    h = hashlib.sha256()
    if path.is_symlink() or path.is_file():
        items = [path]
    elif path.is_dir():
        items = sorted(path.rglob("*"))
    else:
        return "absent"
    for p in items:
        h.update(str(p.relative_to(path) if p != path else p.name).encode())
        if p.is_symlink():
            h.update(b"link:" + os.readlink(p).encode())
        elif p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def _intact(case: Any, outcome: Any, params: dict[str, Any]) -> Findings:
    out = Findings()
    if tree_digest(Path(params["path"])) != params["digest"]:
        out.add(f"{params['path']} was changed or deleted", lost=True)
    return out


def _no_leftovers(case: Any, outcome: Any, params: dict[str, Any]) -> Findings:
    out = Findings()
    left = [p.name for p in Path(params["dir"]).iterdir() if p.name.startswith((".tmp-", ".old-"))]
    if left:
        out.add(f"leftovers in {params['dir']}: {', '.join(sorted(left)[:3])}")
    return out


def _exists(case: Any, outcome: Any, params: dict[str, Any]) -> Findings:
    out = Findings()
    if outcome.exit == 0 and not Path(params["path"]).exists():
        out.add(f"exit 0 but {params['path']} was not written")
    return out


def _json_items(case: Any, outcome: Any, params: dict[str, Any]) -> Findings:
    out = Findings()
    if outcome.exit != 0:
        return out
    try:
        doc = json.loads(outcome.stdout_full)
    except ValueError:
        out.add("exit 0 but stdout is not one JSON document")
        return out
    items = doc.get("items") if isinstance(doc, dict) else None
    want = params.get("k")
    if not isinstance(items, list) or (want is not None and len(items) != want and not params.get("at_most")):
        out.add(f"expected {want} items in the JSON output, got {len(items) if isinstance(items, list) else items!r}")
    elif want is not None and len(items) > want:
        out.add(f"expected at most {want} items, got {len(items)}")
    if params.get("flagged") and isinstance(doc, dict) and not _flagged(doc):
        out.add("the LLM failed but the result is not flagged (rerank fallback / template texts)")
    return out


def _flagged(doc: dict[str, Any]) -> bool:
    diag = doc.get("diagnostics") or {}
    rerank = diag.get("rerank") or {}
    return bool(diag.get("rerank_fallback") or rerank.get("fallback") or diag.get("explanations_template")
                or diag.get("llm_budget_spent") or diag.get("budget_exhausted"))


def _skipped_rows_file(case: Any, outcome: Any, params: dict[str, Any]) -> Findings:
    """Every planted bad row is listed in the --skipped-rows TSV."""
    out = Findings()
    acc, tsv = params["accounting"], Path(params["tsv"])
    if outcome.exit != 0:
        return out
    if not tsv.is_file():
        out.add(f"--skipped-rows {tsv.name} was not written")
        return out
    with tsv.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh, delimiter="\t")][1:]
    listed, _ = reported_rows(acc, [(r[0], int(r[1])) for r in rows if len(r) >= 2 and r[1].isdigit()])
    for name, f in acc["files"].items():
        for index, why in f["must_report"]:
            if index not in listed.get(name, {}):
                out.add(f"--skipped-rows file does not list {name}:{f['rows'][index][0]} ({why})", lost=True)
    return out


CHECKS: dict[str, Callable[[Any, Any, dict[str, Any]], Findings]] = {
    "intact": _intact,
    "no_leftovers": _no_leftovers,
    "exists": _exists,
    "json_items": _json_items,
    "skipped_rows_file": _skipped_rows_file,
}
