"""Guidance for the warp-guided generator: a source frame warped onto the target landmarks, plus its mask.

Computed outside the network with the classical warp, so the exported ONNX graph has no GridSample and runs on
stock onnxruntime; the same function serves training episodes, fine-tuning and the demo.
"""

from __future__ import annotations

import numpy as np

from faces.layout import GUIDE_CHANNELS
from faces.warp import PiecewiseAffineWarp, Warped, nearest_source

__all__ = ["GUIDE_CHANNELS", "pack_guide", "warp_guide"]


def pack_guide(warped: Warped) -> np.ndarray:
    """A uint8 RGB warp result -> (H, W, 4) float32 in [-1, 1], the layout G reads after the landmark image."""
    rgb = warped.image.astype(np.float32) / 127.5 - 1.0
    return np.concatenate([rgb, warped.mask[..., None] * 2.0 - 1.0], -1)


def warp_guide(images: np.ndarray, points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 sources with (T, 68, 2) landmarks -> guide for (68, 2) target landmarks.

    Only the source nearest to the target in expression and head turn is warped: one warp per frame.
    """
    best = nearest_source(points, target)
    return pack_guide(PiecewiseAffineWarp(images[best], points[best])(target))
