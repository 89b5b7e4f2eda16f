"""Mouth SSIM on open-mouth frames: SSIM (training.metrics.ssim) of the mouth box of the generated and the real
frame, over the hold-out frames on which the real mouth is open.

Whole-frame SSIM is dominated by the background and the closed-mouth majority of a clip; the teeth and the inside
of the mouth, which a renderer must invent when the source photo has its mouth shut, barely move it. This number
looks only there.

Why these choices:
- Open means `faces.motion.mouth_opening` (mean inner-lip gap over the inter-ocular distance) of the real frame's
  landmarks above OPEN_MOUTH = 0.15: lips visibly apart with the teeth or the mouth's inside showing (about 4 px at
  128 px crops). Over the test clips of the prepared public media the opening's median is 0.07 and its 90th
  percentile 0.21, so 0.15 keeps the clearly open frames of speech and leaves out the half-open ones.
- The box (`faces.regions.mouth_box`) is a square about the real outer and inner lips (points 48–67), its side 1.5
  times their larger extent (a quarter of it as margin on each side, so the lip contours are inside it with some
  skin), at least 2 × 11 px so that SSIM's 11 × 11 window has room. The same box cuts the real and the generated frame.
- A clip without an open-mouth hold-out frame gives NaN and is left out of the average; the results table says how
  many clips counted.
"""

from __future__ import annotations

import numpy as np

from faces.motion import mouth_opening
from faces.regions import mouth_box
from training.metrics.ssim import WINDOW, ssim

OPEN_MOUTH = 0.15  # mouth opening (inner-lip gap / inter-ocular distance) above which a mouth counts as open


def mouth_ssim(fake: np.ndarray, real: np.ndarray, points: np.ndarray,
               threshold: float = OPEN_MOUTH) -> tuple[float, int]:
    """(N, H, W, 3) uint8 generated and real frames and the real frames' (N, 68, 2) landmarks -> mean SSIM of the
    mouth box over the frames whose real mouth is open (NaN when none is), and the number of those frames."""
    if fake.shape != real.shape or len(points) != len(real):
        raise ValueError(f"shapes differ: {fake.shape}, {real.shape} and {len(points)} landmark sets")
    points = np.asarray(points, np.float64)
    open_frames = np.flatnonzero(mouth_opening(points) > threshold)
    values = []
    for i in open_frames:
        x0, y0, x1, y1 = mouth_box(points[i], real.shape[1:3], min_side=2 * WINDOW)
        values.append(ssim(fake[i : i + 1, y0:y1, x0:x1], real[i : i + 1, y0:y1, x0:x1])[0])
    return (float(np.mean(values)) if values else float("nan")), len(open_frames)
