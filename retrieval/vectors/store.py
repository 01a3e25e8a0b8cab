"""Saved directories (index, sequential model): atomic writes with a checksummed manifest. No pickle."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from retrieval.errors import IndexStateError


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

    Args:
        directory: the directory to (re)place.
        prefix: temp-dir name prefix (e.g. ".tmp-index-").
        write: writes the payload files into the temp dir it is given.
        manifest: manifest fields; `sha256` of every file in `files` is added.
        files: payload file names whose checksums go into the manifest.

    Returns:
        The written directory.
    """
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    write(tmp)
    full = {**manifest, "sha256": {f: sha256_file(tmp / f) for f in files}}
    (tmp / "manifest.json").write_text(json.dumps(full, indent=2))
    old = target.with_name(f".old-{target.name}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


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
