"""Landmark images y: the 68 points drawn as anti-aliased coloured polylines on a black RGB canvas."""

from __future__ import annotations

import cv2
import numpy as np

from faces.layout import NUM_POINTS, PARTS, PUPIL_COLOR

_SHIFT = 4  # cv2 draws with 2**-4 px sub-pixel precision, so slow motions still change the image


def line_width(size: int) -> int:
    """Stroke width that keeps the same look at every resolution (1 px at 64, 2 at 128, 4 at 256)."""
    return max(1, round(size / 64))


def draw_landmarks(
    points: np.ndarray, size: int, pupils: np.ndarray | None = None, thickness: int | None = None
) -> np.ndarray:
    """(68, 2) points in pixel coordinates of a size×size crop -> (size, size, 3) uint8 RGB image.

    Pupils, when given as (2, 2) points (right, left), are drawn as filled dots so gaze becomes visible to G.
    Deterministic: the same points always give the same bytes.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (NUM_POINTS, 2):
        raise ValueError(f"expected ({NUM_POINTS}, 2) landmarks, got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("landmarks contain NaN or inf")
    width = thickness or line_width(size)
    canvas = np.zeros((size, size, 3), np.uint8)
    fixed = np.round(np.clip(points, -4 * size, 5 * size) * (1 << _SHIFT)).astype(np.int32)
    for part in PARTS:
        cv2.polylines(
            canvas, [fixed[part.start : part.stop]], part.closed, part.color, width, cv2.LINE_AA, _SHIFT
        )
    if pupils is not None:
        radius = max(1, round(size / 64)) << _SHIFT
        for x, y in np.round(np.asarray(pupils, np.float64) * (1 << _SHIFT)).astype(np.int32):
            cv2.circle(canvas, (int(x), int(y)), radius, PUPIL_COLOR, -1, cv2.LINE_AA, _SHIFT)
    return canvas
