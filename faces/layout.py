"""The iBUG 68-point layout: parts, their drawing colours and the mirror map used by flip augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_POINTS = 68


@dataclass(frozen=True)
class Part:
    name: str
    start: int  # first index (inclusive)
    stop: int  # last index (exclusive)
    closed: bool
    color: tuple[int, int, int]  # RGB


# The palette is part of the model's input format: a generator trained on one palette cannot read another, so any
# change here must bump PALETTE_VERSION (exported models carry it and the engine checks it).
PALETTE_VERSION = "ibug68-v1"
PARTS: tuple[Part, ...] = (
    Part("jaw", 0, 17, False, (255, 255, 255)),
    Part("right_brow", 17, 22, False, (255, 128, 0)),
    Part("left_brow", 22, 27, False, (255, 200, 0)),
    Part("nose_bridge", 27, 31, False, (0, 128, 255)),
    Part("nose_base", 31, 36, False, (0, 200, 255)),
    Part("right_eye", 36, 42, True, (0, 255, 0)),
    Part("left_eye", 42, 48, True, (128, 255, 0)),
    Part("outer_lips", 48, 60, True, (255, 0, 128)),
    Part("inner_lips", 60, 68, True, (255, 0, 255)),
)
PUPIL_COLOR = (255, 255, 0)
# Warp-guided generators read these channels after the landmark image: the warped source (RGB) and its validity mask.
GUIDE_CHANNELS = 4

# "right"/"left" are the subject's; mirroring an image swaps them.
FLIP_INDEX = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 21, -1)) + list(range(21, 16, -1))  # brows swap
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nose base
    + [45, 44, 43, 42, 47, 46]  # right eye <- left eye
    + [39, 38, 37, 36, 41, 40]  # left eye <- right eye
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65],  # inner lips
    dtype=np.int64,
)

RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)


def flip_points(points: np.ndarray, width: float) -> np.ndarray:
    """Mirror (68, 2) points for an image of `width` pixels, keeping each index's anatomical meaning."""
    out = points[FLIP_INDEX].copy()
    out[:, 0] = width - 1 - out[:, 0]
    return out


def interocular(points: np.ndarray) -> float:
    """Distance between the eye centres: the scale that landmark errors are normalised by."""
    return float(np.linalg.norm(points[RIGHT_EYE].mean(0) - points[LEFT_EYE].mean(0)))
