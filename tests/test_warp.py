"""Piecewise-affine warp: identity, exact landmark transport, real-photo landmark following, degenerate input, no
fold-overs, head motion faded smoothly into a still background, and a dark mouth where the photo's is closed."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from dlib_points import landmarks

from faces.bench_warp import WarpBenchConfig, bench_warp, synthetic_face
from faces.motion import STABLE, apply_affine, fit_similarity, gaze_coordinates, gaze_positions
from faces.warp import (
    INNER_LIPS,
    MultiSourceWarp,
    PiecewiseAffineWarp,
    fill_mouth,
    mouth_colours,
    mouth_distances,
    nearest_source,
    signed_areas,
    source_distances,
)

SIZE = 128


def _texture(size: int = SIZE, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 1.5)


def _photo(media, name: str) -> np.ndarray:
    image = cv2.imread(str(media / "MakeItTalk" / "examples" / name), cv2.IMREAD_COLOR)
    assert image is not None, name
    return np.ascontiguousarray(image[:, :, ::-1])


@pytest.mark.parametrize("mouth", [0.0, 0.3])
def test_identical_landmarks_return_the_image(mouth):
    image, face = _texture(), synthetic_face(SIZE, mouth=mouth)
    out = PiecewiseAffineWarp(image, face)(face)
    assert np.array_equal(out.image, image)  # exactly: no fold relaxation, no outside motion, no mouth painted
    assert out.mask.min() == 1.0


def test_the_renderers_picture_is_resampled_without_the_guides_blur():
    """A shift of half a pixel: bilinear resampling (the guide, as models were trained) averages neighbours, bicubic
    (what a warp renderer shows) keeps most of the detail; both give the photo back for its own landmarks."""
    noise = np.random.default_rng(3).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    image, face = cv2.GaussianBlur(noise, (0, 0), 1.0), synthetic_face(SIZE)  # detail near the pixel scale
    warp = PiecewiseAffineWarp(image, face, mouth=False)
    assert np.array_equal(warp.picture(face), image)
    shifted = face + 0.5

    def detail(picture: np.ndarray) -> float:
        x0, y0 = np.ceil(shifted.min(0)).astype(int)
        x1, y1 = np.floor(shifted.max(0)).astype(int)
        grey = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY).astype(np.float64)
        return float(cv2.Laplacian(grey, cv2.CV_64F)[y0:y1, x0:x1].var())

    original, guide, picture = detail(image), detail(warp(shifted).image), detail(warp.picture(shifted))
    assert guide < 0.65 * original  # the guide's blur (0.52 here): what the renderer showed until 2026-12-07
    assert picture > 0.85 * original and picture > 1.5 * guide  # 0.96 here


def test_target_landmarks_sample_the_source_landmarks():
    source = synthetic_face(SIZE, mouth=0.2)
    target = np.round(synthetic_face(SIZE, mouth=0.8, angle=0.1) + [3, -2])  # integer: exact pixel centres
    map_x, map_y, _, _ = PiecewiseAffineWarp(_texture(), source).maps(target)
    x, y = target[:, 0].astype(int), target[:, 1].astype(int)
    np.testing.assert_allclose(np.stack([map_x[y, x], map_y[y, x]], 1), source, atol=1e-3)


def test_masks_are_float_images_in_unit_range():
    face = synthetic_face(SIZE)
    source = face + [0, 40]  # the chin leaves the frame
    out = PiecewiseAffineWarp(_texture(), source)(face)
    for mask in (out.mask, out.face):
        assert mask.shape == (SIZE, SIZE) and mask.dtype == np.float32
        assert mask.min() >= 0 and mask.max() <= 1
    chin = np.round(face[8]).astype(int)
    nose = np.round(face[30]).astype(int)
    assert out.mask[chin[1] - 2, chin[0]] == 0  # sampled from below the source frame
    assert out.mask[0, 0] == 1 and out.mask[nose[1], nose[0]] == 1
    assert out.face[nose[1], nose[0]] == 1 and out.face[0, 0] == 0


def _degenerate_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    face = synthetic_face(SIZE)
    open_mouth = synthetic_face(SIZE, mouth=1.0)
    line = np.stack([np.linspace(10, 110, 68), np.full(68, 64.0)], 1)
    closed_eyes = face.copy()
    closed_eyes[[37, 38, 43, 44]] = closed_eyes[[41, 40, 47, 46]]
    flipped = face.copy()
    flipped[:, 0] = SIZE - 1 - flipped[:, 0]
    return {
        "collinear target": (face, line),
        "collinear source": (line, face),
        "one point target": (face, np.full((68, 2), 64.0)),
        "one point source": (np.full((68, 2), 64.0), face),
        "target outside": (face, face + [300, -500]),
        "source outside": (face * 3 - 150, face),
        "huge target": (face, face * 1e9),
        "mirrored target": (face, flipped),
        "closed eyes and mouth opened": (closed_eyes, open_mouth),
        "open mouth closed": (open_mouth, closed_eyes),
    }


@pytest.mark.parametrize("case", list(_degenerate_cases()))
def test_degenerate_inputs_give_an_image(case):
    source, target = _degenerate_cases()[case]
    image = _texture()
    warp = PiecewiseAffineWarp(image, source)
    map_x, map_y, mask, face = warp.maps(target)
    assert np.isfinite(map_x).all() and np.isfinite(map_y).all()
    out = warp(target)
    assert out.image.shape == image.shape and out.image.dtype == np.uint8
    for mask in (out.mask, out.face):
        assert mask.min() >= 0 and mask.max() <= 1


def test_closed_mouth_source_keeps_every_landmark_in_the_mesh():
    closed = synthetic_face(SIZE, mouth=0.0)
    assert np.abs(closed[[61, 62, 63]] - closed[[67, 66, 65]]).max() < 1e-9  # coincident inner lips
    warp = PiecewiseAffineWarp(_texture(), closed)
    assert np.isin(np.arange(68), warp.triangles).all()
    opened = synthetic_face(SIZE, mouth=1.0)
    map_x, map_y, _, _ = warp.maps(np.round(opened))
    lip = np.round(opened[66]).astype(int)
    assert abs(map_y[lip[1], lip[0]] - closed[66, 1]) < 1.0  # the lower lip still drags its own pixels


# ------------------------------------------------------------------------------------------------- fold-overs


def _coverage(vertices: np.ndarray, triangles: np.ndarray) -> tuple[float, float]:
    """Summed |area| of the mesh's triangles and the area of its outline: equal only when none overlaps another."""
    total = float(np.abs(signed_areas(vertices[triangles])).sum() / 2)
    return total, float(cv2.contourArea(cv2.convexHull(vertices.astype(np.float32))))


