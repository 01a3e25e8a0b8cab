"""FAISS, imported lazily: the module, which FAISS wheels are installed, and moving an index to the GPUs.

FAISS is optional (the `cpu` or `gpu` extra). Without it `import retrieval.vectors.index` still works: the
"flat" backend falls back to exact numpy search and the approximate kinds raise MissingDependencyError.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from retrieval.errors import MissingDependencyError

INSTALL = "pip install 'driftrec[cpu]' (or 'driftrec[gpu]' on a CUDA 12 machine)"
# Wheels that each install the same top-level `faiss/` package: two of them overwrite each other.
DISTRIBUTIONS = ("faiss-cpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss-gpu")


def faiss_module() -> Any:
    """The `faiss` module (it ships no type information).

    Raises:
        MissingDependencyError: faiss is not installed; the message names the pip command.
    """
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError(f"faiss is missing: {INSTALL}") from exc
    return faiss


def faiss_available() -> bool:
    """True when faiss imports (a wheel whose libraries fail to load counts as missing)."""
    try:
        faiss_module()
    except MissingDependencyError:
        return False
    return True


def installed_wheels() -> list[str]:
    """The FAISS distributions installed, as "name==version"; more than one is a broken install."""
    found = []
    for name in DISTRIBUTIONS:
        try:
            found.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return found


def to_gpus(faiss: Any, index: Any) -> Any:
    """`index` on every GPU faiss sees, its rows split across them; `index` itself when there is none.

    With several GPUs the clone is sharded (`GpuMultipleClonerOptions.shard = True`): each GPU holds
    1/n of the rows and a search merges their results. The default, `shard=False`, would copy the whole
    index to every GPU, which multiplies memory instead of adding capacity.

    Args:
        faiss: the faiss module (a parameter so tests can pass a fake one).
        index: a CPU index holding its rows.

    Returns:
        A GPU index (an `IndexShards` over the GPUs when there are several), or `index` unchanged.
    """
    ngpu = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    if ngpu <= 0:
        return index
    options = faiss.GpuMultipleClonerOptions()
    options.shard = True
    return faiss.index_cpu_to_all_gpus(index, co=options, ngpu=ngpu)
