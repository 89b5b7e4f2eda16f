"""`heads bench infer`: it runs end to end, and judges the issue's targets from config and measurements, not from how
a row is labelled."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

from export_onnx.bench import _targets, bench_infer, markdown
from export_onnx.config import InferBenchConfig
from training.config import ModelConfig


def _row(label: str, cfg: ModelConfig, speeds: dict[str, float], ssim: float) -> dict:
    return {
        "model": label, "resolution": cfg.resolution, "config": asdict(cfg), "ssim_min_vs_fp32": {"ort-int8": ssim},
        "speed": [{"engine": engine, "batch": 1, "fps": fps} for engine, fps in speeds.items()],
    }


def test_targets_follow_the_config_of_trained_folders():
    rows = [
        _row("step-0000300", ModelConfig.paper(), {"torch": 2.0, "ort-fp32": 3.2, "ort-int8": 5.0}, 0.99),
        _row("paper", ModelConfig.paper(), {"torch": 2.0, "ort-fp32": 2.9, "ort-int8": 6.0}, 0.85),
        _row("mine", replace(ModelConfig.compact256(), guidance="warp"), {"ort-fp32": 31.0, "ort-int8": 25.0}, 0.5),
    ]
    targets = _targets(rows)
    assert targets["ort_fp32_vs_torch step-0000300@256 batch 1"] == {"speedup": 1.6, "met": True}
    assert targets["ort_fp32_vs_torch paper@256 batch 1"]["met"] is False  # 1.45x
    assert targets["int8_vs_fp32 step-0000300@256 batch 1"]["met"] is True  # 1.56x and SSIM 0.99
    assert targets["int8_vs_fp32 paper@256 batch 1"]["met"] is False  # 2.07x but SSIM 0.85
    # real time is judged for compact configurations only, on the fastest variant that keeps SSIM >= 0.97
    assert [name for name in targets if name.startswith("30fps")] == ["30fps mine@256"]
    assert targets["30fps mine@256"] == {"fps": 31.0, "engine": "ort-fp32", "batch": 1, "met": True}


def test_bench_infer_runs_end_to_end_on_the_tiny_model(tmp_path):
    """One short run: every engine and batch timed, int8 scored against fp32, JSON and the Markdown table written."""
    cfg = InferBenchConfig(presets=("tiny",), resolutions=(64,), batches=(1, 2), engines=("torch", "ort-fp32",
                           "ort-int8"), seconds=0.01, threads=2, out=tmp_path / "infer.json")
    report = bench_infer(cfg)
    assert json.loads(cfg.out.read_text()) == report
    (row,) = report["results"]
    assert {(s["engine"], s["batch"]) for s in row["speed"]} == {(e, b) for e in cfg.engines for b in (1, 2)}
    assert all(s["fps"] > 0 and s["ms_per_frame"] > 0 for s in row["speed"])
    assert 0 < row["ssim_min_vs_fp32"]["ort-int8"] <= 1 and row["onnx_parity_max_abs"] < 1e-3
    assert "split over 1-thread sessions" in markdown(report)
    assert "in one session with all threads" in markdown(bench_infer(replace(cfg, engines=("ort-fp32",),
                                                                              split_batches=False)))
