"""Index-directory cases: writing to paths that are not index directories, and loading broken or stale ones.

A reference index of the base dataset is built once (one subprocess) and copied per case, then broken
in one way; payload checksums in the manifest are updated where the case is about the content rather
than the checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.badinputs.checks import tree_digest
from tests.badinputs.spec import Case

Mutation = Callable[[Path], None]


def build_reference(root: Path, base: Path) -> str:
    """Build the reference index (and a populated embedding cache) in one subprocess; returns its error, if any."""
    code = (
        "import sys; from driftrec.cli.main import main; "
        f"a = main(['index', '--data', {str(base)!r}, '--embedder', 'hashing', '--no-cache', "
        f"'--out', {str(root / 'ref' / 'ix')!r}]); "
        f"b = main(['index', '--data', {str(base)!r}, '--embedder', 'hashing', "
        f"'--out', {str(root / 'ref' / 'ix-cached')!r}]); sys.exit(a or b)")
    env = {**os.environ, "XDG_CACHE_HOME": str(root / "cache-wrongdim")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False,
                          timeout=300)
    return "" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["no output"])[-1]


def _manifest(d: Path) -> dict[str, Any]:
    return dict(json.loads((d / "manifest.json").read_text()))


def _rehash(d: Path) -> None:
    """Recompute the manifest's payload checksums, so only the content change is under test."""
    m = _manifest(d)
    for name in m.get("sha256", {}):
        p = d / name
        if p.is_file() and not p.is_fifo():
            m["sha256"][name] = hashlib.sha256(p.read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(m))


def _set(**fields: Any) -> Mutation:
    def mutate(d: Path) -> None:
        m = _manifest(d)
        m.update(fields)
        (d / "manifest.json").write_text(json.dumps(m))
    return mutate


def _manifest_text(text: str | bytes) -> Mutation:
    def mutate(d: Path) -> None:
        (d / "manifest.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    return mutate


def _vectors(make: Callable[[np.ndarray], Any], pickled: bool = False) -> Mutation:
    def mutate(d: Path) -> None:
        v = np.load(d / "vectors.npy")
        np.save(d / "vectors.npy", make(v), allow_pickle=pickled)
        _rehash(d)
    return mutate


def _ids(make: Callable[[list[Any]], Any]) -> Mutation:
    def mutate(d: Path) -> None:
        (d / "ids.json").write_text(json.dumps(make(json.loads((d / "ids.json").read_text()))))
        _rehash(d)
    return mutate


def _replace_with(name: str, make: Callable[[Path], object], rehash: bool = False) -> Mutation:
    def mutate(d: Path) -> None:
        (d / name).unlink()
        make(d / name)
        if rehash:
            _rehash(d)
    return mutate


def _truncate(name: str, rehash: bool) -> Mutation:
    def mutate(d: Path) -> None:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 3])
        if rehash:
            _rehash(d)
    return mutate


