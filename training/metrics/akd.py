"""Landmark accuracy of generated frames: AKD (average keypoint distance, in pixels at 256) and the landmark error
normalised by inter-ocular distance, both between the driving landmarks and landmarks detected on the result."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from faces.config import DetectorConfig
from faces.detect import LandmarkDetector, load_detector
from faces.layout import NUM_POINTS, interocular

AKD_SIDE = 256  # distances are reported as if every frame were 256 px, whatever the model's resolution


@lru_cache(maxsize=1)
def _detector() -> LandmarkDetector:
    return load_detector(DetectorConfig(backend="dlib"))


def detect_landmarks(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 generated frames -> (N, 68, 2) landmarks of the largest face found by the face pipeline's
    dlib backend, NaN rows where none was found. Shared by AKD, NME and the motion correlations."""
    out = np.full((len(images), NUM_POINTS, 2), np.nan)
    for i, image in enumerate(images):
        faces = _detector().detect(image)
        if faces:
            out[i] = faces[0].points
    return out


def _checked(detected: np.ndarray, driving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    detected, driving = np.asarray(detected, np.float64), np.asarray(driving, np.float64)
    if detected.shape != driving.shape or detected.shape[1:] != (NUM_POINTS, 2):
        raise ValueError(f"expected two (N, {NUM_POINTS}, 2) tracks, got {detected.shape} and {driving.shape}")
    found = np.isfinite(detected).all((1, 2))
    return detected[found], driving[found]


def akd(detected: np.ndarray, driving: np.ndarray, size: int) -> float:
    """(N, 68, 2) landmarks detected on N frames of side `size` (NaN rows where no face was found) and the driving
    landmarks -> mean point distance in pixels at 256; NaN when no frame had a detection."""
    found, target = _checked(detected, driving)
    if len(found) == 0:
        return float("nan")
    return float(np.linalg.norm(found - target, axis=-1).mean() * AKD_SIDE / size)


def normalized_landmark_error(detected: np.ndarray, driving: np.ndarray) -> float:
    """Mean point distance over the driving frame's inter-ocular distance (NME), over frames with a detection."""
    found, target = _checked(detected, driving)
    if len(found) == 0:
        return float("nan")
    return float((np.linalg.norm(found - target, axis=-1).mean(1) / [interocular(p) for p in target]).mean())
