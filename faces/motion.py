"""Landmark adaptation: the source's own face moved by the driver's motion, not the driver's face pasted on.

Feeding another person's landmarks to G (the paper's cross-identity setup) leaks the driver's face shape into
the result. Here the driver track is split into a rigid head pose (a similarity relative to a reference frame)
and the non-rigid expression residual; both are re-applied to the source landmarks, each with a strength, the
expression's per part (eyes and brows; the mouth and the rest of the lower face), as portrait animators offer it.

On top of the driver's motion, `Controls` can hold the eyes or the lips open or closed, whatever the driver does,
and add a head rotation (yaw, pitch, roll). The landmarks are 2-D, so a yaw or pitch is the change of the 2-D
projection of a mean 3-D face (`MEAN_FACE_3D`, its jaw line treated as the head's silhouette) turned by that angle,
laid onto each frame's face by the similarity that fits the mean's stable points onto it (`turn`): a small-angle
approximation (`turn_offsets`). Roll is an exact rotation about the face's centre.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import numpy as np

from base.errors import ConfigError
from faces.layout import FLIP_INDEX, LEFT_EYE, NUM_POINTS, RIGHT_EYE

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


Hold = Literal["follow", "open", "closed"]
HOLDS = ("follow", "open", "closed")
MAX_TURN = 30.0  # degrees: the head-turn offsets are a small-angle approximation (see `turn_offsets`)
# The points whose expression `eyes_strength` scales: brows and eyes (blinks, raised brows). Every other point (jaw,
# nose, lips) is the mouth's: the jaw drops with an opening mouth and the nostrils move with the upper lip.
EYES_PART = np.r_[17:27, 36:48]
OPEN_EYE = 0.3  # lid gap over eye width of an open eye (dlib on open eyes: about 0.25-0.35)
OPEN_MOUTH = 0.35  # inner-lip gap over the interocular distance of a mouth held open (talking spans about 0 to 0.5)
CLOSED_EYE_AT = 0.2  # closed lids meet this share of the way from the lower lid to the upper: the upper lid drops
# How far each lower-face point follows the lower inner lip when a mouth is held open or closed: the chin and the
# lower lip all the way, the jaw less towards the ears, the mouth corners a little.
_JAW_DROP = {8: 1.0, 7: 0.95, 9: 0.95, 6: 0.8, 10: 0.8, 5: 0.6, 11: 0.6, 4: 0.4, 12: 0.4, 3: 0.2, 13: 0.2, 2: 0.05,
             14: 0.05, 55: 0.6, 56: 0.9, 57: 1.0, 58: 0.9, 59: 0.6, 48: 0.3, 54: 0.3, 60: 0.3, 64: 0.3}
_OPEN_LIPS = np.sin(np.pi * np.array([1, 2, 3]) / 4)  # an open mouth's inner-lip gap along it, corner to corner


@dataclass(frozen=True, kw_only=True)
class Controls:
    """What a person sets on the face besides the driver's motion: per-part strengths, held eyes or lips and a head
    rotation. `heads animate`, `heads edit` and the app's sliders share these fields (their docstrings are the
    options' help), so each control has one name and one default everywhere."""

    eyes_strength: float = 1.0
    """Strength of the driver's eye motion (blinks, brows, and gaze where irises are tracked), 0 (the photo's eyes)
    to 2 (exaggerated)."""
    mouth_strength: float = 1.0
    """Strength of the driver's mouth motion (lips, jaw and the rest of the lower face), 0 (the photo's mouth) to 2."""
    eyes: Hold = "follow"
    """follow: the eyelids move as the driver's do; open or closed: held so, whatever the driver does."""
    mouth: Hold = "follow"
    """follow: the lips move as the driver's do; open or closed: held so (the jaw follows the lower lip)."""
    yaw: float = 0.0
    """Head turn added to the driver's, in degrees (-30 to 30): positive turns the face towards the image's right."""
    pitch: float = 0.0
    """Head nod added to the driver's, in degrees (-30 to 30): positive tilts the face up."""
    roll: float = 0.0
    """Head tilt added to the driver's, in degrees (-30 to 30): positive tilts it clockwise in the image."""

    def __post_init__(self) -> None:
        for name in ("eyes_strength", "mouth_strength"):
            if not 0.0 <= getattr(self, name) <= 2.0:
                raise ConfigError(f"{name} must be in [0, 2], got {getattr(self, name)}")
        for name in ("eyes", "mouth"):
            if getattr(self, name) not in HOLDS:
                raise ConfigError(f"{name} must be one of {', '.join(HOLDS)}, got {getattr(self, name)!r}")
        for name in ("yaw", "pitch", "roll"):
            if not -MAX_TURN <= getattr(self, name) <= MAX_TURN:
                raise ConfigError(f"{name} must be in [-{MAX_TURN:g}, {MAX_TURN:g}] degrees, got {getattr(self, name)}")

    def controls(self) -> dict:
        """The controls alone, as keywords (of a subclass too: an AnimateConfig's, for its MotionConfig)."""
        return {f.name: getattr(self, f.name) for f in fields(Controls)}


