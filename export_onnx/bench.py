"""`heads bench infer`: how fast the generator renders on this machine, per engine, precision, size and batch.

Every case renders a personalized generator G′(y) (ψ′ baked in, as the app does): PyTorch eager on the baked
weights in fp32 and bf16 autocast, and onnxruntime through `demo.engine` in fp32 and int8. Speed is set against
the machine's own fp32 GEMM rate measured in the same run with the same threads (its practical roofline); int8
and bf16 are also scored by SSIM against the fp32 frames on synthetic faces.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from base.bench_report import BenchReport
from contract.graphs import graph_inputs
from demo.engine import OnnxModel, SessionSettings, to_uint8
from export_onnx.config import InferBenchConfig
from export_onnx.export import bake, export_personalized
from export_onnx.quantize import to_int8
from export_onnx.samples import realistic
from export_onnx.timing import seconds_per_call
from training.config import MODEL_PRESETS, ModelConfig, to_dict
from training.generator import Generator
from training.layers import SelfAttention
from training.metrics.ssim import ssim
from training.models import Networks

SSIM_BOUND = 0.97  # fidelity a faster variant must keep to count


def generator_flops(G: Generator) -> int:
    """FLOPs of one frame: 2 × multiply-accumulates of every convolution and of self-attention's two products."""
    total = 0

    def conv(m: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += 2 * output[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def attention(m: SelfAttention, inputs, _output) -> None:
        nonlocal total
        pixels = inputs[0].shape[2] * inputs[0].shape[3]
        total += 2 * pixels * (pixels // 4) * (m.query.out_channels + m.value.out_channels)

    hooks = [m.register_forward_hook(conv) for m in G.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(attention) for m in G.modules() if isinstance(m, SelfAttention)]
    side = G.cfg.resolution
    with torch.no_grad():
        G(torch.zeros(1, G.cfg.input_channels, side, side), torch.zeros(1, G.cfg.embed_dim), refinement=G.refines)
    for hook in hooks:
        hook.remove()
    return total


def gemm_gflops(seconds: float) -> float:
    """fp32 GEMM rate of torch.matmul on 2048² matrices with the current thread count: the roofline of the cases,
    as it uses the same library and threads as the timed renderers (the report's machine section holds numpy's rate,
    measured once at the start, which describes the machine rather than these cases)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048**3 / seconds_per_call(lambda: a @ b, min_seconds=seconds) / 1e9


def _person(nets: Networks) -> torch.Tensor:
    """ψ = P·ê of one synthetic face."""
    face = realistic(nets.cfg, 1, seed=9)
    with torch.no_grad():
        return nets.G.eval().psi(nets.E.eval()(torch.from_numpy(face["frames"]), torch.from_numpy(face["landmarks"])))


def _inputs(cfg: ModelConfig, count: int, seed: int) -> np.ndarray:
    sample = realistic(cfg, count, seed)
    return np.concatenate([sample["landmarks"], sample["guide"]], 1) if "guide" in sample else sample["landmarks"]


def _renderers(
    nets: Networks, psi: torch.Tensor, engines: tuple[str, ...], folder: Path, settings: SessionSettings
) -> tuple[dict[str, Callable[[np.ndarray], np.ndarray]], float]:
    """engine name -> function from a float32 (B, C, R, R) batch to (B, 3, R, R) frames; and the fp32 graph's
    parity with PyTorch (allowed up to 1e-3 here, so that a benchmark of random weights still runs to the end)."""
    baked = bake(nets.G)
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {}

    def torch_render(y: np.ndarray, bf16: bool) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            return baked.render(torch.from_numpy(y), psi).float().numpy()

    if "torch" in engines:
        out["torch"] = lambda y: torch_render(y, False)
    if "torch-bf16" in engines:
        out["torch-bf16"] = lambda y: torch_render(y, True)
    fp32 = folder / "personalized.onnx"
    meta = {"model_id": "random", "T": 1, "steps": 0, "provenance": "heads bench infer"}
    parity = export_personalized(nets.G, psi, fp32, meta, tolerance=1e-3)
    names = graph_inputs("personalized", nets.cfg.guided)

    def onnx_render(model: OnnxModel):
        return lambda y: model(**dict(zip(names, np.split(y, [3], 1)[: len(names)], strict=True)))

    if "ort-fp32" in engines:
        out["ort-fp32"] = onnx_render(OnnxModel(fp32, ("personalized",), settings))
    if "ort-int8" in engines:
        calibration = _inputs(nets.cfg, 8, seed=100)
        feeds = dict(zip(names, np.split(calibration, [3], 1)[: len(names)], strict=True))
        int8 = to_int8(fp32, folder / "personalized.int8.onnx", feeds)
        out["ort-int8"] = onnx_render(OnnxModel(int8, ("personalized",), settings))
    return out, parity


def _case(nets: Networks, label: str, weights: str, cfg: InferBenchConfig, threads: int) -> dict:
    """Times one model; the GEMM rate is measured again right before, as other work on the machine comes and goes."""
    flops = generator_flops(nets.G)
    psi = _person(nets)
    with tempfile.TemporaryDirectory() as tmp:
        settings = SessionSettings(device="cpu", threads=threads, split_batches=cfg.split_batches)
        renderers, parity = _renderers(nets, psi, cfg.engines, Path(tmp), settings)
        check = _inputs(nets.cfg, cfg.fidelity_images, seed=200)
        reference = to_uint8(renderers["ort-fp32" if "ort-fp32" in renderers else "torch"](check))
        fidelity = {
            name: round(float(ssim(reference, to_uint8(render(check))).min()), 4)
            for name, render in renderers.items() if name in ("torch-bf16", "ort-int8")
        }
        speed, peak = [], gemm_gflops(cfg.seconds)
        for batch in cfg.batches:
            y = _inputs(nets.cfg, batch, seed=300)
            for name, render in renderers.items():
                seconds = seconds_per_call(lambda r=render, y=y: r(y), min_seconds=cfg.seconds) / batch
                speed.append({
                    "engine": name, "batch": batch, "ms_per_frame": round(1e3 * seconds, 2),
                    "fps": round(1 / seconds, 2), "gflops": round(flops / seconds / 1e9, 1),
                    "of_gemm_peak": round(flops / seconds / 1e9 / peak, 3),
                })
                print(f"{label} {nets.cfg.resolution}px {name:<10} batch {batch}: {1e3 * seconds:8.1f} ms/frame "
                      f"{1 / seconds:7.2f} fps {flops / seconds / 1e9:6.1f} GFLOP/s (GEMM {peak:.0f})", flush=True)
    return {
        "model": label, "resolution": nets.cfg.resolution, "weights": weights, "config": to_dict(nets.cfg),
        "gflop_per_frame": round(flops / 1e9, 3), "gemm_fp32_gflops": round(peak, 1),
        "generator_parameters_m": round(sum(p.numel() for p in nets.G.parameters()) / 1e6, 2),
        "onnx_parity_max_abs": parity, "ssim_min_vs_fp32": fidelity, "speed": speed,
    }


def _candidate(spec: str) -> ModelConfig:
    base, top, blocks, bottleneck = (int(v) for v in spec.split(","))
    return replace(ModelConfig.compact(), resolution=256, base_channels=base, max_channels=top,
                   res_blocks=blocks, bottleneck=bottleneck)


def _best(row: dict) -> dict:
    """The fastest speed entry among the variants that keep SSIM ≥ SSIM_BOUND against fp32."""
    ok = [s for s in row["speed"] if row["ssim_min_vs_fp32"].get(s["engine"], 1.0) >= SSIM_BOUND]
    return max(ok, key=lambda s: s["fps"])


def _is_paper(row: dict) -> bool:
    """The paper's widths (a preset or a trained model folder), whatever the row is labelled."""
    paper = ModelConfig.paper()
    return (row["config"]["base_channels"], row["config"]["max_channels"]) == (paper.base_channels, paper.max_channels)


def _targets(results: list[dict]) -> dict:
    """The issue's targets, judged from this run."""
    def speed(row: dict, engine: str, batch: int) -> float | None:
        return next((s["fps"] for s in row["speed"] if s["engine"] == engine and s["batch"] == batch), None)

    out: dict[str, dict] = {}
    for row in results:
        key = f"{row['model']}@{row['resolution']}"
        for batch in sorted({s["batch"] for s in row["speed"]}):
            torch_fps, fp32, int8 = (speed(row, e, batch) for e in ("torch", "ort-fp32", "ort-int8"))
            if _is_paper(row) and row["resolution"] == 256 and torch_fps and fp32:
                out[f"ort_fp32_vs_torch {key} batch {batch}"] = {"speedup": round(fp32 / torch_fps, 2),
                                                                  "met": fp32 / torch_fps >= 1.5}
            if fp32 and int8:
                ssim_int8 = row["ssim_min_vs_fp32"]["ort-int8"]
                out[f"int8_vs_fp32 {key} batch {batch}"] = {
                    "speedup": round(int8 / fp32, 2), "ssim_min": ssim_int8,
                    "met": int8 / fp32 >= 1.5 and ssim_int8 >= SSIM_BOUND,
                }
        if row["resolution"] == 256 and not _is_paper(row):
            best = _best(row)
            out[f"30fps {key}"] = {"fps": best["fps"], "engine": best["engine"], "batch": best["batch"],
                                   "met": best["fps"] >= 30}
    return out


def bench_infer(cfg: InferBenchConfig) -> dict:
    report = BenchReport("infer", cfg)
    threads = cfg.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    results = []
    for preset in cfg.presets:
        for resolution in cfg.resolutions:
            torch.manual_seed(0)
            nets = Networks.build(replace(MODEL_PRESETS[preset](), resolution=resolution), with_discriminator=False)
            results.append(_case(nets, preset, "random", cfg, threads))
    for folder in cfg.models:
        nets = Networks.from_pretrained(folder, with_discriminator=False)
        results.append(_case(nets, Path(folder).name, str(folder), cfg, threads))
    for spec in cfg.candidates:
        torch.manual_seed(0)
        nets = Networks.build(_candidate(spec), with_discriminator=False)
        results.append(_case(nets, f"candidate {spec}", "random", replace(cfg, engines=("ort-fp32", "ort-int8")),
                             threads))
    written = report.write(cfg.out, versions={"torch": torch.__version__, "onnxruntime": ort.__version__},
                           threads=threads, results=results, targets=_targets(results))
    print(markdown(written))
    return written


def markdown(report: dict) -> str:
    """The report as the Markdown table of docs/inference.md."""
    lines = [
        f"{report['threads']} threads, torch {report['versions']['torch']}, onnxruntime "
        f"{report['versions']['onnxruntime']}; 1-minute load average {report['machine']['load_average']['start'][0]} "
        f"at the start, {report['machine']['load_average']['end'][0]} at the end. GEMM: fp32 torch.matmul rate "
        "(2048², same threads) measured right before each model's cases. onnxruntime batches "
        + ("split over 1-thread sessions, one per thread." if report["config"].get("split_batches", True)
           else "in one session with all threads."),
        "",
        "| model | px | GFLOP/frame | GEMM GFLOP/s | engine | batch | ms/frame | frames/s | GFLOP/s | of GEMM "
        "| SSIM vs fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["results"]:
        for s in row["speed"]:
            fidelity = row["ssim_min_vs_fp32"].get(s["engine"])
            lines.append(
                f"| {row['model']} | {row['resolution']} | {row['gflop_per_frame']:.1f} "
                f"| {row['gemm_fp32_gflops']:.0f} | {s['engine']} | {s['batch']} "
                f"| {s['ms_per_frame']:.1f} | {s['fps']:.1f} | {s['gflops']:.0f} | {100 * s['of_gemm_peak']:.0f}% "
                f"| {'-' if fidelity is None else f'{fidelity:.3f}'} |"
            )
    lines += ["", "| target | result | met |", "|---|---|---|"]
    for name, t in report["targets"].items():
        detail = ", ".join(f"{k} {v}" for k, v in t.items() if k != "met")
        lines.append(f"| {name} | {detail} | {'yes' if t['met'] else 'no'} |")
    return "\n".join(lines)
