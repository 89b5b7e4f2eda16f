"""The face-alignment backend: S3FD detector + 2D-FAN landmarks (Bulat & Tzimiropoulos, ICCV 2017).

More accurate than dlib on turned heads, but it runs on torch and needs ~200 MB of weights, which face-alignment
downloads into the torch hub cache on first use. Imported only when chosen, so the rest of faces/ stays torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from faces.config import DetectorConfig
from faces.detect import Box, DetectorUnavailable, Face, LandmarkDetector, resize_for_detection

INSTALL = "pip install face-alignment (it needs torch)"


def weights_folder() -> Path:
    """Where face-alignment looks for its weights (torch.hub's checkpoints folder), found without importing torch."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


class FanDetector(LandmarkDetector):
    name = "face-alignment"

    def __init__(self, config: DetectorConfig):
        super().__init__(config)
        try:
            import face_alignment
        except ImportError as e:
            raise DetectorUnavailable(f"the face-alignment backend is not installed: {INSTALL}") from e
        kinds = face_alignment.LandmarksType
        two_d = getattr(kinds, "TWO_D", None) or kinds._2D  # renamed in face-alignment 1.4
        try:
            self._fa = face_alignment.FaceAlignment(two_d, device=config.device, flip_input=False)
        except Exception as e:  # the download of missing weights fails offline with a variety of errors
            raise DetectorUnavailable(
                f"face-alignment could not load its weights ({type(e).__name__}: {e}). Put the 2DFAN4 and s3fd "
                f"files in {weights_folder()} or allow one download; or use --detector.backend dlib."
            ) from e

    def detect(self, image: np.ndarray) -> list[Face]:
        small, scale = resize_for_detection(image, self.config)
        result = self._fa.get_landmarks_from_image(small, return_bboxes=True)
        landmarks, boxes = result[0], result[2]
        faces = []
        for points, box in zip(landmarks or [], boxes or [], strict=True):
            score = float(box[4]) if len(box) > 4 else 1.0
            if score < self.config.min_score:
                continue
            full = tuple(float(v) / scale for v in box[:4])
            if scale < 1.0:  # refit where the face has all its pixels
                faces.append(self._fit(image, full, score))
            else:
                faces.append(Face(np.asarray(points[:, :2], np.float32), full, score))
        return self._largest_first(faces)

    def fit(self, image: np.ndarray, box: Box) -> Face | None:
        return self._fit(image, box, 1.0)

    def _fit(self, image: np.ndarray, box: Box, score: float) -> Face | None:
        landmarks = self._fa.get_landmarks_from_image(image, detected_faces=[np.array([*box, score])])
        if not landmarks:
            return None
        return Face(np.asarray(landmarks[0][:, :2], np.float32), box, score)
