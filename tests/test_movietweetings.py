"""MovieTweetings and MovieLens 10M tag loaders: scale mapping, `;` inside tags, the raise/skip policy, names."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from retrieval.data import datasets
from retrieval.data.datasets import load_dataset, locate_ml10m_tags, locate_movietweetings
from retrieval.data.model import SkipReason
from retrieval.data.movie_loaders import load_ml10m_tags, load_movietweetings
from retrieval.errors import DataError, DatasetNotFoundError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TWEETS = SHARED / "movietweetings-100k"
TAGS = SHARED / "movielens-10m-tags"

TWEET_MOVIES = "0002844::Fantômas - À l'ombre de la guillotine (1913)::Crime|Drama\n0104257::A Few Good Men (1992)::\n"
TWEET_RATINGS = "1::0002844::7::1365029107\n2::0104257::10::1364690142\n2::0002844::0::1364690200\n"
TAG_MOVIES = "1;Toy Story (1995);Adventure|Animation\n2;Jumanji (1995);(no genres listed)\n"
TAG_ROWS = "15;1;excellent!;1215184630\n15;2;dark; but funny;1215184700\n20;1; ;1188263867\n"


def _write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_movietweetings_ids_stay_text_ratings_are_halved_and_genres_may_be_empty(tmp_path: Path) -> None:
    ds = load_movietweetings(_write(tmp_path, {"movies.dat": TWEET_MOVIES, "ratings.dat": TWEET_RATINGS}))
    assert ds.name == "movietweetings" and len(ds.catalog) == 2 and ds.n_events == 3
    assert ds.catalog["0002844"].title.startswith("Fantômas")  # UTF-8, not Latin-1
    assert ds.catalog["0104257"].categories == ()
    ratings = {(ev.user, ev.item): ev.rating for evs in ds.histories.values() for ev in evs}
    assert ratings == {("1", "0002844"): 3.5, ("2", "0104257"): 5.0, ("2", "0002844"): 0.0}
    assert all(ev.action == "rate" for ev in ds.history("2"))
    assert ds.report.balanced and ds.report.rows_read == 5


@pytest.mark.parametrize(("ratings", "reason"), [
    ("1::0002844::11::1365029107\n", "outside 0-10"),
    ("1::0002844::-1::1365029107\n", ">= 0"),
    ("1::0002844::7\n", "expected 4 fields"),
    ("1::9999999::7::1365029107\n", "unknown item id"),
    ("1::0002844::seven::1365029107\n", "not a number"),
])
def test_movietweetings_bad_rows_raise_with_file_and_line_or_are_skipped(tmp_path: Path, ratings: str,
                                                                        reason: str) -> None:
    root = _write(tmp_path, {"movies.dat": TWEET_MOVIES, "ratings.dat": "2::0104257::8::1364690142\n" + ratings})
    with pytest.raises(DataError, match=rf"ratings\.dat:2: .*{reason}"):
        load_movietweetings(root)
    ds = load_movietweetings(root, on_error="skip")
    assert ds.n_events == 1 and ds.report.rows_skipped == 1 and ds.report.balanced
    assert ds.report.skipped[0].line == 2


def test_tags_keep_semicolons_and_become_tag_events_with_text(tmp_path: Path) -> None:
    ds = load_ml10m_tags(_write(tmp_path, {"movies.dat": TAG_MOVIES, "tags.dat": TAG_ROWS}))
    assert ds.name == "ml10m-tags" and ds.catalog["2"].categories == ()
    texts = [(ev.item, ev.action, ev.text) for ev in ds.history("15")]
    assert texts == [("1", "tag", "excellent!"), ("2", "tag", "dark; but funny")]
    assert ds.history("20")[0].text is None  # a blank tag is an event without text, not a dropped row
    assert ds.report.balanced and ds.report.rows_loaded == 5


def test_tag_rows_follow_the_policy(tmp_path: Path) -> None:
    root = _write(tmp_path, {"movies.dat": TAG_MOVIES + "3;Broken\n",
                             "tags.dat": TAG_ROWS + "15;1;oops\n15;1;x;not-a-time\n"})
    with pytest.raises(DataError, match=r"movies\.dat:3: malformed row: expected 3"):
        load_ml10m_tags(root)
    ds = load_ml10m_tags(root, on_error="skip")
    assert ds.n_events == 3 and ds.report.balanced
    assert [(Path(s.file).name, s.line, s.kind) for s in ds.report.skipped] == [
        ("movies.dat", 3, SkipReason.MALFORMED_ROW), ("tags.dat", 4, SkipReason.MALFORMED_ROW),
        ("tags.dat", 5, SkipReason.INVALID_VALUE)]


def test_tags_and_movietweetings_directories_are_recognised_by_path(tmp_path: Path) -> None:
    root = _write(tmp_path / "tags", {"movies.dat": TAG_MOVIES, "tags.dat": TAG_ROWS})
    assert load_dataset(root).n_events == 3
    tweets = load_dataset(_write(tmp_path / "mt", {"movies.dat": TWEET_MOVIES, "ratings.dat": TWEET_RATINGS}))
    assert tweets.name == "movietweetings" and tweets.history("2")[0].rating == 5.0  # halved, not MovieLens


def test_movietweetings_download_is_checksum_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = _write(tmp_path / "served", {"movies.dat": TWEET_MOVIES, "ratings.dat": TWEET_RATINGS})
    digests = {n: hashlib.sha256((served / n).read_bytes()).hexdigest() for n in ("ratings.dat", "movies.dat")}
    monkeypatch.setattr(datasets, "_shared_candidates", lambda sub: [])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "MOVIETWEETINGS_URL", served.as_uri() + "/")
    monkeypatch.setattr(datasets, "MOVIETWEETINGS_SHA256", {**digests, "movies.dat": "0" * 64})
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch for downloaded movies.dat") as err:
        locate_movietweetings()
    assert "\n" not in str(err.value) and not (tmp_path / "cache" / "driftrec" / "movietweetings-100k").exists()
    monkeypatch.setattr(datasets, "MOVIETWEETINGS_SHA256", digests)
    found = locate_movietweetings()
    assert found == tmp_path / "cache" / "driftrec" / "movietweetings-100k"
    assert load_dataset("movietweetings").n_events == 3
    with pytest.raises(DatasetNotFoundError, match="download disabled"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
        locate_movietweetings(download=False)


def test_missing_tag_files_name_the_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "_shared_candidates", lambda sub: [])
    with pytest.raises(DatasetNotFoundError, match="--data PATH.*../shared/data/movielens-10m-tags"):
        locate_ml10m_tags()
    with pytest.raises(DatasetNotFoundError, match="not a known dataset .*movietweetings, ml10m-tags"):
        load_dataset(str(tmp_path / "nope"))


@pytest.mark.skipif(not (TWEETS / "ratings.dat").is_file(), reason="../shared/data/movietweetings-100k absent")
def test_real_movietweetings() -> None:
    ds = load_dataset("movietweetings")
    assert (len(ds.catalog), len(ds.histories), ds.n_events) == (10_506, 16_554, 100_000)
    assert ds.report.rows_skipped == 0 and ds.report.balanced
    assert all(0.0 <= ev.rating <= 5.0 for evs in ds.histories.values() for ev in evs if ev.rating is not None)


@pytest.mark.skipif(not (TAGS / "tags.dat").is_file(), reason="../shared/data/movielens-10m-tags absent")
def test_real_ml10m_tags() -> None:
    ds = load_dataset("ml10m-tags")
    assert (len(ds.catalog), len(ds.histories), ds.n_events) == (10_681, 4_009, 95_580)
    events = [ev for evs in ds.histories.values() for ev in evs]
    assert all(ev.action == "tag" for ev in events)
    assert sum(ev.text is not None and ";" in ev.text for ev in events) == 44  # SOURCE.md: 44 tags hold ';'
