"""Cross-layer equalization (export_onnx.equalize): G computes the same frames, with its channel ranges evened out."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from export_onnx.equalize import _Ranges, equalize
from export_onnx.export import bake
from export_onnx.forms import ExportNorm, export_form
from export_onnx.samples import realistic
from training.config import ModelConfig
from training.layers import ResBlock
from training.models import Networks


class Person(nn.Module):
    """G′(y) with one person's ψ fixed, its channels far apart in scale as a trained G's are."""

    def __init__(self, G: nn.Module, psi: Tensor):
        super().__init__()
        self.G, self.psi = G, psi

    def forward(self, y: Tensor) -> Tensor:
        return self.G.render(y, self.psi)


def _setup():
    torch.manual_seed(0)
    G = Networks.build(ModelConfig.tiny(), with_discriminator=False).G.eval()
    psi = torch.randn(1, G.psi_size) * 3
    y = torch.from_numpy(realistic(G.cfg, 6, seed=1)["landmarks"])
    return G, psi, y


def _conv1_ranges(net: nn.Module, y: Tensor) -> list[Tensor]:
    """Per-channel half-ranges of each residual block's first conv output, the input of its second norm."""
    blocks = [m for m in net.modules() if isinstance(m, ResBlock) and isinstance(m.norm2, ExportNorm)]
    seen = [_Ranges() for _ in blocks]
    pairs = zip(blocks, seen, strict=True)
    hooks = [b.conv1.register_forward_hook(lambda m, a, out, r=r: r.add(out)) for b, r in pairs]
    with torch.no_grad():
        net(y)
    for hook in hooks:
        hook.remove()
    return [(r.high - r.low) / 2 for r in seen]


def test_equalized_generator_renders_the_same_frames():
    G, psi, y = _setup()
    with torch.no_grad():
        expected = G.render(y, psi)
        person = equalize(Person(export_form(bake(G)), psi), [(y[:3],), (y[3:],)])
        torch.testing.assert_close(person(y), expected, rtol=0, atol=2e-5)
    norms = [m for m in person.modules() if isinstance(m, ExportNorm)]
    assert any(not torch.allclose(n.gain, torch.ones_like(n.gain)) for n in norms)  # it did rescale
    assert any(not torch.allclose(n.eps, torch.full_like(n.eps, 1e-5)) for n in norms)


def test_conv_outputs_into_a_norm_get_one_range():
    G, psi, y = _setup()
    plain = Person(export_form(bake(G)), psi)
    before = _conv1_ranges(plain, y)
    equalized = equalize(Person(export_form(bake(G)), psi), [(y,)])
    after = _conv1_ranges(equalized, y)
    spread = [float(r.max() / r.min()) for r in before]
    assert max(spread) > 1.5  # something to even out
    for r in after:
        assert float(r.max() / r.min()) < 1.01  # calibrated on these inputs: equal to rounding


def test_norm_into_conv_balances_activation_and_weight_ranges():
    """Nagel et al.'s balance: each channel's activation range equals its input weights' range afterwards."""
    G, psi, y = _setup()
    equalized = equalize(Person(export_form(bake(G)), psi), [(y,)])
    block = next(m for m in equalized.modules() if isinstance(m, ResBlock) and isinstance(m.norm2, ExportNorm))
    seen = _Ranges()
    hook = block.conv2.register_forward_pre_hook(lambda m, a: seen.add(a[0]))
    with torch.no_grad():
        equalized(y)
    hook.remove()
    activation = torch.maximum(seen.high, -seen.low)
    weights = block.conv2.weight.abs().transpose(0, 1).flatten(1).amax(1)
    torch.testing.assert_close(activation, weights, rtol=1e-3, atol=1e-6)
