"""The one JSON layout every `heads bench ...` writes: the command, the machine it ran on, library versions, results.

A speed is only worth comparing with the machine's state beside it: this project's benchmarks run on small shared
VMs whose usable cores, CPU model and raw speed change from day to day, and whose other jobs steal time. So every
report carries the same facts about the run, measured the same way, and a reader can set two reports side by side
(or discard one taken under load) without knowing which benchmark wrote it. Torch-free on purpose: `bench prepare`
and `bench warp` run without torch, and the torch benchmarks pass torch's version and threads in as fields.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

GEMM_SIDE = 1024  # float32 matrices: big enough to be compute-bound, small enough to time in a fraction of a second


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), which on a container or a pinned job is fewer than
    `os.cpu_count()`, the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (platform.processor() is empty on most Linux systems)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gemm_gflops(seconds: float = 0.3) -> float:
    """fp32 GEMM rate of numpy's BLAS (with its own thread settings, e.g. OMP_NUM_THREADS): the machine's practical
    peak right now, the yardstick that tells a slow day of the VM from a slow change of the code. The median of
    calls repeated for at least `seconds` (and at least 3), after one warm-up call."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((GEMM_SIDE, GEMM_SIDE), dtype=np.float32) for _ in range(2))
    a @ b
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * GEMM_SIDE**3 / float(np.median(times)) / 1e9


def _load() -> list[float]:
    """1-, 5- and 15-minute load averages: above the usable CPUs, other work was competing for them."""
    return [round(v, 2) for v in os.getloadavg()]


def _jsonable(value: object) -> object:
    """A config dataclass (or anything JSON can hold once paths are strings) as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, default=str))


class BenchReport:
    """One benchmark run: made when the benchmark starts (load average, GEMM rate, before the benchmark's own work
    loads the machine), written when it ends (load average again).

        report = BenchReport("train", cfg)
        ...
        report.write(cfg.out, versions={"torch": torch.__version__}, threads=torch.get_num_threads(),
                     results=results)
    """

    def __init__(self, name: str, config: object, gemm_seconds: float = 0.3) -> None:
        self.name, self.config = name, config
        self.load_start = _load()
        self.machine = {
            "cpus": os.cpu_count(),
            "usable_cpus": usable_cpus(),
            "cpu_model": cpu_model(),
            "arch": platform.machine(),
            "gemm_fp32_gflops": round(gemm_gflops(gemm_seconds), 1),
        }

    def write(self, out: str | Path, versions: dict[str, str] | None = None, **sections: object) -> dict:
        """Write the report to `out` (folders made as needed), print where, return it. `versions`: the libraries
        whose speed the results depend on (python and numpy are always there); `sections`: the benchmark's own
        fields, e.g. `results`, `device`, `threads`, in the order given."""
        report = {
            "benchmark": self.name,
            "command": f"heads bench {self.name}",
            "config": _jsonable(self.config),
            "machine": {**self.machine, "load_average": {"start": self.load_start, "end": _load()}},
            "versions": {"python": platform.python_version(), "numpy": np.__version__, **(versions or {})},
            **{key: _jsonable(value) for key, value in sections.items()},
        }
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"heads bench {self.name}: wrote {out}")
        return report
