"""Landmark adaptation: self-transfer, source shape kept, pose and per-part strengths, absolute mode, gaze; the
retargeting controls (held eyes and lips, head-turn offsets) and the single-frame edit of a still."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from dlib_points import landmarks

from base.errors import ConfigError
from faces.bench_warp import synthetic_face
from faces.motion import (
    EYES_PART,
    OPEN_MOUTH,
    STABLE,
    Controls,
    MotionConfig,
    apply_affine,
    eye_opening,
    fit_similarity,
    gaze_coordinates,
    gaze_positions,
    mouth_opening,
    neutral_frame,
    neutralized,
    reference_index,
    retarget,
    retarget_irises,
    retarget_still,
    turn,
)

SIZE = 256


def _similarity(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def _angle(matrix: np.ndarray) -> float:
    return float(np.arctan2(matrix[1, 0], matrix[0, 0]))


def _driver_track(frames: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic talking head: mouth opening and head pose both vary; returns track, mouths, poses."""
    t = np.linspace(0, 2 * np.pi, frames)
    mouths = 0.5 - 0.5 * np.cos(2 * t)  # closed at frame 0
    poses = np.stack([_similarity(0.15 * np.sin(p), 1 + 0.05 * np.sin(p), (8 * np.sin(p), 3 * p)) for p in t])
    centre = np.array([SIZE / 2, SIZE / 2])
    track = np.stack([apply_affine(m, synthetic_face(SIZE, mouth) - centre) + centre for m, mouth in zip(
        poses, mouths, strict=True)])
    return track, mouths, poses


def _other_face() -> np.ndarray:
    """A different face shape: wider jaw, narrower eyes, longer nose, in another position and scale."""
    face = synthetic_face(SIZE).copy()
    centre = face.mean(0)
    face[0:17, 0] = centre[0] + 1.2 * (face[0:17, 0] - centre[0])
    face[36:48] = face[36:48].mean(0) + 0.8 * (face[36:48] - face[36:48].mean(0))
    face[31:36, 1] += 6
    return apply_affine(_similarity(-0.1, 0.7, (40, 30)), face)


