"""scripts/gpu_check.sh in its tiny CPU mode: the check that a GPU machine will run, run here end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tiny_mode_runs_every_step(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
           "HEADS_WHEELS": str(tmp_path / "no-wheels")}
    result = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out"), "--tiny"],
                            env=env, capture_output=True, text=True, timeout=600)
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    failed = {name: s.get("traceback", s.get("error")) for name, s in report["steps"].items() if not s["ok"]}
    assert result.returncode == 0 and report["ok"], (failed, result.stdout[-2000:], result.stderr[-2000:])
    steps = report["steps"]
    assert list(steps) == ["environment", "train_synthetic", "write_prepared", "train_prepared", "export", "generator"]
    assert steps["environment"]["missing"] == {}  # the venv has every module the project needs
    for name, data in (("train_synthetic", "synthetic"), ("train_prepared", "prepared")):
        run = steps[name]
        assert run["config"]["data"] == data and run["config"]["precision"] == "bf16"
        assert run["iterations_per_second"] > 0 and run["images_per_second"] > 0 and run["peak_memory_mb"] > 0
        assert Path(run["checkpoint"]).is_dir()
    assert (tmp_path / "out" / "export" / "generator.onnx").is_file()
    timings = steps["generator"]["milliseconds_per_frame"]
    assert all(timings[f"torch-{p}-batch{b}"] > 0 for p in ("fp32", "bf16") for b in (1, 8))
    assert timings["onnxruntime-cuda"].startswith("skipped")  # and says why


def test_usage_without_out_folder():
    result = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "usage:" in result.stderr
