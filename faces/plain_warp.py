"""The plainest piecewise-affine warp, kept fixed as the baseline that every renderer is read against.

The whole frame is triangulated (Delaunay) on the 68 landmarks and eight fixed anchors, the frame's corners and
edge midpoints; each target moves the landmarks and keeps the anchors, and every pixel takes the affine map of its
triangle. Nothing else: no head points, no fold-over guard, no mouth fill. `faces.warp` is the app's renderer and
improves over time (head points that follow the skull, unfolding, a painted mouth); a baseline that changed with it
would make numbers measured months apart incomparable, so this one lives apart and stays as it is.
"""

from __future__ import annotations

import cv2
import numpy as np

from faces.motion import apply_affine, check_points, fit_similarity

_SHIFT = 4  # fixed-point bits for cv2.fillConvexPoly, so triangle edges sit at sub-pixel positions
_MIN_DET = 1e-6  # |twice the target triangle area| in px² below which a triangle keeps the identity map
_JITTER = 0.05  # px: coincident points (a closed mouth) are pulled apart so that Delaunay keeps them all


def frame_anchors(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """(8, 2) corners and edge midpoints on the frame's outer pixel edges, pushed beyond the landmarks (by 5 % of
    the frame) where the face leaves the frame, so that no anchor pins a piece of the face."""
    pad = 0.05 * max(height, width)
    x0, y0 = np.minimum([-0.5, -0.5], points.min(0) - pad)
    x1, y1 = np.maximum([width - 0.5, height - 0.5], points.max(0) + pad)
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([[x0, y0], [xm, y0], [x1, y0], [x1, ym], [x1, y1], [xm, y1], [x0, y1], [x0, ym]])


def _triangulate(points: np.ndarray) -> np.ndarray:
    """(N, 2) points -> (K, 3) vertex indices of their Delaunay triangles (OpenCV's Subdiv2D)."""
    points = points.copy()
    for i in range(1, len(points)):  # a fixed nudge per index for coincident points
        while (np.abs(points[:i] - points[i]).max(1) < _JITTER / 2).any():
            angle = 2.0 * np.pi * i / len(points)
            points[i] += _JITTER * np.array([np.cos(angle), np.sin(angle)])
    lo, hi = np.floor(points.min(0)) - 8, np.ceil(points.max(0)) + 8
    subdiv = cv2.Subdiv2D((int(lo[0]), int(lo[1]), int(hi[0] - lo[0]), int(hi[1] - lo[1])))
    stored = points.astype(np.float32)
    subdiv.insert([tuple(map(float, p)) for p in stored])
    corners = subdiv.getTriangleList().reshape(-1, 3, 2)
    index = np.linalg.norm(corners[:, :, None] - stored[None, None], axis=-1).argmin(-1)
    return index[(index[:, 0] != index[:, 1]) & (index[:, 1] != index[:, 2]) & (index[:, 0] != index[:, 2])]


class PlainWarp:
    """Built once per source image and its (68, 2) landmarks; `warp(target)` returns the (H, W, C) image pushed
    onto the target landmarks, same size and dtype."""

    def __init__(self, image: np.ndarray, points: np.ndarray) -> None:
        self.image = np.ascontiguousarray(image)
        self.height, self.width = self.image.shape[:2]
        self.points = check_points(points)
        self.anchors = frame_anchors(self.points, self.height, self.width)
        self.triangles = _triangulate(np.concatenate([self.points, self.anchors]))
        self._source = np.concatenate([self.points, self.anchors])[self.triangles]  # (K, 3, 2)
        ys, xs = np.mgrid[: self.height, : self.width].astype(np.float32)
        self._grid = (xs, ys)

    def warp(self, target: np.ndarray) -> np.ndarray:
        corners = np.concatenate([check_points(target), self.anchors])[self.triangles]  # (K, 3, 2)
        # Per triangle, the affine taking a target pixel to its source position: source = S · inv(T) · (p − t0) + s0.
        a, b = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
        det = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
        valid = np.abs(det) > _MIN_DET
        inverse = np.stack([np.stack([b[:, 1], -b[:, 0]], 1), np.stack([-a[:, 1], a[:, 0]], 1)], 1)
        inverse /= np.where(valid, det, 1.0)[:, None, None]
        edges = np.stack([self._source[:, 1] - self._source[:, 0], self._source[:, 2] - self._source[:, 0]], 2)
        linear = np.where(valid[:, None, None], edges @ inverse, np.eye(2))
        shift = self._source[:, 0] - np.einsum("kij,kj->ki", linear, corners[:, 0])
        shift = np.where(valid[:, None], shift, 0.0)
        table = np.concatenate([linear.reshape(-1, 4), shift], 1)  # (K, 6): l00 l01 l10 l11 t0 t1
        table = np.concatenate([table, [[1, 0, 0, 1, 0, 0]]]).astype(np.float32)  # last row: uncovered, identity
        index = np.full((self.height, self.width), len(self.triangles), np.int32)
        fixed = np.round(corners * (1 << _SHIFT)).astype(np.int32)
        for k in np.argsort(valid, kind="stable"):  # degenerate triangles first, so real ones win shared pixels
            cv2.fillConvexPoly(index, fixed[k], int(k), cv2.LINE_8, _SHIFT)
        t = table[index]  # (H, W, 6)
        xs, ys = self._grid
        map_x = t[..., 0] * xs + t[..., 1] * ys + t[..., 4]
        map_y = t[..., 2] * xs + t[..., 3] * ys + t[..., 5]
        return cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def nearest(sources: np.ndarray, target: np.ndarray) -> int:
    """Index of the (T, 68, 2) source landmarks closest to the (68, 2) target after a least-squares similarity
    (pose and scale factored out): the source whose expression and head turn need the least warping."""
    target = check_points(target)
    errors = [np.square(apply_affine(fit_similarity(p, target), p) - target).sum(1).mean()
              for p in np.asarray(sources, np.float64)]
    return int(np.argmin(errors))