def _shape_residual(a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance between `b` and the similarity-aligned `a`: 0 when the two are the same shape."""
    return float(np.abs(apply_affine(fit_similarity(a, b), a) - b).max())


def test_fit_similarity_recovers_a_known_transform():
    points = synthetic_face(SIZE)
    matrix = _similarity(0.4, 1.3, (12.0, -7.0))
    np.testing.assert_allclose(fit_similarity(points, apply_affine(matrix, points)), matrix, atol=1e-9)
    collapsed = fit_similarity(np.ones((5, 2)), points[:5])
    np.testing.assert_allclose(collapsed[:, :2], np.eye(2))


@pytest.mark.parametrize("reference", ["first", "neutral"])
def test_self_transfer_reproduces_the_track(reference):
    track, _, _ = _driver_track()
    ref = reference_index(track, reference)
    out = retarget(track, track[ref], MotionConfig(reference=reference))
    np.testing.assert_allclose(out, track, atol=1e-9)


def test_reference_frame_becomes_the_source_exactly():
    track, mouths, _ = _driver_track()
    source = _other_face()
    out = retarget(track, source, MotionConfig(reference="neutral"))
    np.testing.assert_allclose(out[neutral_frame(track)], source, atol=1e-9)
    assert np.corrcoef(mouth_opening(out), mouths)[0, 1] > 0.99
    # The output keeps the source's face shape, not the driver's: check the eyes' width against the jaw.
    eyes_over_jaw = [np.ptp(f[36:48, 0]) / np.ptp(f[0:17, 0]) for f in (source, out[0], track[0])]
    assert abs(eyes_over_jaw[1] - eyes_over_jaw[0]) < 0.01 < abs(eyes_over_jaw[2] - eyes_over_jaw[0])


def test_zero_expression_moves_the_source_rigidly():
    track, _, _ = _driver_track()
    source = _other_face()
    out = retarget(track, source, MotionConfig(eyes_strength=0.0, mouth_strength=0.0))
    assert max(_shape_residual(source, frame) for frame in out) < 1e-9
    assert np.abs(out - source).max() > 5  # the head does move


def test_pose_strength_scales_the_head_motion():
    track, _, poses = _driver_track()
    source = _other_face()
    still = retarget(track, source, MotionConfig(pose_strength=0.0))
    np.testing.assert_allclose(still[:, STABLE], np.broadcast_to(source[STABLE], still[:, STABLE].shape), atol=1e-6)
    half = retarget(track, source, MotionConfig(pose_strength=0.5, eyes_strength=0.0, mouth_strength=0.0))
    full = retarget(track, source, MotionConfig(eyes_strength=0.0, mouth_strength=0.0))
    for t in range(len(track)):
        driver_turn = _angle(poses[t]) - _angle(poses[0])
        assert _angle(fit_similarity(source, full[t])) == pytest.approx(driver_turn, abs=1e-6)
        assert _angle(fit_similarity(source, half[t])) == pytest.approx(driver_turn / 2, abs=1e-6)


def test_mouth_strength_scales_the_mouth():
    track, _, _ = _driver_track()
    source = _other_face()
    rest = mouth_opening(source)
    one = mouth_opening(retarget(track, source, MotionConfig(pose_strength=0.0)))
    two = mouth_opening(retarget(track, source, MotionConfig(pose_strength=0.0, mouth_strength=2.0)))
    np.testing.assert_allclose(two - rest, 2 * (one - rest), atol=1e-9)


def test_absolute_mode_keeps_the_driver_shape():
    track, _, _ = _driver_track()
    source = _other_face()
    out = retarget(track, source, MotionConfig(mode="absolute"))
    assert max(_shape_residual(d, o) for d, o in zip(track, out, strict=True)) < 1e-9
    box = np.ptp(out[0], axis=0).prod(), np.ptp(source, axis=0).prod()
    assert box[0] == pytest.approx(box[1], rel=1e-9)
    np.testing.assert_allclose(out[0].min(0) + out[0].max(0), source.min(0) + source.max(0), atol=1e-9)


def test_neutral_frame_prefers_a_closed_frontal_mouth():
    centre = np.array([SIZE / 2, SIZE / 2])
    frames = [
        synthetic_face(SIZE, mouth=0.8),
        apply_affine(_similarity(0.4, 1.0, (0, 0)), synthetic_face(SIZE) - centre) + centre,
        synthetic_face(SIZE, mouth=0.02),
        synthetic_face(SIZE, mouth=0.5),
    ]
    assert neutral_frame(np.stack(frames)) == 2


def test_bad_input_is_refused_clearly():
    track, _, _ = _driver_track(4)
    with pytest.raises(ConfigError, match="mouth_strength"):
        MotionConfig(mouth_strength=3.0)
    with pytest.raises(ConfigError, match="pose_strength"):
        MotionConfig(pose_strength=-0.1)
    bad = track.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        retarget(bad, track[0])
    with pytest.raises(ValueError, match="68, 2"):
        retarget(track[:, :60], track[0])
    with pytest.raises(ValueError, match="outside the track"):
        retarget(track, track[0], reference=9)


@pytest.fixture(scope="module")
def real_track(media) -> np.ndarray:
    """dlib landmarks on 32 frames (every 5th) of a clip with large mouth motion, at 256 px."""
    capture = cv2.VideoCapture(str(media / "LivePortrait/assets/examples/driving/d18.mp4"))
    points, index = [], 0
    while len(points) < 32:
        ok, frame = capture.read()
        assert ok, "clip ended early"
        if index % 5 == 0:
            found = landmarks(cv2.resize(frame[:, :, ::-1], (SIZE, SIZE), interpolation=cv2.INTER_AREA), 0)
            assert found is not None
            points.append(found)
        index += 1
    capture.release()
    return np.stack(points)


@pytest.mark.media
@pytest.mark.parametrize("reference", ["first", "neutral"])
def test_real_clip_onto_another_face(media, real_track, reference):
    image = cv2.imread(str(media / "MakeItTalk/examples/chris.jpg"))
    source = landmarks(np.ascontiguousarray(image[:, :, ::-1]))
    config = MotionConfig(reference=reference)
    out = retarget(real_track, source, config)
    ref = reference_index(real_track, reference)
    np.testing.assert_allclose(out[ref], source, atol=1e-9)
    assert np.ptp(mouth_opening(real_track)) > 0.3  # the clip really opens the mouth
    assert np.corrcoef(mouth_opening(out), mouth_opening(real_track))[0, 1] >= 0.95
    np.testing.assert_allclose(retarget(real_track, real_track[ref], config), real_track, atol=1e-9)


# -------------------------------------------------------------------------------------------------------- gaze


def _eye_centres(points: np.ndarray) -> np.ndarray:
    return np.stack([points[..., 36:42, :].mean(-2), points[..., 42:48, :].mean(-2)], -2)


def test_gaze_coordinates_ignore_pose_and_scale():
    face = synthetic_face(SIZE)
    irises = _eye_centres(face) + [[2.0, -1.0], [-3.0, 0.5]]
    gaze = gaze_coordinates(face, irises)
    np.testing.assert_allclose(gaze_positions(face, gaze), irises, atol=1e-9)
    moved = _similarity(0.4, 1.7, (30, -12))
    np.testing.assert_allclose(gaze_coordinates(apply_affine(moved, face), apply_affine(moved, irises)), gaze,
                               atol=1e-9)
    np.testing.assert_allclose(gaze_coordinates(face, _eye_centres(face)), [[0.5, 0.0], [0.5, 0.0]], atol=0.02)
    assert np.isnan(gaze_coordinates(face, np.full((2, 2), np.nan))).all()


@pytest.mark.parametrize("mode", ["relative", "absolute"])
def test_driver_gaze_lands_in_the_source_eyes(mode):
    """The driver looks a tenth of an eye width left of where it looked at the reference: the source's irises (a
    face with narrower eyes, turned and smaller) move a tenth of *their* eye width left of the source's own gaze
    (relative) or take the driver's gaze itself (absolute), in whichever pose the targets have."""
    track, _, _ = _driver_track()
    look = np.where(np.arange(len(track)) % 2 == 0, 0.0, -0.1)  # every other frame looks left
    driver_irises = gaze_positions(track, gaze_coordinates(track, _eye_centres(track)) + np.stack(
        [look, np.zeros_like(look)], -1)[:, None])
    source = _other_face()
    source_irises = gaze_positions(source, np.array([[0.45, 0.02], [0.55, 0.02]]))
    config = MotionConfig(mode=mode, reference="first")
    targets = retarget(track, source, config)
    out = retarget_irises(track, driver_irises, source, source_irises, targets, config)
    assert out.shape == (len(track), 2, 2)
    gaze = gaze_coordinates(targets, out)
    expected = gaze_coordinates(track, driver_irises)
    if mode == "relative":
        expected = expected - expected[0] + gaze_coordinates(source, source_irises)
    np.testing.assert_allclose(gaze, expected, atol=1e-9)
    np.testing.assert_allclose(gaze[1::2, :, 0] - gaze[::2, :, 0], -0.1, atol=0.02 if mode == "absolute" else 1e-9)
    if mode == "relative":  # the reference frame gives the source its own irises back
        np.testing.assert_allclose(out[0], source_irises, atol=1e-9)


