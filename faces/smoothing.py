"""Temporal smoothing of landmark tracks and crop boxes, so that G never sees detector jitter as motion.

The One-Euro filter (Casiez et al., CHI 2012) smooths hard when points are still and little when they move fast,
which is what landmarks need: jitter is removed at rest without lag on a quick head turn or mouth opening.

Filtering every landmark alike also removes what the viewer must see: a blink lasts 2-4 frames and the speed term
reacts too late to it, so at the app's default (1 Hz) blinks lost most of their depth and mouth opening lost some of
its correlation with the driver. `smooth_landmarks` therefore splits each frame of a 68-point track into what jitters
and what moves fast on purpose: a head pose (the similarity of the stable points onto a reference shape) and the
face's shape in that reference frame. The pose and the shape of the stable points get the configured filter; the
eyelid and lip points (EXPRESSIVE) get a high cut-off at rest (`SmoothingConfig.expression_cutoff`), which still
removes sub-pixel shake but lets a blink or a syllable through.
"""

from __future__ import annotations

import math

import numpy as np

from faces.config import SmoothingConfig
from faces.layout import NUM_POINTS
from faces.motion import STABLE, gaze_coordinates, gaze_positions

# Eyelids (the four upper and four lower lid points) and all lip points: they open and close within a few frames.
EXPRESSIVE = np.r_[37, 38, 40, 41, 43, 44, 46, 47, 48:68]


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Online One-Euro filter over arrays of points (..., 2); speed is measured in units of `scale` per second.

    Use one instance per track (e.g. per face in a live video); call it with each new sample and its time.
    """

    def __init__(self, min_cutoff: float = 0.5, beta: float = 4.0, d_cutoff: float = 1.0, scale: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.scale = scale
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    @classmethod
    def from_config(cls, config: SmoothingConfig, scale: float = 1.0) -> OneEuroFilter:
        return cls(config.min_cutoff, config.beta, config.d_cutoff, scale)

    def reset(self) -> None:
        self._x = self._dx = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.astype(np.float32)
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True) / self.scale
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        self._x = self._x + a * (x - self._x)
        self._t = t
        return self._x.astype(np.float32)


def _one_euro_pass(track: np.ndarray, fps: float, config: SmoothingConfig, scale: float,
                   min_cutoff: np.ndarray | float | None = None) -> np.ndarray:
    f = OneEuroFilter.from_config(config, scale)
    if min_cutoff is not None:
        f.min_cutoff = min_cutoff  # per point (N, 1), or one value
    return np.stack([f(x, i / fps) for i, x in enumerate(track)])


def _one_euro(track: np.ndarray, fps: float, config: SmoothingConfig, scale: float,
              min_cutoff: np.ndarray | float | None = None) -> np.ndarray:
    """Forward pass, or the mean of a forward and a backward pass (zero lag) when `config.bidirectional`."""
    forward = _one_euro_pass(track, fps, config, scale, min_cutoff).astype(np.float64)
    if not config.bidirectional:
        return forward
    backward = _one_euro_pass(track[::-1], fps, config, scale, min_cutoff)[::-1]
    return (forward + backward) / 2


def _similarities(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarities (no reflection) taking (N, 2) `src` onto each of (T, N, 2) `dst` -> (T, 2, 3).

    In 2-D this is a complex linear regression, closed form and vectorised over frames; it equals
    `faces.motion.fit_similarity` frame by frame.
    """
    mu_s, mu_d = src.mean(0), dst.mean(1)  # (2,), (T, 2)
    a, b = src - mu_s, dst - mu_d[:, None]
    norm = max(float((a**2).sum()), 1e-12)
    c = (a[None, :, 0] * b[..., 0] + a[None, :, 1] * b[..., 1]).sum(1) / norm  # scale * cos
    s = (a[None, :, 0] * b[..., 1] - a[None, :, 1] * b[..., 0]).sum(1) / norm  # scale * sin
    linear = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], 1)  # (T, 2, 2)
    shift = mu_d - linear @ mu_s
    return np.concatenate([linear, shift[..., None]], 2)


