"""`driftrec demo`: recommend with explanations for a user whose interests moved, and draw their timeline.

Without `--user`, the user is picked at random (`--seed`, default 0) among those whose history has a
detected interest shift, at the agent's window size; the output says how. The shift is printed with
its dates, and the timeline PNG is written (its path printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agent.limits import MAX_EXPLAINED, check_count, check_explained, check_user_id
from driftrec.cli.options import build_agent, check_out_path, dataset_options, llm_options, load_data, open_index
from driftrec.cli.recommend import first_user, print_history, print_recommendation
from driftrec.cli.timeline import PLOT_SUFFIXES, plot_evolution


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `demo` subcommand."""
    p = sub.add_parser("demo", help="recommend for a user whose interests moved, explain, draw the timeline")
    dataset_options(p)
    p.add_argument("--user", default=None,
                   help="user id (default: a user with a detected interest shift, picked with --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the user pick when --user is absent (default 0)")
    p.add_argument("--timeline-out", type=Path, default=None, metavar="FILE.png",
                   help="where to write the timeline image (default: the driftrec cache directory)")
    p.add_argument("-k", type=int, default=5, help=f"number of items, 1 to {MAX_EXPLAINED} (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    llm_options(p)
    p.set_defaults(explain=True, handler=run)


def _default_png(dataset_name: str, user: str) -> Path:
    from retrieval.data.datasets import cache_dir

    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{dataset_name}_user{user}")
    return cache_dir() / "demo" / f"timeline_{safe}.png"


def shift_lines(evolution: Any) -> list[str]:
    """One line per detected shift: its date, the window it starts, what lost and gained share, strength."""
    lines = []
    for s in evolution.shifts:
        before = evolution.windows[s.window - 1]
        lines.append(f"  {s.at:%Y-%m-%d} (previous active window from {before.start:%Y-%m-%d}): from "
                     f"{', '.join(s.from_categories) or '-'} to {', '.join(s.to_categories) or '-'} "
                     f"(strength {s.strength:.2f}, window {s.window + 1} of {len(evolution.windows)})")
    return lines


def run(args: argparse.Namespace) -> int:
    """Handler of `driftrec demo`."""
    from agent.agent import AgentConfig
    from retrieval.evolution.summary import pick_shift_user

    check_count(args.k, "-k")
    check_explained(args.k, "-k")
    if args.user is not None:
        check_user_id(args.user)
    if args.timeline_out is not None:
        check_out_path(args.timeline_out, "--timeline-out", PLOT_SUFFIXES)
    dataset = load_data(args)
    picked = None
    if args.user is None:
        picked = pick_shift_user(dataset.histories, dataset.catalog, AgentConfig.period, seed=args.seed)
        user = picked.user if picked.user is not None else first_user(dataset)
        print(f"driftrec demo: {picked.statement()}", file=sys.stderr if args.json else sys.stdout)
    else:
        user = args.user
    dataset.history(user)  # an unknown user fails here, before the index is built
    index = open_index(args, dataset)
    agent = build_agent(args, dataset, index)
    rec = agent.recommend(user, args.k, explain=True)
    evolution = agent.evolution(user)
    png = plot_evolution(evolution, args.timeline_out or _default_png(dataset.name, user))
    if args.json:
        out = rec.model_dump(mode="json")
        out["demo"] = {"picked": None if picked is None else picked.statement(), "timeline_png": str(png),
                       "shifts": [{"at": s.at.isoformat(), "from": list(s.from_categories), "to": list(s.to_categories),
                                   "strength": round(s.strength, 4)} for s in evolution.shifts]}
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print_history(dataset, user)
    print_recommendation(rec, repr(index))
    print(f"detected interest shifts ({evolution.period} windows):")
    print("\n".join(shift_lines(evolution)) or "  none")
    print(f"timeline: {png.resolve()}")
    return 0