def test_gaze_needs_the_source_irises():
    track, _, _ = _driver_track(4)
    irises = _eye_centres(track)
    targets = retarget(track, track[0])
    assert np.isnan(retarget_irises(track, irises, track[0], None, targets)).all()
    one_eye = _eye_centres(track[0]).copy()
    one_eye[1] = np.nan  # the left iris unseen in the photo: only the right one moves
    out = retarget_irises(track, irises, track[0], one_eye, targets, MotionConfig(mode="absolute"))
    assert np.isfinite(out[:, 0]).all() and np.isnan(out[:, 1]).all()
    with pytest.raises(ValueError, match="driver irises"):
        retarget_irises(track, irises[:2], track[0], one_eye, targets)


# ------------------------------------------------------------------------------------ controls, and editing a still

LOWER_FACE = np.setdiff1d(np.arange(68), EYES_PART)


def _blinking_track() -> tuple[np.ndarray, np.ndarray]:
    """`_driver_track` whose eyes also close and open again (a blink mid-clip, open at frame 0); and the blink's
    depth per frame (0 open, 1 shut)."""
    track, _, _ = _driver_track()
    blink = np.clip(1 - np.abs(np.arange(len(track)) - 12) / 4, 0, 1)
    track = track.copy()
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        track[:, upper] += blink[:, None] * (track[:, lower] - track[:, upper])
    return track, blink


