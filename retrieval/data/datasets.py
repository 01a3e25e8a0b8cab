"""Find a dataset by name or path: explicit path, ../shared/data, the user cache, or a verified download."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from retrieval.data.loaders import (
    OnError,
    load_csv,
    load_movielens_100k,
    load_movielens_csv,
    load_movielens_dat,
    load_recbole,
)
from retrieval.data.model import Dataset
from retrieval.data.movie_loaders import load_ml10m_tags, load_movietweetings
from retrieval.errors import DatasetNotFoundError

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# sha256 of the two files driftrec reads, as published by GroupLens (checked after download).
ML100K_SHA256 = {
    "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
}
# MovieTweetings 100K snapshot (MIT): the files as published in sidooms/MovieTweetings, checked after download.
MOVIETWEETINGS_URL = "https://raw.githubusercontent.com/sidooms/MovieTweetings/master/snapshots/100K/"
MOVIETWEETINGS_SHA256 = {
    "ratings.dat": "c0dd868c2632d10002ebc928ddc5345f33adeaa59eca52c2941c26a2c5e36fd6",
    "movies.dat": "e63fb84bc734e3c574f135634a40d3cbafab22b8f94f5fc0b80f80d1d2076efc",
}
KNOWN = ("ml-100k", "games", "movietweetings", "ml10m-tags")


def cache_dir() -> Path:
    """The user's cache directory for driftrec (XDG_CACHE_HOME or ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "driftrec"


def _shared_candidates(sub: str) -> list[Path]:
    here = Path(__file__).resolve().parent.parent
    return [Path.cwd().parent / "shared" / "data" / sub, here.parent / "shared" / "data" / sub,
            Path.cwd() / "shared" / "data" / sub]


def locate_ml100k(path: str | Path | None = None, download: bool = True) -> Path:
    """Directory of MovieLens 100K: `path`, else ../shared/data/ml-100k, else the cache, else download.

    Raises:
        DatasetNotFoundError: none of these worked (one line naming the options).
    """
    if path is not None:
        p = Path(path)
        if not (p / "u.data").is_file():
            raise DatasetNotFoundError(f"{p}: no u.data here; pass the ml-100k directory")
        return p
    for cand in [*_shared_candidates("ml-100k"), cache_dir() / "ml-100k"]:
        if (cand / "u.data").is_file() and (cand / "u.item").is_file():
            return cand
    if download:
        try:
            return _download_ml100k(cache_dir())
        except (OSError, zipfile.BadZipFile) as exc:  # URLError is an OSError; a non-zip reply is BadZipFile
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        else:  # pragma: no cover
            reason = ""
    else:
        reason = "download disabled"
    raise DatasetNotFoundError(
        "MovieLens 100K not found: pass --data PATH, or place it at ../shared/data/ml-100k, "
        f"or go online to download it from GroupLens ({reason})")


def _download_ml100k(target_root: Path) -> Path:
    with urllib.request.urlopen(ML100K_URL, timeout=30) as resp:  # noqa: S310 - fixed https URL
        payload = resp.read()
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        tmp = Path(tempfile.mkdtemp(dir=target_root.parent if target_root.parent.exists() else None))
        try:
            zf.extractall(tmp)
            src = tmp / "ml-100k"
            for name, digest in ML100K_SHA256.items():
                if not (src / name).is_file():
                    raise OSError(f"the downloaded archive has no ml-100k/{name}")
                if hashlib.sha256((src / name).read_bytes()).hexdigest() != digest:
                    raise OSError(f"checksum mismatch for downloaded {name}")
            target_root.mkdir(parents=True, exist_ok=True)
            final = target_root / "ml-100k"
            os.replace(src, final)  # atomic: a half-written download never looks complete
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def locate_games(path: str | Path | None = None) -> Path:
    """Directory of the LLMRank Games files: `path` or ../shared/data/amazon-games-llmrank."""
    cands = [Path(path)] if path is not None else _shared_candidates("amazon-games-llmrank")
    for cand in cands:
        if (cand / "Games-6k.item").is_file():
            return cand
    raise DatasetNotFoundError("LLMRank Games files not found: pass --data PATH holding Games-6k.item "
                               "and Games-6k.test.inter, or place them at ../shared/data/amazon-games-llmrank")


