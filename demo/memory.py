"""Keeping a long-running server's resident memory level: large buffers go back to the system when freed.

Each animation allocates and frees a few hundred megabytes in large blocks (decoded frames, warp maps, composed
frames, the encoder's buffers), on whichever worker thread Gradio runs it. glibc's malloc serves blocks above its
mmap threshold (128 KiB) with their own mappings, returned to the system on free, but raises that threshold to the
size of each such block freed (up to 32 MiB), so from the first request on the frames come from its per-thread
arenas instead, and what is freed there stays resident, split among more arenas as threads come and go. In the
soak (`heads bench soak`, docs/app.md) the server grew from 700 to 820-980 MB over 50 jobs so. Setting the
threshold fixes it where it starts; `malloc_trim` after each request returns what smaller blocks leave free.
"""

from __future__ import annotations

import ctypes
import sys
from functools import lru_cache

M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
ARENAS = 2


@lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    """glibc, where this process runs on it: musl, macOS and Windows have neither mallopt's threshold nor
    malloc_trim, and need neither fix."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def share_arenas() -> bool:
    """Let all threads share ARENAS malloc arenas; call it once, early, before the worker threads start. False where
    the C library is not glibc."""
    libc = _glibc()
    return libc is not None and libc.mallopt(M_ARENA_MAX, ARENAS) == 1


def release_free_memory() -> bool:
    """Return the free pages of malloc's arenas to the system (after a request); False where it cannot."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