def _brows_through_the_eyes(face: np.ndarray) -> np.ndarray:
    target = face.copy()
    target[17:27, 1] += 2.0 * (face[36:48, 1].mean() - face[17:27, 1].mean())  # brows pushed below the eyes
    return target


def test_a_target_that_folds_the_mesh_is_relaxed_until_nothing_overlaps():
    face = synthetic_face(SIZE)
    warp = PiecewiseAffineWarp(_texture(), face)
    target = _brows_through_the_eyes(face)
    as_given = np.concatenate([target, apply_affine(fit_similarity(face[STABLE], target[STABLE]), warp.ring)])
    total, outline = _coverage(as_given, warp.triangles)
    assert total > 1.1 * outline  # drawn as given, triangles would cover pixels twice
    relaxed = warp.target_vertices(target)
    total, outline = _coverage(relaxed, warp.triangles)
    assert total == pytest.approx(outline, rel=1e-6)  # every pixel covered once: no fold-over
    assert (signed_areas(relaxed[warp.triangles]) > -1e-9).all()  # every triangle keeps its orientation
    moved = (relaxed[17:27, 1] - face[17:27, 1]).mean()
    assert 0.1 < moved / (target[17:27, 1] - face[17:27, 1]).mean() < 0.9  # part of the motion kept, not all
    np.testing.assert_array_equal(warp.target_vertices(face)[:68], face)  # an unfolded target is left alone
    out = warp(target)
    assert out.image.shape == (SIZE, SIZE, 3) and out.mask.min() == 1.0


