"""Keep freed heap memory mapped (glibc), so that a training step's large CPU tensors reuse faulted-in pages.

PyTorch's CPU allocator is plain `malloc`. glibc serves large blocks with `mmap` (above a threshold that adapts
up to 32 MiB) and gives memory freed at the top of the heap back to the kernel. A training step allocates and
frees the same multi-megabyte activations every step, so with the defaults every allocation page-faults, and the
kernel zeroes, each page again (measured in docs/ARCHITECTURE.md, "Runtime settings":
`python scripts/bench_grpo_vs_trl.py --only reasoner` with and without `--no-keep-freed-memory`). This is what
the usual advice for PyTorch on CPU (preloading jemalloc or tcmalloc) achieves, without a preload. The price:
the process keeps its peak heap instead of shrinking after a large step. Other C libraries (musl, macOS) are left alone.
"""
from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_INT_MAX = 2**31 - 1


def keep_freed_memory() -> bool:
    """Raise glibc's mmap threshold to its maximum (32 MiB) and stop heap trimming. True if applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):          # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, _INT_MAX), (_M_TOP_PAD, 64 << 20))
    return all(mallopt(param, value) == 1 for param, value in settings)
