"""Projection discriminator D(x, y, i) = V(x, y)ᵀ(W_i + w0) + b."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.config import ModelConfig
from training.layers import DownTrunk, ResBlock, SumPool


class Discriminator(nn.Module):
    """Trunk V like E's plus a residual block at 4×4; W holds one row per training video (an M × N table).

    The paper writes W as N × M columns; rows make the lookup W[i] a plain index. When the set of training videos
    changes (a new dataset, fine-tuning on one person), `resize_videos` keeps the rows that still exist.
    """

    def __init__(self, cfg: ModelConfig, num_videos: int):
        super().__init__()
        self.cfg = cfg
        self.trunk = DownTrunk(6, cfg.resolution, cfg.channels, cfg.attention_down)
        c = self.trunk.out_channels
        self.final = ResBlock(c, c)
        self.pool = SumPool(c, cfg.embed_dim)
        self.W = nn.Parameter(torch.randn(num_videos, cfg.embed_dim) * 0.02)
        self.w0 = nn.Parameter(torch.zeros(cfg.embed_dim))
        self.b = nn.Parameter(torch.zeros(()))

    @property
    def num_videos(self) -> int:
        return self.W.shape[0]

    def video_vector(self, i: Tensor) -> Tensor:
        """W_i + w0 for a batch of video indices: (B,) -> (B, N)."""
        return self.W[i] + self.w0

    def forward(self, x: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x, y: (B, 3, R, R); w: (B, N) projection vectors (W_i + w0, or w' when fine-tuning).

        Returns the realism scores (B,) and every block's output for feature matching.
        """
        feats = self.trunk(torch.cat([x, y], 1))
        feats.append(self.final(feats[-1]))
        v = self.pool(feats[-1])  # (B, N)
        return (v * w).sum(1) + self.b, feats

    @torch.no_grad()
    def resize_videos(self, num_videos: int) -> None:
        """Grow or shrink W to `num_videos` rows; kept rows are unchanged, new rows start like fresh ones."""
        old = self.W.data
        new = torch.randn(num_videos, old.shape[1], device=old.device, dtype=old.dtype) * 0.02
        keep = min(num_videos, old.shape[0])
        new[:keep] = old[:keep]
        self.W = nn.Parameter(new)
