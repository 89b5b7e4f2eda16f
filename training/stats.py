"""Training statistics: values reported by name during a tick, written as means to JSONL and TensorBoard."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


class StatsLog:
    """Collects named scalars and flushes their means once per tick (rank 0 only writes)."""

    def __init__(self, run_dir: Path | None, tensorboard: bool = True):
        self.values: dict[str, list[float]] = defaultdict(list)
        self.jsonl = open(run_dir / "log.jsonl", "a") if run_dir else None  # noqa: SIM115 (lives with the run)
        self.writer = None
        if run_dir and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional; JSONL always works
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def add(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.values[name].append(float(value))

    def flush(self, step: int) -> dict[str, float]:
        means = {name: float(np.mean(v)) for name, v in self.values.items() if v}
        self.values.clear()
        if self.jsonl:
            self.jsonl.write(json.dumps({"step": step, "time": time.time(), **means}) + "\n")
            self.jsonl.flush()
        if self.writer:
            for name, value in means.items():
                self.writer.add_scalar(name, value, step)
        return means

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        if self.writer:
            self.writer.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.jsonl:
            self.jsonl.close()
        if self.writer:
            self.writer.close()
