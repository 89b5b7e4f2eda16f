"""Refining models (guidance "refine"): G's correction of the warp and its weight α added to the warp at the photo's own
resolution, within the region where the warp fails. An untrained one must give the warp back exactly, in PyTorch
and through ONNX, the engine and the app's pipeline; a trained α must change only the pixels it covers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from contract.graphs import REFINEMENT
from demo.animate_config import AnimateConfig
from demo.pipeline import Pipeline
from demo.renderers import RefiningRenderer
from faces.config import LimitsConfig
from faces.crop import CropTransform
from training.config import ModelConfig
from training.generator import Generator

EXAMPLES = "LivePortrait/assets/examples"
PHOTO = f"{EXAMPLES}/driving/d19.jpg"
CLIP = f"{EXAMPLES}/driving/d18.mp4"


def _refining(cfg: ModelConfig) -> ModelConfig:
    return replace(cfg, guidance="refine")


def test_an_untrained_refining_generator_returns_the_warp_exactly():
    G = Generator(_refining(ModelConfig.tiny()))
    y = torch.rand(3, G.cfg.input_channels, G.cfg.resolution, G.cfg.resolution) * 2 - 1
    psi = torch.randn(1, G.psi_size)
    region = torch.ones(3, 1, G.cfg.resolution, G.cfg.resolution)
    for training in (True, False):
        G.train(training)
        assert torch.equal(G.render(y, psi, region), y[:, 3:6])
        refinement = G.refinement(y, psi)
        assert refinement.shape == (3, 4, G.cfg.resolution, G.cfg.resolution)
        assert torch.all(refinement[:, :3] == 0)  # the correction starts at zero
        assert refinement[:, 3].mean() > 0.5  # α starts mostly on: the correction gets gradient at once
    with pytest.raises(ValueError, match="region"):
        G.render(y, psi)


def test_the_correction_learns_from_the_first_step_and_only_within_the_region():
    """The correction's last weights start at zero, yet the loss reaches them; outside the region the frame is the
    warp whatever G outputs."""
    G = Generator(_refining(ModelConfig.tiny())).train()
    R = G.cfg.resolution
    y = torch.rand(2, G.cfg.input_channels, R, R) * 2 - 1
    region = torch.zeros(2, 1, R, R)
    region[..., R // 2 :, :] = 1.0
    G.render(y, torch.randn(1, G.psi_size), region).abs().mean().backward()
    rows = G.out_conv.parametrizations.weight.original.grad.view(4, -1)
    assert rows[:3].abs().sum() > 0
    with torch.no_grad():
        G.out_conv.bias.view(4, -1)[:3] = 0.5  # a trained correction
        frame = G.render(y, torch.randn(1, G.psi_size), region)
    assert torch.equal(frame[..., : R // 2, :], y[:, 3:6, : R // 2, :])
    assert not torch.equal(frame[..., R // 2 :, :], y[:, 3:6, R // 2 :, :])


def test_the_region_is_the_inner_mouth_grown_and_feathered():
    from faces.guide import REGION_MARGIN, refine_region
    from faces.motion import MEAN_FACE_3D

    face = MEAN_FACE_3D[:, :2] - MEAN_FACE_3D[:, :2].min(0)
    points = face / face.max() * 90 + 19  # a 128-px face
    points[66:68, 1] += 6  # the mouth open
    points[65, 1] += 6
    region = refine_region(points, (128, 128))
    assert region.shape == (128, 128) and region.dtype == np.float32
    mouth = np.rint(points[60:68].mean(0)).astype(int)
    assert region[mouth[1], mouth[0]] == 1.0 and (region[:, :6] == 0.0).all()
    assert region[int(points[30, 1]), int(points[30, 0])] == 0.0  # the nose tip: the warp's
    assert region[int(points[36, 1]), int(points[36, 0])] == 0.0  # an eye corner
    ramp = region[mouth[1], mouth[0]:]  # from the mouth's centre to the right edge
    assert (np.diff(ramp) <= 0).all() and ramp[-1] == 0.0
    assert ((ramp > 0) & (ramp < 1)).sum() >= 2  # feathered, not a hard step
    assert REGION_MARGIN > 0


def test_blend_is_the_paste_and_leaves_uncovered_pixels_alone():
    """CropTransform.blend with weight 0 returns the image unchanged; weight 1 inside writes the layer."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 120, 3), np.uint8)
    view = CropTransform(0.5, (30.0, 20.0), 32)  # a 64-px square of the image at 32 px
    layer = np.concatenate([np.full((32, 32, 3), 200.0, np.float32), np.zeros((32, 32, 1), np.float32)], -1)
    np.testing.assert_array_equal(view.blend(layer, image), image)
    layer[..., 3] = 1.0
    out = view.blend(layer, image)
    assert (out[30:74, 40:84] == 200).all()  # well inside the square
    np.testing.assert_array_equal(out[:, :25], image[:, :25])  # outside it


