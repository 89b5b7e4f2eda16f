"""Wall-clock timing that tolerates a shared machine: one warm-up call, then the median of the timed calls."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def seconds_per_call(fn: Callable[[], object], min_seconds: float = 1.0, min_runs: int = 3) -> float:
    """Median seconds of `fn()` over at least `min_runs` calls and `min_seconds` of timing, after one warm-up."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
