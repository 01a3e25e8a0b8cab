"""Saved directories (index, sequential model): atomic writes with a checksummed manifest. No pickle."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from retrieval.errors import ConfigError, IndexStateError


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomically(directory: str | Path, prefix: str, write: Callable[[Path], None],
                     manifest: Mapping[str, Any], files: Sequence[str]) -> Path:
    """Write a directory in a temp dir beside it, then swap it in, so readers never see half of it.

    An existing `directory` is replaced only when it is empty or a directory driftrec wrote of the same
    kind (its manifest.json has the same `format` family, e.g. "driftrec-index"); anything else is
    refused, so a mistyped `--out` never deletes a user's files. Writers to one parent directory take
    turns (an advisory lock on the parent); the swap is one atomic exchange where the OS offers it.

    Args:
        directory: the directory to (re)place.
        prefix: temp-dir name prefix (e.g. ".tmp-index-").
        write: writes the payload files into the temp dir it is given.
        manifest: manifest fields, with a `format` such as "driftrec-index/1"; `sha256` of every file in
            `files` is added.
        files: payload file names whose checksums go into the manifest.

    Returns:
        The written directory.

    Raises:
        ConfigError: `directory` exists and is not an empty directory or a driftrec directory of this kind.
    """
    target = Path(directory).absolute()
    kind = str(manifest["format"]).split("/")[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent):
        check_replaceable(target, kind)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        try:
            write(tmp)
            full = {**manifest, "sha256": {f: sha256_file(tmp / f) for f in files}}
            (tmp / "manifest.json").write_text(json.dumps(full, indent=2))
            if target.exists() and _exchange(tmp, target):
                shutil.rmtree(tmp)  # tmp now holds the previous version
            else:
                old = target.with_name(f".old-{target.name}")
                if target.exists():
                    os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def check_replaceable(target: Path, kind: str) -> None:
    """Refuse (ConfigError) unless `target` is absent, empty, or a driftrec directory of `kind`.

    `kind` is a manifest format family such as "driftrec-index"; commands call this before long work.
    """
    target = Path(target).absolute()
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise ConfigError(f"{target} exists and is not a directory; refusing to replace it (choose another path)")
    if target == Path.cwd() or target in Path.cwd().parents:
        raise ConfigError(f"{target} is the working directory or above it; choose a new directory to write")
    if not any(target.iterdir()):
        return
    try:
        found = json.loads((target / "manifest.json").read_text()).get("format", "")
    except (OSError, ValueError, AttributeError):
        found = ""
    if not isinstance(found, str) or found.split("/")[0] != kind:
        raise ConfigError(f"{target} exists and is not a {kind} directory written by driftrec (no matching "
                          "manifest.json); refusing to replace it: choose another path or remove it yourself")


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock on `directory` itself (no lock file is left behind)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.cache
def _renameat2() -> Any:
    """libc's renameat2, looked up once (find_library runs ldconfig); None where libc lacks it."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):
        return None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with Linux renameat2(RENAME_EXCHANGE); False where unsupported."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    return bool(renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0)


def verify_files(root: Path, files: Sequence[str], expected: Mapping[str, str], what: str, fix: str) -> None:
    """Check that every payload file exists and matches its manifest checksum.

    Args:
        root: the saved directory.
        files: payload file names.
        expected: file name → sha256 from the manifest.
        what: what the directory holds, for messages ("index", "model directory").
        fix: how the user repairs it, e.g. "rebuild with `driftrec index`".

    Raises:
        IndexStateError: a file is missing (a partial directory) or its checksum differs (corrupted).
    """
    for f in files:
        if not (root / f).is_file():
            raise IndexStateError(f"{root}: partial {what}, {f} is missing; {fix}")
        if sha256_file(root / f) != expected.get(f):
            raise IndexStateError(f"{root / f}: checksum mismatch, the {what} is corrupted; {fix}")