@pytest.mark.parametrize("mouth", [0.5, 1.0])
def test_opening_a_closed_mouth_or_eye_folds_nothing(mouth):
    closed = synthetic_face(SIZE, mouth=0.0)
    closed[[37, 38, 43, 44]] = closed[[41, 40, 47, 46]]  # eyes shut too
    warp = PiecewiseAffineWarp(_texture(), closed)
    target = synthetic_face(SIZE, mouth=mouth, angle=0.1)
    vertices = warp.target_vertices(target)
    np.testing.assert_array_equal(vertices[:68], target)  # nothing to relax: the expression is kept whole
    total, outline = _coverage(vertices, warp.triangles)
    assert total == pytest.approx(outline, rel=1e-6)


# ---------------------------------------------------------------------------------------- outside the face


def _small_face(size: int = 256) -> np.ndarray:
    """A face a quarter of the frame wide, in the upper middle (a half-body photo)."""
    return synthetic_face(size) * 0.3 + [0.35 * size, 0.2 * size]


def test_head_motion_fades_smoothly_into_a_still_background():
    size = 256
    face = _small_face(size)
    warp = PiecewiseAffineWarp(_texture(size), face, mouth=False)
    centre = face[STABLE].mean(0)
    c, s = np.cos(0.2), np.sin(0.2)
    head = np.array([[c, -s, 0.0], [s, c, 0.0]])
    head[:, 2] = centre + [12, 5] - head[:, :2] @ centre  # turned 11° and moved
    map_x, map_y, mask, _ = warp.maps(apply_affine(head, face))
    ys, xs = np.mgrid[:size, :size]
    shift = np.hypot(map_x - xs, map_y - ys)
    assert shift[0].max() < 1e-3 and shift[-1].max() < 1e-3  # the frame's edges stay put
    assert shift[:, 0].max() < 1e-3 and shift[:, -1].max() < 1e-3
    assert mask.min() == 1.0  # nothing sampled from outside the photo
    ring = np.round(apply_affine(head, warp.ring)).astype(int)  # the ring moves with the head (hair, ears)
    back = np.stack([map_x[ring[:, 1], ring[:, 0]], map_y[ring[:, 1], ring[:, 0]]], 1)
    expected = apply_affine(np.linalg.inv(np.vstack([head, [0, 0, 1]]))[:2], ring)
    np.testing.assert_allclose(back, expected, atol=0.05)
    chin = face[8]
    below = np.round(chin + [0, 0.6 * (size - chin[1])]).astype(int)  # the chest, well below the neck
    head_shift = np.linalg.norm(apply_affine(head, chin) - chin)
    assert shift[below[1], below[0]] < 0.4 * head_shift  # the torso moves little
    # Smooth: no kink anywhere outside the face (second differences stay tiny), and no fold (Jacobian > 0).
    outside = np.hypot(xs - centre[0], ys - centre[1]) > 1.7 * np.abs(warp.ring - centre).max()
    for m in (map_x, map_y):
        assert np.abs(np.diff(m, 2, axis=1))[outside[:, 1:-1]].max() < 0.25
        assert np.abs(np.diff(m, 2, axis=0))[outside[1:-1]].max() < 0.25
    jacobian = np.gradient(map_x, axis=1) * np.gradient(map_y, axis=0) - np.gradient(map_x, axis=0) * np.gradient(
        map_y, axis=1)
    assert jacobian.min() > 0.2


@pytest.mark.parametrize("shift", [(60, 0), (0, -60), (40, 40)])
def test_large_head_motion_does_not_fold_the_background(shift):
    size = 256
    face = _small_face(size)
    warp = PiecewiseAffineWarp(_texture(size), face, mouth=False)
    map_x, map_y, _, _ = warp.maps(face + shift)
    jacobian = np.gradient(map_x, axis=1) * np.gradient(map_y, axis=0) - np.gradient(map_x, axis=0) * np.gradient(
        map_y, axis=1)
    assert jacobian.min() > 0.2


