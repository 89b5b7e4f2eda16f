"""Run by test_train under torchrun: fp16 steps on two gloo processes, an inf gradient injected on rank 1 only.

Each rank reports, per step, whether its G and D weights moved, its scalers' scales and a hash of all its weights'
bytes; the test checks that both ranks took the same decisions and hold the same weights.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from training import distributed
from training.config import DataConfig, LossConfig, ModelConfig, TrainConfig
from training.data import SyntheticEpisodes
from training.train import MetaLearner

torch.set_num_threads(1)
out = Path(sys.argv[1])
dist = distributed.init("cpu")
cfg = TrainConfig(
    model=ModelConfig.tiny(), loss=LossConfig(perceptual=(), l1=1.0), data=DataConfig(synthetic_videos=4),
    k=2, batch=1, precision="fp16", progress=False,
)
torch.manual_seed(0)
learner = MetaLearner(cfg, num_videos=4, device=torch.device("cpu"), world=dist.world)
# A modest scale: the tiny model's first fp16 steps do not overflow by themselves, so only the injected inf does.
learner.scaler_g = torch.amp.GradScaler("cpu", init_scale=16.0)
learner.scaler_d = torch.amp.GradScaler("cpu", init_scale=16.0)
for module in learner.modules().values():
    distributed.broadcast_module(module, dist.world)
episodes = SyntheticEpisodes(4, cfg.model.resolution, cfg.k)


def weights(name: str) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.nets.modules()[name].parameters()]


def moved(before: list[torch.Tensor], name: str) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, weights(name), strict=True))


def digest() -> str:
    h = hashlib.sha256()
    for module in learner.nets.modules().values():
        for p in module.parameters():
            h.update(p.detach().numpy().tobytes())
    return h.hexdigest()


poison = next(iter(learner.nets.G.parameters()))
report = []
for step, inject in enumerate((False, True, False)):
    hook = None
    if inject and dist.rank == 1:
        hook = poison.register_hook(lambda g: torch.full_like(g, float("inf")))
    sample = episodes[2 * step + dist.rank]  # each rank its own episode
    batch = {k: sample[k][None] for k in ("frames", "landmarks", "video")}
    g_before, d_before = weights("G"), weights("D")
    learner.step(batch, step)
    if hook is not None:
        hook.remove()
    report.append({
        "g_moved": moved(g_before, "G"), "d_moved": moved(d_before, "D"),
        "scale_g": learner.scaler_g.get_scale(), "scale_d": learner.scaler_d.get_scale(),
        "finite": all(bool(torch.isfinite(p).all()) for m in learner.nets.modules().values() for p in m.parameters()),
        "digest": digest(),
    })
(out / f"rank{os.environ['RANK']}.json").write_text(json.dumps(report))
distributed.shutdown()
