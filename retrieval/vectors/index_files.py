"""The files of a saved index: the manifest schema and strict readers of the payload (no pickle).

Everything read from an index directory is checked before use, so a damaged or hand-edited directory
gives one IndexStateError line instead of a traceback or a wrong result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from retrieval.errors import IndexStateError
from retrieval.vectors.faiss_support import faiss_module

FORMAT = "driftrec-index/2"
FAMILY = "driftrec-index"
FILES = ("vectors.npy", "ids.json", "texts.json")
FAISS_FILE = "index.faiss"
# The first four bytes `faiss.write_index` writes for the index class of each persisted kind: checked
# before the file reaches FAISS's deserializer, so it only ever parses the one class expected.
FAISS_HEADERS = {"flat": b"IxFI", "hnsw": b"IHNf", "ivf": b"IwFl"}
_SAMPLED_ROWS = 16
_SHA256 = r"^[0-9a-f]{64}$"


def rebuild_hint(root: Path) -> str:
    """How the user repairs the index at `root`, for the end of error messages."""
    return f"rebuild it with `driftrec index --out {root}` or pass --rebuild"


class CatalogStamp(BaseModel):
    """The catalogue an index embedded (see `retrieval.vectors.fingerprint`).

    Attributes:
        sha256: fingerprint over the ids and the sha256 of each embedded text, in order.
        count: number of items.
        text: how each item's embedded text was made.
    """

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    sha256: str = Field(pattern=_SHA256)
    count: int = Field(ge=0)
    text: str = "Item.embedding_text"


class FaissStamp(BaseModel):
    """The FAISS index saved beside the vectors, so a load does not rebuild it.

    Attributes:
        kind: the backend it serves ("flat", "hnsw" or "ivf"; a key of `FAISS_HEADERS`).
        file: its file name, also listed (with its sha256) in the manifest's `sha256` map.
        faiss_version: the faiss that wrote it, for the record.
    """

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    kind: str = Field(min_length=1)
    file: Literal["index.faiss"] = "index.faiss"
    faiss_version: str = ""


class IndexManifest(BaseModel):
    """manifest.json of a saved index; `catalog` is None for an index built from bare vectors, `faiss`
    None when no FAISS index was saved (a numpy backend, or a directory written before FAISS indexes were
    persisted: its index is rebuilt on load)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    format: Literal["driftrec-index/2"]
    embedder: str = Field(min_length=1)
    dim: int = Field(gt=0)
    count: int = Field(ge=0)
    metric: Literal["inner_product"] = "inner_product"
    backend: str = Field(default="flat", min_length=1)
    catalog: CatalogStamp | None
    faiss: FaissStamp | None = None


def payload_files(manifest: IndexManifest) -> tuple[str, ...]:
    """The files of the directory that `manifest` describes, each checksummed in its `sha256` map."""
    return FILES if manifest.faiss is None else (*FILES, manifest.faiss.file)


def parse_manifest(root: Path, manifest: dict[str, Any]) -> IndexManifest:
    """Validate the manifest object of the index at `root`.

    Raises:
        IndexStateError: another kind of directory, an older format without a catalogue fingerprint,
            or a missing or wrong-typed field.
    """
    fix, found = rebuild_hint(root), manifest.get("format")
    if not isinstance(found, str) or found.split("/")[0] != FAMILY:
        raise IndexStateError(f"{root}: not an index directory (manifest format {found!r}); {fix}")
    if found != FORMAT:
        raise IndexStateError(f"{root}: written in format {found!r}, which records no catalogue fingerprint "
                              f"(this driftrec reads {FORMAT!r}); {fix}")
    try:
        return IndexManifest.model_validate(manifest)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"])
        raise IndexStateError(f"{root / 'manifest.json'}: corrupted manifest (field {where}: {err['msg']}); "
                              f"{fix}") from None


