"""Classical piecewise-affine warp: the source photo pushed onto target landmarks, as a cheap guide for G.

The source points are triangulated once (68 landmarks and a ring around the face that follows the head rigidly);
each target then needs only one inverse affine per triangle, a rasterised triangle-index map and a single
cv2.remap, a few milliseconds per 256² frame and fully deterministic. Three things keep the result free of visible
faults:

- No fold-overs. The triangulation is made on the source points with the eyes and the inner mouth held slightly
  open (`_open_layout`), so a closed eye or mouth still has upper and lower lids or lips on their own triangles, and
  every triangle is given the same orientation there. A target that turns any other triangle inside out (or
  squashes it to a sliver) has the corners of those triangles moved towards the source shape moved by the head's
  similarity, step by step until none folds, the rest of the face left as given (`PiecewiseAffineWarp._relaxed`,
  with the whole shape blended as the fallback); at share 1 the mesh is the source's own, moved rigidly, which
  cannot fold. Only the eye and inner-mouth triangles may collapse or flip: closing an
  eye or the mouth does exactly that, and the mouth is painted over (below).
- Hair, ears and neck move with the head, the background does not. Inside the ring (1.6× the face's half-extent,
  which holds the ears, the forehead and the upper neck) the mesh applies. Outside it, instead of large triangles
  stretched to fixed frame anchors (which bent the background, pulled hair into a spike on the far side of a turn
  and kinked shoulder lines), the head's rigid motion is faded smoothly to none: a smoothstep of the distance
  beyond the ring, over one ring radius sideways and above (hair) and a third of one below, where the torso keeps
  a small share that fades out slowly (it moves little, and a zooming or rolling head does not crush the shoulder
  line). The frame's edges stay put wherever the ring leaves room. The fade is evaluated on a coarse grid and
  upsampled, and widened when the head moves far, so that it never folds either.
- A mouth that opens wider than the photo shows gets a dark cavity (`fill_mouth`) instead of lips stretched over
  skin, coloured from the photo's own darkest lip tones.

The 68 points have no iris, so the eyes look wherever the photo looked. Given the photo's iris centres and a target's
(a backend that sees irises, `faces.motion.retarget_irises`), each open eye's interior is remapped onto itself
(`gaze_remap`): in coordinates along the eye (u, corner to corner) and across it (t, the share of the way from the
upper lid to the lower), the span of u holding the iris slides as one by the change of gaze, the white on either side
is squeezed or stretched to make room, and t is bent the same way for a vertical gaze. Both are monotone maps of the
opening onto itself, fixed at the corners and lids, so nothing folds, the iris keeps its shape and slides under the
lids as a real one does, and the eyelids stay where the 68 points put them. Extra mesh vertices were tried first: one
at the iris centre, joined to the six eye points, pulls only the iris's middle and dents its rim; a 3x3 grid over
the iris folds at the lids before it has moved far. Sent a tenth of an eye width aside on three photos of
../shared/media, mediapipe found 13-78 % of the shift in their results, and 41-83 % with the slide. Without irises
the maps, and the result, are exactly those of the 68 points alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

from faces.layout import NUM_POINTS, interocular
from faces.motion import (
    EYE_CORNERS,
    LOWER_LID,
    UPPER_LID,
    apply_affine,
    check_points,
    fit_similarity,
    invert_affine,
    mouth_opening,
)

_SHIFT = 4  # fixed-point bits for cv2.fillConvexPoly, so triangle edges sit at sub-pixel positions
_MIN_DET = 1e-6  # |twice the target triangle area| in px² below which a triangle has no usable inverse
_JITTER = 0.05  # px; coincident source points (a closed mouth) are pulled apart so Delaunay keeps them all
# Upper/lower pairs of the eyelids and inner lips, and the closed shapes they bound (whose triangles may collapse).
_LID_PAIRS = np.array([[37, 41], [38, 40], [43, 47], [44, 46], [61, 67], [62, 66], [63, 65]])
_OPENINGS = (np.arange(36, 42), np.arange(42, 48), np.arange(60, 68))
INNER_LIPS = np.arange(60, 68)
_MIN_OPENING = 0.06  # interoculars: the eye and mouth gap the triangulation is made at, when the source shows less
_MIN_AREA = 0.02  # a checked triangle smaller than this share of its source area (head scale factored out) folds
_BLEND_STEPS = 8  # bisection steps for the share of the rigid source shape that unfolds a target
# The share of the rigid source shape that each landmark of a folded triangle takes on per round of the local
# relaxation, and the most rounds before the whole shape is blended instead.
_RELAX_STEP = 0.125
_RELAX_ROUNDS = 64
# The landmarks the head's similarity is fitted on, which the ring (hair, ears, neck) follows: the eye corners, the
# nose's bridge and the jaw line's ends beside the ears. Points that stand out from the head's silhouette are left
# out: the nose's lower half and tip swing sideways with a turn far more than the hair does, and a fit on them
# dragged the hair along (on the 18 test clips of the prepared media at T = 1: SSIM 0.598 -> 0.610, LPIPS 1.139 ->
# 1.093 against the eye corners and the whole nose, with the jaw's ends in both). The rest of the jaw is left out
# too: it drops to open the mouth, which must not move the hair and background (an edit that opens a still's
# mouth keeps its far corner exact, tests/test_pipeline.py; `faces.motion._JAW_DROP` never moves 0, 1, 15, 16).
_HEAD_POINTS = np.array([36, 39, 42, 45, 27, 28, 0, 1, 15, 16])
_FADE_SIDE = 1.0  # ring radii beyond the ring over which the head's motion fades out, sideways and above
_FADE_DOWN = 1.0 / 3.0  # the same below the face: the neck follows the head only close to it ...
_TORSO = 0.35  # ... and the torso takes this share of the head's motion,
_FADE_TORSO = 2.5  # fading out over this many ring radii (a zooming head would otherwise crush the shoulders)
# Fade widths tried, narrowest first, when a large head motion would fold the background.
_FADE_WIDEN = (1.0, 1.5, 2.25, 3.5, 5.0, 8.0, 12.0)
_PIN = 0.2  # the widest margin (share of the frame's short side) over which the frame's edges are pinned
_COARSE = 8  # px per cell of the grid the fade is evaluated on
# Several photos: an open target mouth is taken from the photo whose lips are nearest (MultiSourceWarp.image).
_DONOR_OPENING = 0.08  # interoculars: a target mouth opened less than this keeps the nearest photo's
_DONOR_LIPS = np.arange(48, 68)  # the points that say which photo's mouth is nearest: outer and inner lips
_DONOR_POLYGON = np.arange(48, 60)  # what is taken from it: the inside of the outer lips, ...
_DONOR_FEATHER = 0.15  # ... feathered by a Gaussian of this many interoculars
# Resampling: a guide bilinearly, as every shipped model's guides were when it was trained; what a warp renderer shows
# bicubically, since bilinear resampling at a fractional offset blurs by up to half a pixel (`picture`).
GUIDE_RESAMPLING = cv2.INTER_LINEAR
PICTURE_RESAMPLING = cv2.INTER_CUBIC
_RIM = 0.15  # share of an opened mouth's depth (px, 0.5-2) along the inner lips that the mouth fill leaves unpainted
# Half the span of an eye that moves as one with the iris, in eye widths between dlib's eye corners: an iris radius
# (0.20-0.24 mediapipe eye widths on the photos of ../shared/media, more between dlib's corners, which sit inside the
# real ones) and its dark rim.
_IRIS_HALF = 0.3
_IRIS_SQUEEZE = 0.15  # the white beside the iris is squeezed to no less than this share of its width
_IRIS_PIVOT = (0.3, 0.7)  # the range of the iris centre's t (share of the way from the upper lid to the lower)
_IRIS_MIN_OPENING = 0.12  # eye widths: a photo's eye opened less than this shows no iris worth moving
# Lid gaps beyond each lid over which the slide fades out: landmarks put the lids inside their real edges (dlib's
# most), and the iris that shows between those edges and the landmarks must come along, not be cut off.
_IRIS_BEYOND = 0.5


class Warped(NamedTuple):
    image: np.ndarray  # (H, W, C) or (H, W), the source's dtype
    mask: np.ndarray  # (H, W) float32: 1 where the warped pixel comes from inside the source image
    face: np.ndarray  # (H, W) float32: 1 inside the convex hull of the target landmarks


def _open_layout(points: np.ndarray) -> np.ndarray:
    """The landmarks with every eyelid and inner-lip pair at least `_MIN_OPENING` interoculars apart.

    Only the triangulation is made on these: coincident lids or lips (a closed eye or mouth) would otherwise be
    joined by sliver triangles across the gap that fold as soon as the target opens it.
    """
    out = points.copy()
    axis = points[42:48].mean(0) - points[36:42].mean(0)
    iod = float(np.linalg.norm(axis))
    if iod < 1e-6:
        return out
    down = np.array([-axis[1], axis[0]]) / iod  # perpendicular to the eye line, towards the chin
    for upper, lower in _LID_PAIRS:
        gap = float((out[lower] - out[upper]) @ down)
        if gap < _MIN_OPENING * iod:
            shift = (_MIN_OPENING * iod - gap) / 2 * down
            out[upper] -= shift
            out[lower] += shift
    return out


def _ring_ellipse(points: np.ndarray, scale: float, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half-axes of the ellipse `scale` times the landmark box's half-extent (at least `floor`)."""
    lo, hi = points.min(0), points.max(0)
    half = np.maximum((hi - lo) / 2, floor)
    half = np.maximum(half, 0.5 * half.max())  # a collinear face still gets a round ring
    return (lo + hi) / 2, scale * half


