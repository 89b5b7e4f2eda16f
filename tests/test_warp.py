"""Piecewise-affine warp: identity, exact landmark transport, real-photo landmark following, degenerate input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from dlib_points import landmarks

from faces.bench_warp import WarpBenchConfig, bench_warp, synthetic_face
from faces.warp import MultiSourceWarp, PiecewiseAffineWarp, nearest_source, source_distances

SIZE = 128


def _texture(size: int = SIZE, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 1.5)


def _photo(media, name: str) -> np.ndarray:
    image = cv2.imread(str(media / "MakeItTalk" / "examples" / name), cv2.IMREAD_COLOR)
    assert image is not None, name
    return np.ascontiguousarray(image[:, :, ::-1])


def test_identical_landmarks_return_the_image():
    image, face = _texture(), synthetic_face(SIZE, mouth=0.3)
    out = PiecewiseAffineWarp(image, face)(face)
    assert np.abs(out.image.astype(int) - image).mean() <= 1.0
    assert (out.image == image).mean() > 0.99
    assert out.mask.min() == 1.0


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
