"""Guidance for the warp-guided generator: a source frame warped onto the target landmarks, plus its mask, and the
region a refining generator may change.

Computed outside the network with the classical warp, so the exported ONNX graph has no GridSample and runs on
stock onnxruntime; the same functions serve training episodes, fine-tuning, `heads evaluate` and the app.
"""

from __future__ import annotations

import cv2
import numpy as np

from faces.layout import GUIDE_CHANNELS, interocular
from faces.warp import PiecewiseAffineWarp, Warped, nearest_source

__all__ = ["GUIDE_CHANNELS", "inner_mouth", "pack_guide", "refine_region", "warp_guide"]

# The refining generator may change the warp only inside the target's inner-lip polygon, grown by REGION_MARGIN and
# then ramped to 0 over REGION_FEATHER (both in interoculars, the distance between the eye centres: ~0.1 is the lips'
# thickness), so that lips the warp stretched can be redrawn and no seam shows.
REGION_MARGIN = 0.1
REGION_FEATHER = 0.1


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


def inner_mouth(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 mask, 1 inside the inner-lip polygon (iBUG points 60–67) of (68, 2) pixel landmarks: where teeth
    and the mouth's cavity show, which the warp of a closed-mouth source cannot."""
    mask = np.zeros(size, np.uint8)
    cv2.fillPoly(mask, [np.rint(points[60:68] * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return mask


def refine_region(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 in [0, 1]: where a refining generator's α counts, for (68, 2) target landmarks in the pixels
    of an image of `size` (H, W).

    Why a fixed region rather than a learned α alone: with α free over the whole frame, training laid the synthesis
    over the edges the warp misplaces by a pixel (blurring them), and a global α penalty then drove α to 0 in the
    mouth too, where the warp is known to fail (docs/warp-guided.md). The inner mouth (teeth, the cavity a closed-
    mouth photo cannot show) is where the warp has nothing right to offer. The warp's invalid pixels were in the
    region too at first, but in face crops they are mostly the frame's border, where the warp's repeated edge is as good
    a guess as any: the correction painted coloured blobs there and cost 0.017 SSIM on a test clip after 400 steps.
    Elsewhere the output is the warp, pixel for pixel, whatever the network learnt. One function, used by training,
    `heads evaluate` and the app, so that all three composite through the same mask."""
    height, width = size
    scale = max(interocular(points), 1.0)
    hard = inner_mouth(points, size)
    distance = cv2.distanceTransform(1 - hard, cv2.DIST_L2, 5)  # px to the nearest region pixel (0 inside)
    margin, feather = REGION_MARGIN * scale, max(REGION_FEATHER * scale, 1.0)
    return np.clip(1.0 - (distance - margin) / feather, 0.0, 1.0).astype(np.float32).reshape(height, width)
