"""Run by test_train under torchrun: two steps of `train`, then each rank reports its weights' checksum."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from training import train as train_module
from training.config import DataConfig, LossConfig, ModelConfig, TrainConfig

out = Path(sys.argv[1])
seen = []
step = train_module.MetaLearner.step


def recording_step(self, batch, n=0):
    seen.extend(batch["video"].tolist())
    result = step(self, batch, n)
    checksum = sum(float(p.detach().double().sum()) for m in self.nets.modules().values() for p in m.parameters())
    self.checksum = checksum
    return result


train_module.MetaLearner.step = recording_step
learners = []
init = train_module.MetaLearner.__init__


def remember(self, *args, **kwargs):
    init(self, *args, **kwargs)
    learners.append(self)


train_module.MetaLearner.__init__ = remember
cfg = TrainConfig(
    model=ModelConfig.tiny(), loss=LossConfig(perceptual=(), l1=1.0), data=DataConfig(synthetic_videos=4),
    k=2, batch=1, steps=2, outdir=str(out / "runs"), checkpoint_every=2, image_every=0, progress=False,
)
rank = int(__import__("os").environ["RANK"])
train_module.train(cfg)
(out / f"rank{rank}.json").write_text(json.dumps({"videos": seen, "checksum": round(learners[0].checksum, 6)}))
assert not dist.is_initialized()
torch.set_num_threads(1)