@dataclass(frozen=True)
class MotionConfig(Controls):
    mode: Literal["relative", "absolute"] = "relative"  # relative keeps the source's face shape
    pose_strength: float = 1.0  # scales the driver's head motion (0 keeps the source head still)
    reference: Literal["first", "neutral"] = "first"  # driver frame that is mapped onto the source as it is

    def __post_init__(self) -> None:
        super().__post_init__()
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
    motion since the reference (head pose times `pose_strength`, expression offsets times `eyes_strength` on the
    brows and eyes and `mouth_strength` elsewhere, in the source's scale and orientation). absolute: the driver's
    landmarks themselves, moved by one box-to-box similarity into the source crop, so the driver's face shape is
    kept (the paper's setting; the strengths do not apply). In both, the held eyes or lips and the head-turn
    offsets of `config` come last (`adjust`). `reference` overrides `config.reference`. Tracks are expected already
    smoothed.
    """
    driver = _check_track(driver)
    source = check_points(source)
    ref = reference_index(driver, config.reference) if reference is None else reference
    if not -len(driver) <= ref < len(driver):
        raise ValueError(f"reference frame {ref} is outside the track of {len(driver)} frames")
    d_ref = driver[ref]
    if config.mode == "absolute":
        return adjust(apply_affine(_box_similarity(d_ref, source), driver), source, config)
    if config.mode != "relative":
        raise ValueError(f"mode must be 'relative' or 'absolute', got {config.mode!r}")

    to_source = fit_similarity(d_ref[STABLE], source[STABLE])  # driver reference -> source, rigid part only
    from_source = invert_affine(to_source)
    centre = source[STABLE].mean(0)
    strength = _strengths(config)
    out = np.empty_like(driver)
    for t, frame in enumerate(driver):
        pose, residual = _pose_and_expression(d_ref, frame)
        expression = residual @ to_source[:, :2].T  # offsets rotated and scaled into the source frame
        pose_in_source = compose(to_source, compose(pose, from_source))
        head = _scaled_similarity(pose_in_source, centre, config.pose_strength)
        out[t] = apply_affine(head, source + strength * expression)
    return adjust(out, source, config)


def _strengths(config: MotionConfig) -> np.ndarray:
    """(68, 1) share of the driver's expression each point takes: `eyes_strength` on `EYES_PART`, else
    `mouth_strength`."""
    strength = np.full((NUM_POINTS, 1), config.mouth_strength)
    strength[EYES_PART] = config.eyes_strength
    return strength


def _pose_and_expression(reference: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A driver frame (68, 2) split against its `reference` frame: the head's motion since then (a (2, 3) similarity
    fitted on the `STABLE` points, driver pixels) and the non-rigid rest (68, 2), offsets in the reference's pose."""
    pose = fit_similarity(reference[STABLE], frame[STABLE])
    return pose, apply_affine(invert_affine(pose), frame) - reference


def retarget_video(
    driver: np.ndarray,
    sources: np.ndarray,
    config: MotionConfig = MotionConfig(),
    reference: int | None = None,
    fade: int = 0,
) -> np.ndarray:
    """Driver track (T, 68, 2) and a source video's own track (S, 68, 2) -> (S, 68, 2) targets, one per source frame.

    Video-to-video: each source frame keeps its own head pose and face (its landmarks as they are) and takes the
    driver's expression alone: `retarget`'s relative offsets since the driver's reference frame (per-part strengths
    included), rotated and scaled into that frame's pose by the similarity of the driver's reference onto it. The
    driver's head motion is not applied (`pose_strength` has no part here): the head moves as the source's does.
    Source frame t takes driver frame t (give the driver already sampled at the source's times); past the driver's
    end its last expression eases back to none over `fade` frames, and the source plays on as it was, rather than
    freezing mid-word or jumping back to the driver's start. Holds and head-turn offsets come last, frame by frame
    (`adjust`, against that frame's own face). Tracks are expected already smoothed (the source's need not be: the
    warp moves each frame's pixels only by the offsets, so its own detection noise is not carried into motion).
    """
    driver = _check_track(driver)
    sources = _check_track(sources)
    if config.mode != "relative":
        raise ValueError(f"video-to-video transfers expressions relative to the driver's reference: {config.mode!r}")
    ref = reference_index(driver, config.reference) if reference is None else reference
    if not -len(driver) <= ref < len(driver):
        raise ValueError(f"reference frame {ref} is outside the track of {len(driver)} frames")
    d_ref = driver[ref]
    strength = _strengths(config)
    residuals = np.stack([_pose_and_expression(d_ref, frame)[1] for frame in driver[: len(sources)]])
    if len(residuals) < len(sources):  # the driver ended: its last expression fades out
        after = np.arange(1, len(sources) - len(residuals) + 1)
        ease = np.clip(1.0 - after / max(fade, 1), 0.0, 1.0)[:, None, None]
        residuals = np.concatenate([residuals, ease * residuals[-1]])
    out = np.empty_like(sources)
    for t, (source, residual) in enumerate(zip(sources, residuals, strict=True)):
        to_source = fit_similarity(d_ref[STABLE], source[STABLE])
        out[t] = adjust((source + strength * (residual @ to_source[:, :2].T))[None], source, config)[0]
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
    `eyes_strength`); absolute: the driver's gaze itself. The result is placed
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
        coordinates = own + config.eyes_strength * (gaze - gaze[ref])
    else:
        raise ValueError(f"mode must be 'relative' or 'absolute', got {config.mode!r}")
    return gaze_positions(targets, coordinates)


# ------------------------------------------------------------------------------------- holds and head-turn offsets


def _mean_face_3d() -> np.ndarray:
    """A mean adult face on the 68-point layout, (68, 3) in millimetres: x to the image's right, y down, z towards
    the camera, the eye centres on y = 0 and the nose tip at z = 0.

    Written down from typical anthropometry (63 mm between the pupils, 90 mm between the outer eye corners, the
    chin 97 mm below the eyes; the outer eye corners 35 mm and the jaw's ends 100 mm behind the nose tip) for the
    image-left half and the midline, and mirrored. It only has to be right to first order: it sets how much each
    point moves under a small turn, and the nose and lips standing out from the cheeks and jaw is what matters.
    """
    half = {  # the image-left half (the subject's right) and the midline
        0: (-71, 2, -98), 1: (-70, 17, -92), 2: (-68, 32, -83), 3: (-64, 47, -72), 4: (-58, 62, -60),
        5: (-49, 75, -47), 6: (-38, 86, -35), 7: (-21, 94, -26), 8: (0, 97, -22),  # jaw
        17: (-58, -20, -45), 18: (-48, -27, -33), 19: (-36, -30, -25), 20: (-24, -29, -19), 21: (-12, -26, -16),
        27: (0, -2, -18), 28: (0, 10, -12), 29: (0, 21, -6), 30: (0, 32, 0),  # nose bridge down to its tip
        31: (-13, 39, -17), 32: (-7, 42, -12), 33: (0, 43, -12),
        36: (-46, 1, -35), 37: (-37, -4, -29), 38: (-27, -4, -27), 39: (-18, 1, -28), 40: (-27, 4, -28),
        41: (-37, 4, -30),
        48: (-25, 60, -28), 49: (-16, 55, -19), 50: (-7, 52, -14), 51: (0, 53, -12), 57: (0, 70, -14),
        58: (-9, 69, -16), 59: (-17, 66, -21),
        60: (-21, 60, -25), 61: (-8, 60, -16), 62: (0, 60, -14), 66: (0, 60, -14), 67: (-8, 60, -16),
    }
    face = np.full((NUM_POINTS, 3), np.nan)
    for index, (x, y, z) in half.items():
        face[index] = (x, y, z)
        face[FLIP_INDEX[index]] = (-x, y, z)
    assert np.isfinite(face).all()
    return face


MEAN_FACE_3D = _mean_face_3d()


def turn_offsets(yaw: float, pitch: float) -> np.ndarray:
    """(68, 2) displacements, in `MEAN_FACE_3D`'s millimetres, of the mean face's orthographic projection when it
    turns by `yaw` and `pitch` degrees about its centroid (yaw first, about the vertical axis; then pitch).

    The rotation is exact for the mean face, but it reaches a real face only as this 2-D displacement field (its own
    depths are unknown): a small-angle approximation, fair up to about 20 degrees, and the reason for `MAX_TURN`.
    One change to the mean face: the jaw line of an image is a silhouette, the head's edge, not points on the skin,
    so it does not swing with the skin's depth (the jaw's ends, 100 mm behind the nose tip, would sweep into the
    hair). It is given the depth of the stable points at its ends, blending to the chin's own depth at the chin:
    the outline then moves with the head as a whole, as the warp's ring of hair and ears does, and the nose, eyes
    and mouth shift against it, as they do in a turn. Turning about the centroid keeps the face in place in the
    frame.
    """
    face = MEAN_FACE_3D.copy()
    share = np.abs(np.arange(17) - 8) / 8  # 0 at the chin, 1 at the jaw's ends
    face[:17, 2] += share * (face[STABLE, 2].mean() - face[:17, 2])
    a, b = np.radians(yaw), np.radians(pitch)
    turn_y = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])  # nose to +x for yaw > 0
    turn_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])  # nose to -y for pitch > 0
    centre = face.mean(0)
    turned = (face - centre) @ (turn_x @ turn_y).T + centre
    return turned[:, :2] - face[:, :2]


