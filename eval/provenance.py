"""Provenance of an evaluation run: what code, packages, models and data produced a results.json.

`build_provenance` returns a JSON-ready dict (the "provenance" key of results.json):

- `driftrec_version`, `git` (`commit`, `dirty`; both None when the code is not a git checkout or git
  is missing), `python`, `platform`, `packages` (version per key package, None when not installed);
- `models`: one entry per distinct model file the run used: the embedding model (its directory hashed),
  the GGUF of an embedded LLM, a saved sequential model (its manifest hashed, which lists every file's
  sha256); `sha256` is None where there is no file (the hashing embedder, a served LLM);
- `data`: the dataset name, the sha256 of every file it was loaded from, the events/items/users counts
  and `events_sha256`, a hash over the loaded events and item ids (the same for the same data however
  it was read);
- `command`: the process command line.

File hashes are cached in `<cache>/driftrec/sha256.json` by (path, size, mtime), so a model directory is
read once, not on every run.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from retrieval.data.model import Dataset
from retrieval.log import get_logger
from retrieval.vectors.store import write_file_atomically

log = get_logger(__name__)

# results.json key → distributions that provide it (the first one installed wins; faiss has two wheels).
PACKAGES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "torch": ("torch",),
    "faiss": ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss"),
    "sentence-transformers": ("sentence-transformers",),
    "llama-cpp-python": ("llama-cpp-python",),
    "transformers": ("transformers",),
    "langchain-core": ("langchain-core",),
}
GIT_TIMEOUT_S = 5.0
_CHUNK = 1 << 20
_memo: dict[tuple[str, int, int], str] = {}


def build_provenance(dataset: Dataset, models: Iterable[Any] = (), argv: Sequence[str] | None = None,
                     cache_file: Path | None = None) -> dict[str, Any]:
    """The provenance record of a run on `dataset` with `models`.

    Args:
        dataset: the loaded data.
        models: the run's model objects (`eval.models.Recommender` instances), inspected for the models
            they use (see `model_files`).
        argv: the command line (default `sys.argv`).
        cache_file: the file-hash cache (default `<cache>/driftrec/sha256.json`).

    Returns:
        A dict of JSON types only (str, int, bool, None, lists and dicts of them).
    """
    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = Path(argv[0]).name
    return {
        "driftrec_version": driftrec_version(),
        "git": git_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "models": model_files(models, cache_file),
        "data": data_fingerprint(dataset, cache_file),
        "command": shlex.join(argv),
    }


def driftrec_version() -> str:
    """The installed distribution's version, else the source tree's `__version__`."""
    try:
        return metadata.version("driftrec")
    except metadata.PackageNotFoundError:
        from retrieval import __version__

        return __version__


def package_versions() -> dict[str, str | None]:
    """Version of each of `PACKAGES` (None when not installed), from package metadata (nothing imported)."""
    out: dict[str, str | None] = {}
    for key, dists in PACKAGES.items():
        out[key] = None
        for dist in dists:
            try:
                out[key] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def git_state(where: Path | None = None) -> dict[str, str | bool | None]:
    """The commit and dirty flag of the git checkout that holds this code, or None for both.

    Only when the package's parent directory is the top of a work tree (a source checkout or an
    editable install), so an installed copy inside some other repository reports None.

    Args:
        where: the directory of the code (default: the parent of the `eval` package).
    """
    root = (where or Path(__file__).resolve().parent.parent).resolve()
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:
        return {"commit": None, "dirty": None}
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if commit is None or status is None else bool(status)}


def _git(cwd: Path, *args: str) -> str | None:
    """stdout of `git -C cwd args`, stripped; None when git is missing, fails or times out."""
    try:
        done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("git %s failed: %s", " ".join(args), exc)
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def data_fingerprint(dataset: Dataset, cache_file: Path | None = None) -> dict[str, Any]:
    """The dataset's files (sha256 each), counts, and a hash over the loaded events and item ids.

    Args:
        dataset: the loaded data; its `report.files` names the files it was read from (an in-memory
            dataset has none).
        cache_file: the file-hash cache.
    """
    files = {name: file_sha256(Path(name), cache_file) for name in sorted(dataset.report.files)
             if Path(name).is_file()}
    # One JSON document (unambiguous whatever the ids contain), timestamps as epoch microseconds.
    events = [[ev.user, ev.item, round(ev.timestamp.timestamp() * 1e6), ev.action, ev.rating]
              for user in sorted(dataset.histories) for ev in dataset.histories[user]]
    digest = hashlib.sha256(json.dumps([list(dataset.catalog.ids), events]).encode("utf-8"))
    return {"name": dataset.name, "files": files, "n_events": dataset.n_events, "n_items": len(dataset.catalog),
            "n_users": len(dataset.histories), "events_sha256": digest.hexdigest()}


def model_files(models: Iterable[Any], cache_file: Path | None = None) -> list[dict[str, Any]]:
    """The embedding model, LLM and saved sequential model each of `models` uses, once each.

    Read from the model objects' settings: an embedder name (`embedder_name` or `embedder`), LLM
    settings (`settings` with `backend` and `model`), a saved model directory (`load`), and the same
    for a wrapped base model (`base`) and an ensemble's models (`members`).
    """
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    stack = list(models)
    while stack:
        model = stack.pop(0)
        for entry in _entries(model, cache_file):
            seen.setdefault((entry["role"], entry["name"]), entry)
        base = getattr(model, "base", None)
        if base is not None and not isinstance(base, str):
            stack.append(base)
        stack.extend(getattr(model, "members", ()))  # an ensemble's models (the harness `blend`)
    return list(seen.values())


def _entries(model: Any, cache_file: Path | None) -> list[dict[str, Any]]:
    out = []
    embedder = getattr(model, "embedder_name", None) or getattr(model, "embedder", None)
    chosen = getattr(model, "embedder_model", None)  # a model directory (e.g. a tuned one) instead of the default
    if isinstance(chosen, str) and Path(chosen).is_dir():
        out.append({"role": "embedding", "name": Path(chosen).name, "path": str(Path(chosen).resolve()),
                    "sha256": dir_sha256(Path(chosen), cache_file)})
    elif isinstance(embedder, str):
        out.append(embedding_model(embedder, cache_file))
    settings = getattr(model, "settings", None)
    if settings is not None and hasattr(settings, "backend"):
        out.append(llm_model(str(settings.backend), getattr(settings, "model", None), cache_file))
    load = getattr(model, "load", None)
    if isinstance(load, (str, Path)) and (Path(load) / "manifest.json").is_file():
        manifest = Path(load) / "manifest.json"
        out.append({"role": "sequential", "name": Path(load).name, "path": str(Path(load).resolve()),
                    "sha256": file_sha256(manifest, cache_file)})
    return out


def embedding_model(embedder: str, cache_file: Path | None = None) -> dict[str, Any]:
    """The embedding model behind the embedder name: the packaged all-MiniLM-L6-v2 directory, hashed."""
    from retrieval.vectors.embed import packaged_minilm_path

    if embedder in ("sentence-transformers", "st"):
        path = packaged_minilm_path()
        return {"role": "embedding", "name": "all-MiniLM-L6-v2", "path": str(path) if path else None,
                "sha256": dir_sha256(path, cache_file) if path else None}
    return {"role": "embedding", "name": embedder, "path": None, "sha256": None}


def llm_model(backend: str, model: str | None, cache_file: Path | None = None) -> dict[str, Any]:
    """An LLM: the GGUF file hashed for the embedded backend; the served name only for a server."""
    entry: dict[str, Any] = {"role": "llm", "name": model or "default", "backend": backend, "path": None,
                             "sha256": None}
    if backend != "embedded":
        return entry
    from agent.llm.packaged import resolve_model_path
    from retrieval.errors import DriftrecError

    try:
        path = resolve_model_path(model)
    except DriftrecError as exc:  # not installed here: the name still says which model was asked for
        log.warning("provenance: LLM model %r not found, recorded without a checksum: %s", model, exc)
        return entry
    entry.update(name=model or path.name, path=str(path), sha256=file_sha256(path, cache_file))
    return entry


def dir_sha256(directory: Path, cache_file: Path | None = None) -> str:
    """sha256 over the (relative path, file sha256) lines of every file under `directory`, sorted."""
    lines = [f"{p.relative_to(directory).as_posix()}\t{file_sha256(p, cache_file)}\n"
             for p in sorted(directory.rglob("*")) if p.is_file()]
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def file_sha256(path: Path, cache_file: Path | None = None) -> str:
    """sha256 of a file, from the cache when its path, size and mtime match an earlier hash."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _memo:
        return _memo[key]
    cache_path = cache_file or _default_cache_file()
    cached = _read_cache(cache_path)
    hit = cached.get(key[0])
    if isinstance(hit, list) and hit[:2] == [key[1], key[2]] and isinstance(hit[2], str):
        _memo[key] = hit[2]
        return hit[2]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    _memo[key] = digest.hexdigest()
    cached[key[0]] = [key[1], key[2], _memo[key]]
    _write_cache(cache_path, cached)
    return _memo[key]


def _default_cache_file() -> Path:
    from retrieval.data.datasets import cache_dir

    return cache_dir() / "sha256.json"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("file-hash cache %s is unreadable (%s); hashing again", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: Mapping[str, Any]) -> None:
    """Write atomically; a cache that cannot be written only costs a re-hash next time."""
    try:
        write_file_atomically(path, lambda fh: json.dump(data, fh))
    except OSError as exc:
        log.debug("file-hash cache %s not written: %s", path, exc)
