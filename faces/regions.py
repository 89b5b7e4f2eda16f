"""Face regions placed by landmarks: for the metrics that look at one part of the frame (sharpness on the face, SSIM
on the mouth), whose boxes come from the *real* frame's landmarks and cut the real and the generated frame alike, and
for the mouth refiner, which works on the very box that mouth SSIM judges (faces.mouth_crop)."""

from __future__ import annotations

import numpy as np

MOUTH = slice(48, 68)  # outer and inner lips
MOUTH_MARGIN = 0.25  # of the lips' larger extent, on each side


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


def mouth_box(points: np.ndarray, shape: tuple[int, int], min_side: int = 1) -> tuple[int, int, int, int]:
    """(68, 2) landmarks -> the mouth's box in an image of `shape` (H, W): a square about the outer and inner lips,
    its side 1.5 times their larger extent (MOUTH_MARGIN on each side), at least `min_side` pixels."""
    return landmark_box(np.asarray(points)[MOUTH], MOUTH_MARGIN, shape, square=True, min_side=min_side)