# ----------------------------------------------------------------------------------------------------- mouth

SKIN, LIPS = (205, 160, 130), (170, 80, 80)
MOUTH_SIZE = 256


def _painted_face(mouth: float, teeth: bool = False, points: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A skin-coloured frame with lips drawn in, its landmarks; `teeth` paints the inner mouth white."""
    points = synthetic_face(MOUTH_SIZE, mouth=mouth) if points is None else points
    image = np.empty((MOUTH_SIZE, MOUTH_SIZE, 3), np.uint8)
    image[:] = SKIN
    cv2.fillPoly(image, [np.round(points[48:60] * 16).astype(np.int32)], LIPS, cv2.LINE_AA, 4)
    cv2.polylines(image, [np.round(points[INNER_LIPS] * 16).astype(np.int32)], True, (150, 65, 65), 1, cv2.LINE_AA, 4)
    if teeth:
        cv2.fillPoly(image, [np.round(points[INNER_LIPS] * 16).astype(np.int32)], (245, 245, 240), cv2.LINE_AA, 4)
    noise = np.random.default_rng(1).normal(0, 3, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), points


def _inner_mouth(points: np.ndarray, erode: int = 2) -> np.ndarray:
    mask = np.zeros((MOUTH_SIZE, MOUTH_SIZE), np.uint8)
    cv2.fillPoly(mask, [np.round(points[INNER_LIPS]).astype(np.int32)], 1)
    return cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=erode).astype(bool)


def _luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(float).mean(-1)


def test_a_closed_mouth_opened_shows_a_dark_cavity_not_skin():
    image, closed = _painted_face(0.0)
    target = synthetic_face(MOUTH_SIZE, mouth=1.0)
    inside = _inner_mouth(target)
    assert inside.sum() > 30
    painted = PiecewiseAffineWarp(image, closed)(target).image
    stretched = PiecewiseAffineWarp(image, closed, mouth=False)(target).image
    skin = float(np.mean(SKIN))
    assert _luminance(stretched)[inside].mean() > 0.5 * skin  # without it: lips and skin pulled over the gap
    assert _luminance(painted)[inside].mean() < 0.35 * skin  # with it: dark, not skin-coloured
    centre = np.round(target[INNER_LIPS].mean(0)).astype(int)
    rim = np.round(0.7 * target[62] + 0.3 * target[INNER_LIPS].mean(0)).astype(int)
    assert _luminance(painted)[centre[1], centre[0]] <= _luminance(painted)[rim[1], rim[0]]  # darker inwards
    edge, middle = mouth_colours(image, closed)
    assert edge.shape == (3,) and (middle < edge).all() and edge.mean() < np.mean(LIPS)
    away = ~cv2.dilate(_inner_mouth(target, 0).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.array_equal(painted[away], stretched[away])  # nothing painted outside the mouth


def test_a_narrow_opening_reads_as_open():
    """A closed mouth opened a little (79 px of inner mouth at 256 px): the fill leaves the lips a rim in proportion
    to the opening, not 2 px each side, which left nothing dark at all here and read as closed lips to dlib."""
    image, closed = _painted_face(0.0)
    target = synthetic_face(MOUTH_SIZE, mouth=0.2)
    inside = _inner_mouth(target, erode=0)
    painted = PiecewiseAffineWarp(image, closed)(target).image
    assert (_luminance(painted)[inside] < 0.5 * np.mean(SKIN)).mean() > 0.6


def test_an_open_mouth_keeps_its_own_teeth():
    image, opened = _painted_face(0.8, teeth=True)
    target = synthetic_face(MOUTH_SIZE, mouth=1.0)  # a little wider than the photo shows
    out = PiecewiseAffineWarp(image, opened)(target).image
    assert _luminance(out)[_inner_mouth(target)].mean() > 200  # the warped teeth, not a painted cavity


def test_an_open_target_takes_its_mouth_from_the_photo_that_shows_one():
    """With several photos, the nearest face (here: the one whose brows match) may have its mouth shut while
    another photo shows teeth: an open target then gets that photo's mouth, not a painted cavity; a closed target
    keeps the nearest photo's warp exactly."""
    closed_image, closed = _painted_face(0.0)
    raised = synthetic_face(MOUTH_SIZE, mouth=0.8)
    raised[17:27, 1] -= 0.15 * MOUTH_SIZE  # brows raised: this photo is the farther face
    open_image, opened = _painted_face(0.8, teeth=True, points=raised)
    sources = np.stack([closed, opened])
    target = synthetic_face(MOUTH_SIZE, mouth=1.0)
    assert nearest_source(sources, target) == 0 and np.argmin(mouth_distances(sources, target)) == 1
    multi = MultiSourceWarp([closed_image, open_image], sources)
    inside = _inner_mouth(target)
    assert _luminance(multi.warps[0](target).image)[inside].mean() < 100  # the nearest alone: a dark cavity
    assert _luminance(multi.image(target))[inside].mean() > 200  # the other photo's teeth
    shut = synthetic_face(MOUTH_SIZE, mouth=0.0)
    assert np.array_equal(multi.image(shut), multi.warps[0].picture(shut))


def test_fill_mouth_leaves_a_closed_target_alone():
    image, closed = _painted_face(0.0)
    warp = PiecewiseAffineWarp(image, closed, mouth=False)
    map_x, map_y, _, _ = warp.maps(closed)
    out = fill_mouth(image, closed, map_x, map_y, closed, mouth_colours(image, closed))
    assert out is image


@pytest.mark.media
def test_a_closed_mouth_photo_driven_open_gets_a_dark_mouth(media):
    image = _photo(media, "anne.jpg")  # lips closed
    source = landmarks(image)
    assert source is not None and np.abs(source[[61, 62, 63]] - source[[67, 66, 65]]).max() < 3
    target = source.copy()
    drop = 0.35 * (source[8, 1] - source[57, 1])
    target[[65, 66, 67], 1] += drop  # the lower lip and the chin move down
    target[55:60, 1] += drop
    target[5:12, 1] += 0.6 * drop
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(target[INNER_LIPS]).astype(np.int32)], 1)
    inside = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=2).astype(bool)
    out = PiecewiseAffineWarp(image, source)(target).image
    cheek = image[int(source[30, 1]) - 3 : int(source[30, 1]) + 3, int(source[3, 0]) + 8 : int(source[3, 0]) + 14]
    assert _luminance(out)[inside].mean() < 0.5 * _luminance(cheek).mean()


