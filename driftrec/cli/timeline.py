"""`driftrec timeline`: a user's category shares over time (stacked area) with detected shifts marked."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agent.limits import check_count, check_user_id
from driftrec.cli.options import check_out_path, dataset_options, load_data, open_index
from retrieval.errors import ConfigError
from retrieval.evolution.summary import Evolution, summarize_evolution

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `timeline` subcommand."""
    p = subparsers.add_parser("timeline", help="plot a user's interest evolution (stacked area, shifts marked)")
    dataset_options(p)
    p.add_argument("--user", required=True, help="user id as in the data")
    p.add_argument("--out", type=Path, default=None,
                   help="image file to write: .png, .svg or .pdf (missing parent directories are created)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.add_argument("--period", default="week", help="day, week, month or events:N (default week)")
    p.add_argument("--top", type=int, default=8, help="categories drawn separately, ≥ 1; the rest is 'other'")
    p.add_argument("--no-vectors", action="store_true",
                   help="skip embedding (no window vectors: faster, drift from categories only)")
    p.set_defaults(handler=run)


def evolution_json(evo: Evolution, titles: dict[str, str] | None = None) -> dict[str, object]:
    """JSON-ready numbers of an Evolution (vectors left out; item titles added when given)."""
    titles = titles or {}

    def items(ids: tuple[str, ...]) -> list[dict[str, str]]:
        return [{"id": i, "title": titles.get(i, "")} for i in ids]

    return {
        "user": evo.user, "period": evo.period, "forecaster": evo.forecaster,
        "windows": [{"index": w.index, "start": w.start.isoformat(), "end": w.end.isoformat(),
                     "n_items": len(w.items), "categories": {k: round(v, 4) for k, v in w.categories.items()},
                     "examples": items(w.items[:3])} for w in evo.windows],
        "drift": [round(d, 4) for d in evo.drift],
        "shifts": [{"at": s.at.isoformat(), "window": s.window, "from": list(s.from_categories),
                    "to": list(s.to_categories), "strength": round(s.strength, 4),
                    "supporting_items": items(s.supporting_items)} for s in evo.shifts],
        "long_term": list(evo.long_term), "short_term": list(evo.short_term),
        "forecast": {k: round(v, 4) for k, v in evo.forecast.items()},
    }


def plot_evolution(evo: Evolution, out: Path, top: int = 8) -> Path:
    """Stacked-area category shares per window, shifts as vertical lines, drift on a second panel.

    Raises:
        ConfigError: the user has no events, or `out` cannot be written (the OS error is named).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if not evo.windows:
        raise ConfigError(f"user {evo.user!r} has no events to plot")
    totals: dict[str, float] = {}
    for w in evo.windows:
        for k, v in w.categories.items():
            totals[k] = totals.get(k, 0.0) + v * len(w.items)
    cats = sorted(totals, key=lambda k: -totals[k])[:top]
    x = np.arange(len(evo.windows))
    ys = [np.array([w.categories.get(c, 0.0) for w in evo.windows]) for c in cats]
    other = 1.0 - np.sum(ys, axis=0) if ys else np.ones(len(x))
    has_other = bool(np.any(other > 1e-9))
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    cmap = plt.get_cmap("tab10")
    ax.stackplot(x, *ys, *([np.clip(other, 0, 1)] if has_other else []),
                 labels=cats + (["other"] if has_other else []),
                 colors=[cmap(i % 10) for i in range(len(cats))] + (["#cccccc"] if has_other else []), alpha=0.9)
    for s in evo.shifts:
        ax.axvline(s.window - 0.5, color="black", lw=2, ls="--")
        # Inside the axes, rotated: labels above the plot would collide with the title.
        ax.text(s.window - 0.6, 0.98, f"shift {s.strength:.2f}: +{', '.join(s.to_categories[:2])}",
                fontsize=8, rotation=90, va="top", ha="right",
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1})
    ax.set_ylim(0, 1)
    ax.set_ylabel("category share")
    ax.set_title(f"user {evo.user}: interest evolution ({evo.period} windows, {sum(len(w.items) for w in evo.windows)} "
                 f"events)\nlong-term: {', '.join(evo.long_term) or '-'}   short-term: "
                 f"{', '.join(evo.short_term) or '-'}", fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    ax2.bar(x, [len(w.items) for w in evo.windows], color="#999999", label="events")
    ax2.set_ylabel("events")
    if evo.drift:
        ax3 = ax2.twinx()
        ax3.plot(x[1:], evo.drift, color="tab:red", marker="o", ms=3, label="drift (JS)")
        ax3.set_ylim(0, 1)
        ax3.set_ylabel("drift (JS)", color="tab:red")
    step = max(1, len(x) // 12)
    ax2.set_xticks(x[::step], [evo.windows[i].start.strftime("%Y-%m-%d") for i in x[::step]], rotation=30,
                   fontsize=8)
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
    return out


def run(args: argparse.Namespace) -> int:
    """Handler: build the user's evolution, write the PNG and/or print JSON."""
    if args.out is None and not args.json:
        raise ConfigError("give --out FILE.png, --json, or both")
    check_user_id(args.user)
    check_count(args.top, "--top", None)
    if args.out is not None:
        check_out_path(args.out, "--out", PLOT_SUFFIXES)
    dataset = load_data(args)
    events = dataset.history(args.user)
    index = None if args.no_vectors else open_index(args, dataset)
    evo = summarize_evolution(args.user, events, dataset.catalog, index, args.period)
    if args.out is not None:
        plot_evolution(evo, args.out, args.top)
    if args.json:
        titles = {ev.item: dataset.catalog[ev.item].title for ev in events}
        print(json.dumps(evolution_json(evo, titles), indent=2, ensure_ascii=False))
    elif args.out is not None:
        print(f"wrote {args.out} ({len(evo.windows)} windows, {len(evo.shifts)} shifts)")
    return 0
