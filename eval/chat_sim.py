"""A simulated user for the chat: does a conversation find the held-out item sooner than one list does?

    python -m eval.chat_sim --users 300 --seed 0 --embedder hashing --out chat_sim.json
    python -m eval.chat_sim --users 50 --llm embedded --llm-model smollm2-135m --out chat_sim_llm.json

iEvaLM-style and offline. For each sampled ml-100k user with at least 5 events, the held-out target is the
user's last event; the agent is built on the dataset with every evaluated user's last event removed
(`eval.splits.leave_one_out`), so it never sees a target. The simulated user knows its target and,
turn by turn, reveals catalogue facts about it in plain words: turn 1 asks for anything or names one
of the target's categories; later turns give a category, the decade, the title of a history item most like
the target (most shared categories, then nearest in year) and, once those are spent, reject the list
("not those"). It never writes the target's id or title (`leaks`). The conversation stops when the
target is shown. Success@T = the target appeared in any list shown up to turn T. The baseline is the
same generator's top 5 for the same history (Recall@5), on the same users.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from eval.metrics import bootstrap_ci, paired_comparison
from eval.resume import resume_rows
from eval.splits import leave_one_out
from retrieval.data.model import Catalog, Dataset, Event, Item
from retrieval.errors import DataError, DriftrecError

TURNS = (1, 3, 5)
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_ARTICLE = re.compile(r"^(?P<body>.+), (?P<article>The|A|An|La|Le|Les|L'|Il|Das|Der|Die|El)$")
_ALT = re.compile(r"\s*\([^)]*\)\s*$")  # "Mrs. Brown (Her Majesty, Mrs. Brown)": an alternative name
_WORD = re.compile(r"[^\w']+")
# Category → (singular phrase, plural phrase); other categories read "a <name> movie" / "<name> movies".
PHRASES: dict[str, tuple[str, str]] = {
    "Action": ("an action movie", "action movies"), "Adventure": ("an adventure movie", "adventure movies"),
    "Animation": ("an animated movie", "animated movies"), "Children's": ("a kids movie", "kids movies"),
    "Comedy": ("a comedy", "comedies"), "Crime": ("a crime movie", "crime movies"),
    "Documentary": ("a documentary", "documentaries"), "Drama": ("a drama", "dramas"),
    "Fantasy": ("a fantasy movie", "fantasy movies"), "Film-Noir": ("a film noir", "film noirs"),
    "Horror": ("a horror movie", "horror movies"), "Musical": ("a musical", "musicals"),
    "Mystery": ("a mystery", "mysteries"), "Romance": ("a romance", "romances"),
    "Sci-Fi": ("a sci-fi movie", "sci-fi movies"), "Thriller": ("a thriller", "thrillers"),
    "War": ("a war movie", "war movies"), "Western": ("a western", "westerns"),
}
PLAIN = ("recommend me something", "what should I watch tonight?", "any suggestions for me?")
FIRST_CATEGORY = ("I'm in the mood for {sg}", "recommend me some {pl}", "can you suggest {sg}?")
LATER_CATEGORY = ("I'd like {sg}", "{pl} please", "how about {pl}?")
DECADE = ("from the {d} please", "something from the {d}", "I'd like one from the {d}")
SIMILAR = ("something like {t}", "I really liked {t}, something like that", "more like {t} please")
REJECT = ("not those, something else please", "none of these, show me others", "not those")


def year_of(item: Item) -> int | None:
    """Release year from a title's trailing "(1995)"."""
    m = _YEAR.search(item.title)
    return int(m[1]) if m else None


def plain_title(item: Item) -> str:
    """The title as people write it: no year or alternative name, article in front ("Godfather, The (1972)" →
    "The Godfather")."""
    bare = _ALT.sub("", _YEAR.sub("", item.title).strip()).strip() or _YEAR.sub("", item.title).strip()
    m = _ARTICLE.match(bare)
    return f"{m['article'].rstrip()} {m['body']}".replace("L' ", "L'") if m else bare


def _norm(text: str) -> str:
    return " " + " ".join(_WORD.sub(" ", text.lower()).split()) + " "


def leaks(message: str, target: Item) -> bool:
    """True when `message` contains the target's id or its title (with or without year or article) as words."""
    msg = _norm(message)
    bare = _YEAR.sub("", target.title).strip()
    forms = {target.title, bare, _ALT.sub("", bare).strip(), plain_title(target)}
    return _norm(target.id) in msg or any(_norm(f).strip() and _norm(f) in msg for f in forms)


def phrases(category: str) -> tuple[str, str]:
    """(singular, plural) ways to ask for a category."""
    return PHRASES.get(category, (f"a {category.lower()} movie", f"{category.lower()} movies"))