def test_eye_and_mouth_strengths_scale_their_parts_alone():
    """Eyes strength scales the brows' and eyes' motion, mouth strength the rest; either at 0 leaves its part as the
    photo has it (with the head still), while the other part keeps moving."""
    track, blink = _blinking_track()
    source = _other_face()
    still = {"pose_strength": 0.0, "reference": "first"}
    no_eyes = retarget(track, source, MotionConfig(eyes_strength=0.0, **still))
    np.testing.assert_allclose(no_eyes[:, EYES_PART], np.broadcast_to(source[EYES_PART], no_eyes[:, EYES_PART].shape),
                               atol=1e-9)
    assert np.ptp(mouth_opening(no_eyes)) > 0.1  # the mouth still talks
    no_mouth = retarget(track, source, MotionConfig(mouth_strength=0.0, **still))
    np.testing.assert_allclose(no_mouth[:, LOWER_FACE],
                               np.broadcast_to(source[LOWER_FACE], no_mouth[:, LOWER_FACE].shape), atol=1e-9)
    assert np.corrcoef(eye_opening(no_mouth), blink)[0, 1] < -0.95  # the eyes still blink
    one = retarget(track, source, MotionConfig(**still))[:, EYES_PART] - source[EYES_PART]
    half = retarget(track, source, MotionConfig(eyes_strength=0.5, **still))[:, EYES_PART] - source[EYES_PART]
    np.testing.assert_allclose(half, one / 2, atol=1e-9)


@pytest.mark.parametrize("mode", ["relative", "absolute"])
def test_eyes_held_closed_or_open(mode):
    """Closed: the lids meet in every frame, whatever the driver does; open: no frame blinks, each eye at least as
    open as the photo's; the rest of the face moves as it follows the driver."""
    track, _ = _blinking_track()
    source = _other_face()
    follow = retarget(track, source, MotionConfig(mode=mode))
    closed = retarget(track, source, MotionConfig(mode=mode, eyes="closed"))
    assert eye_opening(closed).max() < 1e-9
    opened = retarget(track, source, MotionConfig(mode=mode, eyes="open"))
    assert eye_opening(opened).min() >= 0.99 * eye_opening(source) and eye_opening(follow).min() < 0.5 * eye_opening(
        source)
    lids = [37, 38, 40, 41, 43, 44, 46, 47]
    others = np.setdiff1d(np.arange(68), lids)
    for held in (closed, opened):
        np.testing.assert_allclose(held[:, others], follow[:, others], atol=1e-9)


def test_mouth_held_open_or_closed():
    """Open: the inner lips at least OPEN_MOUTH apart in every frame (the reference frame too, where the driver's
    mouth is shut), the chin lower; closed: the inner lips meet in every frame, also where the driver opens wide."""
    track, mouths, _ = _driver_track()
    source = _other_face()
    follow = retarget(track, source, MotionConfig())
    opened = retarget(track, source, MotionConfig(mouth="open"))
    assert mouth_opening(opened).min() > 0.3 and mouth_opening(opened).min() >= OPEN_MOUTH - 1e-9
    down = lambda points: (points[:, 8] - points[:, 27]) @ np.array([0.0, 1.0])  # noqa: E731 (nose root to chin)
    assert (down(opened) > down(follow) + 1).all() or np.allclose(mouth_opening(follow), OPEN_MOUTH)
    assert down(opened)[0] > down(follow)[0] + 5  # frame 0: the driver's mouth is shut, the photo's jaw drops
    closed = retarget(track, source, MotionConfig(mouth="closed"))
    assert mouth_opening(follow).max() > 0.15 and mouth_opening(closed).max() < 1e-9
    np.testing.assert_allclose(closed[:, 17:48], follow[:, 17:48], atol=1e-9)  # brows, nose and eyes untouched


def _nose_across(points: np.ndarray) -> np.ndarray:
    """The nose tip's place between the jaw's two ends, in their distance (0.5: midway): (T, 68, 2) -> (T,)."""
    left, right, nose = points[:, 0], points[:, 16], points[:, 30]
    axis = right - left
    return ((nose - left) * axis).sum(-1) / (axis**2).sum(-1)


