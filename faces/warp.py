"""Classical piecewise-affine warping: the source photo pushed onto target landmarks, as a cheap guide for G.

The source points are triangulated once (68 landmarks, a ring around the face that follows the head rigidly,
and fixed image-border anchors); each target then needs only one inverse affine per triangle, a rasterised
triangle-index map and a single cv2.remap, a few milliseconds per 256² frame and fully deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

from faces.layout import NUM_POINTS, interocular
from faces.motion import STABLE, apply_affine, check_points, fit_similarity

_SHIFT = 4  # fixed-point bits for cv2.fillConvexPoly, so triangle edges sit at sub-pixel positions
_MIN_DET = 1e-6  # |twice the target triangle area| in px² below which a triangle has no usable inverse
_JITTER = 0.05  # px; coincident source points (a closed mouth) are pulled apart so Delaunay keeps them all


class Warped(NamedTuple):
    image: np.ndarray  # (H, W, C) or (H, W), the source's dtype
    mask: np.ndarray  # (H, W) float32: 1 where the warped pixel comes from inside the source image
    face: np.ndarray  # (H, W) float32: 1 inside the convex hull of the target landmarks


def _border_anchors(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Corners and edge midpoints of the frame; they never move, so the frame stays put.

    They sit on the outer pixel edges, or beyond the landmarks where the face leaves the frame: an anchor inside
    the face would pin a piece of it in place.
    """
    pad = 0.05 * max(height, width)
    x0, y0 = np.minimum([-0.5, -0.5], points.min(0) - pad)
    x1, y1 = np.maximum([width - 0.5, height - 0.5], points.max(0) + pad)
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([[x0, y0], [xm, y0], [x1, y0], [x1, ym], [x1, y1], [xm, y1], [x0, y1], [x0, ym]])


def _ring(points: np.ndarray, border: np.ndarray, count: int, scale: float) -> np.ndarray:
    """`count` points on an ellipse around the landmarks, minus those too close to the border to help."""
    if count == 0:
        return np.zeros((0, 2))
    lo, hi = points.min(0), points.max(0)
    extent = border.max(0) - border.min(0)
    half = np.maximum((hi - lo) / 2, 0.02 * extent.max())
    half = np.maximum(half, 0.5 * half.max())  # a collinear face still gets a round ring
    angles = 2 * np.pi * np.arange(count) / count
    ring = (lo + hi) / 2 + scale * half * np.stack([np.cos(angles), np.sin(angles)], 1)
    margin = 0.03 * extent.max()
    inside = (ring >= border.min(0) + margin).all(1) & (ring <= border.max(0) - margin).all(1)
    return ring[inside]


def _separate_duplicates(points: np.ndarray) -> np.ndarray:
    """Move coincident points apart by a fraction of a pixel, in a fixed direction per index."""
    out = points.copy()
    for i in range(1, len(out)):
        while (np.abs(out[:i] - out[i]).max(1) < _JITTER / 2).any():
            angle = 2.0 * np.pi * i / len(out)
            out[i] += _JITTER * np.array([np.cos(angle), np.sin(angle)])
    return out


def delaunay(points: np.ndarray) -> np.ndarray:
    """(N, 2) distinct points -> (K, 3) vertex indices of their Delaunay triangles (OpenCV's Subdiv2D)."""
    lo = np.floor(points.min(0)) - 8
    hi = np.ceil(points.max(0)) + 8
    subdiv = cv2.Subdiv2D((int(lo[0]), int(lo[1]), int(hi[0] - lo[0]), int(hi[1] - lo[1])))
    stored = points.astype(np.float32)
    subdiv.insert([tuple(map(float, p)) for p in stored])
    corners = subdiv.getTriangleList().reshape(-1, 3, 2)
    # Subdiv2D returns coordinates; the nearest inserted point recovers each vertex's index.
    distance = np.linalg.norm(corners[:, :, None, :] - stored[None, None], axis=-1)
    triangles = distance.argmin(-1)
    return triangles[(triangles[:, 0] != triangles[:, 1]) & (triangles[:, 1] != triangles[:, 2])]


