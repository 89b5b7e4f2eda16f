"""Face pipeline on real media: detection and landmarks, crops and their inverse, smoothing, tracking, sources."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from faces.bench_warp import synthetic_face
from faces.config import CropConfig, DetectorConfig, SmoothingConfig, TrackConfig
from faces.crop import CropTransform, clip_transforms, photo_transform
from faces.detect import DetectorUnavailable, Face, LandmarkDetector, box_of, detection_scale, load_detector
from faces.image_io import load_image
from faces.layout import interocular
from faces.motion import eye_opening, gaze_coordinates, gaze_positions, mouth_opening
from faces.smoothing import EXPRESSIVE, OneEuroFilter, gaussian_smooth, segments, smooth_irises, smooth_landmarks
from faces.sources import clip_name, find_sources, read_identities, split_of
from faces.track import FaceTracker, iou
from faces.video import read_frames

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = [
    "LivePortrait/assets/examples/driving/d9.jpg",
    "LivePortrait/assets/examples/source/s12.jpg",  # half-body, face small in the frame
    "MakeItTalk/examples/anne.jpg",
    "Realistic-Neural-Talking-Head-Models/examples/fine_tuning/test_images/test_cranston.jpeg",  # RGBA cut-out
    "SadTalker/examples/source_image/people_0.png",
]
STILL_CLIP = "LivePortrait/assets/examples/driving/d18.mp4"  # still head, expressions
MOVING_CLIP = "LivePortrait/assets/examples/driving/d3.mp4"  # head turns and tilts


@pytest.fixture(scope="module")
def detector():
    return load_detector(DetectorConfig())


def manifest_rows(media: Path, kind: str) -> list[dict]:
    with open(media / "MANIFEST.tsv", newline="") as f:
        return [r for r in csv.DictReader(f, delimiter="\t") if r["kind"] == kind]


def assert_sane(points: np.ndarray, box=None) -> None:
    """Eyes above the nose tip above the mouth above the chin; eyes apart; points inside a (loose) box."""
    eyes_y = points[36:48, 1].mean()
    nose_y, mouth_y, chin_y = points[30, 1], points[48:68, 1].mean(), points[8, 1]
    assert eyes_y < nose_y < mouth_y < chin_y
    assert points[36:42, 0].mean() < points[42:48, 0].mean()  # subject's right eye on the image's left
    assert interocular(points) > 0.15 * np.ptp(points[:, 0])
    if box is not None:
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        inside = (
            (points[:, 0] > x0 - 0.25 * w) & (points[:, 0] < x1 + 0.25 * w)
            & (points[:, 1] > y0 - 0.25 * h) & (points[:, 1] < y1 + 0.35 * h)
        )
        assert inside.all()


@pytest.mark.media
@pytest.mark.parametrize("name", PHOTOS)
def test_landmarks_on_real_photos(media, detector, name):
    image = load_image(media / name)
    faces = detector.detect(image)
    assert len(faces) == 1
    face = faces[0]
    assert face.points.shape == (68, 2) and face.points.dtype == np.float32
    assert face.score > 0 and face.pupils is None
    assert_sane(face.points, face.box)


@pytest.mark.media
def test_several_faces_largest_first(media, detector):
    big = load_image(media / PHOTOS[2])  # 256 px
    small = load_image(media / "MakeItTalk/examples/chris.jpg")[::2, ::2]  # 128 px
    canvas = np.zeros((256, 512, 3), np.uint8)
    canvas[:, :256] = big
    canvas[64:192, 320:448] = small
    faces = detector.detect(canvas)
    assert len(faces) == 2 and faces[0].area > faces[1].area
    assert faces[0].box[2] <= 300 and faces[1].box[0] >= 290


@pytest.mark.media
def test_redetection_on_a_smaller_image_still_sees_a_comparable_second_face(media, detector, monkeypatch):
    big = cv2.resize(load_image(media / PHOTOS[2]), (512, 512))
    other = cv2.resize(load_image(media / "MakeItTalk/examples/chris.jpg"), (480, 480))
    canvas = np.zeros((512, 1040, 3), np.uint8)
    canvas[:, :512], canvas[16:496, 544:1024] = big, other
    ratio = TrackConfig().second_face_ratio
    everything = detector.detect(canvas)
    assert len(everything) == 2 and everything[1].area >= ratio * everything[0].area  # comparable: ambiguous
    side = np.ptp(np.reshape(everything[0].box, (2, 2)), axis=0).max()
    larger = detector.detect_larger(canvas, side * ratio**0.5)
    assert larger is not None and len(larger) == 2  # searched a smaller image, found both
    assert all(iou(a.box, b.box) > 0.7 for a, b in zip(everything, larger, strict=True))
    assert detector.detect_larger(canvas, 100) is None  # no level of the pyramid to skip: the caller detects
    calls, real = [], detector.detect_larger
    monkeypatch.setattr(detector, "detect_larger", lambda image, side: calls.append(side) or real(image, side))
    tracker = FaceTracker(detector, TrackConfig(detect_every=2))
    for _ in range(6):
        assert iou(tracker(canvas).box, everything[0].box) > 0.7
    assert tracker.detections == 3 and len(calls) == 2 and tracker.ambiguous == 3


@pytest.mark.media
def test_animals_and_empty_scenes_have_no_face(media, detector):
    others = [r["file"] for r in manifest_rows(media, "other") if "animal" in r["notes"] or "no person" in r["notes"]]
    assert len(others) >= 10
    found = {name: len(detector.detect(load_image(media / name))) for name in others}
    assert not any(found.values()), found


@pytest.mark.media
def test_most_paintings_get_landmarks(media, detector):
    paintings = [r["file"] for r in manifest_rows(media, "painting")]
    with_face = 0
    for name in paintings:
        faces = detector.detect(load_image(media / name))
        if faces:
            assert_sane(faces[0].points)
            with_face += 1
    assert len(paintings) == 13 and with_face >= 12


def test_detection_scale():
    config = DetectorConfig(max_side=640, min_side=200)
    assert detection_scale(1080, 1920, config) == pytest.approx(1 / 3)
    assert detection_scale(160, 160, config) == pytest.approx(1.25)
    assert detection_scale(480, 360, config) == 1.0


def test_face_scaled_keeps_pixel_centres():
    face = Face(np.array([[0.0, 0.0], [9.0, 19.0]] * 34, np.float32), (0, 0, 10, 20), 1.0)
    twice = face.scaled(2.0)
    assert np.allclose(twice.points[:2], [[0.5, 0.5], [18.5, 38.5]]) and twice.box == (0.5, 0.5, 20.5, 40.5)


def test_optional_backends_fail_clearly():
    try:
        import face_alignment  # noqa: F401
    except ImportError:
        with pytest.raises(DetectorUnavailable, match="pip install face-alignment"):
            load_detector(DetectorConfig(backend="face-alignment"))
    with pytest.raises(ValueError, match="unknown landmark backend"):
        load_detector(DetectorConfig(backend="nope"))  # type: ignore[arg-type]


def test_faces_never_imports_torch():
    code = (
        "import sys, faces.prepare, faces.detect, faces.dlib_landmarks, faces.video, faces.crop, faces.track, "
        "faces.bench_prepare, faces.sources; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---------------------------------------------------------------------------------------------------- crops


def test_crop_transform_round_trip():
    t = CropTransform.square((100.0, 80.0), 50.0, 256)
    points = np.random.default_rng(0).uniform(0, 200, (68, 2))
    assert np.allclose(t.to_image(t.to_crop(points)), points, atol=1e-3)
    assert np.allclose(t.to_crop(np.array([[100.0, 80.0]])), [[127.5, 127.5]], atol=1e-4)  # centre maps to centre
    again = CropTransform.from_array(t.to_array(), 256)
    assert again == t and t.resized(128).to_crop(np.array([[100.0, 80.0]]))[0] == pytest.approx([63.5, 63.5])


@pytest.mark.parametrize("side", [40.0, 300.0])  # enlarging and shrinking
def test_crop_puts_pixels_where_the_transform_says(side):
    image = np.zeros((400, 500, 3), np.uint8)
    image[200:204, 300:304] = 255  # a 4x4 white square centred on (301.5, 201.5)
    t = CropTransform.square((310.3, 190.7), side, 128)
    crop = t.crop(image)
    ys, xs = np.nonzero(crop[..., 0] > 20)
    weights = crop[ys, xs, 0].astype(float)
    centre = np.array([np.average(xs, weights=weights), np.average(ys, weights=weights)])
    assert np.allclose(centre, t.to_crop(np.array([[301.5, 201.5]]))[0], atol=0.35)


def test_crop_outside_the_image_is_black_and_paste_restores():
    yy, xx = np.mgrid[:120, :160]
    image = np.stack([xx * 1.5, yy * 2.0, 128 + 100 * np.sin(xx / 9.0) * np.cos(yy / 7.0)], -1).astype(np.uint8)
    t = CropTransform.square((20.0, 30.0), 100.0, 200)  # reaches past the top-left corner
    crop = t.crop(image)
    assert crop.shape == (200, 200, 3) and crop[:10, :10].max() == 0
    pasted = t.paste(crop, image, feather=0.0)
    inner = pasted[10:70, 5:60].astype(int) - image[10:70, 5:60].astype(int)
    assert np.abs(inner).mean() < 2  # resampled twice
    assert np.array_equal(pasted[:, 80:], image[:, 80:])  # outside the crop nothing changes
    replaced = t.paste(np.zeros_like(crop), image, feather=0.1)
    assert replaced[30, 20].max() == 0 and replaced[30, 150].tolist() == image[30, 150].tolist()


def test_head_square_and_fixed_mode():
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 100, (68, 2))
    track = np.stack([base + [i, 0] for i in range(30)])  # moves right by 1 px per frame
    follow = clip_transforms(track, 25, CropConfig(resolution=64), sigma=0.2)
    fixed = clip_transforms(track, 25, CropConfig(resolution=64, mode="fixed"), sigma=0.2)
    assert len({t.offset for t in fixed}) == 1 and len({t.offset for t in follow}) == 30
    assert fixed[0].side > follow[0].side  # holds the head over all frames
    photo = photo_transform(base, CropConfig(resolution=64, margin=0.8))
    assert photo.side == pytest.approx(1.8 * np.ptp(base, axis=0).max())


# ---------------------------------------------------------------------------------------------------- smoothing


def test_one_euro_removes_jitter_without_lag_on_motion():
    rng = np.random.default_rng(3)
    t = np.arange(200) / 25
    face = rng.uniform(0, 100, (68, 2))  # a face-sized spread: speeds are measured in face sizes per second
    still = face + rng.normal(0, 1.0, (200, 68, 2))
    smoothed = smooth_landmarks(still, 25, SmoothingConfig())
    rest = np.setdiff1d(np.arange(20, 68), EXPRESSIVE)  # eyelids and lips are filtered lightly on purpose
    assert (smoothed - face)[20:, rest].std() < 0.35 * (still - face)[20:, rest].std()
    assert (smoothed - face)[20:, EXPRESSIVE].std() < 0.8 * (still - face)[20:, EXPRESSIVE].std()
    ramp = np.zeros((200, 68, 2))
    ramp[..., 0] = 200 * t[:, None]  # fast motion: 200 px/s
    ramp[..., 1] = np.linspace(0, 100, 68)  # a face-sized spread
    lagless = smooth_landmarks(ramp, 25, SmoothingConfig(bidirectional=True))
    assert np.abs(lagless - ramp)[5:-5].max() < 1.0
    online = OneEuroFilter(scale=100.0)
    out = np.stack([online(p, i / 25) for i, p in enumerate(ramp)])
    assert 0 < np.abs(out - ramp)[50:, :, 0].mean() < 10  # causal: some lag, bounded by the speed term


def _blinking_track(fps: float, frames: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """A face drifting slowly, with a 3-frame blink (frames 50-52, lids shut) and a mouth opening (frames 70-77);
    returns the clean track and the track with 0.5 px of detector jitter."""
    t = np.arange(frames)
    drift = np.stack([6 * np.sin(2 * np.pi * 0.3 * t / fps), 3 * np.cos(2 * np.pi * 0.2 * t / fps)], 1)
    mouth = np.zeros(frames)
    mouth[70:78] = np.sin(np.linspace(0, np.pi, 8))
    clean = np.stack([synthetic_face(256, m) for m in mouth]) + drift[:, None]
    clean[50:53, [37, 38, 43, 44]] = clean[50:53, [41, 40, 47, 46]]
    return clean, clean + np.random.default_rng(0).normal(0, 0.5, clean.shape)


@pytest.mark.parametrize("fps", [25, 30])
def test_smoothing_keeps_blinks_and_mouth_opening_and_removes_jitter(fps):
    clean, noisy = _blinking_track(fps)
    smooth = smooth_landmarks(noisy, fps, SmoothingConfig(min_cutoff=1.0))  # the app's default strength (0.5)

    def blink_depth(track):
        eyes = eye_opening(track)
        return np.median(eyes[30:48]) - eyes[50:53].min()

    assert blink_depth(smooth) >= 0.8 * blink_depth(clean)
    assert mouth_opening(smooth)[70:78].max() >= 0.9 * mouth_opening(clean)[70:78].max()
    stable = np.r_[0:17, 27:36]

    def jitter(track):  # mean second difference: frame-to-frame shake, not motion
        return np.abs(track[2:, stable] - 2 * track[1:-1, stable] + track[:-2, stable]).mean()

    assert jitter(smooth) < 0.5 * jitter(noisy)
    assert np.abs(smooth - clean)[:, stable].mean() < 0.7 * np.abs(noisy - clean)[:, stable].mean()
    collapsed = noisy.copy()
    collapsed[10] = collapsed[10, 30]  # a frame squashed to one point has no pose: filtered point by point
    assert np.isfinite(smooth_landmarks(collapsed, fps)).all()
    assert smooth_landmarks(noisy[:, :5], fps).shape == (100, 5, 2)  # not a 68-point face: point by point


@pytest.mark.parametrize("fps", [25, 30])
def test_gaze_smoothing_keeps_a_glance_and_follows_the_smoothed_eyes(fps):
    """A glance aside for 3 frames survives the default smoothing, the iris stays put in its eye while the head
    drifts, and detector jitter of the iris is reduced."""
    clean, noisy = _blinking_track(fps)
    look = np.zeros((len(clean), 2, 2))
    look[20:23, :, 0] = -0.15  # a glance left
    centres = np.stack([clean[:, 36:42].mean(1), clean[:, 42:48].mean(1)], 1)
    clean_irises = gaze_positions(clean, gaze_coordinates(clean, centres) + look)
    irises = clean_irises + np.random.default_rng(1).normal(0, 0.5, clean_irises.shape)
    config = SmoothingConfig(min_cutoff=1.0)
    smooth = smooth_landmarks(noisy, fps, config)
    out = smooth_irises(noisy, irises, smooth, fps, config)
    gaze, truth = gaze_coordinates(smooth, out), gaze_coordinates(clean, clean_irises)
    assert gaze[20:23, :, 0].mean() - gaze[5:15, :, 0].mean() < -0.75 * 0.15
    raw = gaze_coordinates(noisy, irises)
    assert np.abs(gaze - truth)[30:].mean() < 0.65 * np.abs(raw - truth)[30:].mean()
    np.testing.assert_array_equal(smooth_irises(noisy, irises, smooth, fps, SmoothingConfig(enabled=False)),
                                  gaze_positions(smooth, raw))


def test_segments_and_gaussian():
    assert segments(np.array([0, 1, 2, 5, 6, 9])) == [slice(0, 3), slice(3, 5), slice(5, 6)]
    steps = np.r_[np.zeros(20), np.ones(20)]
    smooth = gaussian_smooth(steps, 2.0)
    assert smooth[0] == pytest.approx(0) and smooth[-1] == pytest.approx(1) and 0.4 < smooth[19] < 0.6


# ---------------------------------------------------------------------------------------------------- tracking


class _Fixed(LandmarkDetector):
    """One face, always in the same place; its smaller search (`detect_larger`) returns `larger`."""

    name = "fixed"

    def __init__(self):
        super().__init__(DetectorConfig())
        points = synthetic_face(200).astype(np.float32) + 100
        self.face, self.larger, self.calls = Face(points, box_of(points), 1.0), None, []

    def detect(self, image):
        self.calls.append("detect")
        return [self.face]

    def detect_larger(self, image, side):
        self.calls.append("larger")
        return self.larger

    def fit(self, image, box):
        return self.face


@pytest.mark.parametrize("larger", ["same face", "missed", "no cheaper search"])
def test_redetection_falls_back_to_the_whole_search_when_the_smaller_one_misses_the_face(larger):
    detector = _Fixed()
    detector.larger = {"same face": [detector.face], "missed": [], "no cheaper search": None}[larger]
    tracker = FaceTracker(detector, TrackConfig(detect_every=3))
    for _ in range(4):  # detects on frames 1 and 4
        tracker(np.zeros((400, 400, 3), np.uint8))
    assert tracker.detections == 2 and not tracker.new_track  # one detector run, however many searches
    whole = [] if larger == "same face" else ["detect"]
    assert detector.calls == ["detect", "larger", *whole]


def test_a_face_lost_a_moment_ago_is_searched_for_at_its_own_size_then_everywhere():
    """After the followed face is lost, the next detections look only for faces about its size (no search for
    small faces: dlib's 4x-pixel retry) until `detect_every` frames have passed; then the whole search again."""
    detector = _Fixed()
    detector.larger = []  # the smaller search never finds anything
    tracker = FaceTracker(detector, TrackConfig(detect_every=3))
    frame = np.zeros((400, 400, 3), np.uint8)
    tracker(frame)  # found by the whole search
    detector.face = None  # gone from view, for the whole search too
    detector.detect = lambda image: detector.calls.append("detect") or []
    detector.fit = lambda image, box: None
    detector.calls.clear()
    assert [tracker(frame) for _ in range(5)] == [None] * 5
    # lost on the first (the fit fails: smaller search, then the whole one); then three frames of the smaller
    # search alone; after detect_every (3) frames lost, everywhere again
    assert detector.calls == ["larger", "detect", "larger", "larger", "larger", "detect"], detector.calls
    assert tracker.detections == 6  # the first, then one a frame


def _track(media, detector, name, every, frames=60):
    tracker = FaceTracker(detector, TrackConfig(detect_every=every))
    points = [tracker(f).points for f in read_frames(media / name, max_frames=frames, threads=1)]
    return np.stack(points), tracker


@pytest.mark.media
@pytest.mark.slow
def test_tracking_matches_detection_and_smoothing_bounds_jitter(media, detector):
    detected, every_frame = _track(media, detector, MOVING_CLIP, 1)
    tracked, tracker = _track(media, detector, MOVING_CLIP, 10)
    assert every_frame.detections == 60 and tracker.detections == 6
    scale = np.median([interocular(p) for p in detected])
    assert np.linalg.norm(tracked - detected, axis=-1).mean() / scale < 0.06
    for p in tracked[::10]:
        assert_sane(p)
    still, _ = _track(media, detector, STILL_CLIP, 10)
    smooth = smooth_landmarks(still, 30)
    scale = np.median([interocular(p) for p in still])
    rigid = list(range(0, 17)) + list(range(27, 36))  # jaw outline and nose: move little on a still head

    def jitter(track):  # mean second difference: frame-to-frame shake, not motion
        return np.abs(track[2:, rigid] - 2 * track[1:-1, rigid] + track[:-2, rigid]).mean() / scale

    assert jitter(smooth) < 0.5 * jitter(still) and jitter(smooth) < 0.006
    assert np.linalg.norm(smooth - still, axis=-1).mean() / scale < 0.02  # smoothing does not drift away


# ---------------------------------------------------------------------------------------------------- sources


def test_sources_voxceleb_layout_identities_and_split(tmp_path):
    for rel in ["id10001/abc/00001.mp4", "id10001/abc/00002.mp4", "id10002/xyz/00001.mp4"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    for i in range(3):
        (tmp_path / "id10003/frames/00007").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"id10003/frames/00007/{i:04d}.jpg").write_bytes(b"")
    (tmp_path / "misc").mkdir()
    (tmp_path / "misc/talk.mov").write_bytes(b"")
    (tmp_path / "misc/photo.png").write_bytes(b"")
    sources = find_sources(tmp_path)
    by_name = {s.clip: s for s in sources}
    assert set(by_name) == {
        "id10001__abc__00001", "id10001__abc__00002", "id10002__xyz__00001", "id10003__frames__00007", "misc__talk"
    }
    assert by_name["id10001__abc__00002"].identity == "id10001"
    assert by_name["id10003__frames__00007"].kind == "frames" and by_name["misc__talk"].identity == "misc__talk"
    assert "misc__photo" in {s.clip for s in find_sources(tmp_path, images=True)}
    mapping = tmp_path / "people.csv"
    mapping.write_text("# who is who\nfile,identity\nmisc/talk.mov,someone\n")
    assert read_identities(mapping) == {"misc/talk.mov": "someone"}
    assert {s.clip: s.identity for s in find_sources(tmp_path, identities=read_identities(mapping))}[
        "misc__talk"
    ] == "someone"


def test_split_is_deterministic_and_near_the_fraction():
    names = [f"person{i}" for i in range(2000)]
    splits = [split_of(n, 0.1) for n in names]
    assert splits == [split_of(n, 0.1) for n in names]
    assert 0.07 < splits.count("test") / len(names) < 0.13
    assert clip_name("id1/a b/c.mp4") == "id1__a-b__c"


@pytest.mark.media
def test_media_identities_file_names_real_files(media):
    mapping = read_identities(ROOT / "faces" / "media_identities.tsv")
    assert len(mapping) > 40 and all((media / f).is_file() for f in mapping)