def test_head_turn_offsets():
    """Yaw moves the nose across the face's outline (to the image's right for positive angles, as much the other
    way for negative ones), on top of the driver's pose in every frame; pitch moves the nose up against the eyes and
    chin; roll turns the eye line by exactly its angle about the face's centre."""
    track, _, poses = _driver_track()
    source = _other_face()
    follow = retarget(track, source, MotionConfig())
    right = retarget(track, source, MotionConfig(yaw=15.0))
    left = retarget(track, source, MotionConfig(yaw=-15.0))
    shift = _nose_across(right) - _nose_across(follow)
    assert (shift > 0.02).all() and np.allclose(shift, _nose_across(follow) - _nose_across(left), atol=0.005)
    up = retarget(track, source, MotionConfig(pitch=15.0))
    height = lambda p: (p[:, 30, 1] - p[:, 27, 1]) / (p[:, 8, 1] - p[:, 27, 1])  # noqa: E731 (nose tip, nose root to chin)
    assert (height(up) < height(follow) - 0.02).all()
    rolled = retarget(track, source, MotionConfig(roll=10.0))
    angle = lambda p: np.degrees(np.arctan2(*(p[:, 45] - p[:, 36])[:, ::-1].T))  # noqa: E731 (eye line, clockwise)
    np.testing.assert_allclose(angle(rolled) - angle(follow), 10.0, atol=1e-9)
    np.testing.assert_allclose(rolled.mean(1), follow.mean(1), atol=1e-9)  # about the face's centre
    np.testing.assert_allclose(turn(source), source)  # no offset, no change


def test_controls_are_checked():
    for bad in ({"yaw": 45.0}, {"roll": -31.0}, {"eyes_strength": 2.5}, {"eyes": "shut"}, {"mouth": "wide"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            Controls(**bad)


def test_still_without_a_frame_is_the_photo_and_with_one_takes_its_expression():
    """Without a driving frame and with default controls the targets are the photo's own landmarks. One driving
    frame (another face, another pose) is read against itself with the mouth closed and the eyes open: its open mouth
    opens the photo's, its closed eyes close the photo's, and its head pose does not carry over."""
    source = _other_face()
    same, irises = retarget_still(source, Controls())
    np.testing.assert_array_equal(same, source)
    assert irises is None
    centre = np.array([SIZE / 2, SIZE / 2])
    talking = apply_affine(_similarity(0.3, 1.4, (20, -10)), synthetic_face(SIZE, mouth=0.8) - centre) + centre
    rest = neutralized(talking)
    assert mouth_opening(rest[None])[0] < 1e-9 and eye_opening(rest[None])[0] > eye_opening(talking[None])[0] * 0.5
    edited, _ = retarget_still(source, Controls(), talking)
    assert mouth_opening(edited[None])[0] > mouth_opening(source[None])[0] + 0.1
    np.testing.assert_allclose(edited[STABLE], source[STABLE], atol=1e-9)  # no head motion
    shut = talking.copy()
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        shut[upper] = shut[lower]
    edited, _ = retarget_still(source, Controls(), shut)
    assert eye_opening(edited[None])[0] < 0.1 * eye_opening(source[None])[0]
    muted, _ = retarget_still(source, Controls(mouth_strength=0.0), talking)
    np.testing.assert_allclose(muted[LOWER_FACE], source[LOWER_FACE], atol=1e-9)


def test_still_carries_the_frame_gaze():
    """With irises on both sides, the driving frame's gaze (a tenth of an eye width to the left of its eye centres)
    moves the photo's irises by a tenth of the photo's eye width from where they look."""
    source = _other_face()
    own = gaze_positions(source, np.array([[0.5, 0.0], [0.5, 0.0]]))
    frame = synthetic_face(SIZE)
    looking = gaze_positions(frame, gaze_coordinates(frame, _eye_centres(frame)) - [0.1, 0.0])
    _, irises = retarget_still(source, Controls(), frame, own, looking)
    np.testing.assert_allclose(gaze_coordinates(source, irises)[:, 0], 0.4, atol=1e-6)