def decade_words(year: int) -> str:
    decade = year // 10 * 10
    return f"{decade % 100:02d}s" if decade >= 1950 else f"{decade}s"


def most_similar(target: Item, history: Sequence[Event], catalog: Catalog) -> Item | None:
    """The history item sharing most categories with the target, then nearest in year, then latest.

    Items whose title would reveal the target (same title, one containing the other) are skipped.
    """
    want, year = set(target.categories), year_of(target)
    best: tuple[int, float, int] | None = None
    pick = None
    for pos, ev in enumerate(history):
        item = catalog[ev.item]
        shared = len(want & set(item.categories))
        if shared == 0 or item.id == target.id or leaks(plain_title(item), target) or item.title == "unknown":
            continue
        y = year_of(item)
        gap = abs(y - year) if y is not None and year is not None else float("inf")
        key = (shared, -gap, pos)
        if best is None or key > best:
            best, pick = key, item
    return pick


@dataclass
class SimulatedUser:
    """Writes the messages of one simulated user from catalogue facts about its target.

    Args:
        target: the held-out item (its id and title are never written).
        history: the events the agent sees (the target removed).
        catalog: the catalogue.
        rng: seeded generator for the choices and wordings.
    """

    target: Item
    history: Sequence[Event]
    catalog: Catalog
    rng: random.Random
    plan: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        cats = [c for c in self.target.categories if c.lower() != "unknown"]
        self.rng.shuffle(cats)
        first: list[tuple[str, str]] = []
        if cats and self.rng.random() < 0.5:
            first.append(("category", cats.pop(0)))
        else:
            first.append(("plain", ""))
        later: list[tuple[str, str]] = [("category", cats.pop(0))] if cats else []
        year = year_of(self.target)
        if year is not None:
            later.append(("decade", decade_words(year)))
        similar = most_similar(self.target, self.history, self.catalog)
        if similar is not None:
            later.append(("similar", plain_title(similar)))
        self.plan = first + later

    def message(self, turn: int) -> tuple[str, str]:
        """(fact kind, message) for a 1-based turn; "reject" once the facts are spent."""
        kind, value = self.plan[turn - 1] if turn <= len(self.plan) else ("reject", "")
        if kind == "plain":
            options = list(PLAIN)
        elif kind == "category":
            sg, pl = phrases(value)
            options = [t.format(sg=sg, pl=pl) for t in (FIRST_CATEGORY if turn == 1 else LATER_CATEGORY)]
        elif kind == "decade":
            options = [t.format(d=value) for t in DECADE]
        elif kind == "similar":
            options = [t.format(t=value) for t in SIMILAR]
        else:
            options = list(REJECT)
        self.rng.shuffle(options)
        for text in options:
            if not leaks(text, self.target):
                return kind, text
        return "reject", next(t for t in REJECT if not leaks(t, self.target))


@dataclass
class TurnRecord:
    """One exchange: the simulated message and what the agent showed."""

    turn: int
    fact: str
    message: str
    items: list[str]
    intent: str | None
    llm_used: bool
    latency_s: float
    reply: str = ""
    request: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Conversation:
    """A simulated conversation with one user."""

    user: str
    target: str
    hit_turn: int | None
    baseline_hit: bool
    turns: list[TurnRecord]


def converse(agent: Any, user: str, sim: SimulatedUser, max_turns: int, new_session: Callable[[str], Any],
             full: bool = False) -> list[TurnRecord]:
    """Run one conversation until the target is shown or `max_turns` pass.

    Args:
        agent: anything with `chat(user_id, message, session) -> ChatReply`.
        user: the user id.
        sim: the simulated user.
        max_turns: turns at most.
        new_session: user id → a fresh chat session.
        full: keep the reply texts and parsed requests (for a transcript).
    """
    session = new_session(user)
    turns = []
    for turn in range(1, max_turns + 1):
        fact, message = sim.message(turn)
        start = time.perf_counter()
        try:
            reply = agent.chat(user, message, session)
            error = None
        except DriftrecError as exc:  # a turn the agent refuses (recorded, the conversation goes on)
            reply, error = None, f"{type(exc).__name__}: {exc}".splitlines()[0]
        elapsed = time.perf_counter() - start
        rec = getattr(reply, "recommendations", None)
        request = getattr(reply, "request", None)
        items = list(rec.items) if rec is not None else []
        turns.append(TurnRecord(
            turn, fact, message, items, getattr(request, "intent", None),
            _llm_used(reply), round(elapsed, 4),
            reply=getattr(reply, "text", "") if full else "",
            request=getattr(request, "model_dump", lambda **_: None)(mode="json") if full else None,
            error=error))
        if sim.target.id in items:
            break
    return turns


