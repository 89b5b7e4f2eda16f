"""Export-time forms (export_onnx.forms): each rewrite computes what the layer it replaces computes."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from export_onnx.export import bake
from export_onnx.forms import ExportNorm, PhaseConv, export_form, pooled_kernel
from training.config import ModelConfig
from training.layers import AdaIN, ResBlock
from training.models import Networks


@pytest.mark.parametrize("size", [(6, 7), (8, 8)])
def test_phase_convolutions_equal_a_convolution_of_the_upsampled_map(size):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 5, 3, padding=1).double()
    x = torch.randn(2, 8, *size, dtype=torch.double)
    with torch.no_grad():
        expected = conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        torch.testing.assert_close(PhaseConv(conv)(x), expected, rtol=0, atol=1e-12)


def test_strided_kernel_equals_convolution_then_average_pooling():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 5, 3, padding=1).double()
    x = torch.randn(2, 8, 10, 6, dtype=torch.double)
    with torch.no_grad():
        torch.testing.assert_close(pooled_kernel(conv)(x), F.avg_pool2d(conv(x), 2), rtol=0, atol=1e-12)


def test_norms_equal_adain_and_instance_norm():
    torch.manual_seed(0)
    x, psi = torch.randn(3, 6, 9, 9) * 3 + 2, torch.randn(3, 12)
    norm = nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
        torch.testing.assert_close(ExportNorm(AdaIN(6))(x, psi), AdaIN(6)(x, psi), rtol=0, atol=1e-5)
        torch.testing.assert_close(ExportNorm(norm)(x), norm(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("subpixel", [False, True])
def test_export_form_renders_what_the_networks_render(subpixel):
    torch.manual_seed(0)
    nets = Networks.build(replace(ModelConfig.tiny(), subpixel=subpixel), with_discriminator=False)
    G, E = nets.G.eval(), nets.E.eval()
    y, x, e = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1, torch.randn(2, G.cfg.embed_dim)
    with torch.no_grad():
        expected_G, expected_E = G(y, e), E(x, y)
        formed_G, formed_E = export_form(bake(G)), export_form(bake(E))
        torch.testing.assert_close(formed_G(y, e), expected_G, rtol=0, atol=1e-5)
        torch.testing.assert_close(formed_E(x, y), expected_E, rtol=0, atol=1e-4)
        torch.testing.assert_close(G(y, e), expected_G, rtol=0, atol=0)  # the original is untouched
    blocks = [m for net in (formed_G, formed_E) for m in net.modules() if isinstance(m, ResBlock)]
    assert blocks and all(b.resample == "none" for b in blocks)
    assert not any(isinstance(m, AdaIN | nn.InstanceNorm2d) for m in formed_G.modules())
