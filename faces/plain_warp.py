"""The plainest piecewise-affine warp, kept fixed as the baseline that every renderer is read against.

The whole frame is triangulated (Delaunay) on the 68 landmarks and eight fixed anchors, the frame's corners and
edge midpoints; each target moves the landmarks and keeps the anchors, and every pixel takes the affine map of its
triangle. Nothing else: no head points, no fold-over guard, no mouth fill. `faces.warp` is the app's renderer and
improves over time (head points that follow the skull, unfolding, a painted mouth); a baseline that changed with it
would make numbers measured months apart incomparable, so this one lives apart and stays as it is. It shares only
the geometric primitives of `faces.warp` (Delaunay, per-triangle inverse affines, the nearest source), which have no
choices in them.
"""

from __future__ import annotations

import cv2
import numpy as np

from faces.motion import check_points
from faces.warp import delaunay, inverse_affines, separate_duplicates

_SHIFT = 4  # fixed-point bits for cv2.fillConvexPoly, so triangle edges sit at sub-pixel positions


def frame_anchors(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """(8, 2) corners and edge midpoints on the frame's outer pixel edges, pushed beyond the landmarks (by 5 % of
    the frame) where the face leaves the frame, so that no anchor pins a piece of the face."""
    pad = 0.05 * max(height, width)
    x0, y0 = np.minimum([-0.5, -0.5], points.min(0) - pad)
    x1, y1 = np.maximum([width - 0.5, height - 0.5], points.max(0) + pad)
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([[x0, y0], [xm, y0], [x1, y0], [x1, ym], [x1, y1], [xm, y1], [x0, y1], [x0, ym]])


class PlainWarp:
    """Built once per source image and its (68, 2) landmarks; `warp(target)` returns the (H, W, C) image pushed
    onto the target landmarks, same size and dtype."""

    def __init__(self, image: np.ndarray, points: np.ndarray) -> None:
        self.image = np.ascontiguousarray(image)
        self.height, self.width = self.image.shape[:2]
        self.points = check_points(points)
        self.anchors = frame_anchors(self.points, self.height, self.width)
        vertices = np.concatenate([self.points, self.anchors])
        self.triangles = delaunay(separate_duplicates(vertices))
        self._source = vertices[self.triangles]  # (K, 3, 2)
        ys, xs = np.mgrid[: self.height, : self.width].astype(np.float32)
        self._grid = (xs, ys)

    def warp(self, target: np.ndarray) -> np.ndarray:
        corners = np.concatenate([check_points(target), self.anchors])[self.triangles]  # (K, 3, 2)
        affines, valid = inverse_affines(corners, self._source)  # [x, y, 1] @ M = source position
        table = np.concatenate([affines.reshape(-1, 6), [[1, 0, 0, 1, 0, 0]]]).astype(np.float32)  # last: uncovered
        index = np.full((self.height, self.width), len(self.triangles), np.int32)
        fixed = np.round(corners * (1 << _SHIFT)).astype(np.int32)
        for k in np.argsort(valid, kind="stable"):  # degenerate triangles first, so real ones win shared pixels
            cv2.fillConvexPoly(index, fixed[k], int(k), cv2.LINE_8, _SHIFT)
        t = table[index]  # (H, W, 6): M00 M01 M10 M11 M20 M21
        xs, ys = self._grid
        map_x = t[..., 0] * xs + t[..., 2] * ys + t[..., 4]
        map_y = t[..., 1] * xs + t[..., 3] * ys + t[..., 5]
        return cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
