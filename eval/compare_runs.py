"""Compare one model across harness runs made on the same users, e.g. the LLM reranker with different LLMs.

    python -m eval.compare_runs runs/cmp-smollm2-135m runs/cmp-qwen2.5-coder-0.5b \
        --model llm-rerank --anchor itemknn --metric ndcg@10

Each run is an `--out` directory of `driftrec eval` (results.json and ranks/). The runs must share
dataset, protocol, seed and user count, and the anchor model's per-user ranks must be identical in
every run: that proves the users and the candidates were the same, so per-user differences can be
paired. Prints a Markdown table: per run, the model's mean with its 95% bootstrap CI, the paired
difference to the anchor and to the first run (95% CI, p-value, users better/worse), and the share
of users whose top item is the anchor's top item (a reranker that only follows the order it was
shown scores 100% there).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.metrics import PairedComparison, bootstrap_ci, paired_comparison, per_user_metrics
from eval.resume import RankStore
from retrieval.errors import ConfigError

_SAME = ("dataset", "protocol", "seed", "n_users")


@dataclass(frozen=True)
class Run:
    """One harness run directory: its settings and per-model per-user ranks (inf = miss)."""

    path: Path
    settings: dict[str, object]
    command: str
    ranks: dict[str, np.ndarray]
    tops: dict[str, list[list[str]]]


def load_run(path: Path) -> Run:
    """Read results.json and every ranks/<model>-<fingerprint>.json of a run directory."""
    results = path / "results.json"
    if not results.is_file():
        raise ConfigError(f"{path} is not a driftrec eval output directory (no results.json)")
    data = json.loads(results.read_text())
    store = RankStore(path / "ranks")
    ranks: dict[str, np.ndarray] = {}
    tops: dict[str, list[list[str]]] = {}
    for name in data["models"]:
        keys = store.keys(name)
        saved = store.load(name, keys[0]) if len(keys) == 1 else None
        if saved is None:
            raise ConfigError(f"{path}: expected one ranks file for {name!r}, found {len(keys)}")
        ranks[name], tops[name] = saved[0], saved[1]
    return Run(path, {k: data.get(k) for k in _SAME}, str(data.get("command", "")), ranks, tops)


@dataclass(frozen=True)
class Row:
    """One line of the comparison: a run's (or the anchor's) mean, CI and paired differences."""

    run: str
    mean: float
    ci95: tuple[float, float]
    vs_anchor: PairedComparison | None = None
    vs_first: PairedComparison | None = None
    same_top1: float = 1.0


def compare(runs: list[Run], model: str, anchor: str, metric: str, n_boot: int = 1000) -> list[Row]:
    """One row per run: the model's metric with CI and paired differences to the anchor and the first run.

    Raises:
        ConfigError: the runs differ in dataset/protocol/seed/users, a model is missing, or the
            anchor's ranks differ between runs (not the same users or candidates).
    """
    if not runs:
        raise ConfigError("no runs to compare")
    first = runs[0]
    for run in runs:
        if run.settings != first.settings:
            raise ConfigError(f"{run.path} was run with {run.settings}, {first.path} with {first.settings}")
        for name in (model, anchor):
            if name not in run.ranks:
                raise ConfigError(f"{run.path} has no model {name!r} (it has {', '.join(run.ranks)})")
        if not np.array_equal(run.ranks[anchor], first.ranks[anchor]):
            raise ConfigError(f"{anchor!r} ranks differ between {first.path} and {run.path}: "
                              "not the same users or candidates, so the runs cannot be paired")
    values = {run.path: per_user_metrics(run.ranks[model])[metric] for run in runs}
    anchor_values = per_user_metrics(first.ranks[anchor])[metric]
    rows = [Row(f"{anchor} (anchor)", float(anchor_values.mean()), bootstrap_ci(anchor_values, n_boot=n_boot))]
    for run in runs:
        v = values[run.path]
        same = [bool(a[:1]) and a[:1] == b[:1] for a, b in zip(run.tops[model], run.tops[anchor], strict=True)]
        rows.append(Row(str(run.path), float(v.mean()), bootstrap_ci(v, n_boot=n_boot),
                        paired_comparison(v, anchor_values, metric, n_boot),
                        paired_comparison(v, values[first.path], metric, n_boot), float(np.mean(same))))
    return rows


def _diff(p: PairedComparison | None) -> str:
    if p is None:
        return "–"
    return (f"{100 * p.diff:+.2f} [{100 * p.ci95[0]:+.2f}, {100 * p.ci95[1]:+.2f}] p={p.p_value:.2f} "
            f"({p.wins}↑ {p.losses}↓)")


def to_markdown(rows: list[Row], model: str, metric: str) -> str:
    """The rows as a Markdown table, metric values ×100."""
    lines = [f"| run | {model} {metric} ×100 | 95% CI | paired vs anchor | paired vs first run "
             "| same top-1 as anchor |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.run} | {100 * row.mean:.2f} | [{100 * row.ci95[0]:.2f}, {100 * row.ci95[1]:.2f}] | "
                     f"{_diff(row.vs_anchor)} | {_diff(row.vs_first)} | {row.same_top1:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="driftrec eval --out directories")
    p.add_argument("--model", default="llm-rerank", help="model compared across the runs")
    p.add_argument("--anchor", default="itemknn", help="model present in every run with identical ranks")
    p.add_argument("--metric", default="ndcg@10", help="per-user metric, e.g. ndcg@10, hr@5, mrr")
    p.add_argument("--n-boot", type=int, default=1000)
    args = p.parse_args(argv)
    try:
        runs = [load_run(path) for path in args.runs]
        rows = compare(runs, args.model, args.anchor, args.metric, args.n_boot)
    except ConfigError as exc:
        p.exit(2, f"compare_runs: error: {exc}\n")
    print(to_markdown(rows, args.model, args.metric))


if __name__ == "__main__":
    main()