def test_nan_landmarks_are_refused_with_a_message():
    face = synthetic_face(SIZE)
    warp = PiecewiseAffineWarp(_texture(), face)
    bad = face.copy()
    bad[10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        warp(bad)
    with pytest.raises(ValueError, match="NaN"):
        PiecewiseAffineWarp(_texture(), bad)


def test_warp_is_deterministic():
    """Speed is measured by `heads bench warp`, not asserted here."""
    image = _texture(256)
    warp = PiecewiseAffineWarp(image, synthetic_face(256))
    target = synthetic_face(256, mouth=0.7, angle=0.05)
    first, again = warp(target), warp(target)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.mask, again.mask)


def test_nearest_source_ignores_framing():
    expressions = [synthetic_face(SIZE, mouth=m) for m in (0.0, 0.5, 1.0)]
    framed = [expressions[0] * 0.8 + 10, expressions[1] + [5, -3], expressions[2] * 1.1 - 6]
    target = synthetic_face(SIZE, mouth=0.95, angle=0.2) * 0.9 + 4
    assert nearest_source(np.array(framed), target) == 2
    assert source_distances(np.array(framed), framed[1])[1] < 1e-9


def test_multi_source_blend_of_one_image_is_that_image():
    image, face = _texture(), synthetic_face(SIZE, mouth=0.4)
    sources = np.stack([face, synthetic_face(SIZE, mouth=0.6)])
    multi = MultiSourceWarp([image, image], sources)
    single = multi(face)
    assert np.array_equal(single.image, image)
    blended = multi(face, blend=2)
    assert blended.image.dtype == np.uint8 and blended.mask.max() <= 1
    assert np.abs(blended.image.astype(int) - image).mean() < 3
    with pytest.raises(ValueError, match="shape"):
        MultiSourceWarp([image, image[:64]], sources)


