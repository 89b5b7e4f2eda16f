"""Config of `heads convert-weights` (torch-free, so the CLI parses it without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from base.errors import ConfigError

SourceFormat = Literal["vgg19-caffe", "vgg19-torchvision", "vggface-dag"]


@dataclass(frozen=True)
class ConvertConfig:
    """Rewrite a downloaded VGG state dict (.pth) as the project's perceptual weights (docs/perceptual.md)."""

    source: str
    """Downloaded .pth state dict: vgg19-d01eb7cb.pth, vgg19-dcbb9e9d.pth or vgg_face_dag.pth."""
    format: SourceFormat
    """vgg19-caffe = jcjohnson's caffe conversion (BGR, 0–255); vgg19-torchvision = torchvision's ImageNet
    VGG19 (RGB, 0–1, mean/std normalised); vggface-dag = Albanie's VGG-Face (RGB, 0–255)."""
    out: str | None = None
    """Output file; default <weights dir>/vgg19.safetensors or vggface.safetensors, where the weights dir is
    $HEADS_PERCEPTUAL_DIR, else weights/perceptual in the checkout."""

    def __post_init__(self) -> None:
        if self.out is not None and not self.out.endswith(".safetensors"):
            raise ConfigError(f"--out must name a .safetensors file, not {self.out}")
