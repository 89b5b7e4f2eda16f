"""The plain piecewise-affine warp that `heads evaluate` reads every renderer against (faces/plain_warp.py)."""

from __future__ import annotations

import numpy as np

from faces.motion import apply_affine
from faces.plain_warp import PlainWarp, frame_anchors
from faces.warp import nearest_source
from training.data import SyntheticEpisodes, to_uint8


def _face() -> tuple[np.ndarray, np.ndarray]:
    episode = SyntheticEpisodes(1, 64, 2, seed=7)[0]
    return to_uint8(episode["frames"])[0], episode["points"].double().numpy()[0]


def test_own_landmarks_give_the_image_back():
    image, points = _face()
    out = PlainWarp(image, points).warp(points)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert np.abs(out.astype(int) - image).max() <= 1


def test_landmarks_move_the_face_and_the_frame_stays_put():
    image, points = _face()
    moved = points + [3.0, 0.0]
    out = PlainWarp(image, points).warp(moved)
    # Inside the face the content follows the landmarks: shifting back gives the source's face.
    x0, y0 = np.ceil(points.min(0)).astype(int) + 4
    x1, y1 = np.floor(points.max(0)).astype(int) - 4
    assert np.abs(out[y0:y1, x0 + 3 : x1 + 3].astype(int) - image[y0:y1, x0:x1]).mean() < 2.0
    # The anchors (corners, edge midpoints) do not move: the frame's corners keep their pixels.
    for y, x in ((0, 0), (0, 63), (63, 0), (63, 63)):
        assert (out[y, x] == image[y, x]).all()
    assert len(frame_anchors(points, 64, 64)) == 8


def test_nearest_ignores_pose_and_scale():
    _, points = _face()
    open_mouth = points.copy()
    open_mouth[[65, 66, 67, 56, 57, 58]] += [0.0, 4.0]
    turned = apply_affine(np.array([[0.9, -0.2, 5.0], [0.2, 0.9, -3.0]]), points)  # same face, rotated and scaled
    assert nearest_source(np.stack([open_mouth, turned]), points) == 1
