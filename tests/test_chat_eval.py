"""The chat evaluation: the request test set, the parse scores, and the simulated user."""

from __future__ import annotations

import functools
import json
import random
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from eval import chat_parse_eval as cpe
from eval import chat_sim
from tests.conftest import ML100K, SHARED

DATA = Path(__file__).resolve().parent / "data" / "chat_requests.jsonl"
needs_data = pytest.mark.skipif(not (ML100K / "u.data").is_file(), reason="../shared/data is absent")


@functools.cache
def catalogue(name: str) -> Any:
    """A data set's catalogue, loaded once for this module (Games takes seconds to load)."""
    from retrieval.data.datasets import load_dataset

    return load_dataset(name).catalog


def assert_gold_names_catalogue_items(rows: list[Any]) -> None:
    """Every gold category is the catalogue's, every reference is a catalogue item, and Games golds (a
    catalogue without categories or years) have neither."""
    ml = catalogue("ml-100k")
    names = {c for it in ml for c in it.categories}
    for r in rows:
        if r.dataset == "ml-100k":
            assert set(r.gold.include_categories + r.gold.exclude_categories + r.gold.lift_categories) <= names
            assert all(ref.item_id in ml for ref in r.gold.references), r.message
    games = [r for r in rows if r.dataset == "games"]
    assert not any(r.gold.include_categories or r.gold.exclude_categories or r.gold.years for r in games)
    if (SHARED / "amazon-games-llmrank" / "Games-6k.item").is_file():
        assert all(ref.item_id in catalogue("games") for r in games for ref in r.gold.references)


# --------------------------------------------------------------------------- the test set
def test_request_set_loads_and_every_gold_validates() -> None:
    rows = cpe.load_rows(DATA)
    assert len(rows) >= 300
    assert {r.dataset for r in rows} == {"ml-100k", "games"}
    assert len({r.template for r in rows}) >= 40
    assert len({r.message.lower() for r in rows}) == len(rows)
    intents = {r.gold.intent for r in rows}
    assert intents == {"recommend", "more_like", "different", "explain", "interests", "refine", "unknown"}
    games = [r for r in rows if r.dataset == "games"]
    assert not any(r.gold.include_categories or r.gold.exclude_categories or r.gold.years for r in games)
    assert all(ref.item_id for r in rows for ref in r.gold.references)


@needs_data
def test_every_reference_is_in_its_catalogue_and_categories_are_the_catalogues() -> None:
    assert_gold_names_catalogue_items(cpe.load_rows(DATA))


@needs_data
@pytest.mark.slow
def test_the_committed_set_is_what_the_generator_writes(tmp_path: Path) -> None:
    if not (SHARED / "amazon-games-llmrank" / "Games-6k.item").is_file():
        pytest.skip("Games files absent")
    out = tmp_path / "rows.jsonl"
    script = DATA.parent / "make_chat_requests.py"
    subprocess.run([sys.executable, str(script), "--out", str(out)], check=True, capture_output=True)
    assert out.read_text(encoding="utf-8") == DATA.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- scoring
def test_precision_recall_on_a_hand_example() -> None:
    gold = [{("intent", "recommend"), ("include", "Comedy"), ("year_start", "1990"), ("year_end", "1999")},
            {("intent", "more_like"), ("reference", "50")}]
    pred = [{("intent", "recommend"), ("include", "Comedy"), ("include", "Romance"), ("year_start", "1990")},
            {("intent", "explain"), ("reference", "50")}]
    total, per_field, exact = cpe.score(gold, pred)
    # tp: intent, Comedy, year_start, reference = 4; fp: Romance, explain = 2; fn: year_end, more_like = 2
    assert (total.tp, total.fp, total.fn) == (4, 2, 2)
    assert total.precision == pytest.approx(4 / 6) and total.recall == pytest.approx(4 / 6)
    assert total.f1 == pytest.approx(4 / 6)
    assert per_field["intent"].f1 == pytest.approx(0.5)
    assert (per_field["include"].precision, per_field["include"].recall) == (0.5, 1.0)
    assert per_field["year_end"].recall == 0.0 and per_field["reference"].f1 == 1.0
    assert exact == 0.0
    assert cpe.score(gold, gold)[2] == 1.0


