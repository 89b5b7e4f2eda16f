"""`heads bench train`: training-step speed and peak memory per model preset, written as JSON.

Each preset runs in a fresh process so that its peak memory is its own.
"""

from __future__ import annotations

import resource
import time

import torch

from base.bench_report import BenchReport
from training.benchmarking import per_preset
from training.config import MODEL_PRESETS, LossConfig, TrainBenchConfig, TrainConfig, to_dict
from training.data import SyntheticEpisodes
from training.phases import resolve_device
from training.train import MetaLearner


def _measure(cfg: TrainBenchConfig, preset: str) -> dict:
    device = resolve_device(cfg.device)
    train_cfg = TrainConfig(
        model=MODEL_PRESETS[preset](), loss=LossConfig(perceptual=("dlib",)), k=cfg.k, batch=cfg.batch,
        precision=cfg.precision, device=str(device),
    )
    learner = MetaLearner(train_cfg, num_videos=8, device=device)
    ds = SyntheticEpisodes(8, train_cfg.model.resolution, cfg.k)
    batch = {k: torch.stack([ds[n][k] for n in range(cfg.batch)]) for k in ("frames", "landmarks", "video")}
    learner.step(batch)  # warm-up: allocations, cuDNN autotuning
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(cfg.steps):
        learner.step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / cfg.steps
    peak = (
        torch.cuda.max_memory_allocated() if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "preset": preset,
        "model": to_dict(train_cfg.model),
        "seconds_per_step": seconds,
        "iterations_per_second": 1 / seconds,
        # every step embeds K references and generates one target per episode
        "images_per_second": cfg.batch * (cfg.k + 1) / seconds,
        "peak_memory_mb": peak / 2**20,
        "peak_memory_kind": "cuda max allocated" if device.type == "cuda" else "process max RSS",
    }


def bench_train(cfg: TrainBenchConfig) -> dict:
    report = BenchReport("train", cfg)
    results = per_preset(_measure, cfg, cfg.presets)
    for r in results:
        print(f"{r['preset']}: {r['iterations_per_second']:.3f} it/s, {r['images_per_second']:.2f} images/s, "
              f"{r['peak_memory_mb']:.0f} MB")
    return report.write(cfg.out, versions={"torch": torch.__version__}, device=str(resolve_device(cfg.device)),
                        threads=torch.get_num_threads(), results=results)
