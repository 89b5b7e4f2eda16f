"""Landmark adaptation: the source's own face moved by the driver's motion, not the driver's face pasted on.

Feeding another person's landmarks to G (the paper's cross-identity setup) leaks the driver's face shape into
the result. Here the driver track is split into a rigid head pose (a similarity relative to a reference frame)
and the non-rigid expression residual; both are re-applied to the source landmarks, each with a strength.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from base.errors import ConfigError
from faces.layout import LEFT_EYE, NUM_POINTS, RIGHT_EYE

# Points that move with the skull but hardly with expression: eye corners and the nose.
STABLE = np.array([36, 39, 42, 45, 27, 28, 29, 30, 31, 32, 33, 34, 35])
UPPER_INNER_LIP = np.array([61, 62, 63])
LOWER_INNER_LIP = np.array([67, 66, 65])  # paired with UPPER_INNER_LIP, column by column
_UPPER_LIDS = np.array([37, 38, 43, 44])
_LOWER_LIDS = np.array([41, 40, 47, 46])
# Per eye (the subject's right, then left): the corners, image-left first, and each eyelid from corner to corner.
EYE_CORNERS = np.array([[36, 39], [42, 45]])
UPPER_LID = np.array([[36, 37, 38, 39], [42, 43, 44, 45]])
LOWER_LID = np.array([[36, 41, 40, 39], [42, 47, 46, 45]])


@dataclass(frozen=True)
class MotionConfig:
    mode: Literal["relative", "absolute"] = "relative"  # relative keeps the source's face shape
    expression_strength: float = 1.0  # scales the driver's non-rigid motion (0 freezes, 2 exaggerates)
    pose_strength: float = 1.0  # scales the driver's head motion (0 keeps the source head still)
    reference: Literal["first", "neutral"] = "first"  # driver frame that is mapped onto the source as it is

    def __post_init__(self) -> None:
        if not 0.0 <= self.expression_strength <= 2.0:
            raise ConfigError(f"expression_strength must be in [0, 2], got {self.expression_strength}")
        if not 0.0 <= self.pose_strength <= 2.0:
            raise ConfigError(f"pose_strength must be in [0, 2], got {self.pose_strength}")


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991) taking (N, 2) `src` onto `dst`, as a (2, 3) matrix [sR | t].

    Degenerate `src` (all points equal) gives a pure translation rather than a division by zero.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    var_s = (a**2).sum() / len(src)
    if var_s < 1e-12:
        return np.hstack([np.eye(2), (mu_d - mu_s)[:, None]])
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ d @ vt
    scale = float((sig * np.diag(d)).sum() / var_s)
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(2, 3) matrix applied to (..., 2) points."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, -(linear @ matrix[:, 2])[:, None]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The (2, 3) affine x -> outer(inner(x))."""
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """Mean inner-lip gap over the interocular distance; (..., 68, 2) -> (...)."""
    gap = np.linalg.norm(points[..., UPPER_INNER_LIP, :] - points[..., LOWER_INNER_LIP, :], axis=-1).mean(-1)
    return gap / _interocular(points)


def eye_opening(points: np.ndarray) -> np.ndarray:
    """Mean eyelid gap over the interocular distance; (..., 68, 2) -> (...)."""
    gap = np.linalg.norm(points[..., _UPPER_LIDS, :] - points[..., _LOWER_LIDS, :], axis=-1).mean(-1)
    return gap / _interocular(points)