class _Evil:
    """Pickles to a call that writes a marker file: loading it would run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pickle code ran"))


def _evil_pickle(marker: Path) -> Mutation:
    def mutate(d: Path) -> None:
        (d / "evil.pkl").write_bytes(pickle.dumps(_Evil(marker)))
    return mutate


def _outside_copy(root: Path) -> Mutation:
    def mutate(d: Path) -> None:
        outside = root / "out" / "vectors-outside.npy"
        shutil.copy(d / "vectors.npy", outside)
        (d / "vectors.npy").unlink()
        (d / "vectors.npy").symlink_to(outside)
    return mutate


def load_mutations(root: Path) -> dict[str, tuple[Mutation, list[int]]]:
    """name → (how the copied reference index is broken, the exit codes that are correct)."""
    deep = "[" * 100_000 + "]" * 100_000
    return {
        "no_manifest": (lambda d: (d / "manifest.json").unlink(), [4]),
        "manifest_list": (_manifest_text("[]"), [4]),
        "manifest_string": (_manifest_text('"driftrec-index/2"'), [4]),
        "manifest_null": (_manifest_text("null"), [4]),
        "manifest_empty_file": (_manifest_text(""), [4]),
        "manifest_not_utf8": (_manifest_text(b'{"format": "driftrec-index/2\xff"}'), [4]),
        "manifest_nested_100k_deep": (_manifest_text(deep), [4]),
        "manifest_is_directory": (_replace_with("manifest.json", lambda p: p.mkdir()), [4]),
        "manifest_dim_string": (_set(dim="abc"), [4]),
        "manifest_dim_negative": (_set(dim=-1), [4]),
        "manifest_dim_float": (_set(dim=256.7), [4]),
        "manifest_dim_huge": (_set(dim=10**30), [4]),
        "manifest_count_string": (_set(count="many"), [4]),
        "manifest_sha256_list": (_set(sha256=[]), [4]),
        "manifest_sha256_numbers": (_set(sha256={"vectors.npy": 5, "ids.json": None}), [4]),
        "manifest_embedder_null": (_set(embedder=None), [4]),
        "manifest_embedder_list": (_set(embedder=["hashing-256"]), [4]),
        "manifest_backend_number": (_set(backend=7), [2, 4]),
        "manifest_backend_unknown": (_set(backend="no-such-backend"), [2, 4]),
        "manifest_format_model": (_set(format="driftrec-model/1"), [4]),
        "manifest_format_number": (_set(format=5), [4]),
        "manifest_catalog_wrong_type": (_set(catalog="everything"), [4]),
        "vectors_truncated": (_truncate("vectors.npy", rehash=False), [4]),
        "vectors_truncated_rehashed": (_truncate("vectors.npy", rehash=True), [4]),
        "vectors_pickled_objects": (_vectors(lambda v: np.array([object()] * len(v), dtype=object), True), [4]),
        "vectors_strings": (_vectors(lambda v: np.array(["abc"] * len(v))), [4]),
        "vectors_one_dimensional": (_vectors(lambda v: v.ravel()), [4]),
        "vectors_wrong_dimension": (_vectors(lambda v: v[:, :128]), [4]),
        "vectors_float64": (_vectors(lambda v: v.astype(np.float64)), [0, 4]),
        "vectors_nan": (_vectors(lambda v: np.full_like(v, np.nan)), [0, 4]),
        "vectors_garbage_header": (_replace_with("vectors.npy", lambda p: p.write_bytes(b"\x93NUMPY\x01\x00{garbage"),
                                                 rehash=True), [4]),
        "vectors_symlink_dev_zero": (_replace_with("vectors.npy", lambda p: p.symlink_to("/dev/zero")), [4]),
        "vectors_symlink_outside": (_outside_copy(root), [0, 4]),
        "vectors_fifo": (_replace_with("vectors.npy", lambda p: os.mkfifo(p)), [4]),
        "vectors_directory": (_replace_with("vectors.npy", lambda p: p.mkdir()), [4]),
        "ids_symlink_loop": (_replace_with("ids.json", lambda p: p.symlink_to(p.name)), [4]),
        "ids_object": (_ids(lambda ids: {"ids": ids}), [4]),
        "ids_duplicates": (_ids(lambda ids: [ids[0]] * len(ids)), [4]),
        "ids_numbers_and_nulls": (_ids(lambda ids: [None if n % 2 else n for n in range(len(ids))]), [4]),
        "ids_unknown_items": (_ids(lambda ids: [f"x{i}" for i in ids]), [4]),
        "extra_pickle_file": (_evil_pickle(root / "out" / "PICKLE_RAN"), [0, 4]),
    }


def index_cases(root: Path, base: Path, user: str, features: set[str], ref_error: str) -> list[Case]:
    """Every index-directory case; `ref_error` is why the reference build failed (empty when it worked)."""
    ref = root / "ref" / "ix"
    common = ["--data", str(base), "--embedder", "hashing", "--no-cache"]
    rec = ["recommend", *common, "--user", user, "-k", "3", "--json"]
    note = f" (reference index build failed: {ref_error})" if ref_error else ""
    cases: list[Case] = []
    for name, (mutate, exits) in load_mutations(root).items():
        d = root / "index" / name
        checks: list[list[Any]] = [["json_items", {"k": 3}]]
        if ref.is_dir():
            shutil.copytree(ref, d, symlinks=True)
            mutate(d)
        if name == "extra_pickle_file":
            checks.append(["intact", {"path": str(root / "out" / "PICKLE_RAN"), "digest": "absent"}])
        cases.append(Case(f"index.load.{name}", "index", "index", argv=[*rec, "--index", str(d)], exits=exits,
                          bound_s=15, timeout_s=40, checks=checks, note=f"recommend --index on a broken index{note}"))
    cases += _stale_cases(root, base, user, rec, features)
    cases += _write_cases(root, base, common)
    return cases


def _stale_cases(root: Path, base: Path, user: str, rec: list[str], features: set[str]) -> list[Case]:
    ref = str(root / "ref" / "ix")
    other, retitled = root / "data" / "other-catalogue", root / "data" / "retitled"
    for d in (other, retitled):
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(base / "u.data", d / "u.data")
    lines = (base / "u.item").read_bytes().decode("latin-1").splitlines()
    extra = [f"{n}|Not In The Index ({n})|01-Jan-1999||http://example.invalid/{n}|" + "|".join(["0"] * 18 + ["1"])
             for n in range(1001, 1006)]
    (other / "u.item").write_bytes(("\n".join(lines + extra) + "\n").encode("latin-1"))
    (retitled / "u.item").write_bytes(("\n".join(f"{p[0]}|{p[1][::-1]}|{'|'.join(p[2:])}" for p in
                                                 (line.split("|") for line in lines)) + "\n").encode("latin-1"))
    ix_cmd = ["recommend", "--embedder", "hashing", "--no-cache", "--user", user, "-k", "3", "--json", "--index", ref]
    cases = [
        Case("index.stale.other_catalogue", "index", "index", argv=[*ix_cmd, "--data", str(other)], exits=[4],
             note="an index built for another catalogue (five items fewer)"),
        Case("index.stale.changed_titles", "index", "index", argv=[*ix_cmd, "--data", str(retitled)], exits=[4],
             note="an index built for the same ids with other titles"),
        Case("index.stale.other_embedder", "index", "index", exits=[4], bound_s=60, timeout_s=90,
             argv=["recommend", "--data", str(base), "--no-cache", "--user", user, "-k", "3", "--json",
                   "--index", ref], note="an index built with the hashing embedder, used with the default one"),
    ]
    if "--rebuild" in features:
        copy = root / "index" / "stale-rebuild"
        shutil.copytree(ref, copy) if Path(ref).is_dir() else copy.mkdir(parents=True)
        cases.append(Case("index.stale.rebuild", "index", "index", exits=[0], checks=[["json_items", {"k": 3}]],
                          argv=[*ix_cmd[:-1], str(copy), "--data", str(retitled), "--rebuild"],
                          note="--rebuild replaces a stale index"))
    return cases


def _victim(path: Path) -> dict[str, str]:
    (path / "sub").mkdir(parents=True, exist_ok=True)
    (path / "sub" / "thesis.txt").write_text("precious\n")
    (path / "notes.txt").write_text("keep me\n")
    return {"path": str(path), "digest": tree_digest(path)}


def _write_cases(root: Path, base: Path, common: list[str]) -> list[Case]:
    w = root / "write"
    w.mkdir(parents=True, exist_ok=True)
    dataset_copy = w / "dataset-copy"
    shutil.copytree(base, dataset_copy)
    file = w / "a-file.txt"
    file.write_text("a user's file\n")
    foreign_manifest = w / "foreign-manifest"
    foreign_manifest.mkdir()
    (foreign_manifest / "manifest.json").write_text('{"format": "someone-else/3"}')
    (foreign_manifest / "data.bin").write_bytes(b"\x00" * 64)
    link_target = _victim(w / "link-target")
    (w / "link").symlink_to(w / "link-target")
    existing = w / "existing-index"
    if (root / "ref" / "ix").is_dir():
        shutil.copytree(root / "ref" / "ix", existing)
    (w / "empty").mkdir()
    specs: list[tuple[str, str, str | None, list[int], list[list[Any]]]] = [
        ("foreign_dir", str(w / "victim"), None, [2], [["intact", _victim(w / "victim")]]),
        ("dot", ".", str(w / "victim-cwd"), [2], [["intact", _victim(w / "victim-cwd")]]),
        ("dotdot", "..", str(w / "victim-up" / "sub"), [2], [["intact", _victim(w / "victim-up")]]),
        ("dataset_dir", str(dataset_copy), None, [2],
         [["intact", {"path": str(dataset_copy), "digest": tree_digest(dataset_copy)}]]),
        ("a_file", str(file), None, [2], [["intact", {"path": str(file), "digest": tree_digest(file)}]]),
        ("under_a_file", str(file / "ix"), None, [2], [["intact", {"path": str(file), "digest": tree_digest(file)}]]),
        ("symlink_to_foreign_dir", str(w / "link"), None, [2], [["intact", link_target]]),
        ("foreign_manifest", str(foreign_manifest), None, [2],
         [["intact", {"path": str(foreign_manifest), "digest": tree_digest(foreign_manifest)}]]),
        ("missing_parent", str(w / "missing" / "a" / "b" / "ix"), None, [0, 2],
         [["exists", {"path": str(w / "missing" / "a" / "b" / "ix" / "manifest.json")}]]),
        ("existing_index", str(existing), None, [0], [["no_leftovers", {"dir": str(w)}]]),
        ("empty_dir", str(w / "empty"), None, [0], [["exists", {"path": str(w / "empty" / "manifest.json")}]]),
    ]
    cases = [Case(f"index.out.{name}", "index", "index", argv=["index", *common, "--out", out], cwd=cwd,
                  exits=exits, checks=checks, note="driftrec index --out onto a path that is not an index directory")
             for name, out, cwd, exits, checks in specs]
    train_victim = _victim(w / "train-victim")
    cases.append(Case("index.out.train_foreign_dir", "index", "index", exits=[2], checks=[["intact", train_victim]],
                      argv=["train", "--dataset", str(base), "--out", str(w / "train-victim"), "--no-text",
                            "--epochs", "1", "--quiet", "--valid-users", "5"],
                      note="driftrec train --out shares the index's write path"))
    return cases + _cache_cases(root, base, common)


def _cache_cases(root: Path, base: Path, common: list[str]) -> list[Case]:
    import sqlite3

    garbage = root / "cache-garbage" / "driftrec"
    garbage.mkdir(parents=True)
    (garbage / "embeddings.sqlite").write_bytes(b"this is not a database\n" * 100)
    as_dir = root / "cache-dir" / "driftrec" / "embeddings.sqlite"
    as_dir.mkdir(parents=True)
    wrongdim = root / "cache-wrongdim" / "driftrec" / "embeddings.sqlite"
    if wrongdim.is_file():
        with sqlite3.connect(wrongdim) as db:
            for table, in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
                cols = [c[1] for c in db.execute(f"PRAGMA table_info({table})")]
                if "data" in cols:
                    db.execute(f"UPDATE {table} SET data = substr(data, 1, 12)"
                               + (", dim = 3" if "dim" in cols else ""))
    cached = [a for a in common if a != "--no-cache"]
    out = root / "out"
    return [Case(f"index.cache.{name}", "index", "index", exits=[0, 2, 4], env={"XDG_CACHE_HOME": str(cache)},
                 argv=["index", *cached, "--out", str(out / f"ix-cache-{name}")],
                 note="a corrupt or wrong-dimension embedding cache")
            for name, cache in (("garbage_file", root / "cache-garbage"), ("is_a_directory", root / "cache-dir"),
                                ("wrong_dimension", root / "cache-wrongdim"))]
