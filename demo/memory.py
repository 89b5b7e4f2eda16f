"""Keeping a long-running server's resident memory level: freed frames go back to the system.

Each animation allocates and frees a few hundred megabytes in large blocks (decoded frames, warp maps, composed
frames, the encoder's buffers). glibc's malloc raises its mmap threshold to the size of the large blocks freed, so
from the first request on these come from its arenas, which keep what is freed; and Gradio runs each request on
whichever thread of its worker pool is free (10 to 20 threads in the soak), each given an arena of its own, up to
8 per core. What malloc held in use stayed level between requests (240-330 MB), but the arenas around it grew: in
`heads bench soak` the server's resident memory went from 972 to 1082 MB over the last 50 of 100 requests. Two
arenas shared by every thread bound that growth (+33 MB), and `malloc_trim` after each request (5-15 ms) returns
their free pages (+8 MB, at 570 MB instead of 1080: docs/app.md).
"""

from __future__ import annotations

import ctypes
import sys
from functools import lru_cache

M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
ARENAS = 2  # not 1: with HEADS_CONCURRENCY > 1, a second request need not queue for the first one's arena lock


@lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    """glibc, where this process runs on it: the C libraries of musl, macOS and Windows manage memory otherwise
    and have no malloc_trim."""
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
