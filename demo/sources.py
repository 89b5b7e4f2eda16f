"""Source photos -> the person's faces: upright RGB, landmarks, and square crops framed as training framed them.

Crops come from `faces.crop.photo_transform` with the default CropConfig, as `heads prepare` and `heads finetune`
make them, so the generator sees the framing it learned on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from base.errors import InputError
from demo.animate_config import LimitsConfig
from demo.limits import check_file
from faces.config import CropConfig
from faces.crop import CropTransform, photo_transform
from faces.detect import Box, LandmarkDetector
from faces.image_io import ImageError, load_image

MIN_FACE = 40  # px: smaller landmark boxes still animate, but the crop is upscaled and blurry


@dataclass(frozen=True)
class SourceFace:
    name: str  # file name, for messages
    image: np.ndarray  # (H, W, 3) uint8 RGB, upright, shrunk to the limits
    points: np.ndarray  # (68, 2) landmarks in `image` pixels
    digest: str  # SHA-256 of the file: identifies the person's photos for caching

    def transform(self, resolution: int) -> CropTransform:
        return photo_transform(self.points.astype(np.float64), CropConfig(resolution=resolution))


@dataclass(frozen=True)
class Crops:
    """The T faces at one resolution: what the renderers read."""

    frames: np.ndarray  # (T, R, R, 3) uint8
    points: np.ndarray  # (T, 68, 2) float64, crop pixels


def crops(faces: list[SourceFace], resolution: int) -> Crops:
    transforms = [face.transform(resolution) for face in faces]
    frames = np.stack([t.crop(face.image) for t, face in zip(transforms, faces, strict=True)])
    points = np.stack([t.to_crop(face.points) for t, face in zip(transforms, faces, strict=True)]).astype(np.float64)
    return Crops(frames, points)


def _read(path: Path, limits: LimitsConfig) -> tuple[np.ndarray, float]:
    """The upright photo, shrunk to the size limit, and the factor it was shrunk by."""
    try:
        image = load_image(path)
    except ImageError:
        raise InputError(f"{path.name} is not a readable image: upload a JPEG, PNG or WebP photo.") from None
    scale = limits.max_image_side / max(image.shape[:2])
    if scale < 1.0:
        return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale
    return image, 1.0


def load_faces(
    paths: list[str | Path], detector: LandmarkDetector, limits: LimitsConfig, box: Box | None = None
) -> tuple[list[SourceFace], list[str]]:
    """One face per photo (the largest), and notices for the person (several faces, a small face).

    `box`, for a single photo in which no face is detected (a painting), is the face box in the photo's original
    pixels; the landmark predictor is then fitted inside it.
    """
    if not paths:
        raise InputError("Add at least one photo of the person to animate.")
    if len(paths) > limits.max_photos:
        raise InputError(f"{len(paths)} photos were given; this server takes at most {limits.max_photos}.")
    if box is not None and len(paths) != 1:
        raise InputError("A manual face box describes one photo: use it with exactly one photo.")
    faces, notices = [], []
    for path in map(Path, paths):
        data = check_file(path, limits, "photo").read_bytes()
        image, scale = _read(path, limits)
        found = [] if box is not None else detector.detect(image)
        if box is not None:  # in the upright photo's own pixels, before any shrinking
            points = detector.fit(image, tuple(v * scale for v in box)).points
            notices.append(f"{path.name}: landmarks fitted in the face box you gave.")
        elif not found:
            raise InputError(
                f"No human face was found in {path.name}. Use a photo in which one person's face is clearly visible "
                "(animals and cartoons are not supported); for a painting or drawing, enter the face box by hand."
            )
        else:
            points = found[0].points
            if len(found) > 1:
                notices.append(f"{path.name}: {len(found)} faces found; animating the largest one.")
        side = float(np.ptp(points, axis=0).max())
        if side < MIN_FACE:
            notices.append(f"{path.name}: the face is only {side:.0f} px wide, so the result will be blurry.")
        faces.append(SourceFace(path.name, image, np.asarray(points, np.float32), hashlib.sha256(data).hexdigest()))
    return faces, notices
