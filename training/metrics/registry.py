"""The metrics of `heads evaluate` by name: the one table that `EvaluateConfig` checks names against, that
`training.evaluate` iterates, and that the results table takes its column headers from (as stylegan3's metric
registry does). Adding a metric is one function and one line here.

Torch-free to import, so that the CLI parses `--metrics` without loading torch: each entry's function imports its
metric module when first called. Every entry reduces one method's frames on one clip to a number the same way on
every call; FID, which is defined on a whole set of frames, is the pooled kind: per-clip features, one distance
over all clips.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass
class Sample:
    """What a per-clip metric reads: one method's re-rendering of one clip's hold-out frames, with the work several
    metrics share (landmark detection) done once, on first use."""

    fake: np.ndarray  # (N, R, R, 3) uint8 generated frames
    real: np.ndarray  # (N, R, R, 3) uint8 real hold-out frames
    driving: np.ndarray  # (N, 68, 2) driving landmarks in crop pixels
    lpips_net: str = "dlib"
    notes: dict[str, float] = field(default_factory=dict)
    """Bookkeeping columns that come with a metric's computation (see NOTE_HEADERS); filled as metrics run."""

    @cached_property
    def detected(self) -> np.ndarray:
        """(N, 68, 2) landmarks detected on the generated frames, NaN rows where no face was found. AKD, NME and the
        correlations use only the frames with a face, so the share of those is noted beside them."""
        from training.metrics.akd import detect_landmarks

        points = detect_landmarks(self.fake)
        self.notes["detected"] = float(np.isfinite(points).all((1, 2)).mean())
        return points


@dataclass(frozen=True)
class Metric:
    """One metric and what the results table needs to know about it. Per-clip metrics set `per_clip` (averaged over
    clips afterwards); pooled ones set `features` (per clip, for real and generated frames alike) and `pool` (one
    number from all clips' real and generated features)."""

    label: str
    higher_is_better: bool
    per_clip: Callable[[Sample], float] | None = None
    features: Callable[[np.ndarray], np.ndarray] | None = None
    pool: Callable[[np.ndarray, np.ndarray], float] | None = None
    count_label: str | None = None
    """For a per-clip metric that some clips lack by design (mouth SSIM on a clip whose mouth never opens): the
    header of a column beside it that counts the clips its average is over."""
    target: float | None = None
    """For a ratio to the real frames whose best value is this one, not the largest (sharpness: 1, as sharp as the
    real video; above it is noise or ringing, not detail): comparisons then read its distance from the target, and
    `higher_is_better` only says which side the values usually fall on."""

    def __post_init__(self) -> None:
        if (self.per_clip is None) == (self.features is None or self.pool is None):
            raise ValueError(f"{self.label}: give either per_clip, or features and pool")

    @property
    def pooled(self) -> bool:
        return self.per_clip is None

    @property
    def header(self) -> str:
        """The results table's column header: ↑ higher is better, ↓ lower is better, →1 closest to 1 is best."""
        if self.target is not None:
            return f"{self.label}→{self.target:g}"
        return self.label + ("↑" if self.higher_is_better else "↓")

    def shortfall(self, value: float) -> float:
        """How far `value` is from the best, lower being better, so that two methods' values compare by one rule:
        the value (lower is better), its negative (higher is better), or |log(value / target)| (a target: twice as
        sharp as the real frames counts as far off as half as sharp)."""
        if self.target is not None:
            if math.isnan(value):
                return math.nan
            return abs(math.log(value / self.target)) if value > 0 else math.inf
        return -value if self.higher_is_better else value

    def columns(self, name: str) -> tuple[tuple[str, str], ...]:
        """(key, header) of the results table's columns for this metric: its value, then its clip count if any."""
        return ((name, self.header),) + (((count_key(name), self.count_label),) if self.count_label else ())


def count_key(name: str) -> str:
    """The results row's key for the number of clips that metric `name` is averaged over."""
    return f"{name}_clips"


def _ssim(s: Sample) -> float:
    from training.metrics.ssim import ssim

    return float(ssim(s.fake, s.real).mean())


def _lpips(s: Sample) -> float:
    from training.metrics.perceptual import perceptual_distance

    return float(perceptual_distance(s.fake, s.real, s.lpips_net).mean())


def _csim(s: Sample) -> float:
    from training.metrics.csim import csim

    values, fallbacks = csim(s.fake, s.real)
    s.notes["csim_unaligned"] = fallbacks / (2 * len(s.fake))  # both sides of every pair are embedded
    return float(values.mean())


def _akd(s: Sample) -> float:
    from training.metrics.akd import akd

    return akd(s.detected, s.driving, s.fake.shape[1])


def _nme(s: Sample) -> float:
    from training.metrics.akd import normalized_landmark_error

    return normalized_landmark_error(s.detected, s.driving)


def _opening(part: str) -> Callable[[Sample], float]:
    def correlation(s: Sample) -> float:
        from training.metrics.motion import opening_correlation

        return opening_correlation(s.detected, s.driving, part)  # type: ignore[arg-type]

    return correlation


def _sharpness(s: Sample) -> float:
    from training.metrics.sharpness import sharpness

    return sharpness(s.fake, s.real, s.driving)


def _mouth_ssim(s: Sample) -> float:
    from training.metrics.mouth_ssim import mouth_ssim

    value, open_frames = mouth_ssim(s.fake, s.real, s.driving)
    s.notes["mouth_open"] = open_frames / len(s.fake)  # share of hold-out frames with the real mouth open
    return value


def _inception(images: np.ndarray) -> np.ndarray:
    from training.metrics.fid import inception_features

    return inception_features(images)


def _fid(real: np.ndarray, fake: np.ndarray) -> float:
    from training.metrics.fid import fid_from_features

    return fid_from_features(real, fake)


# name -> metric, in the order of the results table's columns.
METRICS: dict[str, Metric] = {
    "ssim": Metric("SSIM", True, _ssim),
    "lpips": Metric("LPIPS-dlib", False, _lpips),
    "csim": Metric("CSIM", True, _csim),
    "fid": Metric("FID", False, features=_inception, pool=_fid),
    "akd": Metric("AKD", False, _akd),
    "nme": Metric("NME", False, _nme),
    "mouth": Metric("mouth r", True, _opening("mouth")),
    "eye": Metric("eye r", True, _opening("eye")),
    "sharpness": Metric("sharpness", True, _sharpness, target=1.0),
    "mouth_ssim": Metric("mouth SSIM", True, _mouth_ssim, count_label="open-mouth clips"),
}

# Notes the results table shows after the metrics; the rest (csim_unaligned, mouth_open) go to the CSV only.
NOTE_HEADERS = {"detected": "detected↑"}