def test_f1_interval_brackets_the_estimate_and_collapses_when_perfect() -> None:
    rng = random.Random(0)
    gold = [{("intent", "recommend"), ("k", str(i % 7))} for i in range(200)]
    pred = [g if rng.random() < 0.7 else {("intent", "refine")} for g in gold]
    f1 = cpe.score(gold, pred)[0].f1
    low, high = cpe.f1_ci(gold, pred, n_boot=300)
    assert low < f1 < high and high - low < 0.2
    assert cpe.f1_ci(gold, gold, n_boot=50) == (1.0, 1.0)


def test_scores_from_request_facts() -> None:
    from agent.chat.request import ChatRequest, TitleRef, YearRange

    gold = ChatRequest(intent="more_like", references=(TitleRef(text="heat", item_id="6"),),
                       years=YearRange(start=1990, end=1999))
    pred = ChatRequest(intent="more_like", references=(TitleRef(text="heat"),), years=YearRange(start=1990))
    rows = [cpe.Row("ml-100k", "t", "more like heat from the 90s", gold)]
    summary = cpe.summarize(rows, [cpe.Parsed(frozenset(pred.facts()), 0.001)], n_boot=20)
    # gold: intent, reference 6, 1990, 1999; pred: intent, ?heat, 1990 → tp 2, fp 1, fn 2
    assert (summary["tp"], summary["fp"], summary["fn"]) == (2, 1, 2)
    assert summary["exact_match"] == 0.0


# --------------------------------------------------------------------------- the simulated user
def _mentions(message: str, item: Any) -> bool:
    """Written independently of `chat_sim.leaks`: the id as a token, the title (no year, article either way)."""
    low = " ".join(re.sub(r"[^\w']+", " ", message.lower()).split())
    if re.search(rf"(?<!\w){re.escape(item.id.lower())}(?!\w)", low):
        return True
    bare = re.sub(r"\s*\(\d{4}\)$", "", item.title).strip()
    forms = {bare, re.sub(r"\s*\([^)]*\)$", "", bare).strip()}
    m = re.match(r"^(.+), (The|A|An)$", bare)
    if m:
        forms |= {m[1], f"{m[2]} {m[1]}"}
    for form in forms:
        f = " ".join(re.sub(r"[^\w']+", " ", form.lower()).split())
        if f and re.search(rf"(?<!\w){re.escape(f)}(?!\w)", low):
            return True
    return False


class StubAgent:
    """Shows five items per turn from a fixed order; shows the target at `hit_at` (never when None)."""

    def __init__(self, catalog: Any, targets: dict[str, str], hit_at: int | None = None) -> None:
        self.order = [i for i in catalog.ids]
        self.targets, self.hit_at = targets, hit_at
        self.messages: list[tuple[str, str]] = []

    def chat(self, user: str, message: str, session: Any) -> Any:
        self.messages.append((user, message))
        session.turn += 1
        items = [i for i in self.order if i != self.targets[user]][5 * session.turn: 5 * session.turn + 5]
        if session.turn == self.hit_at:
            items[2] = self.targets[user]
        return SimpleNamespace(text="here you go", recommendations=SimpleNamespace(items=tuple(items)),
                               request=SimpleNamespace(intent="recommend", source="rules"))


@pytest.fixture(scope="module")
def world() -> Any:
    if not (ML100K / "u.data").is_file():
        pytest.skip("../shared/data is absent")
    return chat_sim.build_world("hashing")


def test_simulated_users_never_write_the_target(world: Any) -> None:
    full, train, _, _ = world
    users = chat_sim.sample_users(full, 150, seed=1)
    kinds = set()
    for user in users:
        target = full.catalog[full.history(user)[-1].item]
        sim = chat_sim.SimulatedUser(target, train.history(user), full.catalog, random.Random(user))
        for turn in range(1, 7):
            kind, message = sim.message(turn)
            kinds.add(kind)
            assert not _mentions(message, target), (user, target.title, message)
    assert kinds == {"plain", "category", "decade", "similar", "reject"}


