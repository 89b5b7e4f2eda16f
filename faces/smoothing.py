"""Temporal smoothing of landmark tracks and crop boxes, so that G never sees detector jitter as motion.

The One-Euro filter (Casiez et al., CHI 2012) smooths hard when points are still and little when they move fast,
which is what landmarks need: jitter is removed at rest without lag on a quick head turn or mouth opening.
"""

from __future__ import annotations

import math

import numpy as np

from faces.config import SmoothingConfig


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


def _one_euro_pass(track: np.ndarray, fps: float, config: SmoothingConfig, scale: float) -> np.ndarray:
    f = OneEuroFilter.from_config(config, scale)
    return np.stack([f(x, i / fps) for i, x in enumerate(track)])


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
    """One-Euro smoothing of one continuous track (T, N, 2) sampled at `fps`; zero-lag when bidirectional."""
    config = config or SmoothingConfig()
    points = np.asarray(points, np.float32)
    if not config.enabled or len(points) < 3:
        return points.copy()
    scale = face_scale(points)
    forward = _one_euro_pass(points, fps, config, scale)
    if not config.bidirectional:
        return forward
    backward = _one_euro_pass(points[::-1], fps, config, scale)[::-1]
    return ((forward + backward) / 2).astype(np.float32)


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
