"""Checkpoints and releases, from state dicts only.

A release (`save_pretrained`) is a folder of `config.json` plus one `<name>.safetensors` per network, so a model
rebuilds from its own files. A training checkpoint is a release plus `state.pt` (optimisers, step, RNG), written to a
temporary folder and renamed into place, so a killed run never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

CHECKPOINT_PREFIX = "step-"


def save_pretrained(folder: str | Path, modules: dict[str, nn.Module], config: dict) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
        save_file(state, folder / f"{name}.safetensors")
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def load_weights(folder: str | Path, modules: dict[str, nn.Module]) -> None:
    """Load each module strictly from `<name>.safetensors`; a missing file or key is an error, never a re-init."""
    folder = Path(folder)
    for name, module in modules.items():
        path = folder / f"{name}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {folder} is not a complete model folder")
        state = load_file(path, device=str(next(module.parameters()).device))
        module.load_state_dict(state, strict=True)


def read_config(folder: str | Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: expected a model folder written by save_pretrained")
    return json.loads(path.read_text())


def save_checkpoint(
    run_dir: Path, step: int, modules: dict[str, nn.Module], config: dict, state: dict, keep: int
) -> Path:
    """Write checkpoints/step-NNNNNNN atomically and keep only the newest `keep` of them."""
    root = run_dir / "checkpoints"
    final = root / f"{CHECKPOINT_PREFIX}{step:07d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained(tmp, modules, config)
    torch.save(state, tmp / "state.pt")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and p.is_dir())


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory means its newest checkpoint; a checkpoint folder means itself."""
    path = Path(path)
    if (path / "state.pt").is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise FileNotFoundError(f"no checkpoint in {path} (expected {path}/checkpoints/{CHECKPOINT_PREFIX}*)")
    return found[-1]


def load_state(checkpoint: Path) -> dict:
    return torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=True)
