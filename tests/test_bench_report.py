"""base.bench_report: the one report layout of every `heads bench ...`, and which benchmark writes it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from base.bench_report import BenchReport
from heads.cli import COMMANDS


@dataclass(frozen=True)
class _Config:
    out: Path
    sizes: tuple[int, ...] = (1, 2)


def test_report_carries_command_machine_versions_and_results(tmp_path, capsys):
    cfg = _Config(tmp_path / "deep" / "bench.json")
    report = BenchReport("demo", cfg, gemm_seconds=0.01).write(cfg.out, versions={"lib": "1.0"}, threads=2,
                                                               results=[{"fps": 3.5}])
    assert json.loads(cfg.out.read_text()) == report
    assert list(report)[:5] == ["benchmark", "command", "config", "machine", "versions"]
    assert (report["benchmark"], report["command"]) == ("demo", "heads bench demo")
    assert report["config"] == {"out": str(cfg.out), "sizes": [1, 2]}
    machine = report["machine"]
    assert 1 <= machine["usable_cpus"] <= machine["cpus"] and machine["cpu_model"]
    assert machine["gemm_fp32_gflops"] > 0
    assert len(machine["load_average"]["start"]) == len(machine["load_average"]["end"]) == 3
    assert set(report["versions"]) == {"python", "numpy", "lib"}
    assert report["threads"] == 2 and report["results"] == [{"fps": 3.5}]
    assert "wrote" in capsys.readouterr().out


def test_every_bench_command_writes_through_it():
    """No benchmark keeps its own JSON layout: each module behind a `heads bench` command uses BenchReport."""
    root = Path(__file__).resolve().parents[1]
    benches = [c for name, c in COMMANDS.items() if name.startswith("bench ")]
    # prepare, warp, watermark, train, finetune, infer, animate, live, live-browser, loader, soak
    assert len(benches) == 11
    for command in benches:
        module = command.run.split(":")[0]
        assert "BenchReport(" in (root / (module.replace(".", "/") + ".py")).read_text(), module
