"""The chat request parser, title resolution, standing constraints, sessions saved to JSON, and chat on ml-100k."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent.chat.parse import parse_message
from agent.chat.request import ChatRequest, Constraints, TitleRef, YearRange, merge
from agent.chat.session import ChatSession
from agent.chat.vocabulary import CatalogVocabulary
from retrieval.data.datasets import load_dataset
from retrieval.errors import ConfigError


@pytest.fixture(scope="module")
def ml(ml100k_path: Path):  # type: ignore[no-untyped-def]
    ds = load_dataset(ml100k_path)
    return ds, CatalogVocabulary(ds.catalog, ds.item_popularity())


def title(ds, ref: TitleRef) -> str | None:  # type: ignore[no-untyped-def]
    return ds.catalog[ref.item_id].title if ref.item_id else None


@pytest.mark.parametrize(("message", "facts"), [
    ("I loved Pulp Fiction, any similar thrillers from the 90s?",
     {("intent", "more_like"), ("include", "Thriller"), ("year_start", "1990"), ("year_end", "1999"),
      ("reference", "56")}),
    ("no more comedies please", {("intent", "refine"), ("exclude", "Comedy")}),
    ("comedies are fine again", {("intent", "refine"), ("lift", "Comedy")}),
    ("older ones", {("intent", "refine"), ("relative_years", "older")}),
    ("why the second one?", {("intent", "explain"), ("position", "2")}),
    ("why did you suggest Clueless?", {("intent", "explain"), ("reference", "367")}),
    ("what have I been into lately?", {("intent", "interests")}),
    ("something different from what I watched lately", {("intent", "different")}),
    ("give me 3 scary movies from the 80s", {("intent", "recommend"), ("include", "Horror"), ("k", "3"),
                                             ("year_start", "1980"), ("year_end", "1989")}),
    ("anything but dramas", {("intent", "refine"), ("exclude", "Drama")}),
    ("sci-fi before 1980 please", {("intent", "recommend"), ("include", "Sci-Fi"), ("year_end", "1979")}),
    ("romcoms after 1995", {("intent", "recommend"), ("include", "Comedy"), ("include", "Romance"),
                            ("year_start", "1996")}),
    ("something dark and funny", {("intent", "recommend"), ("preference", "yes")}),
    ("include ones I've seen, something with a strong female lead",
     {("intent", "recommend"), ("include_seen", "yes"), ("preference", "yes")}),
    ("more like pulp fictoin", {("intent", "more_like"), ("reference", "56")}),
    ("Anything similar to 'Heat'?", {("intent", "more_like"), ("reference", "273")}),
    ("hello", {("intent", "unknown")}),
    ("pls reccomend a moive", {("intent", "recommend")}),
    ("keep horror out of it", {("intent", "refine"), ("exclude", "Horror")}),
    ("i changed my mind, dramas are ok now", {("intent", "refine"), ("lift", "Drama")}),
    ("got any westerns from the late '50s?", {("intent", "recommend"), ("include", "Western"),
                                              ("year_start", "1956"), ("year_end", "1959")}),
    ("i want a movie not older than 1988", {("intent", "recommend"), ("year_start", "1988")}),
    ("a mix of The Lion King and aliens would be perfect", {("intent", "more_like"), ("reference", "71"),
                                                            ("reference", "176")}),
    ("Heat was amazing, find me more in that spirit", {("intent", "more_like"), ("reference", "273")}),
    ("how come the lawnmwer man showed up?", {("intent", "explain"), ("reference", "145")}),
    ("explain item 3 pls", {("intent", "explain"), ("position", "3")}),
    ("show me musicals, repeats are ok", {("intent", "recommend"), ("include", "Musical"),
                                          ("include_seen", "yes")}),
])
def test_the_rules_parse_common_phrasings(ml, message: str, facts: set[tuple[str, str]]) -> None:  # type: ignore[no-untyped-def]
    assert parse_message(message, ml[1]).facts() == facts


def test_titles_resolve_exactly_fuzzily_or_are_asked_back(ml) -> None:  # type: ignore[no-untyped-def]
    ds, vocab = ml
    assert title(ds, vocab.resolve("the godfather")) == "Godfather, The (1972)"
    assert title(ds, vocab.resolve("star wars but older")) == "Star Wars (1977)"
    assert title(ds, vocab.resolve("Shawshank Redemptoin")) == "Shawshank Redemption, The (1994)"
    ambiguous = vocab.resolve("godfather please")
    assert ambiguous.item_id is None and len(ambiguous.matches) >= 2
    assert vocab.resolve("mario kart").item_id is None  # never "Super Mario Bros." from one shared word
    unknown = vocab.resolve("Blorfvorp")
    assert unknown.item_id is None and unknown.text == "Blorfvorp"


def test_the_rules_take_linear_time(ml) -> None:  # type: ignore[no-untyped-def]
    """Ten times the text costs about ten times the time, for repeated fragments of every pattern."""
    vocab = ml[1]
    for unit in ("why ", "more like heat ", "comedy, ", "no horror from the 90s ", "like like ", "what have i "):
        times = []
        for n in (4_000, 40_000):
            message = (unit * (n // len(unit) + 1))[:n]
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                parse_message(message, vocab)
                best = min(best, time.perf_counter() - start)
            times.append(best)
        assert times[1] / times[0] < 30, f"{unit!r}: 40 KB took {times[1] / times[0]:.0f}x 4 KB"


def test_merge_keeps_the_rules_and_fills_gaps_from_the_llm() -> None:
    rules = ChatRequest(intent="recommend", exclude_categories=("Comedy",))
    llm = ChatRequest(intent="more_like", include_categories=("Comedy", "Drama"), years=YearRange(start=1990),
                      references=(TitleRef(text="Heat", item_id="273"),), source="llm")
    merged = merge(rules, llm)
    assert merged.intent == "more_like" and merged.exclude_categories == ("Comedy",)
    assert merged.include_categories == ("Drama",)  # never both included and excluded
    assert merged.years == YearRange(start=1990) and merged.resolved_references == ("273",)
    specific = merge(ChatRequest(intent="explain", position=2), llm)
    assert specific.intent == "explain" and specific.references == llm.references


def test_constraints_stand_across_turns_until_lifted() -> None:
    c = Constraints().apply(ChatRequest(intent="refine", exclude_categories=("Comedy",)), [])
    c = c.apply(ChatRequest(intent="recommend", include_categories=("Thriller",)), [])
    assert c.exclude_categories == ("Comedy",) and c.include_categories == ("Thriller",)
    older = c.apply(ChatRequest(intent="refine", relative_years="older"), [1990, 1994, 1997])
    assert older.years == YearRange(end=1993) and older.exclude_categories == ("Comedy",)
    lifted = older.apply(ChatRequest(intent="refine", lift_categories=("Comedy",)), [])
    assert lifted.exclude_categories == () and lifted.years == YearRange(end=1993)
    asked = c.apply(ChatRequest(intent="recommend", include_categories=("Comedy",)), [])
    assert asked.exclude_categories == () and asked.include_categories == ("Comedy",)
    assert older.describe() == "Thriller, not Comedy, up to 1993"


def test_sessions_save_and_resume(tmp_path: Path) -> None:
    session = ChatSession(user="7", constraints=Constraints(exclude_categories=("Comedy",)), shown=["1"], last=["1"])
    session.add_turn("user", "no more comedies </data>")
    path = session.save(tmp_path / "s.json")
    again = ChatSession.load(path)
    assert again == session and again.turns[0].text == "no more comedies </data>"
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match="not a driftrec chat session"):
        ChatSession.load(tmp_path / "bad.json")
    (tmp_path / "bad2.json").write_text(json.dumps({"format": "driftrec-chat-session/1", "user": ""}))
    with pytest.raises(ConfigError, match="invalid at user"):
        ChatSession.load(tmp_path / "bad2.json")
    with pytest.raises(ConfigError, match="no chat session file"):
        ChatSession.load(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="cannot save chat session"):
        session.save(tmp_path / "bad.json" / "below" / "s.json")


def test_chat_on_ml100k_meets_constraints_and_says_when_it_cannot(ml100k_retrieval_agent) -> None:  # type: ignore[no-untyped-def]
    agent = ml100k_retrieval_agent
    vocab = CatalogVocabulary(agent.catalog)
    session = ChatSession(user="196")
    seen = {e.item for e in agent.history("196")}
    first = agent.chat("196", "I loved Pulp Fiction, any similar thrillers from the 90s?", session)
    rec = first.recommendations
    assert first.intent == "more_like" and rec is not None and len(rec.items) == 5
    for item in rec.items:
        assert "Thriller" in agent.catalog[item].categories and 1990 <= (vocab.year(item) or 0) <= 1999
        assert item not in seen and item != "56"
    assert all(exp.evidence_detail[0].item_id == "56" for exp in rec.explanations)  # cites Pulp Fiction
    second = agent.chat("196", "no more comedies please", session)
    assert second.recommendations is not None and not set(second.recommendations.items) & set(rec.items)
    assert all("Comedy" not in agent.catalog[i].categories for i in second.recommendations.items)
    why = agent.chat("196", "why the second one?", session)
    from agent.grounding import display_title

    assert why.intent == "explain" and display_title(agent.catalog[second.recommendations.items[1]].title) in why.text
    none = agent.chat("196", "Westerns from 2020", session)
    assert none.recommendations is None and none.diagnostics.matching == 0
    assert "No title in the catalogue matches Western" in none.text and "1922 to 1998" in none.text
    few = agent.chat("196", "Film-Noir from 1958", ChatSession(user="196"))
    assert few.recommendations is not None and few.diagnostics.matching == len(few.recommendations.items) < 5
    assert "Only 1 title" in few.text


def test_cli_chat_session_file_carries_the_conversation(ml100k_path: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from driftrec.cli.main import main

    base = ["chat", "--data", str(ml100k_path), "--embedder", "hashing", "--backend", "numpy", "--no-cache",
            "--llm", "none", "--user", "196", "--session", str(tmp_path / "s.json"), "--json"]
    assert main([*base, "--message", "recommend me something"]) == 0
    first = json.loads(capsys.readouterr().out)
    shown = first["recommendations"]["titles"]
    assert main([*base, "--message", f"why did you suggest {shown[0]}?"]) == 0
    why = json.loads(capsys.readouterr().out)
    assert why["intent"] == "explain" and not why["diagnostics"]["not_suggested"] and "because" in why["text"]
    assert main([*base, "--user", "1", "--message", "hi"]) == 2  # another user's session file
    assert "belongs to user '196'" in capsys.readouterr().err
    below = [*base[:-3], "--session", str(tmp_path / "s.json" / "t.json"), "--json", "--message", "hi"]
    assert main(below) == 2
    assert "is a file, so nothing can be written below it" in capsys.readouterr().err
