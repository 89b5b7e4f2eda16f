"""Embedder E(x, y) → ê ∈ R^N: a frame and its landmark image mapped to a pose-independent identity vector."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.config import ModelConfig
from training.layers import DownTrunk, SumPool


class Embedder(nn.Module):
    """Residual down-sampling without normalisation, self-attention at 32×32, global sum pooling and ReLU."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.trunk = DownTrunk(6, cfg.resolution, cfg.channels, cfg.attention_down)
        self.pool = SumPool(self.trunk.out_channels, cfg.embed_dim, cfg.embed_relu)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """x, y: (B, 3, R, R) frame and landmark image in [-1, 1] -> ê: (B, N), non-negative with embed_relu."""
        return self.pool(self.trunk(torch.cat([x, y], 1))[-1])