def _inverse_affines(target: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per triangle, the (3, 2) matrix M with [x, y, 1] @ M = source position of target pixel (x, y).

    Target triangles with (near) zero area get a pure translation between centroids and are flagged invalid.
    (K, 3, 2) target and source triangle corners -> (K, 3, 2) matrices, (K,) bool valid.
    """
    a = target[:, 1] - target[:, 0]
    b = target[:, 2] - target[:, 0]
    det = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    valid = np.abs(det) > _MIN_DET
    safe = np.where(valid, det, 1.0)
    # Inverse of the linear part [a b] (columns), mapping target offsets to barycentric (u, v).
    rows = [np.stack([b[:, 1], -b[:, 0]], 1), np.stack([-a[:, 1], a[:, 0]], 1)]
    inv = np.stack(rows, 1) / safe[:, None, None]
    src_edges = np.stack([source[:, 1] - source[:, 0], source[:, 2] - source[:, 0]], 2)  # (K, 2, 2) columns
    linear = src_edges @ inv  # target offset -> source offset
    shift = source[:, 0] - np.einsum("kij,kj->ki", linear, target[:, 0])
    centroid_shift = source.mean(1) - target.mean(1)
    linear = np.where(valid[:, None, None], linear, np.eye(2))
    shift = np.where(valid[:, None], shift, centroid_shift)
    return np.concatenate([linear.transpose(0, 2, 1), shift[:, None, :]], 1), valid


class PiecewiseAffineWarp:
    """Built once per source image and its landmarks; call with target landmarks to get a `Warped`.

    The triangulation is fixed on the source points, so consecutive targets warp consistently; the ring points
    follow the similarity that best aligns the stable source landmarks to the target (the head moves with the
    face) while the border anchors stay fixed (the frame does not).
    """

    def __init__(
        self, image: np.ndarray, points: np.ndarray, ring_points: int = 16, ring_scale: float = 1.6
    ) -> None:
        self.image = np.ascontiguousarray(image)
        self.height, self.width = self.image.shape[:2]
        self.points = check_points(points)
        self._limit = 4.0 * max(self.height, self.width)  # keeps absurd coordinates inside fixed-point range
        landmarks = np.clip(self.points, -self._limit, self._limit)
        self.border = _border_anchors(landmarks, self.height, self.width)
        self.ring = _ring(landmarks, self.border, ring_points, ring_scale)
        self.vertices = _separate_duplicates(np.concatenate([landmarks, self.ring, self.border]))
        self.triangles = delaunay(self.vertices)  # (K, 3)
        self._source_triangles = self.vertices[self.triangles]  # (K, 3, 2)
        self._is_face = np.append((self.triangles < NUM_POINTS).all(1), False).astype(np.float32)
        ys, xs = np.mgrid[: self.height, : self.width].astype(np.float32)
        self._grid = (xs, ys)

    def target_vertices(self, target: np.ndarray) -> np.ndarray:
        """The target positions of all vertices: landmarks as given, ring moved rigidly, border fixed."""
        target = np.clip(check_points(target), -self._limit, self._limit)
        head = fit_similarity(self.points[STABLE], target[STABLE])
        return np.concatenate([target, apply_affine(head, self.ring), self.border])

    def maps(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(68, 2) target landmarks -> map_x, map_y for cv2.remap, validity mask and face mask, all (H, W)."""
        corners = self.target_vertices(target)[self.triangles]  # (K, 3, 2)
        affines, valid = _inverse_affines(corners, self._source_triangles)
        count = len(self.triangles)
        index = np.full((self.height, self.width), count, np.int32)  # `count` = uncovered: identity
        fixed = np.round(corners * (1 << _SHIFT)).astype(np.int32)
        # Degenerate triangles first, so that any real triangle sharing their pixels wins.
        for k in np.argsort(valid, kind="stable"):
            cv2.fillConvexPoly(index, fixed[k], int(k), cv2.LINE_8, _SHIFT)
        table = np.concatenate([affines, [[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]]).astype(np.float32)
        table = table.reshape(count + 1, 6)[index]  # (H, W, 6)
        xs, ys = self._grid
        map_x = xs * table[..., 0] + ys * table[..., 2] + table[..., 4]
        map_y = xs * table[..., 1] + ys * table[..., 3] + table[..., 5]
        # A source pixel covers ±0.5 around its centre; BORDER_REPLICATE fills that last half pixel.
        x_in = (map_x >= -0.5) & (map_x <= self.width - 0.5)
        inside = x_in & (map_y >= -0.5) & (map_y <= self.height - 0.5)
        mask = (inside & np.append(valid, False)[index]).astype(np.float32)
        return map_x, map_y, mask, self._is_face[index]

    def __call__(self, target: np.ndarray) -> Warped:
        map_x, map_y, mask, face = self.maps(target)
        image = cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return Warped(image, mask, face)


def source_distances(sources: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(T, 68, 2) source landmarks, (68, 2) target -> (T,) RMS error after similarity alignment.

    Pose and scale are factored out, so the distance (in interoculars) measures expression and head turn, not
    framing.
    """
    target = check_points(target)
    errors = []
    for points in np.asarray(sources, np.float64):
        aligned = apply_affine(fit_similarity(check_points(points), target), points)
        errors.append(np.sqrt(((aligned - target) ** 2).sum(1).mean()))
    return np.array(errors) / max(interocular(target), 1e-6)


def nearest_source(sources: np.ndarray, target: np.ndarray) -> int:
    """Index of the source whose landmarks best match the target's expression and head turn."""
    return int(np.argmin(source_distances(sources, target)))


class MultiSourceWarp:
    """T source images with their landmarks; warps the nearest one, or blends the `blend` nearest."""

    def __init__(
        self, images: Sequence[np.ndarray], points: np.ndarray, ring_points: int = 16, ring_scale: float = 1.6
    ) -> None:
        if len(images) == 0 or len(images) != len(points):
            raise ValueError(f"need one landmark set per image: {len(images)} images, {len(points)} sets")
        if len({image.shape for image in images}) != 1:
            raise ValueError("all source images must have the same shape (one crop frame for all landmarks)")
        self.points = np.asarray(points, np.float64)
        self.warps = [
            PiecewiseAffineWarp(image, p, ring_points, ring_scale)
            for image, p in zip(images, self.points, strict=True)
        ]

    def __call__(self, target: np.ndarray, blend: int = 1) -> Warped:
        """Blending weighs each source by its validity mask and inverse landmark distance to the target."""
        distances = source_distances(self.points, target)
        order = np.argsort(distances, kind="stable")[: max(1, blend)]
        results = [self.warps[i](target) for i in order]
        if len(results) == 1:
            return results[0]
        weights = 1.0 / (distances[order] + 1e-3)
        pixel = np.stack([w * (r.mask + 1e-4) for w, r in zip(weights, results, strict=True)])  # (B, H, W)
        pixel /= pixel.sum(0)
        images = np.stack([r.image.astype(np.float32) for r in results])
        if images.ndim == 4:
            pixel = pixel[..., None]
        image = (images * pixel).sum(0)
        dtype = results[0].image.dtype
        if np.issubdtype(dtype, np.integer):
            image = np.clip(np.round(image), np.iinfo(dtype).min, np.iinfo(dtype).max)
        mask = np.max([r.mask for r in results], axis=0)
        return Warped(image.astype(dtype), mask, results[0].face)
