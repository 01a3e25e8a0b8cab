"""Write a run's results: `results.json`, `report.md` (tables) and PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from eval.harness import EvalResult

# History-length buckets (events in the test input) for the per-bucket NDCG@10 plot.
BUCKETS: tuple[tuple[int, int], ...] = ((1, 10), (11, 20), (21, 50), (51, 100), (101, 200), (201, 10**9))
TABLE_METRICS = ("hr@1", "ndcg@5", "ndcg@10", "ndcg@20", "recall@10", "recall@20", "mrr")


def to_json(result: EvalResult) -> dict[str, Any]:
    """The results.json document (metrics as fractions in 0..1; CIs as [low, high])."""
    models: dict[str, Any] = {}
    for name, res in result.models.items():
        row: dict[str, Any] = {k: _num(v) for k, v in res.metrics.items()}
        row["ci95"] = {k: [_num(lo), _num(hi)] for k, (lo, hi) in res.ci95.items()}
        row["ndcg@10_by_history"] = {f"{lo}-{hi if hi < 10**9 else 'inf'}": _num(v)
                                     for (lo, hi), v in bucket_ndcg(result, name).items()}
        if res.diagnostics:
            row["diagnostics"] = {k: _num(v) for k, v in res.diagnostics.items()}
        row["timings"] = {k: round(v, 3) for k, v in res.timings.items()}
        models[name] = row
    names = list(result.models)
    paired = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            c = result.compare(a, b, "ndcg@10")
            paired.append({"a": a, "b": b, "metric": c.metric, "diff": _num(c.diff),
                           "ci95": [_num(c.ci95[0]), _num(c.ci95[1])], "p_value": _num(c.p_value),
                           "wins": c.wins, "losses": c.losses})
    doc: dict[str, Any] = {"dataset": result.dataset, "protocol": result.protocol, "seed": result.seed,
                           "n_users": result.n_users, "models": models, "paired_ndcg@10": paired,
                           "info": result.info}
    if result.retriever is not None:
        doc["retriever"] = result.retriever
    if result.provenance:
        doc["provenance"] = result.provenance
    return doc


def _num(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6)


def bucket_ndcg(result: EvalResult, model: str) -> dict[tuple[int, int], float]:
    """Mean NDCG@10 per history-length bucket (buckets without users are left out)."""
    ndcg = result.models[model].per_user(result.ks)["ndcg@10"] if 10 in result.ks else None
    out: dict[tuple[int, int], float] = {}
    if ndcg is None:
        return out
    for lo, hi in BUCKETS:
        sel = (result.history_lengths >= lo) & (result.history_lengths <= hi)
        if sel.any():
            out[(lo, hi)] = float(ndcg[sel].mean())
    return out


def to_markdown(result: EvalResult, command: str = "") -> str:
    """A Markdown table (metrics ×100, 95% CI of NDCG@10 and MRR) plus run facts."""
    lines = [f"## {result.dataset} · protocol `{result.protocol}` · seed {result.seed} · {result.n_users:,} users", ""]
    if command:
        lines += ["```", command, "```", ""]
    cov = next((k for k in next(iter(result.models.values())).metrics if k.startswith("coverage@")), "coverage@10")
    head = ["model", *[m.upper().replace("NDCG", "N").replace("RECALL", "R") for m in TABLE_METRICS],
            "N@10 95% CI", "MRR 95% CI", cov, "fit s", "score s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, res in result.models.items():
        m = res.metrics
        cells = [name, *[f"{100 * m[k]:.2f}" for k in TABLE_METRICS],
                 _ci(res.ci95.get("ndcg@10")), _ci(res.ci95.get("mrr")), f"{100 * m.get(cov, 0.0):.1f}%",
                 f"{res.timings.get('fit_s', 0.0):.2f}", f"{res.timings.get('score_s', 0.0):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if result.retriever is not None:
        r = result.retriever
        k = r["k"]
        lo, hi = r["ci95"]
        lines += [f"Retriever `{r['name']}` Recall@{k} (ceiling of every reranker): "
                  f"**{100 * r[f'recall@{k}']:.2f}** [{100 * lo:.2f}, {100 * hi:.2f}]", ""]
    diag = {n: r.diagnostics for n, r in result.models.items() if r.diagnostics}
    if diag:
        keys = sorted({k for d in diag.values() for k in d})
        lines += ["| model | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
        lines += ["| " + n + " | " + " | ".join(f"{d.get(k, float('nan')):.4g}" for k in keys) + " |"
                  for n, d in diag.items()]
        lines.append("")
    info = result.info
    lines.append(f"Split {info.get('split')}; {info.get('n_items', 0):,} items; {info.get('train_events', 0):,} "
                 f"training events; ties {info.get('ties')}; wall {info.get('wall_s', 0.0):.1f}s.")
    return "\n".join(lines) + "\n"


def _ci(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"


def plot(result: EvalResult, out_dir: Path) -> list[Path]:
    """Write `metric_vs_k.png` (NDCG@K and Recall@K per model) and `ndcg_by_history.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    ks = list(result.ks)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, res in result.models.items():
        for ax, metric in zip(axes, ("ndcg", "recall"), strict=True):
            ax.plot(ks, [100 * res.metrics[f"{metric}@{k}"] for k in ks], marker="o", label=name)
    for ax, metric in zip(axes, ("NDCG@K ×100", "Recall@K ×100"), strict=True):
        ax.set_xlabel("K")
        ax.set_ylabel(metric)
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{result.dataset} · {result.protocol} · {result.n_users:,} users")
    fig.tight_layout()
    paths.append(out_dir / "metric_vs_k.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    counts_all = [int(((result.history_lengths >= lo) & (result.history_lengths <= hi)).sum()) for lo, hi in BUCKETS]
    buckets = [b for b, n in zip(BUCKETS, counts_all, strict=True) if n]  # empty buckets would be blank bars
    counts = [n for n in counts_all if n]
    labels = [f"{lo}-{hi}" if hi < 10**9 else f"{lo}+" for lo, hi in buckets]
    width = 0.8 / max(len(result.models), 1)
    for j, name in enumerate(result.models):
        per = bucket_ndcg(result, name)
        ax.bar(np.arange(len(buckets)) + j * width, [100 * per.get(b, 0.0) for b in buckets], width, label=name)
    ax.set_xticks(np.arange(len(buckets)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{lab}\n(n={n})" for lab, n in zip(labels, counts, strict=True)], fontsize=8)
    ax.set_xlabel("events in the user's input history")
    ax.set_ylabel("NDCG@10 ×100")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "ndcg_by_history.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def write_report(result: EvalResult, out_dir: str | Path, command: str = "") -> list[Path]:
    """Write results.json, report.md and the plots into `out_dir`; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = to_json(result)
    if command:
        doc["command"] = command
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(to_markdown(result, command), encoding="utf-8")
    return [out / "results.json", out / "report.md", *plot(result, out)]
