"""Print line coverage per package and every product module under 60 %, from the `.coverage` file of a
`pytest --cov` run (`make test-fast` runs it)."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import coverage

FLOOR = 0.60


def main() -> int:
    cov = coverage.Coverage()
    cov.load()
    root = Path.cwd()
    packages: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    low: list[tuple[float, str]] = []
    for name in sorted(cov.get_data().measured_files()):
        path = Path(name)
        if not path.is_relative_to(root):
            continue
        rel = path.relative_to(root)
        _, statements, _, missing, _ = cov.analysis2(name)
        if not statements:
            continue
        package = str(rel.parent)
        packages[package][0] += len(statements)
        packages[package][1] += len(statements) - len(missing)
        share = 1 - len(missing) / len(statements)
        if share < FLOOR:
            low.append((share, str(rel)))
    print(f"{'package':<28} {'lines':>6} {'covered':>8}")
    for package, (total, hit) in sorted(packages.items()):
        print(f"{package:<28} {total:>6} {hit / total:>8.0%}")
    all_total = sum(t for t, _ in packages.values())
    print(f"{'all':<28} {all_total:>6} {sum(h for _, h in packages.values()) / all_total:>8.0%}")
    if low:
        print(f"modules under {FLOOR:.0%}: " + ", ".join(f"{m} {s:.0%}" for s, m in sorted(low)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
