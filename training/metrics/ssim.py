"""SSIM (Wang et al. 2004): an 11×11 Gaussian window of σ = 1.5, K1 = 0.01, K2 = 0.03, valid filtering as in the
authors' reference code, per RGB channel and averaged. Written here so that the number never depends on a library's
defaults."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

WINDOW, SIGMA, K1, K2, RANGE = 11, 1.5, 0.01, 0.03, 255.0


def _window(dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(WINDOW, dtype=torch.float64) - (WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SIGMA**2))
    return (g / g.sum()).to(dtype)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian over (B, 1, H, W), 'valid': the output shrinks by WINDOW − 1 on each axis."""
    g = _window(x.dtype).to(x.device)
    return F.conv2d(F.conv2d(x, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(M, 1, H, W) tensors of grey levels in [0, RANGE] -> (M, 1, H - 10, W - 10) SSIM index, differentiable: the
    metric below in float64 and the SSIM loss (training.losses.ssim_loss) in float32 compute it here alike."""
    c1, c2 = (K1 * RANGE) ** 2, (K2 * RANGE) ** 2
    mx, my = _blur(x), _blur(y)
    vx, vy, cxy = _blur(x * x) - mx**2, _blur(y * y) - my**2, _blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB pairs -> (N,) mean SSIM; 1 means identical."""
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected two (N, H, W, 3) batches of the same shape, got {a.shape} and {b.shape}")
    if min(a.shape[1:3]) < WINDOW:
        raise ValueError(f"images must be at least {WINDOW}×{WINDOW} for SSIM")
    x, y = (torch.from_numpy(np.ascontiguousarray(v)).double().permute(0, 3, 1, 2).flatten(0, 1)[:, None]
            for v in (a, b))  # (N·3, 1, H, W)
    return ssim_map(x, y).mean((1, 2, 3)).view(len(a), 3).mean(1).numpy()