def test_add_changes_only_where_weighted():
    """CropTransform.add: weight 0 (or a zero change) returns the image unchanged; weight 1 adds the change inside."""
    rng = np.random.default_rng(1)
    image = rng.integers(40, 200, (90, 120, 3), np.uint8)
    view = CropTransform(0.5, (30.0, 20.0), 32)
    layer = np.concatenate([np.full((32, 32, 3), 30.0, np.float32), np.zeros((32, 32, 1), np.float32)], -1)
    np.testing.assert_array_equal(view.add(layer, image), image)
    layer[..., 3] = 1.0
    out = view.add(layer, image)
    np.testing.assert_array_equal(out[30:74, 40:84], image[30:74, 40:84] + 30)
    np.testing.assert_array_equal(out[:, :25], image[:, :25])


@pytest.fixture(scope="module")
def refining_model(tmp_path_factory) -> Path:
    from export_onnx.config import ExportConfig
    from export_onnx.release import export
    from training.models import Networks

    root = tmp_path_factory.mktemp("refine")
    Networks.build(_refining(ModelConfig.tiny())).save_pretrained(root / "torch")
    export(ExportConfig(model=root / "torch", out=root / "onnx", variants=()))
    return root / "onnx"


@pytest.mark.media
def test_an_untrained_refining_model_animates_exactly_like_the_warp(refining_model, media, tmp_path):
    """Through ONNX, the engine and the pipeline, at the photo's own resolution: frame for frame the warp's."""
    import onnx

    graph = onnx.load(refining_model / "generator.onnx")
    assert [o.name for o in graph.graph.output] == [REFINEMENT]
    config = AnimateConfig(driving=str(media / CLIP), source=(str(media / PHOTO),), out=str(tmp_path / "o.mp4"),
                           renderer="neural", limits=LimitsConfig(max_frames=4), progress=False)
    neural, _ = Pipeline(weights=str(refining_model), device="cpu").personalize(config)
    warp, _ = Pipeline(weights=None, device="cpu").personalize(replace(config, renderer="warp"))
    assert isinstance(neural.renderer, RefiningRenderer)
    assert neural.canvas is not None and neural.canvas.image.shape == (720, 720, 3)  # the photo, not 128 px
    targets = warp.renderer.sources.points[:1] + np.array([[[0.0, 0.0]], [[2.0, -1.0]]])[:, :, :] * np.r_[
        [0.0] * 48 + [1.0] * 20][None, :, None]  # the same face, then the mouth moved
    np.testing.assert_array_equal(neural.renderer.render(targets), warp.renderer.render(targets))
    np.testing.assert_array_equal(neural.compose(neural.renderer.render(targets[:1])[0]), neural.canvas.image)


def test_a_refining_run_warm_starts_from_a_blending_model_at_the_warp(tmp_path):
    """`heads train --init`: E, G and D (but W) from a blending model; G's features and α's weights kept, the
    correction's last weights zeroed, and the focus-weighted L1 and the α penalty train without error. Another
    architecture is refused in one sentence."""
    from base.errors import UserError
    from training.checkpoint import list_checkpoints
    from training.config import DataConfig, LossConfig, TrainConfig
    from training.models import Networks
    from training.train import train, warm_start

    blending = replace(ModelConfig.tiny(), guidance="warp")
    source = Networks.build(blending, num_videos=5)
    source.save_pretrained(tmp_path / "blend")
    cfg = TrainConfig(model=_refining(ModelConfig.tiny()), loss=LossConfig(perceptual=(), l1=1.0, focus=4.0,
                      alpha=0.05, synthesis=1.0), data=DataConfig(synthetic_videos=2), k=2, batch=2, steps=2,
                      outdir=str(tmp_path / "runs"), checkpoint_every=2, image_every=0, progress=False,
                      init=str(tmp_path / "blend"))
    nets = Networks.build(cfg.model, num_videos=2)
    warm_start(nets, cfg.init)
    for key, value in source.G.state_dict().items():
        if "out_conv" not in key:
            assert torch.equal(nets.G.state_dict()[key], value), key
    assert torch.all(nets.G.out_conv.parametrizations.weight.original.view(4, -1)[:3] == 0)
    assert torch.equal(nets.G.out_conv.parametrizations.weight.original.view(4, -1)[3],
                       source.G.out_conv.parametrizations.weight.original.view(4, -1)[3])
    assert nets.D.W.shape == (2, cfg.model.embed_dim)
    run = train(cfg)
    assert Networks.from_pretrained(list_checkpoints(run)[-1]).cfg.refines
    with pytest.raises(UserError, match="differs"):
        warm_start(Networks.build(replace(cfg.model, res_blocks=2)), cfg.init)
