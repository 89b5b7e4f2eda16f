"""Cross-layer equalization of G's export form: per-channel rescalings that leave G's function unchanged but even out
the ranges of the channels that int8 quantizes together.

onnxruntime's int8 convolutions read and write activations quantized per tensor: one uint8 step size for all channels
of a map. After an AdaIN the channels of one map span very different ranges (its scale 1 + γ is per channel), so the
narrow channels get a few steps each; and a conv output that feeds an instance norm is quantized before the norm
divides each channel by its own σ, which magnifies the rounding of narrow channels. Two exact rewrites fix both:

- **norm → ReLU → conv**: channel c of the norm's output divided by s_c > 0 (its `gain`) and the conv's input
  channel c multiplied by s_c. ReLU commutes with a positive scale. s_c balances the activation's range against the
  weights' (Nagel et al., *Data-Free Quantization*, 2019): both become √(r_act · r_weight).
- **conv → instance norm**: the conv's output channel c mapped to m_c · (out − centre_c) by its weights and bias,
  and the norm's ε for that channel multiplied by m_c² (its `eps`), so that (x − μ)/√(σ² + ε) is unchanged. Instance
  norm removes any per-channel shift, and int8 weights are quantized per output channel, so m_c costs the weights
  nothing: every channel gets the same range, centred.

Ranges come from running the network on calibration inputs, so they follow the person (ψ′) a graph bakes in.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from export_onnx.forms import ExportNorm, PhaseConv
from training.generator import Generator
from training.layers import ResBlock

QUANTILE = 1e-4  # per-channel ranges ignore this fraction of values at each end, as int8 calibration does
SAMPLES = 1 << 16  # values per channel and image that the ranges are estimated from
LIMIT = 1e3  # no channel is rescaled by more than this factor (dead channels have no range to even out)


def _in_dim(conv: nn.Module) -> tuple[Tensor, int]:
    """The weight tensor and its input-channel axis: (O, I, k, k) for a conv, (4, O, I, 2, 2) for a PhaseConv."""
    return (conv.kernels, 2) if isinstance(conv, PhaseConv) else (conv.weight, 1)


class _Ranges:
    """Per-channel low and high quantiles of a module's input or output, the widest seen over all calls."""

    def __init__(self):
        self.low: Tensor | None = None
        self.high: Tensor | None = None

    def add(self, x: Tensor) -> None:
        flat = x.detach().float().transpose(0, 1).flatten(1)  # (C, B·H·W)
        if flat.shape[1] > SAMPLES:
            flat = flat[:, :: flat.shape[1] // SAMPLES]
        low, high = torch.quantile(flat, torch.tensor([QUANTILE, 1 - QUANTILE]), dim=1)
        self.low = low if self.low is None else torch.minimum(self.low, low)
        self.high = high if self.high is None else torch.maximum(self.high, high)


def _pairs(net: nn.Module) -> tuple[list[tuple[ExportNorm, nn.Module]], list[tuple[nn.Module, ExportNorm]]]:
    """(norm, conv reading it through a ReLU or directly) and (conv, instance norm reading it) pairs of the net."""
    into_conv, into_norm = [], []
    for m in net.modules():
        if isinstance(m, ResBlock) and isinstance(m.norm1, ExportNorm):
            into_conv += [(m.norm1, m.conv1), (m.norm2, m.conv2)]
            into_norm.append((m.conv1, m.norm2))
        elif isinstance(m, Generator) and isinstance(m.out_norm, ExportNorm):
            into_conv.append((m.out_norm, m.out_conv))
    return into_conv, into_norm


def _clamped(scale: Tensor, live: Tensor) -> Tensor:
    return torch.where(live, scale.clamp(1 / LIMIT, LIMIT), torch.ones_like(scale))


@torch.no_grad()
def equalize(net: nn.Module, inputs: list[tuple[Tensor, ...]]) -> nn.Module:
    """Rescales `net` (a network in export form, or a module holding one) in place; `inputs` are calibration
    batches of its forward arguments. Returns `net`, computing what it computed before to rounding."""
    into_conv, into_norm = _pairs(net)
    seen_in = {id(conv): _Ranges() for _, conv in into_conv}
    seen_out = {id(conv): _Ranges() for conv, _ in into_norm}
    hooks = [conv.register_forward_pre_hook(lambda m, a: seen_in[id(m)].add(a[0])) for _, conv in into_conv]
    hooks += [conv.register_forward_hook(lambda m, a, out: seen_out[id(m)].add(out)) for conv, _ in into_norm]
    try:
        for batch in inputs:
            net(*batch)
    finally:
        for hook in hooks:
            hook.remove()

    # Output rescaling first: it changes the weights' ranges that the input balancing below reads.
    for conv, norm in into_norm:
        seen = seen_out[id(conv)]
        centre, half = (seen.high + seen.low) / 2, (seen.high - seen.low) / 2
        live = half > 1e-6 * half.max()
        m = _clamped(torch.exp(torch.log(half[live]).mean()) / half, live)
        weight = conv.kernels if isinstance(conv, PhaseConv) else conv.weight
        shape = (1, -1, 1, 1, 1) if isinstance(conv, PhaseConv) else (-1, 1, 1, 1)
        weight.mul_(m.view(shape))
        conv.bias.copy_(m * (conv.bias - centre))
        norm.eps.mul_((m * m).view(1, -1, 1, 1))

    for norm, conv in into_conv:
        seen = seen_in[id(conv)]
        activation = torch.maximum(seen.high, -seen.low)
        weight, axis = _in_dim(conv)
        weights = weight.abs().transpose(0, axis).flatten(1).amax(1)
        live = (activation > 1e-6 * activation.max()) & (weights > 1e-6 * weights.max())
        s = _clamped(torch.sqrt(activation / weights), live)
        norm.gain.div_(s)
        shape = [1] * weight.dim()
        shape[axis] = -1
        weight.mul_(s.view(shape))
    return net
