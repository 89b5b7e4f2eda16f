"""`heads bench finetune`: how long personalization takes per model preset and T, or for one trained model, written
as JSON.

Presets (untrained, synthetic faces): fine-tuning time is measured over a few steps and extrapolated to the default
step count (a step's cost hardly depends on T: its batch is drawn from the T frames), each preset in a fresh process
so that one preset's allocations do not slow the next. A model (`--model`, e.g. weights/torch): the whole recipe is
run end to end on synthetic faces, every step of it (the held-out photo's early stop, which usually comes sooner on
real photos, is switched off), so the time is the most a person waits. Feed-forward latency is measured end to end.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import torch

from base.bench_report import BenchReport
from training.benchmarking import per_preset
from training.config import MODEL_PRESETS
from training.data import SyntheticEpisodes, to_tensor, to_uint8
from training.fewshot_config import FinetuneBenchConfig
from training.finetune import FineTuner, embed, load_networks, personalize
from training.models import Networks
from training.phases import resolve_device


def _feed_forward_seconds(networks: Networks, frames, landmarks, points) -> float:
    """Median of three feed-forward personalizations, end to end."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        personalize(networks, frames, landmarks, points=points)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(cfg: FinetuneBenchConfig, preset: str) -> list[dict]:
    device = resolve_device(cfg.device)
    model = MODEL_PRESETS[preset]()
    if model.guided:
        raise ValueError("the benchmark draws synthetic faces without warp guides; pick a preset without guidance")
    networks = Networks.build(model, num_videos=1).to(device)
    episode = SyntheticEpisodes(1, model.resolution, max(cfg.shots) - 1)[0]
    frames, landmarks = to_uint8(episode["frames"]), to_uint8(episode["landmarks"])
    results = []
    for shots in cfg.shots:
        ff = _feed_forward_seconds(networks, frames[:shots], landmarks[:shots], None)
        x, y = to_tensor(frames[:shots]).to(device), to_tensor(landmarks[:shots]).to(device)
        start = time.perf_counter()
        e = embed(networks, x, y)
        tuner = FineTuner(networks, e, cfg.tune)
        setup = time.perf_counter() - start
        gen = torch.Generator().manual_seed(0)
        timings = []
        for step in range(cfg.steps + 1):  # the first step warms up allocators and is not counted
            idx = torch.randint(shots, (cfg.tune.batch,), generator=gen).to(device)
            start = time.perf_counter()
            tuner.step(x[idx], y[idx], y[idx], step)
            timings.append(time.perf_counter() - start)
        per_step = statistics.mean(timings[1:])
        steps = cfg.tune.resolved_steps(shots)
        results.append({
            "preset": preset,
            "T": shots,
            "feed_forward_seconds": ff,
            "seconds_per_step": per_step,
            "default_steps": steps,
            "finetune_seconds": setup + steps * per_step,
            "extrapolated_from_steps": cfg.steps,
        })
        print(f"{preset} T={shots}: FF {results[-1]['feed_forward_seconds'] * 1000:.0f} ms, FT {per_step:.2f} s/step "
              f"x {steps} steps = {results[-1]['finetune_seconds']:.0f} s (extrapolated from {cfg.steps} steps)")
    return results


def _measure_model(cfg: FinetuneBenchConfig) -> list[dict]:
    device = resolve_device(cfg.device)
    networks = load_networks(cfg.model, device)
    episode = SyntheticEpisodes(1, networks.cfg.resolution, max(cfg.shots) - 1)[0]
    frames, landmarks = to_uint8(episode["frames"]), to_uint8(episode["landmarks"])
    points = episode["points"].double().numpy()
    settings = replace(cfg.tune, patience=10**6)  # every step runs: the most a person waits
    personalize(networks, frames[:1], landmarks[:1], replace(settings, steps=2), points[:1])  # warm-up
    results = []
    for shots in cfg.shots:
        ff = _feed_forward_seconds(networks, frames[:shots], landmarks[:shots], points[:shots])
        start = time.perf_counter()
        avatar = personalize(networks, frames[:shots], landmarks[:shots], settings, points[:shots])
        seconds = time.perf_counter() - start
        steps = avatar.info["steps_run"]
        results.append({"model": cfg.model, "recipe": settings.recipe, "T": shots, "feed_forward_seconds": ff,
                        "finetune_seconds": seconds, "steps": steps, "seconds_per_step": seconds / max(steps, 1)})
        print(f"{cfg.model} T={shots}: FF {ff * 1000:.0f} ms, FT ({settings.recipe} recipe) {seconds:.1f} s for "
              f"{steps} steps, end to end")
    return results


def bench_finetune(cfg: FinetuneBenchConfig) -> dict:
    report = BenchReport("finetune", cfg)
    if cfg.model:
        results = _measure_model(cfg)
    else:
        results = [row for rows in per_preset(_measure, cfg, cfg.presets) for row in rows]
    return report.write(cfg.out, versions={"torch": torch.__version__}, device=str(resolve_device(cfg.device)),
                        threads=torch.get_num_threads(), results=results)
