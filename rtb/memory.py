"""Keep freed memory in the process: page faults are the simulator's hidden cost.

Every tick allocates temporaries of a few hundred kilobytes. glibc serves blocks that
large with fresh mmap()s and returns them on free(), so every tick pays a page fault
per 4 KiB touched; on a virtual machine each fault can cost tens of microseconds,
more than the auction itself. Raising the mmap and trim thresholds makes malloc reuse
the same warm memory tick after tick.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit
_done = False


def keep_freed_memory() -> bool:
    """Tune glibc malloc once per process; returns whether it applied (glibc only)."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): leave the allocator alone
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    _done = ok
    return ok


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the system once (glibc malloc_trim), e.g. the
    market's build temporaries before a run: under keep_freed_memory()'s thresholds the
    heap keeps them (large at 10 million users: 72 MiB, 7 bytes a user, which the run's
    peak would carry). The ticks then grow the heap again to what they reuse."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(trim(0))
