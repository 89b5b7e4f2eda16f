"""E, G, D: shapes, the paper's sizes, spectral norm everywhere, AdaIN driven by P·ê, save/load."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from training.config import ModelConfig, from_dict, to_dict
from training.models import Networks


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("resolution", [64, 128, 256])
def test_shapes(resolution):
    cfg = ModelConfig(resolution, base_channels=8, max_channels=64, embed_dim=32, res_blocks=1)
    nets = Networks.build(cfg, num_videos=3)
    x = torch.rand(2, 3, resolution, resolution) * 2 - 1
    with torch.no_grad():
        e = nets.E(x, x)
        fake = nets.G(x, e)
        score, feats = nets.D(fake, x, nets.D.video_vector(torch.tensor([0, 2])))
    assert e.shape == (2, 32) and (e >= 0).all()  # sum pooling then ReLU
    assert fake.shape == (2, 3, resolution, resolution) and fake.abs().max() <= 1
    assert score.shape == (2,)
    assert feats[-1].shape[-1] == 4  # the last residual block works at 4×4


def test_embedding_without_relu_can_be_negative_and_old_configs_keep_it():
    """compact drops the ReLU on ê (it died in CPU runs); configs saved before the switch existed load with it."""
    assert ModelConfig.paper().embed_relu and not ModelConfig.compact().embed_relu
    saved = {k: v for k, v in to_dict(ModelConfig.compact()).items() if k != "embed_relu"}
    assert from_dict(ModelConfig, saved).embed_relu
    torch.manual_seed(0)
    cfg = ModelConfig(64, base_channels=8, max_channels=64, embed_dim=32, res_blocks=1, embed_relu=False)
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        e = Networks.build(cfg, num_videos=1).E(x, x)
    assert (e < 0).any() and (e > 0).any()


@pytest.mark.parametrize("guidance", ["none", "warp"])
def test_subpixel_generator_has_no_layer_at_full_resolution(guidance):
    """`subpixel`: a strided conv in, a sub-pixel conv out; a warp-guided one starts mostly warp in all four phases."""
    cfg = ModelConfig(64, 8, 64, 32, 1, subpixel=True, guidance=guidance)
    G = Networks.build(cfg, with_discriminator=False).G.eval()
    sides = []
    hooks = [m.register_forward_hook(lambda m, i, o: sides.append(o.shape[-1])) for m in G.modules()
             if isinstance(m, nn.Conv2d)]
    y = torch.rand(2, cfg.input_channels, 64, 64) * 2 - 1
    with torch.no_grad():
        fake = G(y, torch.randn(2, 32))
    for hook in hooks:
        hook.remove()
    assert fake.shape == (2, 3, 64, 64) and fake.abs().max() <= 1
    assert sides and max(sides) == 32
    if guidance == "warp":  # α = sigmoid(2) ≈ 0.88 everywhere at the start: the frame is mostly the warped reference
        assert (fake - y[:, 3:6]).abs().mean() < 0.25 * (y[:, 3:6].abs().mean())
    saved = {k: v for k, v in to_dict(ModelConfig.compact256()).items() if k != "subpixel"}
    assert not from_dict(ModelConfig, saved).subpixel  # configs saved before the switch rebuild their old G


def test_paper_sizes():
    """The paper at 256 px: G ≈ 38M, E ≈ 15M, D ≈ 20M parameters (D without its per-video table W)."""
    nets = Networks.build(ModelConfig.paper(), num_videos=1)
    g, e, d = count(nets.G), count(nets.E), count(nets.D) - nets.D.W.numel()
    assert 36e6 < g < 40e6, g
    assert 14e6 < e < 16e6, e
    assert 19e6 < d < 21e6, d


def test_spectral_norm_on_every_conv_and_linear():
    nets = Networks.build(ModelConfig.tiny(), num_videos=2)
    layers = [m for net in nets.modules().values() for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(layers) > 20
    for layer in layers:
        assert parametrize.is_parametrized(layer, "weight"), layer
        names = [type(p).__name__ for p in layer.parametrizations.weight]
        assert "_SpectralNorm" in names, names


def test_adain_parameters_flow_from_P():
    torch.manual_seed(0)
    nets = Networks.build(ModelConfig.tiny(), num_videos=1)
    G = nets.G.eval()
    y = torch.rand(1, 3, 64, 64) * 2 - 1
    e1, e2 = torch.rand(1, 64), torch.rand(1, 64)
    with torch.no_grad():
        assert not torch.allclose(G(y, e1), G(y, e2), atol=1e-4)
    G(y, e1).square().mean().backward()
    p_grad = G.P.parametrizations.weight.original.grad
    assert p_grad is not None and p_grad.abs().sum() > 0
    # ψ is the only path from ê into G: with fixed ψ, ê has no influence.
    psi = G.psi(e1).detach()
    with torch.no_grad():
        assert torch.equal(G.render(y, psi), G.render(y, psi.clone()))
    assert G.psi_size == sum(m.psi_size for m in G.adaptive)


def test_resize_videos_keeps_rows():
    nets = Networks.build(ModelConfig.tiny(), num_videos=3)
    old = nets.D.W.detach().clone()
    nets.D.resize_videos(5)
    assert nets.D.num_videos == 5 and torch.equal(nets.D.W[:3], old)
    nets.D.resize_videos(2)
    assert torch.equal(nets.D.W, old[:2])


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    nets = Networks.build(ModelConfig.tiny(), num_videos=4)
    y = torch.rand(2, 3, 64, 64) * 2 - 1
    nets.save_pretrained(tmp_path / "model")
    loaded = Networks.from_pretrained(tmp_path / "model")
    assert loaded.cfg == nets.cfg and loaded.D.num_videos == 4
    for a, b in zip(nets.modules().values(), loaded.modules().values(), strict=True):
        a.eval(), b.eval()
    with torch.no_grad():
        e = nets.E(y, y)
        assert torch.equal(e, loaded.E(y, y))
        assert torch.equal(nets.G(y, e), loaded.G(y, e))  # deterministic in eval mode, bit-exact after reload
        assert torch.equal(nets.G(y, e), nets.G(y, e))


def test_load_refuses_incomplete_folder(tmp_path):
    nets = Networks.build(ModelConfig.tiny(), num_videos=1)
    nets.save_pretrained(tmp_path)
    (tmp_path / "G.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="G.safetensors"):
        Networks.from_pretrained(tmp_path)


def test_warp_guide_of_a_reference_onto_itself_is_that_reference():
    from faces.guide import warp_guide
    from training.data import SyntheticEpisodes, to_uint8

    ep = SyntheticEpisodes(1, 64, 3)[0]
    frames, points = to_uint8(ep["frames"]), ep["points"].double().numpy()
    guide = warp_guide(frames[1:], points[1:], points[2])  # target = reference 2's own landmarks
    assert guide.shape == (64, 64, 4) and guide.dtype == np.float32
    assert (guide[..., 3] == 1).all()  # every pixel comes from inside the source
    assert np.abs((guide[..., :3] + 1) * 127.5 - frames[2]).mean() < 1.0
