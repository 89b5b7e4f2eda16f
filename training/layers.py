"""Building blocks shared by E, G and D: spectral-normed layers, AdaIN, self-attention and residual blocks."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


def conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Module:
    """Spectral-normed convolution with 'same' padding (output side = input side / stride): every conv of every
    network is one of these."""
    return spectral_norm(nn.Conv2d(cin, cout, kernel, stride, padding=(kernel - stride + 1) // 2))


def linear(cin: int, cout: int, bias: bool = True) -> nn.Module:
    return spectral_norm(nn.Linear(cin, cout, bias=bias))


class AdaIN(nn.Module):
    """Instance norm whose per-channel scale and bias are given at run time (a slice of ψ̂ = P·ê).

    The scale is applied as (1 + γ) so that a fresh P starts near plain instance norm instead of zeroing features.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.psi_size = 2 * channels

    def forward(self, x: Tensor, psi: Tensor) -> Tensor:
        gamma, beta = psi.view(-1, 2, self.channels, 1, 1).unbind(1)  # psi: (B, 2C)
        return F.instance_norm(x) * (1 + gamma) + beta


class SelfAttention(nn.Module):
    """SAGAN self-attention; keys and values are max-pooled 2×2 so attention at 64×64 stays affordable."""

    def __init__(self, channels: int):
        super().__init__()
        self.query = conv(channels, max(1, channels // 8), 1)
        self.key = conv(channels, max(1, channels // 8), 1)
        self.value = conv(channels, max(1, channels // 2), 1)
        self.out = conv(max(1, channels // 2), channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))  # starts as identity, attention is learned in gradually

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)[:, None]  # (B, 1, HW, C/8)
        k = F.max_pool2d(self.key(x), 2).flatten(2).transpose(1, 2)[:, None]  # (B, 1, HW/4, C/8)
        v = F.max_pool2d(self.value(x), 2).flatten(2).transpose(1, 2)[:, None]  # (B, 1, HW/4, C/2)
        # softmax(q·kᵀ)·v, unscaled as SAGAN's; the fused kernel never holds the (HW, HW/4) weights for backward,
        # which at 64×64 were most of a fine-tuning step's time.
        o = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # (B, 1, HW, C/2)
        return x + self.gamma * self.out(o[:, 0].transpose(1, 2).reshape(b, -1, h, w))


Norm = Literal["none", "instance", "adain"]
Resample = Literal["none", "down", "up"]


class ResBlock(nn.Module):
    """Pre-activation residual block (BigGAN style): [norm→]ReLU→conv→[norm→]ReLU→conv, plus a 1×1 shortcut.

    `resample` picks the down-sampling (average pool after the convs), up-sampling (nearest before them) or plain
    variants; `norm` picks none (E, D), affine instance norm (G's encoder) or AdaIN (G's decoder, fed from ψ̂).
    The first block of a network skips the leading ReLU so that the raw image is not clipped.
    """

    def __init__(self, cin: int, cout: int, resample: Resample = "none", norm: Norm = "none", preact: bool = True):
        super().__init__()
        self.resample, self.preact, self.adaptive = resample, preact, norm == "adain"
        self.conv1 = conv(cin, cout)
        self.conv2 = conv(cout, cout)
        self.skip = conv(cin, cout, 1) if cin != cout or resample != "none" else None
        if norm == "instance":
            self.norm1, self.norm2 = nn.InstanceNorm2d(cin, affine=True), nn.InstanceNorm2d(cout, affine=True)
        elif norm == "adain":
            self.norm1, self.norm2 = AdaIN(cin), AdaIN(cout)
        else:
            self.norm1 = self.norm2 = None
        self.psi_size = 2 * (cin + cout) if self.adaptive else 0

    def _norm(self, norm: nn.Module | None, h: Tensor, psi: Tensor | None) -> Tensor:
        if norm is None:
            return h
        return norm(h, psi) if self.adaptive else norm(h)

    def forward(self, x: Tensor, psi: Tensor | None = None) -> Tensor:
        psi1, psi2 = psi.split([self.norm1.psi_size, self.norm2.psi_size], 1) if self.adaptive else (None, None)
        h = self._norm(self.norm1, x, psi1)
        if self.preact:
            h = F.relu(h)
        if self.resample == "up":
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        h = self.conv1(h)
        h = self.conv2(F.relu(self._norm(self.norm2, h, psi2)))
        s = x
        if self.resample == "up":
            s = F.interpolate(s, scale_factor=2.0, mode="nearest")
        if self.skip is not None:
            s = self.skip(s)
        if self.resample == "down":
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


class DownTrunk(nn.Module):
    """Residual down-sampling from `resolution` to `stop` px with self-attention at `attention` px.

    E, D and G's encoder are all one of these. Returns every block's output: D's feature matching compares them.
    """

    def __init__(
        self, cin: int, resolution: int, channels, attention: int, norm: Norm = "none", stop: int = 4
    ):
        super().__init__()
        blocks, side, c = [], resolution, cin
        while side > stop:
            side //= 2
            blocks.append(ResBlock(c, channels(side), "down", norm, preact=bool(blocks)))
            c = channels(side)
            if side == attention:
                blocks.append(SelfAttention(c))
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = c

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


class SumPool(nn.Module):
    """Global sum pooling then ReLU, as in the paper's E and D, projecting to N first when the widths differ."""

    def __init__(self, channels: int, dim: int, relu: bool = True):
        super().__init__()
        self.proj = linear(channels, dim) if channels != dim else nn.Identity()
        self.relu = relu

    def forward(self, h: Tensor) -> Tensor:
        v = self.proj(h.sum(dim=(2, 3)))  # (B, C, H, W) -> (B, N)
        return F.relu(v) if self.relu else v
