"""Avatars: one person's personalization of a meta-learned model, as a folder that export and the app read.

    avatar.json          format, model id and config, T, steps, source hashes, settings
    avatar.safetensors   psi (1, psi_size): every AdaIN parameter of the person (ψ̂ = P·ê, or the fine-tuned ψ′)
                         embedding (1, N): ê_NEW, the mean of E over the T frames
                         G.* (fine-tuned avatars only): the fine-tuned generator's state dict
                         source_frames (T, R, R, 3) uint8, source_points (T, 68, 2) (warp-guided models only: the
                         guide is warped from them at every frame)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from training.config import ModelConfig, from_dict
from training.generator import Generator
from training.models import Networks

FORMAT = "heads-avatar-v1"
JSON_FILE, TENSORS_FILE = "avatar.json", "avatar.safetensors"


def model_id(networks: Networks) -> str:
    """Short SHA-256 of E's and G's weights: an avatar is only valid with the model that embedded it."""
    digest = hashlib.sha256()
    for name in ("E", "G"):
        for key, value in sorted(getattr(networks, name).state_dict().items()):
            digest.update(f"{name}.{key}".encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class Avatar:
    psi: torch.Tensor  # (1, psi_size)
    embedding: torch.Tensor  # (1, N)
    info: dict  # the avatar.json fields
    generator: dict[str, torch.Tensor] | None = None  # fine-tuned G; None: the model's own G (feed-forward)
    sources: dict[str, np.ndarray] = field(default_factory=dict)  # source_frames, source_points (warp-guided)

    @property
    def finetuned(self) -> bool:
        return self.generator is not None

    @property
    def model(self) -> ModelConfig:
        return from_dict(ModelConfig, self.info["model"])

    def generator_for(self, networks: Networks) -> Generator:
        """The generator to render with: the model's own G, or a copy carrying the fine-tuned weights."""
        if self.info["model_id"] != model_id(networks):
            raise ValueError(f"avatar was made with model {self.info['model_id']}, not {model_id(networks)}")
        if self.generator is None:
            return networks.G
        G = Generator(networks.cfg).to(next(networks.G.parameters()).device)
        G.load_state_dict(self.generator, strict=True)
        return G.eval()

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"psi": self.psi, "embedding": self.embedding}
        out.update({f"G.{k}": v for k, v in (self.generator or {}).items()})
        out.update({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.sources.items()})
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    def save(self, folder: str | Path) -> Path:
        """Write the folder atomically: a temporary sibling renamed into place, never a half-written avatar."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(f".tmp-{folder.name}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file(self.tensors(), tmp / TENSORS_FILE, metadata={"format": FORMAT})
        (tmp / JSON_FILE).write_text(json.dumps(self.info, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        return folder

    @staticmethod
    def load(folder: str | Path) -> Avatar:
        folder = Path(folder)
        if not (folder / JSON_FILE).is_file() or not (folder / TENSORS_FILE).is_file():
            raise FileNotFoundError(f"{folder} is not an avatar folder ({JSON_FILE} and {TENSORS_FILE} expected)")
        info = json.loads((folder / JSON_FILE).read_text())
        if info.get("format") != FORMAT:
            raise ValueError(f"{folder} holds {info.get('format')!r}, not a {FORMAT} avatar")
        tensors = load_file(folder / TENSORS_FILE)
        generator = {k[2:]: v for k, v in tensors.items() if k.startswith("G.")} or None
        sources = {k: tensors[k].numpy() for k in ("source_frames", "source_points") if k in tensors}
        return Avatar(tensors["psi"], tensors["embedding"], info, generator, sources)
