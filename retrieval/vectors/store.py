"""Saved directories (index, sequential model): atomic writes with a checksummed manifest. No pickle."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import functools
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from retrieval.errors import ConfigError, IndexStateError

T = TypeVar("T")
M = TypeVar("M")
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20
READ_ATTEMPTS = 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    with path.open("rb") as fh:
        return _sha256_handle(fh)


def write_file_atomically(path: str | Path, write: Callable[[IO[str]], T], newline: str | None = None) -> T:
    """Write one text file so that readers see the old file or the new one, never half of one.

    `write` fills a temporary file beside `path` (missing parents are created), which is then renamed
    over `path` and given an ordinary file's mode (0666 less the umask). On any error, Ctrl-C included,
    the temporary file is removed and `path` is left as it was; the error propagates (OSError for the
    file system), so each caller decides whether a failed write is fatal or only a cache miss.

    Returns:
        What `write` returns.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600
            result = write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return result


@functools.cache
def _umask() -> int:
    """The process umask, read once (reading it means setting it, which is not thread-safe to repeat)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
        manifest: manifest fields, with a `format` such as "driftrec-index/2"; `sha256` of every file in
            `files` is added.
        files: payload file names whose checksums go into the manifest.

    Returns:
        The written directory.

    Raises:
        ConfigError: `directory` exists and is not an empty directory or a driftrec directory of this kind.
    """
    target = Path(directory).absolute()
    kind = str(manifest["format"]).split("/")[0]
    check_replaceable(target, kind)  # before creating parents: a path below a file is refused here
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {target.parent}: {exc.strerror or exc}") from exc
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


def check_not_below_a_file(path: Path, label: str) -> None:
    """Refuse (ConfigError, starting with `label`) a path whose nearest existing ancestor is a file."""
    ancestor = next(p for p in Path(path).absolute().parents if p.exists())
    if not ancestor.is_dir():
        raise ConfigError(f"{label}: {ancestor} is a file, so nothing can be written below it")


def check_replaceable(target: Path, kind: str) -> None:
    """Refuse (ConfigError) unless `target` is absent, empty, or a driftrec directory of `kind`.

    `kind` is a manifest format family such as "driftrec-index"; commands call this before long work.
    """
    target = Path(target).absolute()
    check_not_below_a_file(target, str(target))
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
        if (root / f).is_symlink():
            raise IndexStateError(f"{root / f}: is a symlink, refusing to follow it; {fix}")
        if not (root / f).is_file():
            raise IndexStateError(f"{root}: partial {what}, {f} is missing; {fix}")
        if sha256_file(root / f) != expected.get(f):
            raise IndexStateError(f"{root / f}: checksum mismatch, the {what} is corrupted; {fix}")


class _Swapped(Exception):
    """The pinned directory was replaced or removed while it was read (internal: triggers a retry)."""


def read_verified(directory: str | Path, files: Sequence[str] | Callable[[M], Sequence[str]],
                  parse: Callable[[dict[str, Any]], M],
                  read: Callable[[M, Mapping[str, IO[bytes]]], T], what: str, fix: str,
                  attempts: int | None = None) -> T:
    """Read a saved directory as one consistent version, even while `write_atomically` swaps it.

    The directory is pinned by one open descriptor; manifest.json and every payload file are opened
    through it (symlinks and anything but regular files are refused, so no read can hang on a FIFO or
    leave the directory), each file's sha256 is checked on the same open handle that `read` then gets.
    When a step fails and the path no longer names the pinned directory (a writer swapped in a new
    version or is between its renames), the read starts over, at most `attempts` times with a short
    backoff; a failure in a directory that did not change is reported at once.

    Args:
        directory: the saved directory.
        files: payload file names, each with a checksum in the manifest's `sha256` map; or a function of
            the parsed manifest that returns them (a directory whose optional files the manifest lists).
        parse: validates the manifest object (a dict) and returns it typed; raises IndexStateError.
        read: builds the result from the parsed manifest and the payload handles (rewound to the start).
        what: what the directory holds, for messages ("index").
        fix: how the user repairs it, e.g. "rebuild it with `driftrec index`".
        attempts: reads tried before giving up while the directory keeps changing (default READ_ATTEMPTS).

    Returns:
        What `read` returns.

    Raises:
        IndexStateError: missing, partial, corrupted or unreadable directory, or one that kept changing.
    """
    root = Path(directory)
    attempts = attempts or READ_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return _read_once(root, files, parse, read, what, fix)
        except _Swapped as exc:
            if attempt == attempts:
                raise IndexStateError(f"{root}: the {what} kept changing while it was read ({attempts} tries: "
                                      f"{exc}); retry when no `driftrec index` is writing it") from None
            time.sleep(min(0.1, 0.002 * 2 ** attempt))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _read_once(root: Path, names: Sequence[str] | Callable[[M], Sequence[str]], parse: Callable[[dict[str, Any]], M],
               read: Callable[[M, Mapping[str, IO[bytes]]], T], what: str, fix: str) -> T:
    try:
        dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        if _being_swapped(root):
            raise _Swapped(f"{root} is missing") from None
        raise IndexStateError(f"{root}: not an {what} directory (no manifest.json); {fix}") from None
    except NotADirectoryError:
        raise IndexStateError(f"{root}: not an {what} directory (a file); {fix}") from None
    except OSError as exc:
        raise IndexStateError(f"{root}: cannot open the {what} directory ({exc.strerror}); {fix}") from None
    handles: dict[str, IO[bytes]] = {}
    try:
        try:
            manifest = _read_manifest(root, dfd, what, fix)
            typed = parse(manifest)
            files = names(typed) if callable(names) else names
            expected = _checksums(root, manifest, files, fix)
            for f in files:  # open everything first: a writer may remove the pinned version soon
                try:
                    handles[f] = _open_regular(root, dfd, f, fix)
                except FileNotFoundError:
                    raise IndexStateError(f"{root}: partial {what}, {f} is missing; {fix}") from None
            for f in files:
                if _sha256_handle(handles[f]) != expected[f]:
                    raise IndexStateError(f"{root / f}: checksum mismatch, the {what} is corrupted; {fix}")
                handles[f].seek(0)
            return read(typed, handles)
        except (IndexStateError, OSError) as exc:
            if _moved(root, dfd):
                raise _Swapped(str(exc).split(";")[0]) from None
            if isinstance(exc, OSError):
                raise IndexStateError(f"{root}: cannot read the {what} ({exc}); {fix}") from None
            raise
    finally:
        for fh in handles.values():
            fh.close()
        os.close(dfd)


