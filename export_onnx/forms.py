"""Export-time forms of G's and E's layers: the same functions, written in the ops onnxruntime runs fastest.

`export_form(net)` rewrites a baked copy of a network just before tracing; training code and the PyTorch modules
used as parity references are never touched. Each form is exact in real arithmetic, so fp32 parity with PyTorch
(checked by `export_onnx.export` on every graph) stays within rounding:

- **Instance norm and AdaIN** as means over W, then over H (for precision, see `instance_norm`), with the per-channel
  scale 1/σ folded into the (1 + γ) scale on the small (B, C, 1, 1) tensor: one multiply over the feature map
  instead of two.
- **Down-sampling blocks**: a 3×3 convolution followed by 2×2 average pooling is one 4×4 convolution of stride 2
  (the pool's four taps summed into the kernel), 0.44× the multiply-adds and no pooling pass; the 1×1 shortcut
  runs after the pooling instead of before it, 0.25× its multiply-adds.
- **Up-sampling blocks**: a 3×3 convolution of a nearest-neighbour 2× up-sampled map is, for each of the four output
  phases (row and column parity), a 2×2 convolution of the map itself; four of them and one interleave replace
  the up-sampling and the 3×3 convolution, 0.44× the multiply-adds. The 1×1 shortcut runs before the up-sampling.
- **Self-attention** in blocks of queries, so that each block's logits stay in cache through the softmax: at 64×64
  the logits of one frame are 16 MB; on `compact256` attention was ~17% of onnxruntime's time on one thread, and
  blocks halve its MatMuls' time (the frame: 4% faster).

Convolutions were ~78% of onnxruntime's time on the paper generator at 256 px, and the decomposed norms with the
layout reorders around them most of the rest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.layers import AdaIN, ResBlock, SelfAttention

EPS = 1e-5  # F.instance_norm's default, which AdaIN and nn.InstanceNorm2d use


def instance_norm(x: Tensor, scale: Tensor | None, shift: Tensor | None) -> Tensor:
    """(x − μ)/σ · scale + shift, statistics per sample and channel, scale and shift (C,) or (B, C).

    Means are taken over W, then over H: onnxruntime's InstanceNormalization (and a plain ReduceMean over H×W) sums
    a whole plane sequentially in fp32, which on landmark images (planes of mostly one value) is ~2e-4 off per norm
    at 256 px and ~1e-3 at G's output; two short sums are exact to ~1e-6.
    """
    mean = x.mean(3, keepdim=True).mean(2, keepdim=True)
    centered = x - mean
    factor = torch.rsqrt((centered * centered).mean(3, keepdim=True).mean(2, keepdim=True) + EPS)  # Mul, not Pow
    if scale is not None:
        factor = factor * scale.reshape(-1 if scale.dim() == 2 else 1, scale.shape[-1], 1, 1)
    out = centered * factor
    return out if shift is None else out + shift.reshape(-1 if shift.dim() == 2 else 1, shift.shape[-1], 1, 1)


class ExportNorm(nn.Module):
    """AdaIN (scale 1 + γ and shift β from ψ at run time) or affine instance norm (constant scale and shift)."""

    def __init__(self, source: AdaIN | nn.InstanceNorm2d):
        super().__init__()
        self.adaptive = isinstance(source, AdaIN)
        self.channels = source.channels if self.adaptive else source.num_features
        self.psi_size = 2 * self.channels if self.adaptive else 0
        affine = not self.adaptive and source.affine
        self.weight = source.weight.detach().clone() if affine else None
        self.bias = source.bias.detach().clone() if affine else None

    def forward(self, x: Tensor, psi: Tensor | None = None) -> Tensor:
        if not self.adaptive:
            return instance_norm(x, self.weight, self.bias)
        gamma, beta = psi.view(-1, 2, self.channels).unbind(1)  # psi: (B, 2C)
        return instance_norm(x, 1 + gamma, beta)


def pooled_kernel(conv: nn.Conv2d) -> nn.Conv2d:
    """The 4×4 stride-2 convolution equal to `conv` (3×3, padding 1) followed by 2×2 average pooling."""
    weight = conv.weight.detach()
    summed = sum(F.pad(weight, (dx, 1 - dx, dy, 1 - dy)) for dy in (0, 1) for dx in (0, 1)) / 4
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, 4, stride=2, padding=1, dtype=weight.dtype)
    fused.weight.data.copy_(summed)
    fused.bias.data.copy_(conv.bias.detach())
    return fused


class PooledShortcut(nn.Module):
    """shortcut(x) pooled, computed as shortcut(pool(x)): a 1×1 convolution commutes with average pooling."""

    def __init__(self, shortcut: nn.Module):
        super().__init__()
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(F.avg_pool2d(x, 2))


# Row (or column) taps of a 3×3 kernel seen from one output phase of a 2× nearest up-sampling: phase 0 reads the
# low-resolution rows i − 1 (tap 0) and i (taps 1 and 2); phase 1 reads rows i (taps 0 and 1) and i + 1 (tap 2).
PHASE_TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


class PhaseConv(nn.Module):
    """conv(up2(x)) for a 3×3 convolution with padding 1, as four 2×2 convolutions of x, one per output phase."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        weight = conv.weight.detach()
        taps = PHASE_TAPS.to(weight.dtype)
        kernels = [torch.einsum("ar,oirc,bc->oiab", taps[py], weight, taps[px])
                   for py in (0, 1) for px in (0, 1)]
        self.register_buffer("kernels", torch.stack(kernels))  # (4, O, I, 2, 2), phase = 2·py + px
        self.register_buffer("bias", conv.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        phases = [F.conv2d(F.pad(x, (1 - px, px, 1 - py, py)), self.kernels[2 * py + px], self.bias)
                  for py in (0, 1) for px in (0, 1)]
        # channel 4·o + 2·py + px -> pixel (2i + py, 2j + px) of channel o: one DepthToSpace, not a 6-D Transpose
        return F.pixel_shuffle(torch.stack(phases, 2).reshape(b, -1, h, w), 2)


class UpShortcut(nn.Module):
    """shortcut(up2(x)) as up2(shortcut(x)): a 1×1 convolution commutes with nearest up-sampling."""

    def __init__(self, shortcut: nn.Module):
        super().__init__()
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(self.shortcut(x), scale_factor=2.0, mode="nearest")


def resample_inside(block: ResBlock) -> None:
    """Moves a down- or up-sampling ResBlock's resampling into its convolutions and shortcut (see the module
    docstring), leaving a block whose own forward no longer resamples: it stays a ResBlock, called as before."""
    if block.resample == "down":
        block.conv2, block.skip = pooled_kernel(block.conv2), PooledShortcut(block.skip)
    elif block.resample == "up":
        block.conv1, block.skip = PhaseConv(block.conv1), UpShortcut(block.skip)
    block.resample = "none"


# Queries per block of attention logits: (queries × keys) fp32 values of about 1 MB, so that each block's softmax
# reads and writes the logits in cache instead of one 16 MB pass through memory at 64×64.
LOGITS_PER_BLOCK = 1 << 18


class ExportAttention(nn.Module):
    """SelfAttention with the queries taken in blocks: softmax is per query, so the blocks are independent."""

    def __init__(self, source: SelfAttention):
        super().__init__()
        self.query, self.key, self.value, self.out, self.gamma = (
            source.query, source.key, source.value, source.out, source.gamma
        )

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, HW, C/8)
        k = F.max_pool2d(self.key(x), 2).flatten(2)  # (B, C/8, HW/4)
        v = F.max_pool2d(self.value(x), 2).flatten(2)  # (B, C/2, HW/4)
        block = max(1, LOGITS_PER_BLOCK // k.shape[2])
        o = torch.cat([v @ torch.softmax(part @ k, dim=-1).transpose(1, 2) for part in q.split(block, 1)], 2)
        return x + self.gamma * self.out(o.view(b, -1, h, w))


def export_form(net: nn.Module) -> nn.Module:
    """Rewrites a baked network (plain conv weights, eval mode) in place into its export form and returns it."""
    for name, child in net.named_children():
        export_form(child)
        if isinstance(child, AdaIN | nn.InstanceNorm2d):
            setattr(net, name, ExportNorm(child))
        elif isinstance(child, ResBlock):
            resample_inside(child)
        elif isinstance(child, SelfAttention):
            setattr(net, name, ExportAttention(child))
    return net
