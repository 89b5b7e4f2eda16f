"""Pretrained feature networks for the content loss L_CNT: VGG19, VGG-Face and dlib's face ResNet.

See docs/perceptual.md for where the weights come from and how to convert them. Torch is imported only when a
network is asked for, so the CLI can parse `heads convert-weights` from this package cheaply.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from .paths import MissingWeightsError, dlib_model_path

if TYPE_CHECKING:
    from .dlib_resnet import DlibFaceResNet
    from .feature_net import FeatureNet
    from .vgg import VGG

__all__ = [
    "NAMES", "DlibFaceResNet", "FeatureNet", "MissingWeightsError", "VGG", "dlib_model_path",
    "load_feature_net", "random_feature_net",
]

NAMES = ("vgg19", "vggface", "dlib")
_LAZY = {"DlibFaceResNet": "dlib_resnet", "FeatureNet": "feature_net", "VGG": "vgg"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown feature network {name!r}; choose from {', '.join(NAMES)}")


def load_feature_net(name: str, weights_dir: str | Path | None = None) -> FeatureNet:
    """Pretrained, frozen network; MissingWeightsError (naming the file and how to get it) when absent.
    weights_dir holds the VGG files (default $HEADS_PERCEPTUAL_DIR, else weights/perceptual); dlib's weights
    come from the face-recognition-models package."""
    _check(name)
    if name == "dlib":
        from .dlib_resnet import load_dlib_face_resnet

        return load_dlib_face_resnet()
    from .vgg import load_vgg

    return load_vgg(name, weights_dir)


def random_feature_net(name: str, seed: int = 0) -> FeatureNet:
    """Randomly initialised, frozen network: for tests only, never a silent fallback."""
    _check(name)
    if name == "dlib":
        from .dlib_resnet import random_dlib_face_resnet

        return random_dlib_face_resnet(seed)
    from .vgg import random_vgg

    return random_vgg(name, seed)