def _read_manifest(root: Path, dfd: int, what: str, fix: str) -> dict[str, Any]:
    """manifest.json of the pinned directory as a dict (size-capped, strict UTF-8, a JSON object)."""
    mfile = root / MANIFEST
    try:
        fh = _open_regular(root, dfd, MANIFEST, fix)
    except FileNotFoundError:
        raise IndexStateError(f"{root}: not an {what} directory (no manifest.json); {fix}") from None
    with fh:
        raw = fh.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise IndexStateError(f"{mfile}: corrupted manifest (over {MAX_MANIFEST_BYTES:,} bytes); {fix}")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise IndexStateError(f"{mfile}: corrupted manifest (not UTF-8 text); {fix}") from None
    except (ValueError, RecursionError) as exc:
        raise IndexStateError(f"{mfile}: corrupted manifest ({_first_line(exc)}); {fix}") from None
    if not isinstance(manifest, dict):
        raise IndexStateError(f"{mfile}: corrupted manifest (a JSON {type(manifest).__name__}, expected an "
                              f"object); {fix}")
    return manifest


def _checksums(root: Path, manifest: Mapping[str, Any], files: Sequence[str], fix: str) -> dict[str, str]:
    """The manifest's sha256 of every payload file; a missing or non-text entry is a corrupted manifest."""
    table = manifest.get("sha256")
    if not isinstance(table, dict) or not all(isinstance(table.get(f), str) for f in files):
        raise IndexStateError(f"{root / MANIFEST}: corrupted manifest (`sha256` must map each of "
                              f"{', '.join(files)} to a checksum); {fix}")
    return {f: table[f] for f in files}


def _open_regular(root: Path, dfd: int, name: str, fix: str) -> IO[bytes]:
    """Open `name` inside the pinned directory: no symlink, and a regular file (never blocks on a FIFO).

    Raises:
        FileNotFoundError: `name` is absent (the caller says what that means).
        IndexStateError: a symlink or not a regular file.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dfd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW on a symlink
            raise IndexStateError(f"{root / name}: is a symlink, refusing to follow it; {fix}") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IndexStateError(f"{root / name}: not a regular file; {fix}")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _sha256_handle(fh: IO[bytes]) -> str:
    """Hex sha256 of an open file from its current position, read in 1 MiB blocks."""
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def _moved(root: Path, dfd: int) -> bool:
    """True when `root` no longer names the pinned directory (swapped, renamed aside or removed)."""
    try:
        now = os.stat(root)
    except OSError:
        return True
    pinned = os.fstat(dfd)
    return (now.st_dev, now.st_ino) != (pinned.st_dev, pinned.st_ino) or pinned.st_nlink == 0


def _being_swapped(root: Path) -> bool:
    """A missing `root` that a writer is replacing (the fallback's `.old-` copy exists, or root is back)."""
    absolute = Path(os.path.abspath(root))
    return absolute.exists() or absolute.with_name(f".old-{absolute.name}").exists()


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