def _llm_used(reply: Any) -> bool:
    """Whether the LLM's parse contributed: the reply's diagnostics say so, else the request's source."""
    flag = getattr(getattr(reply, "diagnostics", None), "llm_parse_used", None)
    if isinstance(flag, bool):
        return flag
    return getattr(getattr(reply, "request", None), "source", "rules") != "rules"


def hit_turn(turns: Sequence[TurnRecord], target: str) -> int | None:
    """The first turn whose list shows the target."""
    return next((t.turn for t in turns if target in t.items), None)


def build_world(embedder: str, retriever: str = "hybrid") -> tuple[Dataset, Dataset, Any, Any]:
    """ml-100k, the dataset without each evaluated user's last event, the item index and the generator.

    Returns:
        (full dataset, training dataset, index, generator over the training histories).
    """
    from retrieval.candidates.registry import make_generator
    from retrieval.data.datasets import load_dataset
    from retrieval.vectors.build import build_index, default_cache
    from retrieval.vectors.embed import make_embedder

    full = load_dataset("ml-100k")
    split = leave_one_out(full, min_events=3)
    histories = dict(split.train)
    for user, inputs in zip(split.test.users, split.test.inputs, strict=True):
        histories[user] = inputs
    train = full.with_histories(histories, name=f"{full.name} without last events")
    index = build_index(full.catalog, make_embedder(embedder), cache=default_cache(), progress=False)
    return full, train, index, make_generator(retriever, index, train.histories, full.catalog.ids)


def sample_users(full: Dataset, n: int, seed: int, min_events: int = 5) -> list[str]:
    """A seeded sample of users with at least `min_events` events (dataset order, then sampled)."""
    eligible = [u for u, h in full.histories.items() if len(h) >= min_events]
    return random.Random(seed).sample(eligible, min(n, len(eligible)))


def simulate(agent: Any, full: Dataset, train: Dataset, generator: Any, users: Sequence[str], seed: int,
             max_turns: int = 5, new_session: Callable[[str], Any] | None = None, transcript_user: str | None = None,
             on_done: Callable[[Conversation], None] | None = None) -> list[Conversation]:
    """Simulated conversations and the one-list baseline for each user.

    Raises:
        DataError: a target is in the history the agent sees (the split leaked).
    """
    if new_session is None:
        from agent.chat.session import ChatSession

        def new_session(user: str) -> Any:
            return ChatSession(user=user)

    out = []
    for user in tqdm(users, desc="users", unit="user"):
        target = full.catalog[full.history(user)[-1].item]
        history = train.history(user)
        if any(ev.item == target.id for ev in history):
            raise DataError(f"user {user!r}: the held-out item is in the agent's history")
        sim = SimulatedUser(target, history, full.catalog, random.Random(f"{seed}:{user}"))
        turns = converse(agent, user, sim, max_turns, new_session, full=user == transcript_user)
        baseline = [c.item_id for c in generator.generate(history, 5)]
        conv = Conversation(user, target.id, hit_turn(turns, target.id), target.id in baseline, turns)
        out.append(conv)
        if on_done is not None:
            on_done(conv)
    return out


