"""Face regions placed by landmarks, for the metrics that look at one part of the frame (sharpness on the face,
SSIM on the mouth). Boxes come from the *real* frame's landmarks and are applied to the real and the generated frame
alike, so both are judged on the same pixels whatever the generator drew there."""

from __future__ import annotations

import numpy as np


def landmark_box(points: np.ndarray, margin: float, shape: tuple[int, int], square: bool = False,
                 min_side: int = 1) -> tuple[int, int, int, int]:
    """(K, 2) landmarks (x, y in pixel-centre coordinates) -> integer box x0, y0, x1, y1 (end-exclusive) inside an
    image of `shape` (H, W): their bounding box enlarged by `margin` times its larger side on every side (`square`:
    a square of that size about the box centre), at least `min_side` pixels a side, shifted (not shrunk) to stay
    inside the image where it can."""
    points = np.asarray(points, np.float64)
    lo, hi = points.min(0), points.max(0)
    pad = margin * float((hi - lo).max())
    # Pixel i covers [i - 0.5, i + 0.5): these are the first and one past the last pixel the enlarged box touches.
    start = np.floor(lo - pad + 0.5).astype(int)
    end = np.floor(hi + pad + 0.5).astype(int) + 1
    sides = end - start
    sides = np.maximum(np.full(2, sides.max()) if square else sides, min_side)
    start -= (sides - (end - start)) // 2  # grown about the centre
    box = []
    for axis, size in enumerate((shape[1], shape[0])):
        side = min(int(sides[axis]), size)
        first = min(max(int(start[axis]), 0), size - side)
        box.append((first, first + side))
    (x0, x1), (y0, y1) = box
    return x0, y0, x1, y1
