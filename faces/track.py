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


def _side(box: Box) -> float:
    """The longer side of a box (px)."""
    return max(box[2] - box[0], box[3] - box[1])


def _followed(faces: list[Face], previous: Box) -> Face | None:
    """The face that overlaps the box predicted for the followed one enough to be the same person, if any."""
    best = max(faces, key=lambda f: iou(f.box, previous), default=None)
    return best if best is not None and iou(best.box, previous) > 0.3 else None


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
        self._lost: tuple[float, int] | None = None  # side (px) of a face lost lately, and frames since

    def reset(self) -> None:
        self._face, self._lost = None, None

    def _predicted_box(self, face: Face) -> Box:
        x0, y0, x1, y1 = box_of(face.points)
        w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        r = self._relation
        return x0 + r[0] * w, y0 + r[1] * h, x0 + r[2] * w, y0 + r[3] * h

    def _detect(self, frame: np.ndarray) -> Face | None:
        """Detect, following the same person when several are in view. While a face is followed, only faces
        that could make the detection ambiguous (second_face_ratio of its area) need be found, which the dlib
        backend does on a smaller image; when that misses the followed face, everything is searched, as
        without a followed face."""
        self.detections += 1
        self._since_detect = 0
        previous = None if self._face is None else self._predicted_box(self._face)
        followed, faces = None, None
        if previous is not None:
            faces = self.detector.detect_larger(frame, _side(previous) * self.config.second_face_ratio**0.5)
            followed = None if faces is None else _followed(faces, previous)
        elif self._lost is not None and self._lost[1] < self.config.detect_every:
            # A face lost a moment ago does not come back at a fraction of its size: searching for faces that
            # small (dlib's upsampled retry, 4x the pixels) would only find someone else, far behind.
            faces = self.detector.detect_larger(frame, self._lost[0] * self.config.second_face_ratio**0.5)
        if followed is None and (previous is not None or faces is None):
            faces = self.detector.detect(frame)
            followed = None if previous is None else _followed(faces, previous)
        self.faces_seen = max(self.faces_seen, len(faces))
        if not faces:
            return None
        face, self.new_track = (faces[0], True) if followed is None else (followed, False)
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
        if previous is not None and face is None:
            self._lost = (_side(self._predicted_box(previous)), 0)
        elif face is not None:
            self._lost = None
        elif self._lost is not None:
            self._lost = (self._lost[0], self._lost[1] + 1)
        self._face = face
        return face
