"""Follow one face through a video: detect every N frames, and in between fit landmarks in a box predicted from
the previous frame's landmarks, which is ~20x cheaper than detection and steadier than re-detecting."""

from __future__ import annotations

import numpy as np

from faces.config import TrackConfig
from faces.detect import Box, Face, LandmarkDetector, box_of


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Stateful per-clip tracker: call it on consecutive frames; it returns the followed Face or None.

    The detector's box is stored relative to the landmark box at each detection, so the box predicted from
    landmarks while tracking matches what the landmark fitter was trained on, for every backend.
    """

    def __init__(self, detector: LandmarkDetector, config: TrackConfig | None = None):
        self.detector = detector
        self.config = config or TrackConfig()
        self._face: Face | None = None
        self._relation = np.array([0.0, 0.0, 1.0, 1.0])  # detector box in units of the landmark box
        self._since_detect = 0
        self.detections = 0  # detector runs
        self.ambiguous = 0  # detector runs that found a second face of comparable size
        self.faces_seen = 0  # most faces found in one detection
        self.new_track = True  # whether the last returned face starts a new track (smoothing must not cross it)

    def reset(self) -> None:
        self._face = None

    def _predicted_box(self, face: Face) -> Box:
        x0, y0, x1, y1 = box_of(face.points)
        w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        r = self._relation
        return x0 + r[0] * w, y0 + r[1] * h, x0 + r[2] * w, y0 + r[3] * h

    def _detect(self, frame: np.ndarray) -> Face | None:
        faces = self.detector.detect(frame)
        self.detections += 1
        self._since_detect = 0
        self.faces_seen = max(self.faces_seen, len(faces))
        if not faces:
            return None
        face = faces[0]
        self.new_track = True
        if self._face is not None:  # keep following the same person when several are in view
            previous = self._predicted_box(self._face)
            best = max(faces, key=lambda f: iou(f.box, previous))
            if iou(best.box, previous) > 0.3:
                face, self.new_track = best, False
        others = [f for f in faces if f is not face]
        if others and others[0].area >= self.config.second_face_ratio * face.area:
            self.ambiguous += 1
        x0, y0, x1, y1 = box_of(face.points)
        w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        b = face.box
        self._relation = np.array([(b[0] - x0) / w, (b[1] - y0) / h, (b[2] - x0) / w, (b[3] - y0) / h])
        return face

    def _plausible(self, face: Face, previous: Face) -> bool:
        size = np.ptp(face.points, axis=0).max()
        before = np.ptp(previous.points, axis=0).max()
        return abs(size / max(before, 1e-6) - 1.0) <= self.config.max_size_change

    def __call__(self, frame: np.ndarray) -> Face | None:
        previous = self._face
        self._since_detect += 1
        if previous is None or self._since_detect >= self.config.detect_every:
            face = self._detect(frame)
        else:
            face = self.detector.fit(frame, self._predicted_box(previous))
            self.new_track = False
            if face is None or not self._plausible(face, previous):
                face = self._detect(frame)
        self._face = face
        return face
