"""Square face crops at the model's resolution, and the transform that maps points and pixels back and forth.

Coordinates follow OpenCV and dlib: pixel (i, j) has its centre at x=i, y=j, so an image of width W spans
x in [-0.5, W - 0.5]. A crop is the square image region [x0, x0 + side) × [y0, y0 + side) (pixel edges) resampled
to `size` pixels; it may reach outside the image, where it is black.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from faces.config import CropConfig
from faces.smoothing import gaussian_smooth


@dataclass(frozen=True)
class CropTransform:
    """Image → crop mapping: crop = (image + 0.5 - offset) × scale - 0.5, for pixel-centre coordinates."""

    scale: float  # crop pixels per image pixel
    offset: tuple[float, float]  # (x0, y0): the crop's top-left corner in the image, pixel-edge coordinates
    size: int  # crop side in pixels

    @classmethod
    def square(cls, center: Sequence[float], side: float, size: int) -> CropTransform:
        """The crop of `size` px showing the square of `side` image pixels centred on `center` (pixel centres)."""
        cx, cy = float(center[0]) + 0.5, float(center[1]) + 0.5
        side = max(float(side), 1.0)
        return cls(size / side, (cx - side / 2, cy - side / 2), int(size))

    @property
    def side(self) -> float:
        """Side of the cropped square in image pixels."""
        return self.size / self.scale

    @property
    def box(self) -> tuple[float, float, float, float]:
        x0, y0 = self.offset
        return x0, y0, x0 + self.side, y0 + self.side

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, np.float64)
        return ((points + 0.5 - np.asarray(self.offset)) * self.scale - 0.5).astype(np.float32)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, np.float64)
        return ((points + 0.5) / self.scale + np.asarray(self.offset) - 0.5).astype(np.float32)

    def resized(self, size: int) -> CropTransform:
        """The same image square at another crop resolution."""
        return CropTransform(self.scale * size / self.size, self.offset, int(size))

    def matrix(self) -> np.ndarray:
        """(2, 3) affine matrix from image to crop pixel-centre coordinates, as cv2.warpAffine takes it."""
        s, (x0, y0) = self.scale, self.offset
        return np.array([[s, 0.0, s * (0.5 - x0) - 0.5], [0.0, s, s * (0.5 - y0) - 0.5]])

    def to_array(self) -> np.ndarray:
        return np.array([self.scale, *self.offset], np.float64)

    @classmethod
    def from_array(cls, values: Sequence[float], size: int) -> CropTransform:
        return cls(float(values[0]), (float(values[1]), float(values[2])), int(size))

    def crop(self, image: np.ndarray, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
        """Cut and resample the square; shrinking is area-averaged first so that small crops do not alias. Where the
        square leaves the image it is black, or the image's edge repeated with `border=cv2.BORDER_REPLICATE`."""
        x0, y0, x1, y1 = self.box
        h, w = image.shape[:2]
        whole = float(x0).is_integer() and float(y0).is_integer()
        if self.scale == 1.0 and whole and min(x0, y0) >= 0 and x1 <= w and y1 <= h:
            return image[int(y0) : int(y1), int(x0) : int(x1)].copy()  # whole pixels inside: nothing to resample
        rx0, ry0 = max(0, int(np.floor(x0)) - 1), max(0, int(np.floor(y0)) - 1)
        rx1, ry1 = min(w, int(np.ceil(x1)) + 1), min(h, int(np.ceil(y1)) + 1)
        out_shape = (self.size, self.size) + image.shape[2:]
        if rx1 <= rx0 or ry1 <= ry0:
            return np.zeros(out_shape, image.dtype)
        region = image[ry0:ry1, rx0:rx1]  # (with BORDER_REPLICATE, its edges are the image's where they touch)
        fx = fy = 1.0
        if self.scale < 1.0:
            rw, rh = max(1, round(region.shape[1] * self.scale)), max(1, round(region.shape[0] * self.scale))
            fx, fy = rw / region.shape[1], rh / region.shape[0]
            region = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
        # crop = scale * (region-resized -> image) composed with the image -> crop matrix
        m = self.matrix()
        to_image = np.array([[1 / fx, 0.0, 0.5 / fx - 0.5 + rx0], [0.0, 1 / fy, 0.5 / fy - 0.5 + ry0], [0, 0, 1]])
        warp = m @ to_image
        return cv2.warpAffine(
            region, warp, (self.size, self.size), flags=cv2.INTER_LINEAR, borderMode=border
        ).reshape(out_shape)

    def feather(self, feather: float = 0.05) -> np.ndarray:
        """(size, size) float32 weight of each crop pixel when pasted: 1 inside, falling to 0 at the border over
        `feather` of the side, so that no seam shows."""
        ramp = np.minimum(np.arange(self.size) + 0.5, self.size - 0.5 - np.arange(self.size))
        ramp = np.clip(ramp / max(feather * self.size, 1e-6), 0.0, 1.0).astype(np.float32)
        return np.outer(ramp, ramp)

    def paste(self, crop: np.ndarray, image: np.ndarray, feather: float = 0.05) -> np.ndarray:
        """`image` with `crop` (e.g. a generated face) warped back into place; its border fades over `feather`
        of the crop side so that no seam shows. Returns a new image; only the covered region is recomputed."""
        if crop.shape[:2] != (self.size, self.size):
            raise ValueError(f"expected a {self.size}x{self.size} crop, got {crop.shape[:2]}")
        colour = crop.astype(np.float32).reshape(self.size, self.size, -1)
        return self.blend(np.concatenate([colour, self.feather(feather)[..., None]], -1), image)

    def blend(self, layer: np.ndarray, image: np.ndarray) -> np.ndarray:
        """`image` with `layer` ((size, size, C + 1) float32: colour, then its weight in [0, 1]) resampled into
        place and blended by its weight: image + weight·(colour − image). Outside the square the weight is 0.
        Returns a new uint8 image; only the covered region is recomputed. The feathered paste's path."""
        return self._place(layer, image, lambda region, colour, weight: region + weight * (colour - region))

    def add(self, layer: np.ndarray, image: np.ndarray) -> np.ndarray:
        """`image` plus `layer` ((size, size, C + 1) float32: a change in grey levels, then its weight in [0, 1])
        resampled into place: image + weight·change, 0 outside the square. A refining model's correction added to
        a warp at the image's own resolution (upsampled here, never the image downsampled): where the weight is
        0, the image is returned pixel for pixel."""
        return self._place(layer, image, lambda region, change, weight: region + weight * change)

    def _place(self, layer: np.ndarray, image: np.ndarray,
               combine: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
        """One resampling for `blend` and `add`: the layer's colour and weight mapped onto the image pixels the
        square covers, `combine(region, colour, weight)` written there (clipped, rounded)."""
        h, w = image.shape[:2]
        x0, y0, x1, y1 = self.box
        rx0, ry0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        rx1, ry1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
        out = image.copy()
        if rx1 <= rx0 or ry1 <= ry0:
            return out
        m = self.matrix()
        m[:, 2] += m[:, :2] @ np.array([rx0, ry0])  # region pixel (0, 0) is image pixel (rx0, ry0)
        size = (rx1 - rx0, ry1 - ry0)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        colour = cv2.warpAffine(np.ascontiguousarray(layer[..., :-1]), m, size, flags=flags,
                                borderMode=cv2.BORDER_REPLICATE)
        weight = cv2.warpAffine(np.ascontiguousarray(layer[..., -1]), m, size, flags=flags,
                                borderMode=cv2.BORDER_CONSTANT)
        if image.ndim == 3:
            colour = colour.reshape(size[1], size[0], -1)
            weight = weight[..., None]
        region = out[ry0:ry1, rx0:rx1].astype(np.float32)
        out[ry0:ry1, rx0:rx1] = np.clip(combine(region, colour, weight), 0, 255).round()
        return out


def head_square(points: np.ndarray, config: CropConfig) -> np.ndarray:
    """(cx, cy, side) of the head square for (..., 68, 2) landmarks, in pixel-centre coordinates."""
    lo, hi = points.min(axis=-2), points.max(axis=-2)
    size = (hi - lo).max(axis=-1)
    cx = (lo[..., 0] + hi[..., 0]) / 2
    cy = (lo[..., 1] + hi[..., 1]) / 2 - config.shift * size
    return np.stack([cx, cy, size * (1 + config.margin)], axis=-1)


def photo_transform(points: np.ndarray, config: CropConfig) -> CropTransform:
    """Crop of one face in a still image."""
    cx, cy, side = head_square(points, config)
    return CropTransform.square((cx, cy), side, config.resolution)


def clip_transforms(points: np.ndarray, fps: float, config: CropConfig, sigma: float) -> list[CropTransform]:
    """Per-frame crops for one continuous track (T, 68, 2): a head square smoothed over `sigma` seconds
    ("follow"), or the one square that holds every frame's head ("fixed")."""
    squares = head_square(np.asarray(points, np.float64), config)  # (T, 3)
    if config.mode == "fixed":
        half = squares[:, 2:] / 2
        lo, hi = (squares[:, :2] - half).min(0), (squares[:, :2] + half).max(0)
        square = np.array([*(lo + hi) / 2, (hi - lo).max()])
        squares = np.repeat(square[None], len(squares), 0)
    else:
        squares = gaussian_smooth(squares, sigma * fps)
    return [CropTransform.square(s[:2], s[2], config.resolution) for s in squares]
