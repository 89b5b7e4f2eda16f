"""`heads bench finetune`: how long personalization takes per model preset and T, written as JSON.

Fine-tuning time is measured over a few steps and extrapolated to the default step count (a step's cost does not
depend on T: its batch is drawn from the T frames); feed-forward latency is measured end to end. Each preset runs in
a fresh process so that one preset's allocations do not slow the next.
"""

from __future__ import annotations

import statistics
import time

import torch

from base.bench_report import BenchReport
from training.benchmarking import per_preset
from training.config import MODEL_PRESETS
from training.data import SyntheticEpisodes, to_tensor, to_uint8
from training.fewshot_config import FinetuneBenchConfig
from training.finetune import FineTuner, embed, personalize
from training.models import Networks
from training.phases import resolve_device


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
        ff = []
        for _ in range(3):
            start = time.perf_counter()
            personalize(networks, frames[:shots], landmarks[:shots])
            ff.append(time.perf_counter() - start)
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
            "feed_forward_seconds": statistics.median(ff),
            "seconds_per_step": per_step,
            "default_steps": steps,
            "finetune_seconds": setup + steps * per_step,
            "extrapolated_from_steps": cfg.steps,
        })
        print(f"{preset} T={shots}: FF {results[-1]['feed_forward_seconds'] * 1000:.0f} ms, FT {per_step:.2f} s/step "
              f"x {steps} steps = {results[-1]['finetune_seconds']:.0f} s (extrapolated from {cfg.steps} steps)")
    return results


def bench_finetune(cfg: FinetuneBenchConfig) -> dict:
    report = BenchReport("finetune", cfg)
    results = [row for rows in per_preset(_measure, cfg, cfg.presets) for row in rows]
    return report.write(cfg.out, versions={"torch": torch.__version__}, device=str(resolve_device(cfg.device)),
                        threads=torch.get_num_threads(), results=results)
