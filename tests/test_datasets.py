"""Finding a dataset: explicit path, ../shared, the cache, a checksum-verified download; the public API names."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

import driftrec
from retrieval.data import datasets
from retrieval.data.datasets import load_dataset, locate_games, locate_ml100k
from retrieval.errors import DatasetNotFoundError


@pytest.fixture()
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ../shared copy, an empty user cache under tmp_path; returns the cache root."""
    monkeypatch.setattr(datasets, "_shared_candidates", lambda sub: [])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "driftrec"


def _serve_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes] | None,
               raw: bytes | None = None) -> None:
    """Point the download URL at a local file holding a zip of `files` under ml-100k/ (or `raw` bytes)."""
    if raw is None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in (files or {}).items():
                zf.writestr(f"ml-100k/{name}", data)
        raw = buf.getvalue()
    served = tmp_path / "ml-100k.zip"
    served.write_bytes(raw)
    monkeypatch.setattr(datasets, "ML100K_URL", served.as_uri())


def test_download_is_checked_against_the_published_checksums(ml100k_path: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            offline_cache: Path) -> None:
    real = {name: (ml100k_path / name).read_bytes() for name in ("u.data", "u.item")}
    _serve_zip(tmp_path, monkeypatch, real)
    found = locate_ml100k()
    assert found == offline_cache / "ml-100k"
    assert (found / "u.data").read_bytes() == real["u.data"]
    assert locate_ml100k(download=False) == found  # the cache is used from then on


@pytest.mark.parametrize("case", ["tampered", "not-a-zip", "missing-file"])
def test_a_bad_download_is_refused_in_one_line_and_leaves_nothing(case: str, ml100k_path: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  offline_cache: Path) -> None:
    real = {name: (ml100k_path / name).read_bytes() for name in ("u.data", "u.item")}
    if case == "tampered":
        _serve_zip(tmp_path, monkeypatch, {**real, "u.data": real["u.data"].replace(b"\t5\t", b"\t1\t", 1)})
    elif case == "not-a-zip":
        _serve_zip(tmp_path, monkeypatch, None, raw=b"<html>captive portal</html>")
    else:
        _serve_zip(tmp_path, monkeypatch, {"u.data": real["u.data"]})
    with pytest.raises(DatasetNotFoundError) as info:
        locate_ml100k()
    message = str(info.value)
    assert "\n" not in message and "--data PATH" in message and "../shared/data/ml-100k" in message
    if case == "tampered":
        assert "checksum mismatch for downloaded u.data" in message
    assert not (offline_cache / "ml-100k").exists()
    assert not [p for p in offline_cache.parent.rglob("*") if p.is_dir() and p.name.startswith("tmp")]


def test_without_download_or_data_the_error_names_every_option(offline_cache: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"pass --data PATH, or place it at ../shared/data/ml-100k, "
                                                   r"or go online .*\(download disabled\)$"):
        locate_ml100k(download=False)


def test_explicit_paths_are_checked(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="no u.data here"):
        locate_ml100k(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="Games-6k.item"):
        locate_games(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="not a known dataset"):
        load_dataset(str(tmp_path / "missing"))
    with pytest.raises(DatasetNotFoundError, match="no recognised files"):
        load_dataset(tmp_path)


def test_load_dataset_picks_the_loader_from_the_files(tmp_path: Path) -> None:
    (tmp_path / "dat").mkdir()
    (tmp_path / "dat" / "movies.dat").write_text("1::Toy Story (1995)::Animation\n2::Heat (1995)::Action\n")
    (tmp_path / "dat" / "ratings.dat").write_text("1::1::5::978300760\n1::2::4::978300761\n")
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Animation\n")
    (tmp_path / "csv" / "ratings.csv").write_text("userId,movieId,rating,timestamp\n7,1,4.5,978300760\n")
    (tmp_path / "jsonl").mkdir()
    (tmp_path / "jsonl" / "items.jsonl").write_text('{"id": "a", "title": "Alpha"}\n')
    (tmp_path / "jsonl" / "events.jsonl").write_text('{"user": "u", "item": "a", "timestamp": 1000000}\n')
    dat, csv, jsonl = (load_dataset(tmp_path / name) for name in ("dat", "csv", "jsonl"))
    assert dat.catalog["2"].title == "Heat (1995)" and [e.item for e in dat.history("1")] == ["1", "2"]
    assert csv.history("7")[0].rating == 4.5
    assert jsonl.catalog["a"].title == "Alpha" and jsonl.users == ["u"]


def test_every_public_name_resolves_lazily() -> None:
    for name in driftrec.__all__:
        assert getattr(driftrec, name) is not None, name
    assert set(driftrec.__all__) <= set(dir(driftrec))
    assert driftrec.load_dataset is load_dataset
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        driftrec.nope  # noqa: B018