def _pose_and_shape(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, 68, 2) track -> poses (T, 2, 3) from the reference shape into each frame, shapes (T, 68, 2) in the
    reference frame, and the reference shape (68, 2): the median of all frames aligned onto the first."""
    to_first = _similarities(points[0, STABLE], points[:, STABLE])  # first -> frame t
    inverse = np.linalg.inv(to_first[:, :, :2])
    aligned = np.einsum("tij,tnj->tni", inverse, points - to_first[:, None, :, 2])
    reference = np.median(aligned, 0)
    poses = _similarities(reference[STABLE], points[:, STABLE])
    inverse = np.linalg.inv(poses[:, :, :2])
    shapes = np.einsum("tij,tnj->tni", inverse, points - poses[:, None, :, 2])
    return poses, shapes, reference


def _smooth_face(points: np.ndarray, fps: float, config: SmoothingConfig, scale: float) -> np.ndarray:
    """Pose and shape filtered apart (module docstring); (T, 68, 2) float64 -> the same."""
    try:
        poses, shapes, reference = _pose_and_shape(points)
    except np.linalg.LinAlgError:  # a frame whose stable points collapse to one: no pose to factor out
        return _one_euro(points, fps, config, scale)
    # The pose as the images of two points one face size apart: smoothing them smooths shift, angle and scale.
    centre = reference[STABLE].mean(0)
    handles = np.stack([centre, centre + [scale, 0.0]])
    moved = np.einsum("tij,nj->tni", poses[:, :, :2], handles) + poses[:, None, :, 2]  # (T, 2, 2)
    moved = _one_euro(moved, fps, config, scale)
    z = (moved[:, 1] - moved[:, 0]) / scale  # scale * (cos, sin)
    linear = np.stack([np.stack([z[:, 0], -z[:, 1]], -1), np.stack([z[:, 1], z[:, 0]], -1)], 1)
    shift = moved[:, 0] - linear @ centre
    cutoff = np.full((NUM_POINTS, 1), config.min_cutoff)
    cutoff[EXPRESSIVE] = max(config.expression_cutoff, config.min_cutoff)
    shapes = _one_euro(shapes, fps, config, scale, cutoff)
    return np.einsum("tij,tnj->tni", linear, shapes) + shift[:, None]


def face_scale(points: np.ndarray) -> float:
    """A robust size of the face over a track (T, 68, 2): the median landmark-box side, in pixels."""
    extent = points.max(axis=-2) - points.min(axis=-2)  # (T, 2)
    return float(max(np.median(extent.max(axis=-1)), 1.0))


def segments(frame_index: np.ndarray, max_gap: int = 1) -> list[slice]:
    """Runs of rows whose source frame numbers advance by at most `max_gap`; smoothing never crosses a cut."""
    frame_index = np.asarray(frame_index)
    if len(frame_index) == 0:
        return []
    breaks = np.flatnonzero(np.diff(frame_index) > max_gap) + 1
    edges = [0, *breaks.tolist(), len(frame_index)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def smooth_landmarks(points: np.ndarray, fps: float, config: SmoothingConfig | None = None) -> np.ndarray:
    """One-Euro smoothing of one continuous track (T, N, 2) sampled at `fps`; zero-lag when bidirectional.

    68-point tracks are smoothed as pose and shape, with the eyelids and lips filtered lightly (module docstring);
    other point sets are filtered point by point.
    """
    config = config or SmoothingConfig()
    points = np.asarray(points, np.float32)
    if not config.enabled or len(points) < 3:
        return points.copy()
    scale = face_scale(points)
    track = points.astype(np.float64)
    if points.shape[1:] == (NUM_POINTS, 2):
        return _smooth_face(track, fps, config, scale).astype(np.float32)
    return _one_euro(track, fps, config, scale).astype(np.float32)


def smooth_irises(
    points: np.ndarray,
    irises: np.ndarray,
    smoothed: np.ndarray,
    fps: float,
    config: SmoothingConfig | None = None,
) -> np.ndarray:
    """Iris centres (T, 2, 2) of one continuous track of raw landmarks `points` (T, 68, 2), smoothed and placed in
    the eyes of the `smoothed` landmarks (`smooth_landmarks`' output for the same track).

    The gaze is filtered, not the position: the iris's place within its eye (`gaze_coordinates`, in eye widths),
    which head motion and face shape leave alone, so that the iris moves with its smoothed eye and only the
    detector's jitter of the gaze itself is removed, with its own cut-off at rest (`SmoothingConfig.gaze_cutoff`).
    """
    config = config or SmoothingConfig()
    gaze = gaze_coordinates(np.asarray(points, np.float64), np.asarray(irises, np.float64))
    if config.enabled and len(gaze) >= 3:
        gaze = _one_euro(gaze, fps, config, 1.0, max(config.gaze_cutoff, config.min_cutoff))
    return gaze_positions(np.asarray(smoothed, np.float64), gaze)


def gaussian_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing along axis 0 with edge values repeated (for crop boxes, offline)."""
    values = np.asarray(values, np.float64)
    if sigma <= 0 or len(values) < 2:
        return values.copy()
    radius = max(1, int(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.concatenate([np.repeat(values[:1], radius, 0), values, np.repeat(values[-1:], radius, 0)])
    flat = padded.reshape(len(padded), -1)
    out = np.stack([np.convolve(flat[:, j], kernel, mode="valid") for j in range(flat.shape[1])], axis=1)
    return out.reshape(values.shape)
