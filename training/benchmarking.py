"""What every torch benchmark shares: one fresh process per model preset. (The report layout every benchmark shares,
torch or not, is base.bench_report.)"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable

from training.config import MODEL_PRESETS


def _worker(measure: Callable, cfg, preset: str, queue) -> None:
    queue.put(measure(cfg, preset))


def per_preset(measure: Callable, cfg, presets: tuple[str, ...]) -> list:
    """Run `measure(cfg, preset)` (a module-level function) in a fresh process per preset, so that each preset's
    peak memory and allocator state are its own; returns the results in order."""
    unknown = [p for p in presets if p not in MODEL_PRESETS]
    if unknown:
        raise ValueError(f"unknown presets {unknown}; choose from {list(MODEL_PRESETS)}")
    ctx = mp.get_context("spawn")
    results = []
    for preset in presets:
        queue = ctx.Queue()
        proc = ctx.Process(target=_worker, args=(measure, cfg, preset, queue))
        proc.start()
        results.append(queue.get())
        proc.join()
    return results