def _eye_frames(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each eye's frame in (..., 68, 2) points: origin (its image-left corner), axis (to the other corner) and the
    axis turned a quarter towards the chin, each (..., 2, 2) (eye, xy)."""
    corners = np.asarray(points, np.float64)[..., EYE_CORNERS, :]  # (..., 2, 2, 2): eye, corner, xy
    origin, axis = corners[..., 0, :], corners[..., 1, :] - corners[..., 0, :]
    return origin, axis, np.stack([-axis[..., 1], axis[..., 0]], -1)


def gaze_coordinates(points: np.ndarray, irises: np.ndarray) -> np.ndarray:
    """Iris centres in their eyes' own frames: (..., 68, 2) landmarks and (..., 2, 2) irises -> (..., 2, 2) (u, w).

    u runs from the eye's image-left corner (0) to its image-right corner (1) and w across the eye, towards the
    chin, both in eye widths. Measured so, a gaze means the same on any face: another person's eyes, wider or
    narrower, tilted or further away, take the same (u, w) at their own size. NaN irises give NaN coordinates.
    """
    origin, axis, normal = _eye_frames(points)
    offset = np.asarray(irises, np.float64) - origin
    width2 = np.maximum((axis**2).sum(-1), 1e-12)
    return np.stack([(offset * axis).sum(-1) / width2, (offset * normal).sum(-1) / width2], -1)


def gaze_positions(points: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """The inverse of `gaze_coordinates`: (u, w) per eye placed in the eyes of (..., 68, 2) `points`."""
    origin, axis, normal = _eye_frames(points)
    coordinates = np.asarray(coordinates, np.float64)
    return origin + coordinates[..., :1] * axis + coordinates[..., 1:] * normal


def _interocular(points: np.ndarray) -> np.ndarray:
    """`layout.interocular` over any leading axes, floored so a collapsed face does not divide by zero."""
    iod = np.linalg.norm(points[..., RIGHT_EYE, :].mean(-2) - points[..., LEFT_EYE, :].mean(-2), axis=-1)
    return np.maximum(iod, 1e-6)


def _head_turn(points: np.ndarray) -> np.ndarray:
    """Yaw and roll proxies, 0 for a frontal upright face: nose tip off the eye midline, eye-line tilt."""
    right, left, nose = points[:, 36], points[:, 45], points[:, 30]
    eye_axis = left - right
    width = np.maximum(np.linalg.norm(eye_axis, axis=-1), 1e-6)
    yaw = np.abs(((nose - (right + left) / 2) * eye_axis).sum(-1)) / width**2
    roll = np.abs(np.arctan2(eye_axis[:, 1], eye_axis[:, 0]))
    return yaw + roll


def neutral_frame(track: np.ndarray) -> int:
    """Index of the most neutral frame of a (T, 68, 2) track: mouth closed, median eye opening, frontal.

    The reference's expression is what the source face is assumed to show; an open-mouth reference would make
    every later frame close the source's mouth.
    """
    track = _check_track(track)
    eyes = eye_opening(track)
    score = mouth_opening(track) + np.abs(eyes - np.median(eyes)) + _head_turn(track)
    return int(np.argmin(score))


def reference_index(track: np.ndarray, reference: Literal["first", "neutral"]) -> int:
    if reference == "first":
        return 0
    if reference == "neutral":
        return neutral_frame(track)
    raise ValueError(f"reference must be 'first' or 'neutral', got {reference!r}")


def check_points(points: np.ndarray) -> np.ndarray:
    """(68, 2) finite landmarks as float64, or a ValueError that says what is wrong."""
    points = np.asarray(points, np.float64)
    if points.shape != (NUM_POINTS, 2):
        raise ValueError(f"expected ({NUM_POINTS}, 2) landmarks, got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("landmarks contain NaN or inf")
    return points


def _check_track(track: np.ndarray) -> np.ndarray:
    track = np.asarray(track, np.float64)
    if track.ndim != 3 or track.shape[1:] != (NUM_POINTS, 2) or len(track) == 0:
        raise ValueError(f"expected a (T, {NUM_POINTS}, 2) landmark track, got {track.shape}")
    if not np.isfinite(track).all():
        raise ValueError("landmark track contains NaN or inf (fill or smooth missing detections first)")
    return track


def _scaled_similarity(matrix: np.ndarray, centre: np.ndarray, strength: float) -> np.ndarray:
    """The similarity `matrix` raised to the power `strength`, as seen from `centre`.

    Scale, angle and the centre's displacement are interpolated separately so that a half-strength head turn
    is half the angle, not a shrunken blend of two matrices.
    """
    linear = matrix[:, :2]
    scale = float(np.sqrt(abs(np.linalg.det(linear))))
    angle = float(np.arctan2(linear[1, 0], linear[0, 0]))
    shift = apply_affine(matrix, centre) - centre
    s, a = scale**strength, angle * strength
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([rot, (centre + strength * shift - rot @ centre)[:, None]])


def _box_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Scale and shift (no rotation) taking the bounding box of `src` onto that of `dst`."""
    lo_s, hi_s = src.min(0), src.max(0)
    lo_d, hi_d = dst.min(0), dst.max(0)
    scale = float(np.sqrt(np.prod(hi_d - lo_d) / max(np.prod(hi_s - lo_s), 1e-12)))
    shift = (lo_d + hi_d) / 2 - scale * (lo_s + hi_s) / 2
    return np.hstack([scale * np.eye(2), shift[:, None]])


def retarget(
    driver: np.ndarray,
    source: np.ndarray,
    config: MotionConfig = MotionConfig(),
    reference: int | None = None,
) -> np.ndarray:
    """Driver track (T, 68, 2) and source landmarks (68, 2) -> (T, 68, 2) landmarks for the source image.

    relative: the driver's reference frame maps exactly onto `source`; every other frame adds the driver's
    motion since the reference (head pose times `pose_strength`, expression offsets times
    `expression_strength`, both in the source's scale and orientation). absolute: the driver's landmarks
    themselves, moved by one box-to-box similarity into the source crop, so the driver's face shape is kept
    (the paper's setting). `reference` overrides `config.reference`. Tracks are expected already smoothed.
    """
    driver = _check_track(driver)
    source = check_points(source)
    ref = reference_index(driver, config.reference) if reference is None else reference
    if not -len(driver) <= ref < len(driver):
        raise ValueError(f"reference frame {ref} is outside the track of {len(driver)} frames")
    d_ref = driver[ref]
    if config.mode == "absolute":
        return apply_affine(_box_similarity(d_ref, source), driver)
    if config.mode != "relative":
        raise ValueError(f"mode must be 'relative' or 'absolute', got {config.mode!r}")

    to_source = fit_similarity(d_ref[STABLE], source[STABLE])  # driver reference -> source, rigid part only
    from_source = invert_affine(to_source)
    centre = source[STABLE].mean(0)
    out = np.empty_like(driver)
    for t, frame in enumerate(driver):
        pose = fit_similarity(d_ref[STABLE], frame[STABLE])  # head motion since the reference, driver coords
        residual = apply_affine(invert_affine(pose), frame) - d_ref  # non-rigid motion in the reference pose
        expression = residual @ to_source[:, :2].T  # offsets rotated and scaled into the source frame
        pose_in_source = compose(to_source, compose(pose, from_source))
        head = _scaled_similarity(pose_in_source, centre, config.pose_strength)
        out[t] = apply_affine(head, source + config.expression_strength * expression)
    return out


def retarget_irises(
    driver: np.ndarray,
    driver_irises: np.ndarray,
    source: np.ndarray,
    source_irises: np.ndarray | None,
    targets: np.ndarray,
    config: MotionConfig = MotionConfig(),
    reference: int | None = None,
) -> np.ndarray:
    """The driver's gaze carried onto the source's eyes: (T, 2, 2) iris centres in the (T, 68, 2) `targets`.

    `driver` (T, 68, 2) and `driver_irises` (T, 2, 2) are the driver's track; `source` (68, 2) and `source_irises`
    (2, 2) the photo's; `targets` are `retarget`'s output for the same driver, source and config. The gaze is the
    iris position within its eye (`gaze_coordinates`), so it is independent of the head's pose and of each face's
    eye shape. relative: the source's own gaze plus the driver's change of gaze since its reference frame (times
    `expression_strength`: eye motion is expression); absolute: the driver's gaze itself. The result is placed
    in the targets' eyes, unclamped: the warp keeps it inside the eye opening. An eye whose source iris is
    unknown (NaN, or `source_irises` None: a backend without irises) gets NaN, which the warp reads as "no iris".
    """
    driver = _check_track(driver)
    targets = np.asarray(targets, np.float64)
    if targets.shape != driver.shape:
        raise ValueError(f"expected targets shaped like the driver track {driver.shape}, got {targets.shape}")
    driver_irises = np.asarray(driver_irises, np.float64)
    if driver_irises.shape != (len(driver), 2, 2):
        raise ValueError(f"expected ({len(driver)}, 2, 2) driver irises, got {driver_irises.shape}")
    if source_irises is None:
        return np.full((len(driver), 2, 2), np.nan)
    source = check_points(source)
    source_irises = np.asarray(source_irises, np.float64)
    if source_irises.shape != (2, 2):
        raise ValueError(f"expected (2, 2) source irises, got {source_irises.shape}")
    own = gaze_coordinates(source, source_irises)  # (2, 2); NaN where the photo's iris is unknown
    gaze = gaze_coordinates(driver, driver_irises)  # (T, 2, 2)
    if config.mode == "absolute":
        coordinates = np.where(np.isnan(own), np.nan, gaze)  # an eye without a source iris has nothing to move
    elif config.mode == "relative":
        ref = reference_index(driver, config.reference) if reference is None else reference
        if not -len(driver) <= ref < len(driver):
            raise ValueError(f"reference frame {ref} is outside the track of {len(driver)} frames")
        coordinates = own + config.expression_strength * (gaze - gaze[ref])
    else:
        raise ValueError(f"mode must be 'relative' or 'absolute', got {config.mode!r}")
    return gaze_positions(targets, coordinates)
