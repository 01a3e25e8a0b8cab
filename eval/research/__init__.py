"""Research-only evaluations (not imported by the product); shared output helper below."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit_report(report: dict[str, Any], out: Path | None) -> None:
    """Print `report` as indented JSON and, when `out` is given, write the same text there (parents made)."""
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
