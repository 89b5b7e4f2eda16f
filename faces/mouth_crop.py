"""The mouth-centred crop the mouth refiner sees and corrects, at whatever resolution the image has.

Why a crop: a face crop's mouth is about 2 % of its pixels, and a refiner that sees the whole face at 128 px spends
its input there (docs/warp-guided.md: run 4 learnt to return the warp). The box is the one mouth SSIM judges
(`faces.regions.mouth_box`), cut from the image at its own resolution and resampled to CROP px (area-averaged when
shrinking), so the refiner sees a mouth at one scale whether the photo is 256 px or 2000; its correction is resized
back to the box and added there, so the output keeps the photo's resolution and nothing outside the box changes.
The lip masks are rasterised from the target's landmarks: the refiner knows where the lips must be, never what the
target's pixels are. One home for this geometry: training, `heads evaluate` and the app all cut and paste here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from faces.regions import mouth_box

CROP = 48  # px a side: the mouth box (about 45 px at heads evaluate's 128-px crops) resampled to this
LIPS = (np.arange(60, 68), np.arange(48, 60))  # the masks' polygons: inside the inner lips, inside the outer lips
_SHIFT = 4  # fixed-point bits for cv2.fillPoly: sub-pixel polygon edges
_MIN_SIDE = 8  # px: a box is never smaller (a mouth a few pixels wide is not worth refining, but must not break)


@dataclass(frozen=True)
class MouthCrop:
    """Where the mouth of one target lies in one image: the box (x0, y0, x1, y1), end-exclusive, in its pixels."""

    box: tuple[int, int, int, int]

    @classmethod
    def at(cls, points: np.ndarray, shape: tuple[int, ...]) -> MouthCrop:
        """The box of (68, 2) target landmarks in an image of `shape` (H, W[, C])."""
        return cls(mouth_box(points, shape[:2], min_side=_MIN_SIDE))

    @property
    def side(self) -> int:
        return self.box[2] - self.box[0]

    def cut(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) image -> its (CROP, CROP, 3) mouth, area-averaged where the box is larger than CROP."""
        x0, y0, x1, y1 = self.box
        interpolation = cv2.INTER_AREA if self.side > CROP else cv2.INTER_LINEAR
        return cv2.resize(image[y0:y1, x0:x1], (CROP, CROP), interpolation=interpolation)

    def masks(self, points: np.ndarray) -> np.ndarray:
        """(2, CROP, CROP) float32 in [0, 1], anti-aliased: inside the target's inner lips, inside its outer lips."""
        x0, y0, x1, y1 = self.box
        scale = np.array([CROP / (x1 - x0), CROP / (y1 - y0)])  # the box is square unless the image is too small
        out = np.zeros((2, CROP, CROP), np.uint8)
        for k, part in enumerate(LIPS):
            # pixel-centre coordinates: pixel i covers [i - 0.5, i + 0.5) in the image and in the crop alike
            polygon = ((np.asarray(points, np.float64)[part] - [x0 - 0.5, y0 - 0.5]) * scale - 0.5) * (1 << _SHIFT)
            cv2.fillPoly(out[k], [np.round(polygon).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
        return out.astype(np.float32) / 255.0

    def add(self, image: np.ndarray, correction: np.ndarray) -> np.ndarray:
        """`image` (H, W, 3) uint8 plus a (CROP, CROP, 3) correction in grey levels, resized to the box (bilinear)
        and added there; a new uint8 image."""
        x0, y0, x1, y1 = self.box
        delta = cv2.resize(np.asarray(correction, np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        out = image.copy()
        out[y0:y1, x0:x1] = np.clip(np.round(out[y0:y1, x0:x1] + delta), 0, 255).astype(np.uint8)
        return out


def correct_mouths(images: np.ndarray, points: np.ndarray,
                   correct: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """(B, H, W, 3) uint8 images and (B, 68, 2) target landmarks in their pixels -> the images with each mouth
    corrected (new arrays): every mouth is cut (B, CROP, CROP, 3) uint8 with its (B, 2, CROP, CROP) lip masks, and
    `correct(crops, lips)` gives the (B, CROP, CROP, 3) corrections in grey levels, added back at each image's own
    resolution. The one loop around a refiner, whichever runtime it has (onnxruntime in the app, torch in
    training and evaluation)."""
    where = [MouthCrop.at(p, image.shape) for image, p in zip(images, points, strict=True)]
    crops = np.stack([w.cut(image) for w, image in zip(where, images, strict=True)])
    lips = np.stack([w.masks(p) for w, p in zip(where, points, strict=True)])
    corrections = correct(crops, lips)
    return np.stack([w.add(image, c) for w, image, c in zip(where, images, corrections, strict=True)])
