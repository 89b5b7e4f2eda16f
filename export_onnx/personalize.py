"""Fine-tuned (FT) avatars for the app and `heads animate`: `training.finetune.personalize` on the source crops, then
the personalised generator exported to ONNX, so that rendering stays on the same onnxruntime engine as every other
mode.

The torch side of the one seam between the torch-free demo and torch: `demo.tuning` imports this module lazily, only
when fine-tuning is asked for (pyproject.toml's import-linter contract names that edge as the single exception).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from base.errors import InputError
from export_onnx.export import export_personalized
from training.avatar import model_id as torch_model_id
from training.fewshot_config import FinetuneSettings
from training.finetune import holdout_summary, load_networks, personalize


def finetune_to_onnx(
    model: Path,
    frames: np.ndarray,
    points: np.ndarray,
    steps: int,
    model_id: str,
    out: Path,
    progress: Callable[[int, int], None],
) -> str:
    """Fine-tune with the default recipe for at most `steps` steps on the T crops (frames (T, R, R, 3) uint8 at the
    model's resolution, points (T, 68, 2) in crop pixels) and export G′ to `out` (.onnx). Returns one line on what
    fine-tuning bought on the held-out photo (`training.finetune.holdout_summary`), for the person to read.

    `model_id` is that of the ONNX graphs in use: an avatar from another model would render a different person.
    `progress(done, steps)` is called after every optimisation step.
    """
    networks = load_networks(model, "cpu")
    if torch_model_id(networks) != model_id:
        raise InputError(f"The PyTorch model in {model} (id {torch_model_id(networks)}) is not the model the ONNX "
                         f"graphs were exported from (id {model_id}); its avatar would render someone else.")
    settings = FinetuneSettings(steps=steps)
    if settings.adversarial and networks.D is None:
        raise InputError(f"{model} has no discriminator (D.safetensors), which adversarial fine-tuning needs.")
    progress(0, steps)
    avatar = personalize(networks, frames, None, settings, points, on_step=progress)
    run = avatar.info.get("steps_run", steps)
    # The model folder by its name alone: the avatar file is handed to whoever asked for it, and the server's paths
    # are none of their business.
    meta = {"model_id": model_id, "T": len(frames), "steps": run,
            "provenance": f"heads app fine-tuning of {Path(model).resolve().name} ({run} steps, T={len(frames)})"}
    export_personalized(avatar.generator_for(networks), avatar.psi, out, meta)
    return holdout_summary(avatar.info) or f"fine-tuned {run} steps"
