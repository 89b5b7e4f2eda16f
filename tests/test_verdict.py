"""The default renderer follows the model's own evaluation (issue: the neural renderer is the default only where it
beats the warp): the rule in export_onnx/verdict.py, what `heads export --evaluation` stores, and what `auto`
means in the pipeline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from base.errors import UserError
from export_onnx.verdict import MOUTH_GAIN, stored, verdict

METRICS = ("ssim", "lpips", "akd", "mouth", "eye", "sharpness", "mouth_ssim")


def _evaluation(folder: Path, gain: dict[str, float], fid: tuple[float, float] = (40.0, 50.0), clips: int = 12,
                model_id: str = "m1", label: str = "FF", at: dict[int, dict[str, float]] | None = None) -> Path:
    """A `heads evaluate` folder with warp and `label` rows (FF, or the mouth refiner's) at T = 1 and 8: that row =
    warp + gain[metric] (+ small per-clip noise), or at[T][metric] at a T of `at`; fid = (that row's, warp's)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows, table = [], []
    for t in (1, 8):
        for video in range(clips):
            warp = {m: float(rng.uniform(0.4, 0.9)) for m in METRICS}
            ff = {m: warp[m] + (at or {}).get(t, gain).get(m, 0.0) + float(rng.normal(0, 0.002)) for m in METRICS}
            rows += [{"video": f"v{video}", "method": "warp", "T": t, **warp},
                     {"video": f"v{video}", "method": label, "T": t, **ff}]
        table += [{"method": "warp", "T": t, "fid": fid[1]}, {"method": label, "T": t, "fid": fid[0]}]
    (folder / "per_video.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(folder / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["method", "T", "fid"])
        writer.writeheader()
        writer.writerows(table)
    (folder / "results.md").write_text("| method | T |\n")
    (folder / "metric-ssim.jsonl").write_text(json.dumps({"metric": "ssim", "model_id": model_id}) + "\n")
    return folder


def test_neural_is_the_default_only_where_it_beats_the_warp(tmp_path):
    better = verdict(_evaluation(tmp_path / "a", {"mouth_ssim": MOUTH_GAIN + 0.01}))
    assert better["renderer"] == "neural" and better["shots"] == [1, 8]
    small_gain = verdict(_evaluation(tmp_path / "b", {"mouth_ssim": MOUTH_GAIN / 2}))
    assert small_gain["renderer"] == "warp" and "mouth SSIM" in small_gain["reason"]
    worse_fid = verdict(_evaluation(tmp_path / "c", {"mouth_ssim": 0.05}, fid=(60.0, 50.0)))
    assert worse_fid["renderer"] == "warp" and "FID" in worse_fid["reason"]
    # Worse on landmark error beyond the noise of the paired per-clip differences: the warp stays.
    worse_akd = verdict(_evaluation(tmp_path / "d", {"mouth_ssim": 0.05, "akd": 0.05}))
    assert worse_akd["renderer"] == "warp" and "AKD" in worse_akd["reason"]
    # Sharpness is best at 1 (as sharp as the real frames): more high-frequency energy than the real face is noise,
    # so a renderer far above 1 is worse, not better, than one near it.
    noisy = verdict(_evaluation(tmp_path / "e", {"mouth_ssim": 0.05, "sharpness": 3.0}))
    assert noisy["renderer"] == "warp" and "sharpness" in noisy["reason"]


def test_the_mouth_refiner_is_judged_by_the_same_rule(tmp_path):
    """Its row ("warp + mouth") against the warp's, as the neural renderer's; the reason names what failed."""
    better = verdict(_evaluation(tmp_path / "a", {"mouth_ssim": MOUTH_GAIN + 0.01}, label="warp + mouth"))
    assert better["renderer"] == "mouth" and "mouth refiner beats the warp" in better["reason"]
    assert set(better["comparison"]) == {"mouth"}
    short = verdict(_evaluation(tmp_path / "b", {"mouth_ssim": MOUTH_GAIN / 2}, label="warp + mouth"))
    assert short["renderer"] == "warp" and "the mouth refiner: mouth SSIM" in short["reason"]
    assert verdict(_evaluation(tmp_path / "c", {}, label="still frame"))["renderer"] == "warp"  # nothing to judge


def test_each_t_is_also_judged_alone_and_the_photo_count_picks_the_row(tmp_path):
    """A refiner that fixes the one-photo mouth and adds little with eight photos: not the default over every T,
    but the default for a person with one or two photos (the T = 1 row is the nearest on a log scale)."""
    from demo.renderers import ModelFolder

    folder = _evaluation(tmp_path / "eval", {}, label="warp + mouth",
                         at={1: {"mouth_ssim": MOUTH_GAIN + 0.02}, 8: {"mouth_ssim": MOUTH_GAIN / 3}})
    result = verdict(folder)
    assert result["renderer"] == "warp" and "mouth SSIM" in result["reason"]
    assert result["by_shots"]["1"]["renderer"] == "mouth" and "at T = 1" in result["by_shots"]["1"]["reason"]
    assert result["by_shots"]["8"]["renderer"] == "warp" and "T=8" in result["by_shots"]["8"]["reason"]
    default = stored(folder, "m1", tmp_path / "model")
    model = ModelFolder(tmp_path / "model", {"graphs": {"mouth": {}}, "default": default})
    assert [model.default(n)[0] for n in (1, 2, 3, 8, 32)] == ["mouth", "mouth", "warp", "warp", "warp"]
    assert model.default(2)[1].endswith("(the T = 1 row, nearest to 2 photos)")
    assert model.default()[0] == "warp"  # no count: the verdict over every T
    assert model.defaults() == [(1, 2, "mouth"), (3, 32, "warp")]
    model.manifest["graphs"] = {}  # a folder without the refiner's graph never picks it
    assert model.defaults() == [(1, 32, "warp")]
    del model.manifest["default"]["by_shots"]  # exported before rows were judged alone: the overall verdict
    assert model.default(1)[0] == "warp"


def test_sharpness_compares_by_its_distance_from_one():
    from training.metrics.registry import METRICS as REGISTRY

    sharpness = REGISTRY["sharpness"]
    assert sharpness.header == "sharpness→1"
    assert sharpness.shortfall(1.0) == 0.0
    assert sharpness.shortfall(2.0) == pytest.approx(sharpness.shortfall(0.5))  # twice as sharp = half as sharp
    assert sharpness.shortfall(0.9) < sharpness.shortfall(1.3) < sharpness.shortfall(0.7)
    assert REGISTRY["ssim"].shortfall(0.8) < REGISTRY["ssim"].shortfall(0.7)
    assert REGISTRY["akd"].shortfall(1.0) < REGISTRY["akd"].shortfall(2.0)


def test_export_stores_the_verdict_and_refuses_another_models_table(tmp_path):
    folder = _evaluation(tmp_path / "eval", {"mouth_ssim": 0.05}, model_id="m1")
    out = tmp_path / "model"
    default = stored(folder, "m1", out)
    assert default["renderer"] == "neural" and (out / "evaluation.md").is_file()
    json.dumps(default, allow_nan=False)  # config.json stays strict JSON
    with pytest.raises(UserError, match="not m2"):
        stored(folder, "m2", out)
    assert stored(None, "m1", out)["renderer"] == "warp"


@pytest.mark.media
def test_auto_follows_the_model_folder_and_says_why(media, tmp_path):
    """`auto` (the default) picks the stored verdict's renderer and says why in one notice."""
    from dataclasses import replace

    from demo.animate_config import AnimateConfig
    from demo.pipeline import Pipeline
    from faces.config import LimitsConfig

    weights = Path(__file__).resolve().parents[1] / "weights"
    pipeline = Pipeline(weights=str(weights), device="cpu")
    config = AnimateConfig(driving=str(media / "LivePortrait/assets/examples/driving/d18.mp4"),
                           source=(str(media / "LivePortrait/assets/examples/driving/d19.jpg"),),
                           limits=LimitsConfig(max_frames=2), progress=False)
    assert config.renderer == "auto"
    expected, why = pipeline.model.default(1)
    persona, notices = pipeline.personalize(config)
    assert persona.description.startswith("neural" if expected == "neural" else "warp")
    assert ("mouth refiner" in persona.description) == (expected == "mouth")
    assert [n for n in notices if n.startswith("Renderer:")] == [f"Renderer: {expected}, because {why}."]
    pipeline.model.manifest["default"] = {"renderer": "neural", "reason": "it measured better"}
    persona, notices = pipeline.personalize(replace(config, max_side=600))  # another cache key
    assert persona.description.startswith("neural") and "because it measured better" in notices[-1]
