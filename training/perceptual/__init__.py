"""Pretrained feature networks for the content loss L_CNT: VGG19, VGG-Face and dlib's face ResNet.

See docs/perceptual.md for where the weights come from and how to convert them.
"""

from __future__ import annotations

from pathlib import Path

from .dlib_resnet import DlibFaceResNet, dlib_model_path, load_dlib_face_resnet, random_dlib_face_resnet
from .feature_net import FeatureNet
from .paths import MissingWeightsError
from .vgg import VGG, load_vgg, random_vgg

__all__ = [
    "NAMES", "DlibFaceResNet", "FeatureNet", "MissingWeightsError", "VGG", "dlib_model_path",
    "load_feature_net", "random_feature_net",
]

NAMES = ("vgg19", "vggface", "dlib")


def _check(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown feature network {name!r}; choose from {', '.join(NAMES)}")


def load_feature_net(name: str, weights_dir: str | Path | None = None) -> FeatureNet:
    """Pretrained, frozen network; MissingWeightsError (naming the file and how to get it) when absent.
    weights_dir holds the VGG files (default $HEADS_PERCEPTUAL_DIR, else weights/perceptual); dlib's weights
    come from the face-recognition-models package."""
    _check(name)
    return load_dlib_face_resnet() if name == "dlib" else load_vgg(name, weights_dir)


def random_feature_net(name: str, seed: int = 0) -> FeatureNet:
    """Randomly initialised, frozen network: for tests only, never a silent fallback."""
    _check(name)
    return random_dlib_face_resnet(seed) if name == "dlib" else random_vgg(name, seed)
