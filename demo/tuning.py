"""Fine-tuned (FT) avatars for the app: `training.finetune.personalize` on the source crops, then the personalised
generator exported to ONNX, so rendering stays on the same onnxruntime engine as every other mode.

The only module of the demo that needs torch; it is imported when fine-tuning is asked for, and `available()`
tells the app whether to offer it at all.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from base.errors import InputError
from demo.sources import Crops

TORCH_SUBFOLDER = "torch"  # inside a weights folder: the PyTorch model (save_pretrained) that fine-tuning starts from


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def torch_model(weights: Path | None, override: str | None) -> Path | None:
    """The PyTorch model folder fine-tuning starts from: `override`, else weights/torch, else None."""
    if override:
        return Path(override)
    if weights is not None and (weights / TORCH_SUBFOLDER / "config.json").is_file():
        return weights / TORCH_SUBFOLDER
    return None


def finetune_avatar(
    model: Path,
    crops: Crops,
    steps: int,
    model_id: str,
    out: Path,
    progress: Callable[[int, int], None],
) -> Path:
    """Fine-tune for `steps` steps on the T crops (at the model's resolution) and export G′ to `out` (.onnx).

    `model_id` is that of the ONNX graphs in use: an avatar from another model would render a different person.
    `progress(done, steps)` is called after every optimisation step.
    """
    from export_onnx.export import export_personalized
    from training.avatar import model_id as torch_model_id
    from training.fewshot_config import FinetuneSettings
    from training.finetune import load_networks, personalize

    networks = load_networks(model, "cpu")
    if torch_model_id(networks) != model_id:
        raise InputError(f"The PyTorch model in {model} (id {torch_model_id(networks)}) is not the model the ONNX "
                         f"graphs were exported from (id {model_id}); its avatar would render someone else.")
    if networks.D is None:
        raise InputError(f"{model} has no discriminator (D.safetensors), which fine-tuning needs.")
    progress(0, steps)
    avatar = personalize(networks, crops.frames, None, steps, FinetuneSettings(steps=steps), crops.points,
                         on_step=progress)
    meta = {"model_id": model_id, "T": len(crops.frames), "steps": steps,
            "provenance": f"heads app fine-tuning of {model} ({steps} steps, T={len(crops.frames)})"}
    export_personalized(avatar.generator_for(networks), avatar.psi, out, meta)
    return out
