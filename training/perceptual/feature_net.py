"""The interface every perceptual network of L_CNT offers, and the conversion from the generator's images."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class FeatureNet(nn.Module):
    """Frozen (eval, requires_grad False) feature extractor: gradients reach the input image only.

    forward takes (B, 3, H, W) RGB in [-1, 1], the generator's range, converts it to the network's own input
    convention and returns its five feature levels, shallow to deep.
    """

    name: str

    def freeze(self) -> FeatureNet:
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> FeatureNet:
        """Always eval: a trainer's model.train() must not switch a pretrained loss network."""
        return super().train(False)

    def forward(self, images: Tensor) -> list[Tensor]:
        raise NotImplementedError


def to_pixels(images: Tensor) -> Tensor:
    """[-1, 1] → [0, 255], the range all the pretrained networks were trained on."""
    return (images + 1.0) * 127.5


def to_caffe_bgr(images: Tensor, mean_bgr: Tensor) -> Tensor:
    """RGB in [-1, 1] → caffe convention: BGR, 0–255, minus the per-channel mean (given in BGR order)."""
    assert images.dim() == 4 and images.shape[1] == 3, images.shape  # (B, 3, H, W)
    return to_pixels(images).flip(1) - mean_bgr.view(1, 3, 1, 1)


def resize(images: Tensor, size: int) -> Tensor:
    """Bilinear resize to size×size, antialiased when shrinking so fine detail does not alias."""
    if images.shape[-2:] == (size, size):
        return images
    shrink = images.shape[-1] > size or images.shape[-2] > size
    return nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                                     antialias=shrink)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Default initialisers inside draw from `seed` without disturbing the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