def test_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "bench" / "warp.json"
    result = bench_warp(WarpBenchConfig(out=out, sizes=(64,), frames=3))
    written = json.loads(out.read_text())
    assert written == result and set(written["per_frame"]["64"]) >= {"maps_ms", "remap_ms", "total_ms"}
    assert '"per_frame"' in capsys.readouterr().out


@pytest.mark.media
@pytest.mark.parametrize("name", ["chris.jpg", "anne.jpg"])
def test_detected_landmarks_follow_the_warp(media, name):
    image = _photo(media, name)
    source = landmarks(image)
    assert source is not None
    target = source.copy()
    target[5:12, 1] += 4  # chin down
    target[56:59, 1] += 4  # lower lip down
    target[65:68, 1] += 4
    target[17:27, 1] -= 3  # brows up
    found = landmarks(PiecewiseAffineWarp(image, source)(target).image)
    assert found is not None
    moved = np.r_[5:12, 17:27, 56:59, 65:68]
    error = np.linalg.norm(found - target, axis=1)
    assert error.mean() <= 2.0
    assert error[moved].mean() < 0.6 * np.linalg.norm(found - source, axis=1)[moved].mean()


# ------------------------------------------------------------------------------------------------------ irises


EYES = (slice(36, 42), slice(42, 48))


