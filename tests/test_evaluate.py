"""`heads evaluate`: frame splits, baselines, tables, and the whole protocol on two real clips."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from base.errors import ConfigError
from faces.config import CropConfig, PrepareConfig
from faces.prepare import prepare
from heads.cli import main
from training.config import ModelConfig
from training.data import SyntheticEpisodes, to_uint8
from training.evaluate import (
    COLUMNS,
    Clip,
    HoldoutWarps,
    append_jsonl,
    load_clips,
    plain_warp_frames,
    score,
    still_frames,
    write_tables,
)
from training.evaluate_cross import MOVING_MOUTH, Target, assign
from training.fewshot_config import METRICS, EvaluateConfig
from training.metrics.registry import METRICS as REGISTRY
from training.models import Networks
from training.protocol import split_frames

CLIPS = ("LivePortrait/assets/examples/driving/d18.mp4", "LivePortrait/assets/examples/driving/d19.mp4")


def synthetic_clip(count: int = 12) -> Clip:
    episode = SyntheticEpisodes(1, 64, count - 1, seed=5)[0]
    return Clip("cartoon", to_uint8(episode["frames"]), episode["points"].double().numpy(),
                to_uint8(episode["landmarks"]))


def test_split_frames_keeps_personalization_and_holdout_apart():
    personal, holdout = split_frames(80, (1, 8, 32), 32)
    assert [len(personal[t]) for t in (1, 8, 32)] == [1, 8, 32]
    assert all(p[0] == 0 and p.max() < 40 for p in personal.values())  # first half, first frame always in
    assert len(set(holdout)) == 32 and holdout.min() >= 40 and holdout.max() == 79
    with pytest.raises(ValueError, match="cannot give"):
        split_frames(40, (1, 8, 32), 32)


def test_baselines():
    clip = synthetic_clip()
    personal, holdout = split_frames(len(clip.frames), (1, 4), 4)
    still = still_frames(clip, personal[4], holdout)
    assert still.shape == (4, 64, 64, 3) and (still == clip.frames[0]).all()
    # Driven by a personalization frame's own landmarks, the warp returns that frame.
    same = HoldoutWarps(clip, personal[4], personal[4][1:2]).frames
    assert np.abs(same[0].astype(int) - clip.frames[personal[4][1]]).mean() < 1.0
    assert HoldoutWarps(clip, personal[4], holdout).frames.shape == (4, 64, 64, 3)


def test_plain_warp_baseline():
    """Landmarks and frame anchors only, warped at the dataset's own resolution and shrunk to the evaluation's."""
    clip = synthetic_clip()
    personal, holdout = split_frames(len(clip.frames), (4,), 4)
    same = plain_warp_frames(clip, personal[4], personal[4][1:2])  # synthetic: warps at R
    assert np.abs(same[0].astype(int) - clip.frames[personal[4][1]]).mean() < 1.0
    assert plain_warp_frames(clip, personal[4], holdout).shape == (4, 64, 64, 3)
    assert not (plain_warp_frames(clip, personal[4], holdout) == HoldoutWarps(clip, personal[4], holdout).frames).all()

    def read_full(rows):  # the same clip "stored" at 128 px
        big = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_CUBIC) for f in clip.frames[rows]])
        return big, (clip.points[rows] + 0.5) * 2 - 0.5

    full = replace(clip, read_full=read_full)
    out = plain_warp_frames(full, personal[4], personal[4][1:2])
    assert out.shape == (1, 64, 64, 3)
    assert np.abs(out[0].astype(int) - clip.frames[personal[4][1]]).mean() < 3.0  # up and down again


def test_scores_of_a_perfect_reconstruction():
    clip = synthetic_clip()
    result = score(clip.frames[:4], clip.frames[:4], clip.points[:4], ("ssim", "lpips"), "dlib")
    assert result["ssim"] == pytest.approx(1.0) and result["lpips"] == pytest.approx(0.0, abs=1e-9)


def test_metrics_come_from_one_registry():
    """Names, table headers and the per-clip/pooled split all read training/metrics/registry.py."""
    assert METRICS == tuple(REGISTRY) == tuple(name for name, _ in COLUMNS if name in REGISTRY)
    assert dict(COLUMNS)["fid"] == "FID↓" and dict(COLUMNS)["mouth"] == "mouth r↑"
    assert [name for name, m in REGISTRY.items() if m.pooled] == ["fid"]
    with pytest.raises(ConfigError, match="unknown metrics: psnr; choose from ssim"):
        EvaluateConfig("model", "data", metrics=("ssim", "psnr"))
    code = ("import sys; from heads.cli import parse; "
            "cmd, cfg, dry = parse(['evaluate', '--model', 'm', '--data', 'd', '--metrics', 'fid', 'akd']); "
            "assert cfg.metrics == ('fid', 'akd'); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tables_and_jsonl(tmp_path):
    rows = [
        {"method": "warp", "T": 1, "videos": 2, "ssim": 0.81234, "akd": float("nan"), "csim_unaligned": 0.0},
        {"method": "FF", "T": 1, "videos": 2, "ssim": 0.5, "akd": 3.25, "csim_unaligned": 0.25},
    ]
    write_tables(tmp_path, rows)
    md = (tmp_path / "results.md").read_text().splitlines()
    assert md[0] == "| method | T | SSIM↑ | AKD↓ |" and md[2] == "| warp | 1 | 0.8123 | – |"
    table = list(csv.DictReader((tmp_path / "results.csv").read_text().splitlines()))
    assert table[1]["method"] == "FF" and float(table[1]["csim_unaligned"]) == 0.25
    for _ in range(2):
        append_jsonl(tmp_path, rows, {"model": "m"})
    lines = [json.loads(line) for line in (tmp_path / "metric-ssim.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["results"] == {"warp/T=1": 0.81234, "FF/T=1": 0.5}


@pytest.fixture
def prepared(media, tmp_path):
    """Two short shared clips prepared at 64 px into tmp_path with the face pipeline (links, not copies)."""
    src = tmp_path / "src"
    src.mkdir()
    for name, clip in zip("ab", CLIPS, strict=True):
        (src / f"{name}.mp4").symlink_to(media / clip)
    config = PrepareConfig(src, tmp_path / "prepared", max_frames=16, test_fraction=1.0, progress=False,
                           crop=CropConfig(resolution=64))
    assert prepare(config).prepared == 2
    return tmp_path / "prepared"


@pytest.mark.media
@pytest.mark.slow
def test_heads_evaluate_end_to_end(prepared, tmp_path):
    torch.manual_seed(0)
    tiny = replace(ModelConfig.tiny(), attention_down=16, attention_up=32)
    Networks.build(tiny, num_videos=2).save_pretrained(tmp_path / "model")
    clips = load_clips(prepared, "test", 64)
    assert [c.name for c in clips] == ["a", "b"] and clips[0].frames.shape == (16, 64, 64, 3)
    out = tmp_path / "eval"
    main(["evaluate", "--model", str(tmp_path / "model"), "--data", str(prepared), "--shots", "1", "4",
          "--holdout", "4", "--tune.steps", "3", "--tune.batch", "2", "--tune.loss.random-perceptual",
          "--out", str(out), "--no-progress"])
    table = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert [(r["method"], r["T"]) for r in table] == [
        (m, t) for t in ("1", "4") for m in ("still frame", "plain warp", "warp", "FF", "FT")]
    assert all(r["videos"] == "2" for r in table)
    by = {(r["method"], r["T"]): r for r in table}
    assert by[("still frame", "1")]["ssim"] == by[("still frame", "4")]["ssim"]  # T-independent, scored once
    assert by[("FF", "4")]["ssim"] != by[("FT", "4")]["ssim"]
    # Real frames: the baselines keep the face (detected, aligned for CSIM); an untrained G draws none.
    assert float(by[("warp", "4")]["detected"]) == 1.0 and float(by[("warp", "4")]["csim"]) > 0.9
    assert float(by[("warp", "4")]["ssim"]) > float(by[("FF", "4")]["ssim"])
    assert float(by[("still frame", "1")]["fid"]) >= 0
    # The plain warp is read at the data's 64 px: sharp as the real frames; the warps keep the face.
    assert float(by[("plain warp", "4")]["detected"]) == 1.0 and float(by[("plain warp", "4")]["csim"]) > 0.9
    assert 0.5 < float(by[("plain warp", "4")]["sharpness"]) < 2 and float(by[("still frame", "1")]["sharpness"]) > 0
    assert all(0 <= int(r["mouth_ssim_clips"]) <= 2 for r in table)
    for metric in ("ssim", "lpips", "csim", "fid", "akd", "nme", "mouth", "eye", "sharpness", "mouth_ssim"):
        line = json.loads((out / f"metric-{metric}.jsonl").read_text())
        assert len(line["results"]) == 10 and line["videos"] == 2
    assert "| method | T | SSIM↑" in (out / "results.md").read_text()
    assert "sharpness→1 | mouth SSIM↑ | open-mouth clips |" in (out / "results.md").read_text()
    grid = Image.open(out / "grids" / "a.png")
    assert grid.size == (8 * 64, 4 * 64)  # source | landmarks | real | still | plain warp | warp | FF | FT
    assert len((out / "per_video.jsonl").read_text().splitlines()) == 2 * 10


def test_cross_targets_are_assigned_in_turn_and_never_the_drivers_own_person():
    clip = synthetic_clip(4)
    drivers = [replace(clip, name=n) for n in ("a", "b", "c")]
    entries = {"a": {"identity": "x"}, "b": {"identity": "y"}, "c": {"identity": "z"}}
    targets = [Target(n, "photo", n, clip.frames[0], clip.points[0]) for n in ("x", "w")]
    assert [t.name for t in assign(drivers, entries, targets)] == ["w", "w", "x"]  # a skips x (itself), c wraps
    assert assign(drivers[:1], entries, targets[:1]) == [None]


@pytest.mark.media
@pytest.mark.slow
def test_heads_evaluate_cross_end_to_end(media, tmp_path):
    """Two clips drive a photo and a painting of a media folder whose MANIFEST.tsv says which is which; an image
    without a face is counted out."""
    src = tmp_path / "media"
    src.mkdir()
    for name, clip in zip("ab", CLIPS, strict=True):
        (src / f"{name}.mp4").symlink_to(media / clip)
    (src / "c.jpg").symlink_to(media / "LivePortrait/assets/examples/source/s1.jpg")
    (src / "p.jpg").symlink_to(media / "LivePortrait/assets/examples/source/s0.jpg")
    Image.new("RGB", (200, 200), (128, 128, 128)).save(src / "blank.png")
    (src / "MANIFEST.tsv").write_text("file\tkind\na.mp4\tdriving_video\nb.mp4\tdriving_video\n"
                                      "c.jpg\tportrait_photo\np.jpg\tpainting\nblank.png\tpainting\n")
    config = PrepareConfig(src, tmp_path / "prepared", max_frames=16, test_fraction=1.0, progress=False,
                           images=True, crop=CropConfig(resolution=64))
    prepare(config)
    torch.manual_seed(0)
    tiny = replace(ModelConfig.tiny(), attention_down=16, attention_up=32)
    Networks.build(tiny, num_videos=2).save_pretrained(tmp_path / "model")
    out = tmp_path / "eval"
    main(["evaluate-cross", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "prepared"),
          "--media", str(src), "--frames", "8", "--min-frames", "16", "--out", str(out), "--no-progress"])
    table = list(csv.DictReader((out / "results-cross.csv").read_text().splitlines()))
    assert [(r["method"], r["target"], r["pairs"]) for r in table] == [
        ("warp", "photos", "2"), ("warp", "paintings", "2"), ("FF", "photos", "2"), ("FF", "paintings", "2")]
    by = {(r["method"], r["target"]): r for r in table}
    # The warp moves the photo itself: a face, the photo's person, not the driver's.
    warp = by[("warp", "photos")]
    assert float(warp["detected"]) > 0.5 and float(warp["identity"]) > 0.9
    assert float(warp["identity"]) > float(warp["to_driver"])
    md = (out / "results-cross.md").read_text()
    assert "| method | target | pairs | detected↑ | identity to photo↑" in md
    assert "left out: 1 of 2 (blank.png)" in md and "2 driver clips" in md
    pairs = [json.loads(line) for line in (out / "per_pair-cross.jsonl").read_text().splitlines()]
    assert len(pairs) == 2 * 2 * 2
    for pair in pairs:  # mouth r again where the driver moves its mouth enough for a correlation to mean something
        moving = pair["driver_mouth_span"] >= MOVING_MOUTH
        assert (pair["mouth_moving"] == pair["mouth"]) if moving else np.isnan(pair["mouth_moving"])
    moving = sum(p["driver_mouth_span"] >= MOVING_MOUTH for p in pairs if p["method"] == "warp")
    assert f"mouth r, moving drivers: the {moving} of 4 pairs" in md and "mouth r, moving drivers↑" in md
    grids = sorted((out / "grids-cross").iterdir())
    assert len(grids) == 4 and Image.open(grids[0]).size == (4 * 64, 4 * 64)  # driver | photo | warp | FF
