"""Motion transfer: does the result open its mouth and eyes when the driver does? Pearson correlation over a
clip between the driver's and the result's mouth (or eye) opening, measured on landmarks detected on the result.

SSIM and its relatives reward a blurry average face; these numbers carry the verdict on motion.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from faces.motion import eye_opening, mouth_opening

OPENINGS = {"mouth": mouth_opening, "eye": eye_opening}


def opening_correlation(detected: np.ndarray, driving: np.ndarray, part: Literal["mouth", "eye"]) -> float:
    """(N, 68, 2) detected (NaN rows where no face was found) and driving landmarks -> Pearson r of the openings
    over frames with a detection; NaN with fewer than 3 such frames or when either side does not move."""
    found = np.isfinite(detected).all((1, 2))
    if found.sum() < 3:
        return float("nan")
    a, b = OPENINGS[part](np.asarray(detected)[found]), OPENINGS[part](np.asarray(driving, np.float64)[found])
    if a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