def _eyes_photo(size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic face with white eyes and a dark iris disc (a fifth of an eye width across) in the middle of each:
    the image, its landmarks and its iris centres."""
    face = synthetic_face(size)
    image = np.full((size, size, 3), 170, np.uint8)
    irises = np.stack([face[eye].mean(0) for eye in EYES])
    radius = 0.2 * np.linalg.norm(face[39] - face[36])
    for eye, centre in zip(EYES, irises, strict=True):
        cv2.fillPoly(image, [np.round(face[eye] * 16).astype(np.int32)], (250, 250, 250), cv2.LINE_AA, 4)
        cv2.circle(image, tuple(np.round(centre * 16).astype(int)), int(radius * 16), (20, 20, 20), -1, cv2.LINE_AA, 4)
    return image, face, irises


def _dark_centre(image: np.ndarray, points: np.ndarray, eye: slice) -> np.ndarray:
    """Centroid of the dark (iris) pixels around one eye."""
    x0, y0 = np.floor(points[eye].min(0)).astype(int) - 3
    x1, y1 = np.ceil(points[eye].max(0)).astype(int) + 4
    ys, xs = np.nonzero(image[y0:y1, x0:x1].mean(-1) < 100)
    return np.array([xs.mean() + x0, ys.mean() + y0])


@pytest.mark.parametrize("shift", [-0.12, 0.12])
def test_irises_move_with_the_target_gaze(shift):
    """Target irises an eighth of an eye width to one side carry the drawn irises that way, and nothing else."""
    image, face, irises = _eyes_photo()
    warp = PiecewiseAffineWarp(image, face, irises=irises)
    target = gaze_positions(face, gaze_coordinates(face, irises) + [shift, 0.0])
    moved, still = warp(face, target), warp(face)
    width = np.linalg.norm(face[39] - face[36])
    for eye in EYES:
        dx, dy = _dark_centre(moved.image, face, eye) - _dark_centre(still.image, face, eye)
        assert 0.5 < dx / (shift * width) < 1.05  # most of the way, the iris's far edge sliding under the lids
        assert abs(dy) < 0.5
    changed = np.abs(moved.image.astype(int) - still.image).max(-1) > 0
    ys, xs = np.nonzero(changed)
    lids = face[36:48]
    assert xs.min() >= lids[:, 0].min() - 1 and xs.max() <= lids[:, 0].max() + 1  # only inside the eyes' span
    np.testing.assert_array_equal(moved.mask, still.mask)
    np.testing.assert_array_equal(warp(face, irises).image, image)  # the photo's own gaze: the photo itself


def test_without_irises_the_warp_is_exactly_the_plain_one():
    """No source irises, no target irises, or unknown (NaN) ones: bit for bit the warp of the 68 points alone."""
    image, face, irises = _eyes_photo()
    target = synthetic_face(256, mouth=0.6, angle=0.1) + [4, -3]
    target_irises = gaze_positions(target, gaze_coordinates(face, irises) + [0.1, 0.05])
    plain = PiecewiseAffineWarp(image, face)(target)
    for warp, given in [
        (PiecewiseAffineWarp(image, face), target_irises),  # a photo without irises (dlib)
        (PiecewiseAffineWarp(image, face, irises=irises), None),  # a target without
        (PiecewiseAffineWarp(image, face, irises=irises), np.full((2, 2), np.nan)),
        (PiecewiseAffineWarp(image, face, irises=np.full((2, 2), np.nan)), target_irises),
    ]:
        out = warp(target, given)
        for a, b in zip(out, plain, strict=True):
            np.testing.assert_array_equal(a, b)
    multi = MultiSourceWarp([image], face[None], irises=irises[None])
    np.testing.assert_array_equal(multi(target).image, plain.image)
    with pytest.raises(ValueError, match="iris"):
        MultiSourceWarp([image], face[None], irises=irises)


@pytest.mark.parametrize("gaze", [(-5.0, 0.0), (5.0, 0.0), (0.0, -5.0), (0.3, 3.0), (-0.4, -0.4)])
def test_extreme_gaze_never_folds_the_eye(gaze):
    """However far the target irises are sent, the eye's backward map keeps its orientation (no pixel mirrored)."""
    image, face, irises = _eyes_photo()
    warp = PiecewiseAffineWarp(image, face, irises=irises)
    target = synthetic_face(256, angle=0.15)
    map_x, map_y, _, _ = warp.maps(target, gaze_positions(target, gaze_coordinates(face, irises) + gaze))
    assert np.isfinite(map_x).all() and np.isfinite(map_y).all()
    x0, y0 = np.floor(target[36:48].min(0)).astype(int) - 8
    x1, y1 = np.ceil(target[36:48].max(0)).astype(int) + 8
    mx, my = map_x[y0:y1, x0:x1].astype(np.float64), map_y[y0:y1, x0:x1].astype(np.float64)
    det = np.gradient(mx, axis=1) * np.gradient(my, axis=0) - np.gradient(mx, axis=0) * np.gradient(my, axis=1)
    assert det.min() > 0.0


def test_a_closing_eye_takes_its_iris_along():
    """With the lids together the iris is not moved at all (no lid pixels smeared); half open, it still moves."""
    image, face, irises = _eyes_photo()
    warp = PiecewiseAffineWarp(image, face, irises=irises)
    closed = face.copy()
    closed[[37, 38, 43, 44]] = closed[[41, 40, 47, 46]] = (face[[37, 38, 43, 44]] + face[[41, 40, 47, 46]]) / 2
    aside = gaze_positions(closed, gaze_coordinates(face, irises) + [0.15, 0.0])
    np.testing.assert_array_equal(warp(closed, aside).image, warp(closed).image)
    half = face.copy()
    half[[37, 38, 43, 44]] = (3 * face[[37, 38, 43, 44]] + face[[41, 40, 47, 46]]) / 4
    half[[41, 40, 47, 46]] = (face[[37, 38, 43, 44]] + 3 * face[[41, 40, 47, 46]]) / 4
    aside = gaze_positions(half, gaze_coordinates(face, irises) + [0.15, 0.0])
    assert (warp(half, aside).image != warp(half).image).any()