def read_vectors(fh: IO[bytes], path: Path, count: int, dim: int, fix: str) -> np.ndarray:
    """The (count, dim) float32 matrix of vectors.npy; the header is checked before any data is read.

    Raises:
        IndexStateError: not a .npy array (a pickle, say), another shape or dtype, or non-finite values.
    """
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if dtype.kind != "f" or dtype.hasobject:
            raise ValueError(f"dtype {dtype}, expected floating point")
        if shape != (count, dim):
            raise IndexStateError(f"{path}: holds {shape} vectors, but the manifest says {count}×{dim} "
                                  f"(wrong dimension or count); {fix}")
        fh.seek(0)
        vectors = np.load(fh, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IndexStateError(f"{path}: not a float vector array ({str(exc).splitlines()[0]}); {fix}") from None
    if not np.isfinite(vectors).all():
        raise IndexStateError(f"{path}: holds NaN or infinite values; {fix}")
    return np.ascontiguousarray(vectors, dtype=np.float32)


def read_strings(fh: IO[bytes], path: Path, count: int, fix: str, nullable: bool = False) -> list[Any]:
    """A JSON list of `count` strings (None allowed where `nullable`), strict UTF-8.

    Raises:
        IndexStateError: not UTF-8 JSON, not a list, another length, or an element of another type.
    """
    try:
        value = json.loads(fh.read().decode("utf-8"))
    except UnicodeDecodeError:
        raise IndexStateError(f"{path}: not UTF-8 text; {fix}") from None
    except (ValueError, RecursionError) as exc:
        raise IndexStateError(f"{path}: not valid JSON ({str(exc).splitlines()[0]}); {fix}") from None
    if not isinstance(value, list) or len(value) != count:
        size = len(value) if isinstance(value, list) else type(value).__name__
        raise IndexStateError(f"{path}: expected a list of {count} entries, found {size}; {fix}")
    if not all(isinstance(v, str) or (nullable and v is None) for v in value):
        raise IndexStateError(f"{path}: every entry must be a string; {fix}")
    return value


def read_faiss(fh: IO[bytes], path: Path, kind: str, vectors: np.ndarray, fix: str) -> Any:
    """The FAISS index in index.faiss (`faiss.read_index`), checked against the vectors it must hold.

    Args:
        fh: the checksum-verified file, at its start.
        path: its path, for messages.
        kind: the kind the manifest records, a key of `FAISS_HEADERS`.
        vectors: (n, dim) float32 rows of vectors.npy, in row order.
        fix: how the user repairs the index, for messages.

    Returns:
        The CPU faiss index.

    Raises:
        IndexStateError: another index class, an unreadable file, another metric, count or dimension, or
            stored rows that differ from vectors.npy (sampled).
    """
    faiss = faiss_module()
    head = fh.read(4)
    fh.seek(0)
    if head != FAISS_HEADERS[kind]:
        raise IndexStateError(f"{path}: not a FAISS {kind} index (header {head!r}); {fix}")
    try:
        index = faiss.read_index(faiss.PyCallbackIOReader(fh.read))
    except RuntimeError as exc:
        raise IndexStateError(f"{path}: unreadable FAISS index ({_faiss_error(exc)}); {fix}") from None
    n, dim = vectors.shape
    if index.metric_type != faiss.METRIC_INNER_PRODUCT or index.d != dim or index.ntotal != n:
        raise IndexStateError(f"{path}: holds {index.ntotal}×{index.d} vectors (metric {index.metric_type}), but "
                              f"vectors.npy holds {n}×{dim} for inner product; {fix}")
    if kind == "ivf":
        index.make_direct_map()  # IVF rows can be read back only through a direct map
    rows = np.unique(np.linspace(0, n - 1, min(n, _SAMPLED_ROWS)).astype(np.int64))
    try:
        same = all(np.array_equal(index.reconstruct(int(r)), vectors[r]) for r in rows)
    except RuntimeError as exc:
        raise IndexStateError(f"{path}: unreadable FAISS index ({_faiss_error(exc)}); {fix}") from None
    if kind == "ivf":
        index.set_direct_map_type(faiss.DirectMap.NoMap)
    if not same:
        raise IndexStateError(f"{path}: its rows differ from vectors.npy (saved from other vectors); {fix}")
    return index


def _faiss_error(exc: BaseException) -> str:
    """The useful part of a faiss C++ exception: the last clause of its first line."""
    line = (str(exc).splitlines() or [type(exc).__name__])[0]
    return line.rsplit("Error: ", 1)[-1].strip()[:200]