def test_the_simulator_leaks_nothing_to_an_agent_and_counts_turns(world: Any) -> None:
    full, train, _, generator = world
    users = chat_sim.sample_users(full, 4, seed=0)
    targets = {u: full.history(u)[-1].item for u in users}
    agent = StubAgent(full.catalog, targets, hit_at=3)
    convs = chat_sim.simulate(agent, full, train, generator, users, seed=0,
                              new_session=lambda u: SimpleNamespace(turn=0), transcript_user=users[0])
    assert len(agent.messages) == 3 * len(users)  # stops once the target is shown
    assert all(not _mentions(m, full.catalog[targets[u]]) for u, m in agent.messages)
    assert all(c.hit_turn == 3 for c in convs)
    assert convs[0].turns[0].reply == "here you go" and convs[1].turns[0].reply == ""
    summary = chat_sim.summarize(convs, n_boot=50)
    assert summary["success@5_turn1"]["mean"] == 0.0 and summary["success@5_turn3"]["mean"] == 1.0
    assert summary["turns"] == 12 and summary["llm_parse_share"] == 0.0
    never = chat_sim.simulate(StubAgent(full.catalog, targets), full, train, generator, users[:2], seed=0,
                              new_session=lambda u: SimpleNamespace(turn=0))
    assert all(c.hit_turn is None and len(c.turns) == 5 for c in never)
    for user in users:  # the agent's data holds no target
        assert targets[user] not in {e.item for e in train.history(user)}


def test_three_user_smoke_run_with_the_real_agent(tmp_path: Path) -> None:
    pytest.importorskip("agent.chat.session")
    if not (ML100K / "u.data").is_file():
        pytest.skip("../shared/data is absent")
    out = tmp_path / "sim.json"
    assert chat_sim.main(["--users", "3", "--embedder", "hashing", "--llm", "none", "--n-boot", "50",
                          "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["summary"]["users"] == 3 and len(result["conversations"]) == 3
    assert result["transcript"] is not None and result["transcript"]["turns"][0]["reply"]
    assert result["summary"]["turn_errors"] == 0
    for conv in result["conversations"]:
        assert 1 <= len(conv["turns"]) <= 5


@needs_data
def test_heldout_set_loads_validates_and_names_catalogue_items() -> None:
    rows = cpe.load_rows(DATA.parent / "chat_requests_heldout.jsonl")  # every gold validates as ChatRequest
    assert len(rows) >= 200
    assert sum(r.dataset == "ml-100k" for r in rows) >= 150 and sum(r.dataset == "games" for r in rows) >= 50
    assert len({r.template for r in rows}) >= 40
    dev = cpe.load_rows(DATA)
    assert not {r.template for r in rows} & {r.template for r in dev}
    assert not {r.message.lower() for r in rows} & {r.message.lower() for r in dev}
    assert_gold_names_catalogue_items(rows)


@needs_data
def test_second_heldout_set_validates_and_shares_nothing_with_the_other_sets() -> None:
    rows = cpe.load_rows(DATA.parent / "chat_requests_heldout2.jsonl")  # every gold validates as ChatRequest
    assert len(rows) >= 250 and len({r.message.lower() for r in rows}) == len(rows)
    assert sum(r.dataset == "ml-100k" for r in rows) >= 180 and sum(r.dataset == "games" for r in rows) >= 70
    assert len({r.template for r in rows}) >= 60
    assert {r.gold.intent for r in rows} == {"recommend", "more_like", "different", "explain", "interests", "refine",
                                             "unknown"}

    def shape(template: str) -> str:  # slot names dropped: "{title:typo}" → "{}"
        return " ".join(re.sub(r"\{\w+(?::\w+)?\}", "{}", template).lower().split())

    for other in (DATA, DATA.parent / "chat_requests_heldout.jsonl"):
        earlier = cpe.load_rows(other)
        assert not {shape(r.template) for r in rows} & {shape(r.template) for r in earlier}
        assert not {r.message.lower() for r in rows} & {r.message.lower() for r in earlier}
    assert_gold_names_catalogue_items(rows)
    assert all(ref.item_id and ref.text.lower() in r.message.lower() for r in rows for ref in r.gold.references)
