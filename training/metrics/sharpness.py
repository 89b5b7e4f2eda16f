"""Sharpness of the generated face against the real one: the variance of the Laplacian (a standard focus measure,
Pech-Pacheco et al. 2000) of the generated frames' face crops over that of the real frames, per clip.

1.0 means as sharp as the real video; a blurry renderer scores below 1 (on 128-px crops of real clips a Gaussian
blur of σ = 0.5 px gives 0.66, σ = 1 px 0.25), and above 1 means more high-frequency energy than the real frames
have (noise, ringing, aliasing, or a source frame sharper than a motion-blurred real one), which is not better:
higher is better only up to 1. SSIM and LPIPS fold blur into one similarity number; this one isolates it,
so a soft average face cannot hide behind a good SSIM.

Why these choices:
- The region is the bounding box of the *real* frame's 68 landmarks, enlarged by 10 % of its size on each side (the
  forehead, the jaw line and the cheeks' edge come in), the same box in the real and the generated frame. On the whole
  crop a sharp static background (a bookshelf) dominates the variance and every method that copies it (still, warp)
  would look sharp however it renders the face.
- Grey levels (ITU-R 601 luma, as cv2 converts), the 3 × 3 four-neighbour Laplacian computed on the whole frame and
  then cut to the box, so the box's edges add no artificial step.
- The ratio of the means over the clip's frames, not the mean of per-frame ratios: a frame whose real face is
  nearly flat (motion blur in the real video) would otherwise make one ratio explode.
"""

from __future__ import annotations

import cv2
import numpy as np

from faces.regions import landmark_box

FACE_MARGIN = 0.1  # of the landmark box's larger side, on each side


def laplacian_variance(image: np.ndarray, box: tuple[int, int, int, int] | None = None) -> float:
    """(H, W, 3) uint8 RGB -> variance of the Laplacian of its grey levels inside `box` (x0, y0, x1, y1; the whole
    image when None)."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float64)
    laplacian = cv2.Laplacian(grey, cv2.CV_64F, ksize=1)
    if box is not None:
        x0, y0, x1, y1 = box
        laplacian = laplacian[y0:y1, x0:x1]
    return float(laplacian.var())


def sharpness(fake: np.ndarray, real: np.ndarray, points: np.ndarray, margin: float = FACE_MARGIN) -> float:
    """(N, H, W, 3) uint8 generated and real frames and the real frames' (N, 68, 2) landmarks -> mean Laplacian
    variance of the generated face crops over that of the real ones; NaN when the real faces are flat."""
    if fake.shape != real.shape or len(points) != len(real):
        raise ValueError(f"shapes differ: {fake.shape}, {real.shape} and {len(points)} landmark sets")
    boxes = [landmark_box(p, margin, real.shape[1:3], min_side=3) for p in points]
    fake_var = np.mean([laplacian_variance(f, b) for f, b in zip(fake, boxes, strict=True)])
    real_var = np.mean([laplacian_variance(r, b) for r, b in zip(real, boxes, strict=True)])
    return float(fake_var / real_var) if real_var > 1e-9 else float("nan")
