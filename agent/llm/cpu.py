"""CPU checks that keep llama.cpp's native code from taking the process down.

llama-cpp-python 0.3.36 built with `-march=native` on a CPU with AMX (Intel Sapphire Rapids and later)
places quantised weights (Q4_0, Q4_1, Q8_0, K-quants) in llama.cpp's AMX buffers. Its AMX matrix
multiply runs on worker threads that never asked the kernel for permission to use the AMX tile state
(`arch_prctl(ARCH_REQ_XCOMP_PERM)` is called on the main thread only; llama.cpp PR #26954), so with
more than one thread the first evaluation dies with SIGSEGV. F16 weights never use the AMX path,
which is why the F16 conversion works. On such a CPU driftrec loads every model with llama.cpp's
extra buffer types (AMX, CPU repacking) switched off: the weights stay in plain CPU buffers and the
ordinary AVX-512 kernels run them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from retrieval.log import get_logger

log = get_logger(__name__)

AMX_FLAGS = frozenset({"amx_tile", "amx_int8", "amx_bf16"})
_PATCH_LOCK = threading.Lock()


@cache
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The feature flags of the first CPU in `cpuinfo` (Linux); empty where the file is absent."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def has_amx(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU has AMX tiles, the hardware on which quantised llama.cpp weights crash."""
    return bool(AMX_FLAGS & (cpu_flags() if flags is None else flags))


@contextlib.contextmanager
def safe_model_params(disable_extra_buffers: bool) -> Iterator[None]:
    """Within the block, every `llama_cpp.Llama(...)` loads with `use_extra_bufts=False` when asked.

    `Llama.__init__` takes no argument for it, so the default-parameter factory it calls is wrapped for
    the duration of the load, under a process-wide lock so that concurrent loads see a consistent factory.
    """
    if not disable_extra_buffers:
        yield
        return
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = False
        return p

    with _PATCH_LOCK:
        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = original