def _ring(centre: np.ndarray, axes: np.ndarray, count: int) -> np.ndarray:
    """`count` points on the ellipse (centre, axes)."""
    angles = 2 * np.pi * np.arange(count) / max(count, 1)
    return centre + axes * np.stack([np.cos(angles), np.sin(angles)], 1)


def separate_duplicates(points: np.ndarray) -> np.ndarray:
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


def signed_areas(corners: np.ndarray) -> np.ndarray:
    """(K, 3, 2) triangle corners -> (K,) twice their signed areas; the sign is the orientation."""
    a = corners[:, 1] - corners[:, 0]
    b = corners[:, 2] - corners[:, 0]
    return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]


def _polygon_depth(polygon: np.ndarray, origin: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Distance (px) of each pixel of a `shape` window at `origin` from the outside of `polygon`; 0 outside."""
    mask = np.zeros(shape, np.uint8)
    fixed = np.round((polygon - origin) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(mask, [fixed], 1, cv2.LINE_8, _SHIFT)
    return cv2.distanceTransform(mask, cv2.DIST_L2, 3)


def _window(polygon: np.ndarray, pad: int, height: int | None = None, width: int | None = None):
    """Integer (x0, y0, x1, y1) around `polygon` with `pad` pixels to spare, clipped to the frame when given."""
    x0, y0 = (np.floor(polygon.min(0)) - pad).astype(int)
    x1, y1 = (np.ceil(polygon.max(0)) + pad + 1).astype(int)
    if width is not None and height is not None:
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return int(x0), int(y0), int(x1), int(y1)


def mouth_colours(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge and centre colours of a mouth interior for `image` with (68, 2) `points`, as float32 (C,) or ().

    Taken from the photo itself: the mean of the darkest tenth of the pixels inside the outer lips (the lip line,
    the corners' shadow, an open mouth's interior), darkened to 60 % at the edge and 30 % at the centre, so a cavity
    matches the photo's lighting and colour cast rather than a fixed black.
    """
    height, width = image.shape[:2]
    lips = np.asarray(points, np.float64)[48:60]
    x0, y0, x1, y1 = _window(lips, 1, height, width)
    channels = image.shape[2] if image.ndim == 3 else 1
    dark = np.full(channels, 40.0 if np.issubdtype(image.dtype, np.integer) else 0.15)
    if x1 > x0 and y1 > y0:
        inside = _polygon_depth(lips, np.array([x0, y0]), (y1 - y0, x1 - x0)) > 0
        pixels = image[y0:y1, x0:x1][inside].reshape(-1, channels).astype(np.float64)
        if len(pixels):
            luminance = pixels.mean(1)
            dark = pixels[luminance <= np.percentile(luminance, 10)].mean(0)
    dark = dark if image.ndim == 3 else dark[0]
    return (0.6 * dark).astype(np.float32), (0.3 * dark).astype(np.float32)


def fill_mouth(
    image: np.ndarray,
    target: np.ndarray,
    map_x: np.ndarray,
    map_y: np.ndarray,
    source: np.ndarray,
    colours: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Paint a dark mouth interior where `target` opens the mouth wider than the `source` photo shows it.

    `image` is the warp of the source photo onto the (68, 2) `target` landmarks with the maps `map_x`, `map_y`
    (`PiecewiseAffineWarp.maps`); `source` are the photo's own landmarks and `colours` its `mouth_colours`. Inside
    the target's inner-lip polygon (points 60-67), a pixel keeps the warped photo where it comes from inside the
    photo's own open mouth (teeth, tongue) and is not stretched more than about 3× in area; elsewhere it is painted
    with a colour graded from the edge colour to the darker centre colour by depth in the polygon. The edge is
    feathered and a rim along the lips is never painted (`_RIM` of the opening's depth, 0.5-2 px), so the lips keep
    their own border and identical landmarks return the warp unchanged. Only source pixels and synthetic colour
    are used: never a driving frame.
    Returns a new image (or `image` itself when there is nothing to paint).
    """
    height, width = image.shape[:2]
    polygon = np.asarray(target, np.float64)[INNER_LIPS]
    if abs(cv2.contourArea(polygon.astype(np.float32))) < 4.0:
        return image  # closed or nearly closed: the common case, decided in microseconds
    x0, y0, x1, y1 = _window(polygon, 2, height, width)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return image
    depth = _polygon_depth(polygon, np.array([x0, y0]), (y1 - y0, x1 - x0))
    deepest = float(depth.max())
    feather = max(1.0, 0.25 * deepest)
    # The lips keep a rim of their own: 2 px once the opening is deep, less on a narrow one, where 2 px each side
    # left only a thin dark line that dlib reads as closed lips (mouth r +0.018 +- 0.012 at T = 1, docs/warp.md).
    rim = min(2.0, max(0.5, _RIM * deepest))
    weight = np.clip((depth - rim) / feather, 0.0, 1.0)
    if not weight.any():
        return image
    mx, my = map_x[y0:y1, x0:x1], map_y[y0:y1, x0:x1]
    # Where the warped pixel comes from inside the photo's own inner lips (beyond half the rim): an open mouth.
    own = np.asarray(source, np.float64)[INNER_LIPS]
    sx0, sy0, sx1, sy1 = _window(own, 3)
    own_depth = _polygon_depth(own, np.array([sx0, sy0]), (sy1 - sy0, sx1 - sx0))
    shown = np.clip((own_depth - rim / 2) / (rim / 2), 0.0, 1.0)  # 1 wherever the fill may paint (beyond the rim)
    shown = cv2.remap(shown, mx - sx0, my - sy0, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # ... unless it is stretched so much (a slit of teeth pulled over a wide-open target) that it would smear.
    dxx, dxy = np.gradient(mx, axis=1), np.gradient(mx, axis=0)
    dyx, dyy = np.gradient(my, axis=1), np.gradient(my, axis=0)
    stretch = 1.0 / np.maximum(np.abs(dxx * dyy - dxy * dyx), 1e-6)  # target area per source area
    shown = shown * np.clip((4.0 - stretch) / 2.0, 0.0, 1.0)
    fill = weight * (1.0 - shown)
    if not fill.any():
        return image
    fill = np.minimum(cv2.GaussianBlur(fill, (0, 0), feather / 2), weight)  # no seams along triangle edges
    edge, centre = (np.asarray(c, np.float32) for c in colours)
    grade = np.clip(depth / max(deepest, 1.0), 0.0, 1.0)
    patch = image[y0:y1, x0:x1].astype(np.float32)
    if patch.ndim == 3:
        fill, grade = fill[..., None], grade[..., None]
    patch = patch * (1.0 - fill) + (edge + (centre - edge) * grade) * fill
    out = image.copy()
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        patch = np.clip(np.round(patch), info.min, info.max)
    out[y0:y1, x0:x1] = patch.astype(image.dtype)
    return out


def inverse_affines(target: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


class EyeOpening:
    """One eye of (68, 2) landmarks (`eye` 0: the subject's right) as a strip between its lids: u runs along it from
    its image-left corner (0) to the other (1) in eye widths, as `faces.motion.gaze_coordinates` does, and t across
    it, the share of the way from the upper lid (0) to the lower (1) at that u. Outside [0, 1] both extend
    linearly (the lids hold their corner values past the corners)."""

    def __init__(self, points: np.ndarray, eye: int):
        points = np.asarray(points, np.float64)
        corner, other = points[EYE_CORNERS[eye]]
        self.origin, self.axis = corner, other - corner
        self.normal = np.array([-self.axis[1], self.axis[0]])
        self.width2 = max(float(self.axis @ self.axis), 1e-12)
        self.lids = []
        for lid in (UPPER_LID[eye], LOWER_LID[eye]):
            uw = self.coordinates(points[lid])
            self.lids.append(uw[np.argsort(uw[:, 0], kind="stable")])

    def coordinates(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) positions -> (N, 2) (u, w): along and across the eye, both in eye widths."""
        offset = np.asarray(xy, np.float64) - self.origin
        return np.stack([offset @ self.axis, offset @ self.normal], 1) / self.width2

    def lid_lines(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """w of the upper and of the lower lid at the positions `u` (N,)."""
        return tuple(np.interp(u, lid[:, 0], lid[:, 1]) for lid in self.lids)

    def gap(self, u: float) -> float:
        """The lids' gap at `u`, in eye widths."""
        upper, lower = self.lid_lines(np.array([u]))
        return float(lower[0] - upper[0])

    def to_opening(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) positions -> (N, 2) (u, t)."""
        uw = self.coordinates(xy)
        upper, lower = self.lid_lines(uw[:, 0])
        gap = lower - upper
        return np.stack([uw[:, 0], (uw[:, 1] - upper) / np.where(np.abs(gap) < 1e-9, 1e-9, gap)], 1)

    def from_opening(self, ut: np.ndarray) -> np.ndarray:
        """The inverse of `to_opening`."""
        ut = np.asarray(ut, np.float64)
        upper, lower = self.lid_lines(ut[:, 0])
        w = upper + ut[:, 1] * (lower - upper)
        return self.origin + ut[:, :1] * self.axis + w[:, None] * self.normal


def gaze_remap(map_x: np.ndarray, map_y: np.ndarray, opening: EyeOpening, own: np.ndarray, gaze: np.ndarray) -> None:
    """Move the iris in a target's eye `opening` from (u, t) `own` to `gaze`, in place in the backward maps `map_x`,
    `map_y` (H, W) float32 of a warp onto that target.

    Each pixel of the eye is sent back to where the slide came from before the maps are read there. Along the eye,
    a piecewise-linear map of u moves the span [u - _IRIS_HALF, u + _IRIS_HALF] around the iris as one and squeezes
    or stretches the white between it and the corners (never below `_IRIS_SQUEEZE`); across it, one of t moves the
    iris centre's t within `_IRIS_PIVOT`. Both are increasing and fix the corners and lids, so the opening maps onto
    itself without a fold. Beyond the lids the slide along the eye fades out over `_IRIS_BEYOND` lid gaps: a shear
    along the lids, which cannot fold either.
    """
    height, width = map_x.shape
    half = _IRIS_HALF
    centre = float(np.clip(own[0], half + 0.02, 1 - half - 0.02))
    lo = half + _IRIS_SQUEEZE * (centre - half)  # the moving span's centre keeps this much white beside it
    hi = 1 - half - _IRIS_SQUEEZE * (1 - centre - half)
    moved = float(np.clip(centre + gaze[0] - own[0], lo, hi))
    pivot = float(np.clip(own[1], *_IRIS_PIVOT))
    lifted = float(np.clip(pivot + gaze[1] - own[1], *_IRIS_PIVOT))
    if moved == centre and lifted == pivot:
        return
    along = np.linspace(0.0, 1.0, 17)
    outline = np.concatenate([
        opening.from_opening(np.stack([along, np.full_like(along, -_IRIS_BEYOND)], 1)),
        opening.from_opening(np.stack([along[::-1], np.full_like(along, 1 + _IRIS_BEYOND)], 1)),
    ])
    x0, y0, x1, y1 = _window(outline, 1, height, width)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(inside, [np.round((outline - [x0, y0]) * (1 << _SHIFT)).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    rows, cols = np.nonzero(inside)
    if len(rows) == 0:
        return
    pixels = np.stack([cols + x0, rows + y0], 1).astype(np.float64)
    u, t = opening.to_opening(pixels).T
    # The inverse slide: from the target's u and t back to those the warp put there; identity past the corners.
    slid = np.interp(u, [-1.0, 0.0, moved - half, moved + half, 1.0, 2.0],
                     [-1.0, 0.0, centre - half, centre + half, 1.0, 2.0])
    share = np.clip(1.0 - np.maximum(-t, t - 1.0) / _IRIS_BEYOND, 0.0, 1.0)
    u = u + share * (slid - u)
    t = np.where((t >= 0) & (t <= 1), np.interp(t, [0.0, lifted, 1.0], [0.0, pivot, 1.0]), t)
    back = (opening.from_opening(np.stack([u, t], 1)) - [x0, y0]).astype(np.float32)
    for values in (map_x, map_y):
        window = np.ascontiguousarray(values[y0:y1, x0:x1])
        values[rows + y0, cols + x0] = cv2.remap(
            window, back[:, :1], back[:, 1:], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )[:, 0]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class PiecewiseAffineWarp:
    """Built once per source image and its landmarks; call with target landmarks to get a `Warped`.

    The triangulation is fixed on the source points, so consecutive targets warp consistently; the ring points
    follow the similarity that best aligns the source's eye corners, nose bridge and jaw ends to the target's
    (`_HEAD_POINTS`: the head moves with the face), and outside the ring that motion fades out smoothly, faster
    below the face than beside and above it
    (module docstring). `mouth` paints a mouth-interior where the target opens the mouth wider than the source
    shows it (`fill_mouth`). `irises` (2, 2), the source's iris centres (subject's right, left; NaN where unknown),
    let a call's target irises move them (`gaze_remap`).
    """

    def __init__(
        self,
        image: np.ndarray,
        points: np.ndarray,
        ring_points: int = 16,
        ring_scale: float = 1.6,
        mouth: bool = True,
        irises: np.ndarray | None = None,
    ) -> None:
        self.image = np.ascontiguousarray(image)
        self.height, self.width = self.image.shape[:2]
        self.points = check_points(points)
        self._limit = 4.0 * max(self.height, self.width)  # keeps absurd coordinates inside fixed-point range
        landmarks = np.clip(self.points, -self._limit, self._limit)
        self._landmarks = landmarks
        self.ring_centre, self.ring_axes = _ring_ellipse(landmarks, ring_scale, 0.02 * max(self.height, self.width))
        self.ring = _ring(self.ring_centre, self.ring_axes, ring_points)
        self.vertices = np.concatenate([landmarks, self.ring])
        layout = separate_duplicates(np.concatenate([_open_layout(landmarks), self.ring]))
        triangles = delaunay(layout)
        flip = signed_areas(layout[triangles]) < 0
        triangles[flip] = triangles[flip][:, [0, 2, 1]]  # one orientation for all: a flip is a sign change
        self.triangles = triangles  # (K, 3)
        self._source_triangles = self.vertices[self.triangles]  # (K, 3, 2)
        # Eye and inner-mouth triangles may collapse or flip (closing); every other one is kept unfolded, unless the
        # source itself has it folded (a detector's crossed points), which no blend towards the source can undo.
        opening = np.zeros(len(triangles), bool)
        for part in _OPENINGS:
            opening |= np.isin(triangles, part).all(1)
        source_area = signed_areas(self._source_triangles)
        self._checked = np.flatnonzero(~opening & (source_area > 1e-9))
        self._checked_area = source_area[self._checked]
        self._is_face = np.append((self.triangles < NUM_POINTS).all(1), False).astype(np.float32)
        self._openings = [EyeOpening(landmarks, eye) for eye in range(2)]  # the photo's eyes, for its irises
        self._gaze = None if irises is None else self._own_gaze(np.asarray(irises, np.float64))
        ys, xs = np.mgrid[: self.height, : self.width].astype(np.float32)
        self._grid = (xs, ys)
        self._mouth_colours = mouth_colours(self.image, landmarks) if mouth else None

    def _own_gaze(self, irises: np.ndarray) -> np.ndarray | None:
        """The photo's iris centres as (u, t) per eye (`EyeOpening`), NaN for an eye whose iris is unknown or that
        is opened less than `_IRIS_MIN_OPENING` (no iris to move); None when neither eye has one."""
        if irises.shape != (2, 2):
            raise ValueError(f"expected (2, 2) iris centres, got {irises.shape}")
        gaze = np.full((2, 2), np.nan)
        for eye, opening in enumerate(self._openings):
            if np.isfinite(irises[eye]).all():
                own = opening.to_opening(irises[eye][None])[0]
                if opening.gap(float(np.clip(own[0], 0.0, 1.0))) >= _IRIS_MIN_OPENING:
                    gaze[eye] = own
        return gaze if np.isfinite(gaze).any() else None

    def _move_irises(self, map_x: np.ndarray, map_y: np.ndarray, given: np.ndarray, landmarks: np.ndarray,
                     irises: np.ndarray | None) -> None:
        """Apply the gaze of the target `irises` (2, 2), measured in the `given` target's eyes, to the maps of a
        warp onto the final (relaxed) `landmarks`, in place. The change of gaze fades out as the target's eye
        closes to less than half the photo's opening: a closing eye takes its iris along with the lids."""
        if irises is None or self._gaze is None:
            return
        irises = np.asarray(irises, np.float64)
        if irises.shape != (2, 2):
            raise ValueError(f"expected (2, 2) iris centres, got {irises.shape}")
        given = np.clip(check_points(given), -self._limit, self._limit)
        for eye in range(2):
            own = self._gaze[eye]
            if not np.isfinite(own).all() or not np.isfinite(irises[eye]).all():
                continue
            target = EyeOpening(landmarks, eye)
            measured = target if np.array_equal(given, landmarks) else EyeOpening(given, eye)
            gaze = measured.to_opening(irises[eye][None])[0]
            u = float(np.clip(own[0], 0.0, 1.0))
            follow = float(np.clip(2.0 * target.gap(u) / self._openings[eye].gap(u), 0.0, 1.0))
            if np.isfinite(gaze).all() and follow > 0:
                gaze_remap(map_x, map_y, target, own, own + follow * (gaze - own))

    def _unfolded(self, vertices: np.ndarray, head: np.ndarray) -> bool:
        """Whether every checked triangle keeps its orientation and at least `_MIN_AREA` of its (scaled) area."""
        scale2 = abs(float(np.linalg.det(head[:, :2])))
        area = signed_areas(vertices[self.triangles[self._checked]])
        return bool((area > _MIN_AREA * scale2 * self._checked_area).all())

    def _relaxed(self, target: np.ndarray, rigid: np.ndarray, ring: np.ndarray, head: np.ndarray
                 ) -> np.ndarray | None:
        """The landmarks of a folded `target` with only the corners of folded triangles moved towards `rigid`, a
        `_RELAX_STEP` per round until nothing folds; None when `_RELAX_ROUNDS` do not suffice.

        Blending the whole face (the fallback) moved the mouth and eyes of a head turned past the ring as much as
        the jaw line that crossed it: on the 18 test clips AKD at T = 1 was 2.29 px against 1.72 unrelaxed; with
        only the folded corners moved, 1.83 (1.75 with the jaw line in the head's fit, `_HEAD_POINTS`). Each
        round moves a corner that is still folded further, and a corner
        at share 1 is the rigid source's, so a triangle whose corners all get there cannot fold.
        """
        scale2 = abs(float(np.linalg.det(head[:, :2])))
        triangles = self.triangles[self._checked]
        share = np.zeros(NUM_POINTS)
        for _ in range(_RELAX_ROUNDS):
            landmarks = target + share[:, None] * (rigid - target)
            area = signed_areas(np.concatenate([landmarks, ring])[triangles])
            folded = area <= _MIN_AREA * scale2 * self._checked_area
            if not folded.any():
                return landmarks
            corners = np.unique(triangles[folded])
            corners = corners[corners < NUM_POINTS]
            if len(corners) == 0 or (share[corners] >= 1.0).all():
                return None  # a ring-only fold, or one that rigid corners cannot undo
            share[corners] = np.minimum(share[corners] + _RELAX_STEP, 1.0)
            for part in _OPENINGS:  # an eye or the inner mouth moves as one: its own triangles are not checked,
                share[part] = share[part].max()  # and a lid moved without the other would fold them unseen
        return None

    def _target(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target positions of all vertices and the head's similarity (source -> target); see target_vertices."""
        target = np.clip(check_points(target), -self._limit, self._limit)
        head = fit_similarity(self._landmarks[_HEAD_POINTS], target[_HEAD_POINTS])
        ring = apply_affine(head, self.ring)
        vertices = np.concatenate([target, ring])
        if self._unfolded(vertices, head):
            return vertices, head
        rigid = apply_affine(head, self._landmarks)  # the source's own shape in the target's pose: never folds
        if not self._unfolded(np.concatenate([rigid, ring]), head):
            return vertices, head  # a degenerate target (collapsed head): nothing to unfold towards
        relaxed = self._relaxed(target, rigid, ring, head)
        if relaxed is not None:
            return np.concatenate([relaxed, ring]), head
        lo, hi = 0.0, 1.0
        for _ in range(_BLEND_STEPS):  # the smallest share of the rigid shape that unfolds every triangle
            mid = (lo + hi) / 2
            if self._unfolded(np.concatenate([(1 - mid) * target + mid * rigid, ring]), head):
                hi = mid
            else:
                lo = mid
        return np.concatenate([(1 - hi) * target + hi * rigid, ring]), head

    def target_vertices(self, target: np.ndarray) -> np.ndarray:
        """The target positions of all vertices (landmarks, then ring): the landmarks as given, or, where triangles
        fold, the corners of the folded ones moved towards the rigidly moved source shape step by step until none
        is (`_relaxed`; the whole shape blended by the least share that unfolds it when that fails); the ring moved
        rigidly."""
        return self._target(target)[0]

    def _outside(self, head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """map_x, map_y (H, W) of the region outside the mesh: the head's motion, faded out beyond the ring.

        The fade (module docstring) and the displacement it scales are evaluated on a grid of `_COARSE`-pixel cells
        and upsampled bilinearly; the grid reaches a cell beyond the frame on every side, so the upsampling is exact
        for the rigid motion inside the fade (no seam against the ring) and smooth everywhere.
        """
        xs, ys = self._grid
        det = float(np.linalg.det(head[:, :2]))
        if abs(det) < 1e-12:  # a collapsed head: nothing to follow
            return xs.copy(), ys.copy()
        to_source = invert_affine(head)
        rows, cols = -(-self.height // _COARSE) + 2, -(-self.width // _COARSE) + 2
        # Cell centres as cv2.resize sees them, on a frame padded by one cell: in target pixels.
        x = (np.arange(cols) + 0.5) * _COARSE - 0.5 - _COARSE
        y = (np.arange(rows) + 0.5) * _COARSE - 0.5 - _COARSE
        grid = np.stack(np.meshgrid(x, y), -1)  # (rows, cols, 2)
        back = apply_affine(to_source, grid)  # where the rigidly moved head's pixels come from
        v = (back - self.ring_centre) / self.ring_axes  # the ring is the unit circle
        rho = np.linalg.norm(v, axis=-1)
        below = np.clip(v[..., 1] / np.maximum(rho, 1e-6), 0.0, 1.0)
        # The frame's edges stay put: the fade also falls to 0 towards each edge, over a margin that stops short of
        # the ring (a side the ring reaches or crosses is not pinned: the head must move there).
        ring = apply_affine(head, self.ring) if len(self.ring) else apply_affine(head, self.ring_centre[None])
        lo, hi = ring.min(0), ring.max(0)
        slack = 0.03 * (hi - lo)
        limit = _PIN * min(self.height, self.width)
        pin = np.ones((rows, cols))
        for gap, distance in (
            (lo[0] - slack[0] + 0.5, grid[..., 0] + 0.5),
            (lo[1] - slack[1] + 0.5, grid[..., 1] + 0.5),
            (self.width - 0.5 - hi[0] - slack[0], self.width - 0.5 - grid[..., 0]),
            (self.height - 0.5 - hi[1] - slack[1], self.height - 0.5 - grid[..., 1]),
        ):
            margin = min(float(gap), limit)
            if margin > 1.0:
                pin *= _smoothstep(distance / margin)
        floor = 0.25 * min(1.0, 1.0 / abs(det))  # a quarter of the rigid part's area ratio (source per target px)
        tries = [(widen, pin) for widen in _FADE_WIDEN] + [(_FADE_WIDEN[-1], 1.0)]
        best, best_shift = -np.inf, None
        for widen, pinned in tries:  # the narrowest fade whose map keeps every cell's area: no fold
            side = 1.0 - _smoothstep((rho - 1.0) / (widen * _FADE_SIDE))
            down = 1.0 - _smoothstep((rho - 1.0) / (widen * _FADE_DOWN))
            torso = 1.0 - _smoothstep((rho - 1.0) / (widen * _FADE_TORSO))
            down = (1.0 - _TORSO) * down + _TORSO * torso
            fade = (side + (down - side) * below) * pinned
            shift = fade[..., None] * (back - grid)
            moved = grid + shift
            du, dv = np.diff(moved, axis=1)[:-1] / _COARSE, np.diff(moved, axis=0)[:, :-1] / _COARSE
            worst = float((du[..., 0] * dv[..., 1] - du[..., 1] * dv[..., 0]).min())
            if worst > best:
                best, best_shift = worst, shift
            if worst > floor:
                break
        shift = best_shift.astype(np.float32)
        size = (cols * _COARSE, rows * _COARSE)
        crop = np.s_[_COARSE : _COARSE + self.height, _COARSE : _COARSE + self.width]
        dx = cv2.resize(np.ascontiguousarray(shift[..., 0]), size, interpolation=cv2.INTER_LINEAR)[crop]
        dy = cv2.resize(np.ascontiguousarray(shift[..., 1]), size, interpolation=cv2.INTER_LINEAR)[crop]
        return xs + dx, ys + dy

    def maps(
        self, target: np.ndarray, irises: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(68, 2) target landmarks (and (2, 2) iris centres) -> map_x, map_y for cv2.remap, validity mask and face
        mask, all (H, W)."""
        vertices, head = self._target(target)
        map_x, map_y, mask, face = self._maps(vertices, head)
        self._move_irises(map_x, map_y, target, vertices[:NUM_POINTS], irises)
        return map_x, map_y, mask, face

    def _maps(self, vertices: np.ndarray, head: np.ndarray, masks: bool = True
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """map_x, map_y, and (with `masks`) the validity and face masks; a renderer that shows only the image skips
        the masks' two gathers and four whole-frame comparisons."""
        corners = vertices[self.triangles]  # (K, 3, 2)
        affines, valid = inverse_affines(corners, self._source_triangles)
        count = len(self.triangles)
        map_x, map_y = self._outside(head)
        face = np.zeros((self.height, self.width), np.float32) if masks else None
        usable = np.ones((self.height, self.width), bool) if masks else None
        # Per-pixel affines only inside the mesh's box; the rest of the frame is the smooth outside motion.
        x0, y0 = np.maximum(np.floor(corners.min((0, 1))).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max((0, 1))).astype(int) + 1, [self.width, self.height])
        if x1 > x0 and y1 > y0:
            box = np.s_[y0:y1, x0:x1]
            # A byte per pixel while the mesh has fewer than 256 triangles (it has ~150): cv2.LUT then gathers.
            small = count < 256
            index = np.full((y1 - y0, x1 - x0), count, np.uint8 if small else np.int32)  # `count`: outside
            fixed = np.round((corners - [x0, y0]) * (1 << _SHIFT)).astype(np.int32)
            # Degenerate triangles first, so that any real triangle sharing their pixels wins.
            for k in np.argsort(valid, kind="stable"):
                cv2.fillConvexPoly(index, fixed[k], int(k), cv2.LINE_8, _SHIFT)
            table = np.zeros((8, 256 if small else count + 1), np.float32)
            table[:6, : count + 1] = np.concatenate([affines, np.zeros((1, 3, 2))]).reshape(count + 1, 6).T
            table[6, :count] = self._is_face[:count]
            table[7, :count] = ~valid
            # One coefficient at a time: contiguous gathers are ~2x faster than one (h, w, 6) gather.
            gather = (lambda row: cv2.LUT(index, row)) if small else (lambda row: np.take(row, index))
            a, b, c, d, e, f = (gather(row) for row in table[:6])
            xs, ys = self._grid[0][box], self._grid[1][box]
            inner = index < count
            mx = xs * a
            mx += ys * c
            mx += e
            my = xs * b
            my += ys * d
            my += f
            np.copyto(map_x[box], mx, where=inner)
            np.copyto(map_y[box], my, where=inner)
            if masks:
                face[box] = gather(table[6])
                usable[box] = gather(table[7]) == 0
        if not masks:
            return map_x, map_y, None, None
        # A source pixel covers ±0.5 around its centre; the repeated border (__call__) fills that last half pixel.
        x_in = (map_x >= -0.5) & (map_x <= self.width - 0.5)
        inside = x_in & (map_y >= -0.5) & (map_y <= self.height - 0.5)
        mask = (inside & usable).astype(np.float32)
        return map_x, map_y, mask, face

    def __call__(self, target: np.ndarray, irises: np.ndarray | None = None) -> Warped:
        """The photo warped onto (68, 2) `target` landmarks, with its validity and face masks: a model's guide. With
        (2, 2) target `irises` (NaN where unknown) its irises follow them, when the photo's irises were given (class
        docstring). Resampled bilinearly, as every shipped model's guides were when it was trained."""
        return self._warp(target, irises, True, GUIDE_RESAMPLING)

    def picture(self, target: np.ndarray, irises: np.ndarray | None = None) -> np.ndarray:
        """What a warp renderer shows: the image of `__call__` without the masks (less work per frame), resampled
        bicubically. Bilinear resampling at a fractional offset is a blur of up to half a pixel; on the 40 training
        clips with >= 64 frames the face's sharpness against the real frames went from 0.83 to 0.99 at T = 1 (0.85
        to 1.02 at T = 8) for 0.003 of SSIM, and a 512-px frame 1-4 ms more (docs/warp.md)."""
        return self._warp(target, irises, False, PICTURE_RESAMPLING).image

    def _warp(self, target: np.ndarray, irises: np.ndarray | None, masks: bool, interpolation: int) -> Warped:
        """`__call__` and `picture`: the maps, the irises, one remap and the mouth fill; without `masks` the Warped's
        mask and face are None."""
        vertices, head = self._target(target)
        map_x, map_y, mask, face = self._maps(vertices, head, masks)
        self._move_irises(map_x, map_y, target, vertices[:NUM_POINTS], irises)
        # Where the head's motion reaches past the photo's edge (a large face, whose ring crosses the frame, moving
        # away from it), the edge's pixels are repeated: reflecting them mirrored hair into a second crown (FID
        # 79 -> 63 on the 18 test clips at T = 1, SSIM +0.004).
        image = cv2.remap(self.image, map_x, map_y, interpolation, borderMode=cv2.BORDER_REPLICATE)
        if self._mouth_colours is not None:
            image = fill_mouth(image, vertices[:NUM_POINTS], map_x, map_y, self._landmarks, self._mouth_colours)
        return Warped(image, mask, face)


def source_distances(sources: np.ndarray, target: np.ndarray, part: np.ndarray | slice = slice(None)) -> np.ndarray:
    """(T, 68, 2) source landmarks, (68, 2) target -> (T,) RMS error after similarity alignment, over the points
    `part` (all by default).

    Pose and scale are factored out (the similarity is fitted on the whole faces, whatever `part` is), so the
    distance (in interoculars) measures expression and head turn, not framing.
    """
    target = check_points(target)
    errors = []
    for points in np.asarray(sources, np.float64):
        aligned = apply_affine(fit_similarity(check_points(points), target), points[part])
        errors.append(np.sqrt(((aligned - target[part]) ** 2).sum(1).mean()))
    return np.array(errors) / max(interocular(target), 1e-6)


def nearest_source(sources: np.ndarray, target: np.ndarray) -> int:
    """Index of the source whose landmarks best match the target's expression and head turn."""
    return int(np.argmin(source_distances(sources, target)))


def mouth_distances(sources: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(T, 68, 2) source landmarks, (68, 2) target -> (T,) `source_distances` over the lips (48-67): how far each
    source's mouth is from showing the target's opening and shape, the faces aligned as a whole."""
    return source_distances(sources, target, _DONOR_LIPS)


def paste_mouth(image: np.ndarray, donor: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`image` with the target's mouth (inside its outer lips, 48-59) taken from `donor` (the same target, warped
    from another source), fading out into the skin around the lips over about a Gaussian of `_DONOR_FEATHER`
    interoculars so that no seam shows. Returns a new image."""
    target = np.asarray(target, np.float64)
    polygon = target[_DONOR_POLYGON]
    sigma = max(0.5, _DONOR_FEATHER * interocular(target))
    x0, y0, x1, y1 = _window(polygon, int(np.ceil(3 * sigma)) + 1, *image.shape[:2])
    if x1 <= x0 or y1 <= y0:
        return image
    weight = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.fillPoly(weight, [np.round((polygon - [x0, y0]) * (1 << _SHIFT)).astype(np.int32)], 1.0, cv2.LINE_AA, _SHIFT)
    # The whole mouth from the donor (no double lips or teeth inside it), the feather outside in the skin.
    weight = np.minimum(1.0, 2.0 * cv2.GaussianBlur(weight, (0, 0), sigma))
    if image.ndim == 3:
        weight = weight[..., None]
    out = image.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    region += weight * (donor[y0:y1, x0:x1].astype(np.float32) - region)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        region = np.clip(np.round(region), info.min, info.max)
    out[y0:y1, x0:x1] = region
    return out


class MultiSourceWarp:
    """T source images with their landmarks (and iris centres, (T, 2, 2), NaN where a photo has none); warps the
    nearest one, or blends the `blend` nearest.

    `image` is what the warp renderer shows: the nearest photo, with the mouth of the photo whose mouth is nearest
    where that is another. A call gives the warp with its masks as a generator's guide, from the nearest photos
    alone: the shipped models were trained on guides made so, and a guide is part of a model's inputs.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        points: np.ndarray,
        ring_points: int = 16,
        ring_scale: float = 1.6,
        mouth: bool = True,
        irises: np.ndarray | None = None,
    ) -> None:
        if len(images) == 0 or len(images) != len(points):
            raise ValueError(f"need one landmark set per image: {len(images)} images, {len(points)} sets")
        if len({image.shape for image in images}) != 1:
            raise ValueError("all source images must have the same shape (one crop frame for all landmarks)")
        self.points = np.asarray(points, np.float64)
        if irises is not None and np.shape(irises) != (len(images), 2, 2):
            raise ValueError(f"need (T, 2, 2) iris centres for {len(images)} images, got {np.shape(irises)}")
        each = [None] * len(images) if irises is None else list(np.asarray(irises, np.float64))
        self.warps = [
            PiecewiseAffineWarp(image, p, ring_points, ring_scale, mouth, i)
            for image, p, i in zip(images, self.points, each, strict=True)
        ]

    def image(self, target: np.ndarray, irises: np.ndarray | None = None) -> np.ndarray:
        """The nearest source warped onto `target`: the image alone, without the masks a guide needs (what the warp
        renderer shows). The nearest is chosen by the whole face, so its mouth is often not the one closest to the
        target's: where the target's mouth is open and another source's lips are nearer to it
        (`mouth_distances`), the mouth comes from that source, warped onto the same target (`paste_mouth`): its
        own teeth and lips at about the right opening, rather than the nearest face's lips stretched over a
        painted cavity."""
        target = check_points(target)
        nearest = int(np.argmin(source_distances(self.points, target)))
        image = self.warps[nearest].picture(target, irises)
        if len(self.warps) < 2 or mouth_opening(target) < _DONOR_OPENING:
            return image
        mouths = mouth_distances(self.points, target)
        donor = int(np.argmin(mouths))
        if mouths[donor] >= mouths[nearest]:
            return image
        return paste_mouth(image, self.warps[donor].picture(target, irises), target)

    def __call__(self, target: np.ndarray, blend: int = 1, irises: np.ndarray | None = None) -> Warped:
        """Blending weighs each source by its validity mask and inverse landmark distance to the target; (2, 2)
        target `irises` move the irises of the sources that have them."""
        distances = source_distances(self.points, target)
        order = np.argsort(distances, kind="stable")[: max(1, blend)]
        if len(order) == 1:
            return self.warps[order[0]](target, irises)
        results = [self.warps[i](target, irises) for i in order]
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
