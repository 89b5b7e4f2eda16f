"""The mouth refiner (training/mouth_refiner.py): a correction of the warp's mouth on a mouth-centred crop, added
back at the image's own resolution. Untrained it returns the warp exactly (in PyTorch, through ONNX and through the
app's renderer); trained, it changes nothing outside the mouth; its loss is the metric it is judged by; and it goes
from `heads train-mouth` through `heads evaluate` and `heads export` to `heads animate --renderer mouth`."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch

from faces.mouth_crop import CROP, MouthCrop
from faces.regions import mouth_box
from training.losses import ssim_loss
from training.metrics.ssim import ssim
from training.mouth_refiner import GROW, MouthRefiner, refine

CLIPS = ("LivePortrait/assets/examples/driving/d18.mp4", "LivePortrait/assets/examples/driving/d19.mp4")


def _mouth(scale: float = 1.0, opening: float = 6.0) -> np.ndarray:
    """68 points whose lips are ellipses about (100, 120) · scale, the inner ones `opening` px apart (at scale 1);
    the rest of the face a ring around them (the crop reads the lips alone)."""
    points = np.zeros((68, 2))
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    points[:48] = np.c_[100 + 60 * np.cos(angles), 100 + 70 * np.sin(angles)]
    outer, inner = (np.linspace(0, 2 * np.pi, n, endpoint=False) for n in (12, 8))
    points[48:60] = np.c_[100 + 24 * np.cos(outer), 120 + (opening / 2 + 8) * np.sin(outer)]
    points[60:68] = np.c_[100 + 16 * np.cos(inner), 120 + opening / 2 * np.sin(inner)]
    return points * scale


def _trained(seed: int = 0) -> MouthRefiner:
    """A refiner whose last layer is no longer zero, as after training."""
    torch.manual_seed(seed)
    model = MouthRefiner()
    torch.nn.init.normal_(model.out.weight, std=0.05)
    torch.nn.init.normal_(model.out.bias, std=0.2)
    return model.eval()


def test_an_untrained_refiner_returns_the_warp_exactly():
    image = np.random.default_rng(0).integers(0, 256, (240, 200, 3), np.uint8)
    np.testing.assert_array_equal(refine(MouthRefiner().eval(), image[None], _mouth()[None])[0], image)


def test_the_crop_is_the_metrics_mouth_box_at_any_resolution():
    """The box is mouth SSIM's; at twice the resolution it is twice the size, and the refiner sees the same crop."""
    small, large = MouthCrop.at(_mouth(), (240, 200)), MouthCrop.at(_mouth(2.0), (480, 400))
    assert small.box == mouth_box(_mouth(), (240, 200), min_side=8)
    assert abs(large.side - 2 * small.side) <= 2
    masks = small.masks(_mouth())
    assert masks.shape == (2, CROP, CROP) and masks.dtype == np.float32 and 0.0 <= masks.min() <= masks.max() <= 1.0
    inner, outer = masks
    assert inner.sum() > 10 and np.all(inner <= outer + 1e-6)  # the inner lips lie inside the outer ones
    # The same shape, up to the boxes' rounding to whole pixels and anti-aliasing.
    difference = np.abs(large.masks(_mouth(2.0)) - masks)
    assert difference.max() < 0.3 and difference.mean() < 0.01
    # Painted colour centred on the mouth: the crop shows it at the centre at both resolutions.
    for scale, where in ((1.0, small), (2.0, large)):
        image = np.zeros((int(240 * scale), int(200 * scale), 3), np.uint8)
        image[int(115 * scale):int(125 * scale), int(95 * scale):int(105 * scale)] = 255
        crop = where.cut(image)
        assert crop.shape == (CROP, CROP, 3) and crop[CROP // 2, CROP // 2].min() > 200 and crop[2, 2].max() == 0


def test_a_trained_correction_stays_within_the_lips_and_the_box():
    model = _trained()
    rng = np.random.default_rng(1)
    where = MouthCrop.at(_mouth(), (240, 200))
    lips = torch.from_numpy(where.masks(_mouth())[None])
    warp = torch.from_numpy(rng.uniform(-1, 1, (1, 3, CROP, CROP)).astype(np.float32))
    with torch.no_grad():
        correction = model(warp, lips)
    region = torch.nn.functional.max_pool2d(lips[:, 1:2], 2 * GROW + 1, 1, GROW)
    assert correction.abs().sum() > 0
    assert torch.all(correction[region.expand_as(correction) == 0] == 0)  # nothing outside the grown outer lips
    assert torch.all((warp + correction).abs() <= 1.0 + 1e-6)
    image = rng.integers(0, 256, (240, 200, 3), np.uint8)
    out = refine(model, image[None], _mouth()[None])[0]
    x0, y0, x1, y1 = where.box
    changed = np.argwhere(np.any(out != image, -1))
    assert len(changed) and changed[:, 0].min() >= y0 and changed[:, 0].max() < y1
    assert changed[:, 1].min() >= x0 and changed[:, 1].max() < x1


def test_the_loss_is_the_metric():
    """1 − ssim_loss in float32 on [-1, 1] tensors is heads evaluate's SSIM (float64 on uint8) of the same images."""
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (3, 40, 40, 3), np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    tensor = [torch.from_numpy(v).permute(0, 3, 1, 2).float() / 127.5 - 1 for v in (a, b)]
    assert 1.0 - ssim_loss(*tensor).item() == pytest.approx(float(ssim(a, b).mean()), abs=1e-5)
    assert ssim_loss(tensor[0], tensor[0]).item() == pytest.approx(0.0, abs=1e-6)


def test_load_refuses_a_folder_that_is_not_a_refiner(tmp_path):
    from base.errors import UserError
    from training.mouth_refiner import load

    with pytest.raises(UserError, match="not a mouth refiner folder"):
        load(tmp_path)
    (tmp_path / "config.json").write_text('{"kind": "something else"}')
    with pytest.raises(UserError, match="heads train-mouth"):
        load(tmp_path)


@pytest.mark.media
@pytest.mark.slow
def test_train_evaluate_export_and_animate(media, tmp_path):
    """`heads train-mouth` on a prepared folder; `heads evaluate --methods warp mouth` scores it beside the warp;
    `heads export --mouth-refiner` writes mouth.onnx; the app's `mouth` renderer then corrects the warp's mouth at
    the photo's resolution as PyTorch does, and changes nothing outside the mouth."""
    from demo.animate_config import AnimateConfig
    from demo.pipeline import Pipeline
    from demo.renderers import MouthRenderer
    from export_onnx.config import ExportConfig
    from export_onnx.release import export
    from faces.config import CropConfig, LimitsConfig, PrepareConfig
    from faces.prepare import prepare
    from heads.cli import main
    from training.checkpoint import read_config
    from training.config import ModelConfig
    from training.models import Networks
    from training.mouth_refiner import load

    src = tmp_path / "src"
    src.mkdir()
    for name, clip in zip("ab", CLIPS, strict=True):
        (src / f"{name}.mp4").symlink_to(media / clip)
    for split, fraction in (("train", 0.0), ("test", 1.0)):
        prepare(PrepareConfig(src, tmp_path / split, max_frames=16, test_fraction=fraction, progress=False,
                              crop=CropConfig(resolution=64)))
    main(["train-mouth", "--data", str(tmp_path / "train"), "--out", str(tmp_path / "mouth"), "--steps", "4",
          "--batch", "4", "--shots", "1", "--min-frames", "8", "--per-clip", "4", "--no-progress"])
    assert (tmp_path / "mouth" / "mouth_refiner.safetensors").is_file()
    assert (tmp_path / "mouth" / "train_log.jsonl").read_text().count("loss") == 1

    Networks.build(replace(ModelConfig.tiny(), attention_down=16, attention_up=32)).save_pretrained(tmp_path / "m")
    out = tmp_path / "eval"
    main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "test"), "--shots", "1",
          "--holdout", "4", "--methods", "warp", "mouth", "--mouth-refiner", str(tmp_path / "mouth"),
          "--metrics", "ssim", "mouth_ssim", "--out", str(out), "--no-progress"])
    table = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert [r["method"] for r in table] == ["warp", "warp + mouth"] and all(r["videos"] == "2" for r in table)
    assert abs(float(table[0]["ssim"]) - float(table[1]["ssim"])) < 0.05  # a correction of the mouth alone

    model = _trained()
    from training.mouth_refiner import save

    save(model, tmp_path / "mouth", read_config(tmp_path / "mouth")["training"])  # as trained, other weights
    export(ExportConfig(model=tmp_path / "m", out=tmp_path / "onnx", variants=()))
    made = (tmp_path / "onnx" / "generator.onnx").stat().st_mtime_ns
    # Adding the refiner to the exported folder keeps its graphs as they are, and lists them again.
    manifest = export(ExportConfig(model=tmp_path / "m", out=tmp_path / "onnx", generic=False, variants=(),
                                   mouth_refiner=tmp_path / "mouth"))
    assert set(manifest["graphs"]) == {"embedder", "generator", "mouth"}
    assert (tmp_path / "onnx" / "generator.onnx").stat().st_mtime_ns == made
    assert manifest["mouth_refiner"]["training"]["data"] == "train"  # the folder's name, not the machine's path
    assert manifest["graphs"]["mouth"]["fp32"]["parity_max_abs"] < 1e-4
    config = AnimateConfig(driving=str(media / CLIPS[0]), source=(str(media / CLIPS[1].replace(".mp4", ".jpg")),),
                           out=str(tmp_path / "o.mp4"), renderer="mouth", limits=LimitsConfig(max_frames=2),
                           progress=False)
    pipeline = Pipeline(weights=str(tmp_path / "onnx"), device="cpu")
    persona, _ = pipeline.personalize(config)
    warp, _ = pipeline.personalize(replace(config, renderer="warp"))
    assert isinstance(persona.renderer, MouthRenderer) and "mouth refiner" in persona.description
    targets = persona.renderer.sources.points[:1] + np.r_[[0.0] * 62 + [3.0] * 3 + [0.0] * 3][None, :, None] * [0, 1]
    refined, plain = persona.renderer.render(targets)[0], warp.renderer.render(targets)[0]
    expected = refine(load(tmp_path / "mouth"), plain[None], targets[:1])[0]
    assert np.abs(refined.astype(int) - expected).max() <= 1  # ONNX and PyTorch agree to a grey level
    x0, y0, x1, y1 = MouthCrop.at(targets[0], plain.shape).box
    outside = np.ones(plain.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.any(refined != plain) and np.array_equal(refined[outside], plain[outside])
    assert pipeline.run(config).frames == 2


def test_the_mouth_method_asks_for_its_refiner():
    from base.errors import ConfigError
    from training.fewshot_config import EvaluateConfig

    with pytest.raises(ConfigError, match="--mouth-refiner"):
        EvaluateConfig(model="m", data="d", methods=("warp", "mouth"))


def test_the_cross_identity_mode_runs_the_refiner_over_the_warp():
    """`heads evaluate-cross --methods mouth`: the photo's warp with its mouth corrected; an untrained refiner
    gives the warp's frames back, a trained one changes them only about the mouth."""
    from training.data import SyntheticEpisodes, to_uint8
    from training.evaluate_cross import Target, animate

    episode = SyntheticEpisodes(1, 64, 3, seed=5)[0]
    frames, points = to_uint8(episode["frames"]), episode["points"].double().numpy()
    target = Target("p", "photo", "x", frames[0], points[0])
    warp = animate("warp", None, target, points[1:])
    np.testing.assert_array_equal(animate("mouth", None, target, points[1:], MouthRefiner().eval()), warp)
    refined = animate("mouth", None, target, points[1:], _trained())
    for image, plain, p in zip(refined, warp, points[1:], strict=True):
        x0, y0, x1, y1 = MouthCrop.at(p, plain.shape).box
        outside = np.ones(plain.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(image[outside], plain[outside])


def test_a_damaged_mouth_graph_leaves_the_rest_of_the_model_usable(tmp_path):
    """The refiner is an optional part of a model folder: a broken mouth.onnx is reported, not fatal."""
    import shutil
    from pathlib import Path

    from demo.pipeline import Pipeline

    weights = Path(__file__).resolve().parents[1] / "weights"
    shutil.copy(weights / "config.json", tmp_path / "config.json")
    (tmp_path / "mouth.onnx").write_text("not a graph\n")
    pipeline = Pipeline(weights=str(tmp_path), device="cpu")
    assert pipeline.model is not None and pipeline.mouth is None
    assert "mouth.onnx" in pipeline.mouth_problem


def test_masks_follow_a_box_cut_short_by_a_small_image():
    """A box wider than the image is clipped to it (no longer square): the masks still land on the lips."""
    points = _mouth(0.3) - [0.0, 26.0]  # lips about 14 x 7 px about (30, 10); their 23-px box cannot fit 20 rows
    where = MouthCrop.at(points, (20, 80))
    x0, y0, x1, y1 = where.box
    assert y1 - y0 == 20 and x1 - x0 > 20
    outer = where.masks(points)[1]
    ys, xs = np.nonzero(outer > 0.5)
    centre = (points[48:60].mean(0) - [x0, y0]) * [CROP / (x1 - x0), CROP / (y1 - y0)]
    assert len(ys) and abs(xs.mean() - centre[0]) < 2 and abs(ys.mean() - centre[1]) < 2
