"""Generate the bad-input corpus into a directory: `python -m tests.badinputs.generate DIR`.

Writes the data files, index directories and other fixtures the cases need, and `DIR/corpus.json`
(the cases). The base data is a small slice of ../shared/data/ml-100k, read and rewritten per case;
nothing generated belongs in the repository.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.badinputs.datacases import data_cases
from tests.badinputs.formats import base_data, case_user
from tests.badinputs.indexcases import build_reference, index_cases
from tests.badinputs.optioncases import llm_cases, option_cases, thread_cases
from tests.badinputs.spec import Case, write_cases

REPO = Path(__file__).resolve().parents[2]
ML100K = REPO.parent / "shared" / "data" / "ml-100k"
OPTIONAL = ("--skipped-rows", "--llm-timeout", "--llm-budget", "--rebuild")


def cli_features() -> set[str]:
    """The optional CLI options this checkout has (cases use them only where they exist)."""
    text = "".join(p.read_text() for p in (REPO / "driftrec" / "cli").glob("*.py"))
    return {opt for opt in OPTIONAL if f'"{opt}"' in text}


def generate(root: Path, ml100k: Path = ML100K) -> list[Case]:
    """Write the corpus under `root` (created) and return its cases."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "out").mkdir(exist_ok=True)
    features = cli_features()
    items, events = base_data(ml100k)
    user = case_user(events)
    cases = data_cases(root, items, events, user, features)
    base = root / "data" / "ml100k.control"
    ref_error = build_reference(root, base)
    cases += index_cases(root, base, user, features, ref_error)
    cases += option_cases(root, base, user)
    cases += llm_cases(root, base, user, features)
    for sub in ("threads-resave", "threads-writers"):
        (root / sub).mkdir(exist_ok=True)
    cases += thread_cases(root, base)
    waiting = [c for c in cases if c.group == "llm"]
    for c in waiting[1::2]:
        c.group = "llm-b"  # two lanes: these cases mostly wait on the fake server's deadlines
    names = [c.name for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"duplicate case names: {sorted(duplicates)[:5]}")
    write_cases(root / "corpus.json", cases)
    return cases


def main(argv: list[str]) -> int:
    """Generate into argv[0] and print the number of cases per class."""
    if len(argv) != 1:
        print("usage: python -m tests.badinputs.generate DIR", file=sys.stderr)
        return 2
    cases = generate(Path(argv[0]))
    counts: dict[str, int] = {}
    for c in cases:
        counts[c.klass] = counts.get(c.klass, 0) + 1
    print(f"{len(cases)} cases in {argv[0]}/corpus.json: "
          + ", ".join(f"{k} {n}" for k, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
