"""The three networks as one unit: build from a config, save and load as a release folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from faces.layout import PALETTE_VERSION
from training.checkpoint import load_weights, read_config, save_pretrained
from training.config import ModelConfig, from_dict, to_dict
from training.discriminator import Discriminator
from training.embedder import Embedder
from training.generator import Generator

FORMAT = "heads-meta-v1"


@dataclass
class Networks:
    cfg: ModelConfig
    E: Embedder
    G: Generator
    D: Discriminator | None = None

    @staticmethod
    def build(cfg: ModelConfig, num_videos: int = 1, with_discriminator: bool = True) -> Networks:
        D = Discriminator(cfg, num_videos) if with_discriminator else None
        return Networks(cfg, Embedder(cfg), Generator(cfg), D)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {name: m for name, m in (("E", self.E), ("G", self.G), ("D", self.D)) if m is not None}

    def metadata(self) -> dict:
        return {
            "format": FORMAT,
            "model": to_dict(self.cfg),
            "num_videos": self.D.num_videos if self.D is not None else 0,
            "palette": PALETTE_VERSION,
        }

    def save_pretrained(self, folder: str | Path, **extra) -> Path:
        return save_pretrained(folder, self.modules(), {**self.metadata(), **extra})

    @staticmethod
    def from_pretrained(folder: str | Path, device: str = "cpu", with_discriminator: bool = True) -> Networks:
        meta = read_config(folder)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder} holds {meta.get('format')!r}, not a {FORMAT} model")
        if meta.get("palette") != PALETTE_VERSION:
            raise ValueError(f"{folder} was trained on landmark palette {meta.get('palette')}, not {PALETTE_VERSION}")
        has_d = with_discriminator and (Path(folder) / "D.safetensors").is_file()
        nets = Networks.build(from_dict(ModelConfig, meta["model"]), max(1, meta["num_videos"]), has_d)
        nets.to(device)
        load_weights(folder, nets.modules())
        return nets

    def to(self, device: str | torch.device) -> Networks:
        for m in self.modules().values():
            m.to(device)
        return self
