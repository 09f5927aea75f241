"""Large batches on the CPU: let the C allocator keep freed memory for reuse (glibc only).

By default glibc maps fresh pages from the kernel for every allocation above its mmap threshold, and
gives memory freed at the top of its heap back to the kernel once more than its trim threshold is
free there (both 128 KiB at first; glibc raises them as the process frees large blocks, the mmap
threshold to at most 32 MiB on 64-bit systems, the trim threshold to twice that; ``mallopt(3)``). A forward pass
frees most of its tensors as it goes, so the next pass asks for that memory again, and the kernel
zeroes every fresh page first. At a batch of 32 or more that is a large share of a CPU pass, and a
probe pays it for the records it returns too (the before and after of every site: memory a plain pass
frees at once). ``python -m bench.probe_overhead`` counts the page faults of every pass, and
``--keep-freed-memory`` runs it with this module's setting; ``bench/README.md`` has the figures.

``keep_freed_memory()`` sets two of glibc's ``mallopt`` options: allocations up to 1 GiB are
served from the heap (where freed memory is reused) instead of fresh mappings, and free memory at
the heap's top is kept up to 2 GiB. The heap settles within a few passes of a loop (a freed block is
reused once it has merged with its neighbours into one large enough for the next request). The
price: the process keeps the memory of its largest pass reserved until it exits, as PyTorch's CUDA
allocator does on a GPU. (Replacing the allocator with jemalloc or tcmalloc, as AMD's ZenDNN user
guide suggests for CPU inference, is another way to the same reuse; it needs ``LD_PRELOAD`` before
the process starts.)

The setting is the whole process's, so the library never makes it on its own: the ``fmw`` command
line does (its commands are batch jobs that exit when done; ``FMW_KEEP_FREED_MEMORY=0`` opts out),
and a script or notebook may call it. With another C library (macOS, musl, Windows) nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["KEEP_FREED_MEMORY_VARIABLE", "keep_freed_memory", "keep_freed_memory_wanted"]

KEEP_FREED_MEMORY_VARIABLE = "FMW_KEEP_FREED_MEMORY"
_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
_TRIM_THRESHOLD = 2**31 - 1  # free bytes at the heap's top kept (mallopt takes an int: the most it can say)
# allocations below this come from the heap: 1 GiB where glibc accepts it, else 32 MiB (older releases' limit)
_MMAP_THRESHOLDS = (2**30, 32 * 2**20)

_kept = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (see the module's docstring); True when it is set
    (now or by an earlier call), False where the C library is not glibc or refused the settings."""
    global _kept
    if _kept:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not any(mallopt(_M_MMAP_THRESHOLD, threshold) == 1 for threshold in _MMAP_THRESHOLDS):
        return False
    if mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) != 1:
        return False
    _kept = True
    return True


def keep_freed_memory_wanted() -> bool:
    """False when ``$FMW_KEEP_FREED_MEMORY`` says no (0, false, no, off), else True."""
    return os.environ.get(KEEP_FREED_MEMORY_VARIABLE, "").strip().lower() not in {"0", "false", "no", "off"}
