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
