"""Which frames of a test clip personalise and which are held out: the self-reenactment protocol of Zakharov et al.
2019 (Table 1) as `heads evaluate` runs it.

A module of its own because two homes need the very same picks: `heads evaluate` scores the hold-out frames, and
the mouth refiner's training crops (training/mouth_refiner.py) are warped from the photos `heads evaluate` would
pick, so that the refiner learns on the warps it is judged on.
"""

from __future__ import annotations

import numpy as np


def split_frames(count: int, shots: tuple[int, ...], holdout: int) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Frame indices: T evenly spaced in the first half for each T (the first frame always among them), and
    `holdout` evenly spaced in the second half, so personalization and hold-out never share a frame."""
    half = count // 2
    if half < max(shots) or count - half < holdout:
        raise ValueError(f"{count} frames cannot give {max(shots)} personalization + {holdout} hold-out frames")
    personal = {t: np.unique(np.linspace(0, half - 1, t).round().astype(int)) for t in shots}
    return personal, np.linspace(half, count - 1, holdout).round().astype(int)