def turn(points: np.ndarray, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """(..., 68, 2) landmarks with the head turned further by `yaw`, `pitch` and `roll` degrees (see `Controls`).

    Yaw and pitch add `turn_offsets`, rotated and scaled onto each face by the similarity that takes the mean
    face's stable points (`STABLE`) onto the face's own, so the offset is relative to whatever pose the face is in.
    Roll then rotates the points about their centroid, which is exact in the image plane.
    """
    points = np.array(points, np.float64)
    flat = points.reshape(-1, NUM_POINTS, 2)
    offsets = turn_offsets(yaw, pitch) if yaw or pitch else None
    a = np.radians(roll)
    spin = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])  # clockwise on screen for roll > 0 (y down)
    for face in flat:
        if offsets is not None:
            onto = fit_similarity(MEAN_FACE_3D[STABLE, :2], face[STABLE])
            face += offsets @ onto[:, :2].T
        if roll:
            centre = face.mean(0)
            face[:] = (face - centre) @ spin.T + centre
    return flat.reshape(points.shape)


def _eye_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per face of (T, 68, 2) points: from the subject's right eye centre to the left, and that turned a quarter
    towards the chin (the face's "down", as long as the interocular distance), each (T, 2)."""
    across = points[:, LEFT_EYE].mean(1) - points[:, RIGHT_EYE].mean(1)
    return across, np.stack([-across[:, 1], across[:, 0]], -1)


def _lid_gaps(points: np.ndarray) -> np.ndarray:
    """Each eye's two lid gaps (upper lid to lower, along the eye's normal) in eye widths: (T, 68, 2) -> (T, 2, 2)."""
    _, axis, normal = _eye_frames(points)  # (T, 2, 2): eye, xy
    gap = points[:, LOWER_LID[:, 1:3]] - points[:, UPPER_LID[:, 1:3]]  # (T, eye, column, xy)
    return (gap * normal[:, :, None]).sum(-1) / np.maximum((axis**2).sum(-1), 1e-12)[:, :, None]


def set_eyes(points: np.ndarray, gaps: np.ndarray | None) -> np.ndarray:
    """(T, 68, 2) landmarks with each eye's upper lid moved (along the eye's normal) to `gaps` (2, 2) eye widths
    above the lower lid, column by column; None closes the eyes: the lids meet `CLOSED_EYE_AT` of the way up from
    the lower lid, on one point each, as in a detection of a closed eye."""
    out = np.array(points, np.float64)
    upper, lower = UPPER_LID[:, 1:3], LOWER_LID[:, 1:3]  # (eye, column)
    if gaps is None:
        out[:, upper] = out[:, lower] = out[:, lower] + CLOSED_EYE_AT * (out[:, upper] - out[:, lower])
        return out
    _, _, normal = _eye_frames(out)  # as long as the eye is wide: a gap in eye widths times it is in pixels
    change = _lid_gaps(out) - np.asarray(gaps, np.float64)  # (T, eye, column): how far each upper lid comes down
    out[:, upper] += change[..., None] * normal[:, :, None]
    return out


def _lip_gaps(points: np.ndarray) -> np.ndarray:
    """The inner-lip gaps (upper to lower lip, along the face's down) over the interocular distance: (T, 3)."""
    across, down = _eye_axes(points)
    gap = points[:, LOWER_INNER_LIP] - points[:, UPPER_INNER_LIP]
    return (gap * down[:, None]).sum(-1) / np.maximum((across**2).sum(-1), 1e-12)[:, None]


def set_mouth(points: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """(T, 68, 2) landmarks with the lower inner lip moved along the face's down to `gaps` (3,) interocular
    distances below the upper one, column by column (0 closes the mouth: the inner lips coincide), and the jaw and
    outer lower lip following by their share of the mean move (`_JAW_DROP`); the upper lip stays."""
    out = np.array(points, np.float64)
    _, down = _eye_axes(out)  # as long as the interocular distance
    change = np.asarray(gaps, np.float64) - _lip_gaps(out)  # (T, 3)
    mean = change.mean(1)
    for index, share in _JAW_DROP.items():
        out[:, index] += (share * mean)[:, None] * down
    out[:, LOWER_INNER_LIP] = out[:, UPPER_INNER_LIP] + np.asarray(gaps, np.float64)[:, None] * down[:, None]
    return out


def adjust(points: np.ndarray, source: np.ndarray, controls: Controls) -> np.ndarray:
    """Retargeted (T, 68, 2) landmarks with `controls`' head-turn offsets and held eyes and lips applied.

    Open is at least as open as the photo (`source`) shows it, and at least `OPEN_EYE` / `OPEN_MOUTH`: a person
    asking for open eyes on a sleepy photo wants them open, and one whose photo is wide-eyed keeps that.
    """
    out = np.asarray(points, np.float64)
    source = check_points(source)[None]
    if controls.yaw or controls.pitch or controls.roll:  # first: a turn would part lids or lips held together
        out = turn(out, controls.yaw, controls.pitch, controls.roll)
    if controls.eyes == "closed":
        out = set_eyes(out, None)
    elif controls.eyes == "open":
        out = set_eyes(out, np.maximum(_lid_gaps(source)[0], OPEN_EYE))
    if controls.mouth == "closed":
        out = set_mouth(out, np.zeros(3))
    elif controls.mouth == "open":
        out = set_mouth(out, np.maximum(_lip_gaps(source)[0], OPEN_MOUTH * _OPEN_LIPS / _OPEN_LIPS.mean()))
    return out


def neutralized(frame: np.ndarray) -> np.ndarray:
    """A single driving frame (68, 2) with its mouth closed and its eyes at `OPEN_EYE`: the reference it is read
    against when there is no other frame (`retarget_still`). Against itself a frame carries no motion at all; against
    this, its open mouth or closed eyes carry over. The head pose, brows and mouth width stay the frame's own, so
    they carry nothing: one frame does not say how the face looks at rest."""
    frame = check_points(frame)[None]
    return set_eyes(set_mouth(frame, np.zeros(3)), np.full((2, 2), OPEN_EYE))[0]


def retarget_still(
    source: np.ndarray,
    controls: Controls,
    frame: np.ndarray | None = None,
    source_irises: np.ndarray | None = None,
    frame_irises: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Target landmarks (68, 2) for editing the still whose landmarks are `source`: the expression of one driving
    `frame` (its eyes, mouth and, with both frames' irises, gaze; read against `neutralized(frame)`) or none, then
    `controls`. Also the target iris centres (2, 2) when the frame and the source have irises, else None. Without a
    frame and with default controls the targets are `source` itself, and the photo comes back unchanged."""
    source = check_points(source)
    config = MotionConfig(**controls.controls())
    if frame is None:  # nothing moves but what the controls hold or turn, so the photo comes back exactly
        return adjust(source[None], source, config)[0], None
    rest = neutralized(frame)
    track = np.stack([rest, check_points(frame)])
    targets = retarget(track, source, config, reference=0)
    if source_irises is None or frame_irises is None:
        return targets[1], None
    centred = np.stack([rest[RIGHT_EYE].mean(0), rest[LEFT_EYE].mean(0)])  # at rest the eyes look straight ahead
    looking = np.stack([centred, np.asarray(frame_irises, np.float64)])
    return targets[1], retarget_irises(track, looking, source, source_irises, targets, config, reference=0)[1]
