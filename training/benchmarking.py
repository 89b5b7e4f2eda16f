"""What every torch benchmark shares: one fresh process per model preset, and one JSON report layout."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
from collections.abc import Callable
from pathlib import Path

import torch

from training.config import MODEL_PRESETS, to_dict


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


def write_report(name: str, device: str, cfg, results: list, out: str | Path, load_before: float) -> dict:
    """The JSON every `heads bench` of torch code writes, with the load average since the other work matters here."""
    report = {
        "benchmark": name,
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": [load_before, os.getloadavg()[0]],  # 1-minute, at start and end
        "config": to_dict(cfg),
        "results": results,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report
