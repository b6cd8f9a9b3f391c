"""The C allocator of long runs: keep large tensors on glibc's heap instead of mapping them afresh each step.

glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and
returns it with ``munmap`` when freed. A training step at the batch sizes of the papers (NG-T at 128
SIREN graphs: ``[E, 64]`` float32 edge tensors of 37 MB; DWSNet at 512) allocates and frees several such
tensors, so every step maps them again and the kernel zero-fills their pages on first touch: NG-T spent
2.65 s of a 5.7 s step in the kernel (docs/processor-speed.md). Serving them from the heap and never
trimming it removes that cost; the price is that the process keeps its peak memory until it exits.

The ``neuralgraph`` command and the long-run scripts in ``benchmarks/`` call :func:`keep_freed_memory`
at start; the library never changes the allocator on import. ``NEURALGRAPH_MALLOC=system`` in the
environment, or any of glibc's own ``MALLOC_*`` variables or ``glibc.malloc`` tunables, leaves the
allocator as it is.
"""
from __future__ import annotations

import ctypes
import os

__all__ = ["keep_freed_memory"]

#: glibc's ``mallopt`` parameters (``<malloc.h>``).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
#: Trim threshold meaning "never": the largest value ``mallopt`` takes (an ``int``).
_NEVER_TRIM = 2 ** 31 - 1


def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc (the only one with ``mallopt`` semantics relied on), else ``None``."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    r"""Make glibc serve large blocks from its heap (``M_MMAP_MAX = 0``) and keep freed memory
    (``M_TRIM_THRESHOLD`` at its largest), as ``MALLOC_MMAP_MAX_=0`` would at start-up.

    A no-op that returns ``False`` on another C library (macOS, musl), when the environment sets
    ``NEURALGRAPH_MALLOC=system``, or when it already sets one of glibc's ``MALLOC_*`` variables or
    ``glibc.malloc`` tunables (the user's choice wins). Safe to call more than once.

    Returns:
        bool: whether the allocator was changed by this call or an earlier one.
    """
    if os.environ.get("NEURALGRAPH_MALLOC", "").lower() == "system":
        return False
    if any(name.startswith("MALLOC_") for name in os.environ) or "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
