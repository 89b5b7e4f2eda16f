"""Fine-tuning for the torch-free demo: whether it is possible here (torch installed, a PyTorch model beside the
ONNX graphs), and the one seam through which the demo reaches the torch side (`export_onnx.personalize`), imported
lazily so that the app runs without torch and offers fine-tuning only where it can.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from faces.source_faces import Crops

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
) -> str:
    """Fine-tune for at most `steps` steps on the T crops (at the model's resolution) and export G′ to `out` (.onnx);
    returns one line on what fine-tuning bought (the held-out photo's error before and after).

    `model_id` is that of the ONNX graphs in use: an avatar from another model would render a different person.
    `progress(done, steps)` is called after every optimisation step.
    """
    # The one import from the torch-free demo into the torch side, made only here and only when asked for.
    from export_onnx.personalize import finetune_to_onnx

    return finetune_to_onnx(model, crops.frames, crops.points, steps, model_id, out, progress)