def summarize(convs: Sequence[Conversation], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Success@T with CIs, the baseline's Recall@5, latency per turn and the LLM share of turns."""
    out: dict[str, Any] = {"users": len(convs)}
    base = np.array([c.baseline_hit for c in convs], dtype=np.float64)
    for t in TURNS:
        hits = np.array([c.hit_turn is not None and c.hit_turn <= t for c in convs], dtype=np.float64)
        out[f"success@5_turn{t}"] = {"mean": float(hits.mean()) if len(hits) else float("nan"),
                                     "ci95": bootstrap_ci(hits, n_boot, seed)}
        if t == max(TURNS) and len(hits):
            cmp = paired_comparison(hits, base, f"success@5 in {t} turns − recall@5", n_boot, seed)
            out["vs_baseline"] = {"diff": cmp.diff, "ci95": cmp.ci95, "p_value": cmp.p_value}
    out["baseline_recall@5"] = {"mean": float(base.mean()) if len(base) else float("nan"),
                                "ci95": bootstrap_ci(base, n_boot, seed)}
    lat = np.array([t.latency_s for c in convs for t in c.turns])
    out["turns"] = int(len(lat))
    out["latency_p50_s"] = float(np.percentile(lat, 50)) if len(lat) else float("nan")
    out["latency_p95_s"] = float(np.percentile(lat, 95)) if len(lat) else float("nan")
    out["llm_parse_share"] = float(np.mean([t.llm_used for c in convs for t in c.turns])) if len(lat) else 0.0
    out["turn_errors"] = sum(t.error is not None for c in convs for t in c.turns)
    return out


def markdown(summary: dict[str, Any], label: str) -> str:
    """The summary as a Markdown table."""
    def cell(d: dict[str, Any]) -> str:
        return f"{100 * d['mean']:.1f}% [{100 * d['ci95'][0]:.1f}, {100 * d['ci95'][1]:.1f}]"

    lines = [f"Simulated conversations on {summary['users']} ml-100k users, {label}", "",
             "| | value [95% CI] |", "|---|---|"]
    for t in TURNS:
        lines.append(f"| Success@5 within {t} turn{'s' if t > 1 else ''} | {cell(summary[f'success@5_turn{t}'])} |")
    lines.append(f"| retriever Recall@5 (one list, no chat) | {cell(summary['baseline_recall@5'])} |")
    if "vs_baseline" in summary:
        v = summary["vs_baseline"]
        lines.append(f"| Success@5 in {max(TURNS)} turns − Recall@5 | {100 * v['diff']:+.1f} pts "
                     f"[{100 * v['ci95'][0]:+.1f}, {100 * v['ci95'][1]:+.1f}], p={v['p_value']:.3f} |")
    lines += [f"| latency per turn p50 / p95 | {summary['latency_p50_s']:.3f} s / {summary['latency_p95_s']:.3f} s |",
              f"| turns parsed with the LLM | {100 * summary['llm_parse_share']:.1f}% of {summary['turns']} |",
              f"| turns refused by the agent | {summary['turn_errors']} |"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.chat_sim", description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=300, help="users sampled (seeded; ≥ 5 events each)")
    p.add_argument("--turns", type=int, default=max(TURNS), help="turns per conversation at most")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--embedder", default="sentence-transformers", choices=("sentence-transformers", "hashing"))
    p.add_argument("--retriever", default="hybrid", help="candidate generator name (retrieval GENERATORS)")
    p.add_argument("--llm", default="none", help="LLM backend for parsing messages ('none' = rules only)")
    p.add_argument("--llm-model", default=None)
    p.add_argument("--llm-url", default=None)
    p.add_argument("--llm-timeout", type=float, default=60.0)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--out", type=Path, default=Path("chat_sim.json"), help="summary, conversations, one transcript")
    p.add_argument("--resume", action="store_true", help="keep the users already in <out>.rows.jsonl")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from agent.agent import AgentConfig, RecommenderAgent
    from agent.explain import Explainer

    full, train, index, generator = build_world(args.embedder, args.retriever)
    client = None
    if args.llm != "none":
        from agent.llm import LLMSettings, make_client

        client = make_client(LLMSettings(backend=args.llm, model=args.llm_model, base_url=args.llm_url,
                                         timeout_s=args.llm_timeout))
    # Explanations are templates: the LLM, when given, only parses messages (the figure under test).
    agent = RecommenderAgent(train, generator, index, client=client, explainer=Explainer(full.catalog),
                             config=AgentConfig(chat_k=5))
    users = sample_users(full, args.users, args.seed)
    rows_path = args.out.with_suffix(".rows.jsonl")
    done: dict[str, Conversation] = {}
    for d in resume_rows(rows_path, args.resume):
        d["turns"] = [TurnRecord(**t) for t in d["turns"]]
        done[d["user"]] = Conversation(**d)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with rows_path.open("a", encoding="utf-8") as fh:
        def save(conv: Conversation) -> None:
            fh.write(json.dumps(asdict(conv), ensure_ascii=False) + "\n")
            fh.flush()

        todo = [u for u in users if u not in done]
        for conv in simulate(agent, full, train, generator, todo, args.seed, args.turns,
                             transcript_user=users[0] if users[0] in todo else None, on_done=save):
            done[conv.user] = conv
    convs = [done[u] for u in users]
    summary = summarize(convs, args.n_boot, args.seed)
    model = (args.llm_model or getattr(client, "model_id", args.llm)) if client is not None else "none"
    label = f"embedder {args.embedder}, retriever {args.retriever}, LLM {model}"
    transcript = next((asdict(c) for c in convs if any(t.reply for t in c.turns)), None)
    args.out.write_text(json.dumps({"settings": {**vars(args), "out": str(args.out), "llm_model": model},
                                    "summary": summary, "transcript": transcript,
                                    "conversations": [asdict(c) for c in convs]}, indent=1, default=str),
                        encoding="utf-8")
    print(markdown(summary, label))
    print(f"\nwall time this run: {time.perf_counter() - start:.0f}s; results in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
