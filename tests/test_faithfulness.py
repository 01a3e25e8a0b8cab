"""The faithfulness harness: removing cited items, re-scoring, and the old/new/random comparison."""

from __future__ import annotations

import json

import pytest

from eval.faithfulness import (
    CHOICES,
    _rank,
    main,
    markdown,
    run_batch,
    sample_users,
    similarity_evidence,
    summarize,
)
from retrieval.candidates.base import Candidate
from retrieval.candidates.registry import make_generator
from retrieval.data.datasets import load_dataset
from retrieval.vectors.build import build_index
from retrieval.vectors.embed import HashingEmbedder


def test_sample_users_nest_and_rank_skips_seen_items() -> None:
    users = [f"u{i}" for i in range(50)]
    assert sample_users(users, 10, seed=3) == sample_users(users, 30, seed=3)[:10]
    assert sample_users(users, 10, seed=3) != sample_users(users, 10, seed=4)
    cands = [Candidate(i, 1.0, "x") for i in ("a", "seen", "b", "c")]
    assert _rank(cands, "b", {"seen"}, 100) == 2 and _rank(cands, "zz", set(), 100) == 101


def test_evidence_is_more_faithful_than_similarity_and_random_on_real_users(ml100k_path) -> None:  # type: ignore[no-untyped-def]
    ds = load_dataset(ml100k_path)
    index = build_index(ds.catalog, HashingEmbedder(dim=128), "numpy", progress=False)
    gen = make_generator("hybrid", index, ds.histories, ds.catalog.ids)
    users = sample_users(ds.users, 30, seed=0)
    rows = list(run_batch(users, [ds.history(u) for u in users], gen, ds.catalog, index, k=5, depth=100, n=3))
    assert len(rows) == 30 * 5 * len(CHOICES)
    for r in rows:
        assert r["new_rank"] >= 1 and r["out"] == (r["new_rank"] > 5) and r["drop"] == r["new_rank"] - r["rank"]
        assert set(r["cited"]) <= {ev.item for ev in ds.history(r["user"])}
    by_item: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        by_item.setdefault((r["user"], r["item"]), {})[r["choice"]] = len(r["cited"])
    # Similarity and random cite as many items as the explanation; attribution is its 3 largest contributors.
    assert all(n["evidence"] == n["similarity"] == n["random"] and n["attribution"] <= 3 for n in by_item.values())
    s = summarize(rows, n_boot=200)
    assert s["evidence"]["pushed_out"] > s["random"]["pushed_out"] + 0.3
    assert s["evidence"]["pushed_out"] >= s["attribution"]["pushed_out"]  # verified sets are never less faithful
    assert s["evidence"]["pushed_out"] > s["similarity"]["pushed_out"]
    assert s["evidence"]["pushed_out_lo"] <= s["evidence"]["pushed_out"] <= s["evidence"]["pushed_out_hi"]
    assert "| evidence | 30 | 150 |" in markdown(s, "t")


def test_similarity_evidence_is_the_previous_choice(ml100k_path) -> None:  # type: ignore[no-untyped-def]
    ds = load_dataset(ml100k_path)
    history = ds.history("196")
    chosen = similarity_evidence(history, "1", ds.catalog, None, n=3)
    # Without vectors it ranks by shared categories: Toy Story (Animation, Children's, Comedy) → Comedy items.
    assert len(chosen) == 3 and all("Comedy" in ds.catalog[i].categories for i in chosen)


def test_cli_writes_rows_and_resumes(ml100k_path, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "rows.jsonl"
    args = ["--data", str(ml100k_path), "--users", "4", "--embedder", "hashing", "--latency-users", "2",
            "--examples", "2", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Faithfulness on 4 users" in text and "| evidence | 4 |" in text and "evidence for the top-5 adds" in text
    assert "| previous (similarity" in text
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len({r["user"] for r in rows}) == 4
    assert main([*args, "--users", "6", "--resume", "--latency-users", "0", "--examples", "0"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len({r["user"] for r in rows}) == 6 and len(rows) == 6 * 5 * len(CHOICES)


@pytest.mark.parametrize("bad", [["--users", "0"], ["-k", "0"], ["--cite", "0"]])
def test_cli_rejects_bad_counts(bad: list[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--data", "ml-100k", *bad])
