"""`heads bench loader`: how fast meta-learning's DataLoader delivers episodes, from a prepared folder and from its
shards, per worker count, written as JSON.

The loader is built exactly as `heads train` builds it (`make_dataset`, `make_loader`), so the numbers include the
JPEG decoding, the augmentation and the landmark images the trainer waits for. Timing starts once every worker has
delivered a batch (process start-up and the first shard opened are left out). With 0 workers the episodes are made
in this process, which also gives the CPU-seconds per episode: on a machine whose cores are busy with other work,
that, not the wall clock, is what one worker with a core of its own would reach.
"""

from __future__ import annotations

import time

import torch

from base.bench_report import BenchReport
from training.config import DataConfig, LoaderBenchConfig, ModelConfig, TrainConfig
from training.train import make_dataset, make_loader


def _measure(cfg: LoaderBenchConfig, source: str, root: str, workers: int) -> dict:
    train_cfg = TrainConfig(
        model=ModelConfig(cfg.resolution, guidance="warp" if cfg.guided else "none"), k=cfg.k, batch=cfg.batch,
        data=DataConfig(source=source, root=root, split=cfg.split, workers=workers, augment=cfg.augment,
                        min_frames=cfg.min_frames, shuffle=cfg.shuffle),
    )
    loader = make_loader(train_cfg, make_dataset(train_cfg), 0)
    batches = iter(loader)
    for _ in range(max(1, workers)):  # every worker started and through its first batch
        next(batches)
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(cfg.batches):
        next(batches)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    del batches, loader  # ends the workers before the next setting starts its own
    episodes = cfg.batches * cfg.batch
    per_second = episodes / seconds
    result = {
        "layout": source,
        "workers": workers,
        "episodes": episodes,
        "seconds": round(seconds, 3),
        "episodes_per_second": round(per_second, 2),
        "images_per_second": round(per_second * (cfg.k + 1), 1),  # K + 1 frames decoded per episode
        "episodes_per_second_per_worker": round(per_second / max(1, workers), 2),
        "images_per_second_per_worker": round(per_second * (cfg.k + 1) / max(1, workers), 1),
    }
    if workers == 0:  # made in this process: its CPU time is the cost of an episode
        result["cpu_seconds_per_episode"] = round(cpu / episodes, 4)
        result["episodes_per_cpu_second"] = round(episodes / cpu, 2)
    return result


def bench_loader(cfg: LoaderBenchConfig) -> dict:
    report = BenchReport("loader", cfg)
    torch.set_num_threads(1)  # as in the workers (`make_loader`): one thread each
    layouts = [(name, root) for name, root in (("prepared", cfg.prepared), ("shards", cfg.shards)) if root]
    results = []
    for workers in cfg.workers:
        for source, root in layouts:  # the layouts side by side at each worker count: alike when the load drifts
            r = _measure(cfg, source, root, workers)
            results.append(r)
            cost = f", {r['cpu_seconds_per_episode'] * 1e3:.0f} ms CPU/episode" if workers == 0 else ""
            print(f"{source}, {workers} workers: {r['episodes_per_second']:.1f} episodes/s, "
                  f"{r['images_per_second']:.0f} images/s ({r['episodes_per_second_per_worker']:.1f} episodes/s "
                  f"per worker){cost}")
    return report.write(cfg.out, versions={"torch": torch.__version__}, threads=torch.get_num_threads(),
                        results=results)
