"""`driftrec export`: every format parsed back and checked against the agent and `driftrec recommend`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from agent.agent import RecommenderAgent
from driftrec.cli.export import write_atomic, write_lists
from driftrec.cli.main import main
from retrieval.candidates.base import Candidate
from retrieval.errors import ConfigError, DataError

K = 30
BASE = ["--embedder", "hashing", "--no-cache"]
# 242 and 54 rated one copy of a title ml-100k lists twice, and the default hybrid's top 30 holds the
# other copy: their lists exercise the dropped-titles rule (found by scanning every user's list).
DUPLICATE_TITLE_USERS = ["242", "54"]


@pytest.fixture(scope="module")
def agent(ml100k_retrieval_agent: RecommenderAgent) -> RecommenderAgent:
    return ml100k_retrieval_agent


@pytest.fixture(scope="module")
def users(agent: RecommenderAgent) -> list[str]:
    chosen = [u for u in agent.dataset.users[:18] if u not in DUPLICATE_TITLE_USERS] + DUPLICATE_TITLE_USERS
    return chosen[:20]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, ml100k_path: Path, users: list[str]) -> dict[str, Path]:
    """The 20 users exported once per format (the users given as a file for jsonl, as a list otherwise)."""
    tmp = tmp_path_factory.mktemp("export")
    ids_file = tmp / "users.txt"
    ids_file.write_text("\n".join(users) + "\n\n")
    out = {}
    for fmt, name in (("csv", "recs.csv"), ("jsonl", "recs.jsonl"), ("trec", "recs.run")):
        given = str(ids_file) if fmt == "jsonl" else ",".join(users)
        argv = ["export", "--data", str(ml100k_path), *BASE, "--k", str(K), "--out", str(tmp / name),
                "--users", given, "--batch-size", "7"]  # several batches, the last one partial
        assert main(argv) == 0
        out[fmt] = tmp / name
    return out


def parse(path: Path, fmt: str) -> dict[str, list[tuple[str, float]]]:
    """user → [(item, score)] in file order, from any of the three formats."""
    lists: dict[str, list[tuple[str, float]]] = {}
    text = path.read_text(encoding="utf-8")
    if fmt == "csv":
        rows = list(csv.DictReader(text.splitlines()))
        assert list(rows[0]) == ["user", "rank", "item", "score", "title"]
        for row in rows:
            got = lists.setdefault(row["user"], [])
            assert int(row["rank"]) == len(got) + 1
            got.append((row["item"], float(row["score"])))
    elif fmt == "jsonl":
        for line in text.splitlines():
            obj = json.loads(line)
            assert len(obj["items"]) == len(obj["scores"]) == len(obj["titles"])
            lists[obj["user"]] = list(zip(obj["items"], obj["scores"], strict=True))
    else:
        for line in text.splitlines():
            user, q0, item, rank, score, tag = line.split(" ")
            assert (q0, tag) == ("Q0", "driftrec")
            got = lists.setdefault(user, [])
            assert int(rank) == len(got) + 1
            got.append((item, float(score)))
    return lists


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "trec"])
def test_export_equals_the_agents_lists(fmt: str, exports: dict[str, Path], agent: RecommenderAgent,
                                        users: list[str]) -> None:
    lists = parse(exports[fmt], fmt)
    assert list(lists) == users  # every user, in the order given
    dropped = 0
    for user in users:
        rec = agent.recommend(user, K, explain=False)
        dropped += rec.diagnostics.dropped_seen_titles
        assert [i for i, _ in lists[user]] == list(rec.items), user
        assert [s for _, s in lists[user]] == pytest.approx(rec.scores, abs=1e-6)
        seen = {ev.item for ev in agent.dataset.history(user)}
        assert not seen & {i for i, _ in lists[user]}
    assert dropped > 0  # the rule about duplicate titles was exercised, not vacuous


def test_export_equals_driftrec_recommend(exports: dict[str, Path], ml100k_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    lists = parse(exports["csv"], "csv")
    for user in ["196", DUPLICATE_TITLE_USERS[0]]:
        capsys.readouterr()
        assert main(["recommend", "--data", str(ml100k_path), *BASE, "--user", user, "-k", str(K),
                     "--llm", "none", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)["items"]
        assert [(c["item_id"], c["score"]) for c in shown] == lists[user]


def test_export_replaces_a_file_and_leaves_no_temporary(tmp_path: Path, ml100k_path: Path) -> None:
    out = tmp_path / "sub" / "recs.jsonl"  # a missing parent is created
    assert main(["export", "--data", str(ml100k_path), *BASE, "--k", "3", "--out", str(out), "--users", "1"]) == 0
    first = out.read_text()
    assert len(first.splitlines()) == 1 and json.loads(first)["user"] == "1"
    assert main(["export", "--data", str(ml100k_path), *BASE, "--k", "3", "--out", str(out), "--users", "2,1"]) == 0
    assert [json.loads(line)["user"] for line in out.read_text().splitlines()] == ["2", "1"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["recs.jsonl"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "recs.csv"
    out.write_text("old\n")

    def broken(f: Any) -> int:
        f.write("half a file")
        raise DataError("boom")

    with pytest.raises(DataError):
        write_atomic(out, broken)
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["recs.csv"]
    with pytest.raises(ConfigError, match="is a directory"):
        write_atomic(tmp_path, lambda f: 0)


def test_trec_refuses_ids_with_whitespace(tmp_path: Path, agent: RecommenderAgent) -> None:
    with (tmp_path / "x.run").open("w") as f, pytest.raises(DataError, match="TREC run format cannot hold"):
        write_lists(f, "trec", agent.dataset, [("a user", [Candidate("1", 1.0, "x")])])


@pytest.mark.parametrize(("argv", "message", "code"), [
    (["--k", "0", "--out", "{tmp}/r.csv"], "--k must be between 1 and 1,000, got 0", 2),
    (["--k", "1001", "--out", "{tmp}/r.csv"], "--k must be between 1 and 1,000, got 1,001", 2),
    (["--out", "{tmp}"], "is a directory", 2),
    (["--out", "{tmp}", "--format", "trec"], "is a directory", 2),
    (["--out", "{tmp}/r.parquet"], "cannot tell the format from the name; pass --format", 2),
    (["--out", "{tmp}/r.csv", "--format", "jsonl"], "give a file name ending in .jsonl", 2),
    (["--out", "{tmp}/r.csv", "--users", "196,nobody,1"], "--users names 1 user(s) not in ml-100k, e.g. 'nobody'", 3),
    (["--out", "{tmp}/r.csv", "--users", " , "], "names no user", 2),
    (["--out", "{tmp}/r.csv", "--batch-size", "0"], "--batch-size must be at least 1", 2),
])
def test_bad_options_are_one_line_errors(argv: list[str], message: str, code: int, tmp_path: Path,
                                         ml100k_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["export", "--data", str(ml100k_path), *BASE, *argv]) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("driftrec: error: ") and "\n" not in err and message in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_dropped_title_copies_do_not_shorten_a_list(agent: RecommenderAgent) -> None:
    """The retriever is asked for room for the copies the seen-titles rule drops: k items come back."""
    for user in ("299", "97"):
        rec = agent.recommend(user, k=100, explain=False)
        assert rec.diagnostics.dropped_seen_titles > 0 and len(rec.items) == 100
        assert not rec.diagnostics.short_list