def locate_movietweetings(path: str | Path | None = None, download: bool = True) -> Path:
    """Directory of MovieTweetings 100K: `path`, else ../shared/data/movietweetings-100k, else the cache,
    else a checksum-verified download of the two files from the dataset's GitHub repository.

    Raises:
        DatasetNotFoundError: none of these worked (one line naming the options).
    """
    def complete(p: Path) -> bool:
        return all((p / name).is_file() for name in MOVIETWEETINGS_SHA256)

    if path is not None:
        if not complete(Path(path)):
            raise DatasetNotFoundError(f"{path}: no ratings.dat + movies.dat here; pass the MovieTweetings directory")
        return Path(path)
    for cand in [*_shared_candidates("movietweetings-100k"), cache_dir() / "movietweetings-100k"]:
        if complete(cand):
            return cand
    reason = "download disabled"
    if download:
        try:
            return _download_files(MOVIETWEETINGS_URL, MOVIETWEETINGS_SHA256, cache_dir() / "movietweetings-100k")
        except OSError as exc:  # URLError is an OSError
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    raise DatasetNotFoundError(
        "MovieTweetings not found: pass --data PATH holding ratings.dat and movies.dat, or place them at "
        f"../shared/data/movietweetings-100k, or go online to download them from GitHub ({reason})")


def _download_files(base_url: str, sha256: dict[str, str], target: Path) -> Path:
    """Fetch each file of `sha256` from `base_url`, check its digest, and move the set into `target` at once."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        for name, digest in sha256.items():
            with urllib.request.urlopen(base_url + name, timeout=60) as resp:  # noqa: S310 - fixed https URL
                payload = resp.read()
            if hashlib.sha256(payload).hexdigest() != digest:
                raise OSError(f"checksum mismatch for downloaded {name}")
            (tmp / name).write_bytes(payload)
        os.replace(tmp, target)  # atomic: a half-written download never looks complete
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def locate_ml10m_tags(path: str | Path | None = None) -> Path:
    """Directory of the MovieLens 10M tag files (`tags.dat`, `movies.dat`, `;`-separated): `path` or
    ../shared/data/movielens-10m-tags. GroupLens' terms forbid redistribution, so nothing is downloaded.
    """
    cands = [Path(path)] if path is not None else _shared_candidates("movielens-10m-tags")
    for cand in cands:
        if (cand / "tags.dat").is_file() and (cand / "movies.dat").is_file():
            return cand
    raise DatasetNotFoundError("MovieLens 10M tags not found: pass --data PATH holding tags.dat and movies.dat "
                               "(';'-separated), or place them at ../shared/data/movielens-10m-tags")


def _imdb_ids(movies: Path) -> bool:
    """True when `movies.dat` starts with a 7-digit IMDb id (MovieTweetings; MovieLens ids are short)."""
    try:
        with movies.open("rb") as fh:
            first = fh.readline(4096).lstrip(b"\xef\xbb\xbf")
    except OSError:
        return False
    head = first.split(b"::", 1)[0]
    return len(head) == 7 and head.isdigit()


def load_dataset(name_or_path: str | Path | None = None, on_error: OnError = "raise") -> Dataset:
    """Load `ml-100k`, `games`, `movietweetings`, `ml10m-tags`, or a directory whose files say which loader fits.

    A directory with u.data → MovieLens 100K; ratings.dat → MovieLens `::`; ratings.csv → MovieLens
    CSV; *.item → RecBole atomic; tags.dat + movies.dat → MovieLens 10M tags (`;`); events.csv/jsonl +
    items.csv/jsonl → generic columns (user, item, timestamp / id, title). A `ratings.dat` directory
    whose `movies.dat` ids are 7-digit IMDb ids is MovieTweetings (UTF-8, ratings 0–10 halved).
    """
    key = str(name_or_path) if name_or_path is not None else "ml-100k"
    if key == "ml-100k":
        return load_movielens_100k(locate_ml100k(), on_error=on_error)
    if key == "games":
        return load_recbole(locate_games(), "Games-6k", on_error=on_error)
    if key == "movietweetings":
        return load_movietweetings(locate_movietweetings(), on_error=on_error)
    if key == "ml10m-tags":
        return load_ml10m_tags(locate_ml10m_tags(), on_error=on_error)
    root = Path(key)
    if not root.exists():
        raise DatasetNotFoundError(f"{key}: not a known dataset ({', '.join(KNOWN)}) nor an existing path")
    if (root / "u.data").is_file():
        return load_movielens_100k(root, on_error=on_error)
    if (root / "ratings.dat").is_file():
        if _imdb_ids(root / "movies.dat"):
            return load_movietweetings(root, on_error=on_error)
        return load_movielens_dat(root, on_error=on_error)
    if (root / "ratings.csv").is_file():
        return load_movielens_csv(root, on_error=on_error)
    if list(root.glob("*.item")):
        return load_recbole(root, on_error=on_error)
    if (root / "tags.dat").is_file() and (root / "movies.dat").is_file():
        return load_ml10m_tags(root, on_error=on_error)
    for ext in (".csv", ".jsonl"):
        if (root / f"events{ext}").is_file() and (root / f"items{ext}").is_file():
            return load_csv(root / f"events{ext}", root / f"items{ext}", on_error=on_error, name=root.name)
    raise DatasetNotFoundError(f"{root}: no recognised files (u.data, ratings.dat, ratings.csv, *.item, "
                               "tags.dat+movies.dat, events.csv+items.csv, events.jsonl+items.jsonl)")
