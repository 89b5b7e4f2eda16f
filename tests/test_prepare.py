"""`heads prepare` end to end on a few short real clips, and the episode dataset on top of its output."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from base.errors import UserError
from export_onnx.config import ExportConfig
from export_onnx.release import export
from export_onnx.samples import realistic
from faces.bench_prepare import bench_prepare
from faces.config import CropConfig, PrepareBenchConfig, PrepareConfig
from faces.layout import flip_points, interocular
from faces.prepare import prepare
from faces.video import VideoWriter, read_frames
from heads.cli import main
from training.config import ModelConfig
from training.models import Networks
from training.prepared import Augment, PreparedEpisodes

CLIPS = {
    "id10001/talk/00001.mp4": "DPE/data/s.mp4",  # 256 px VoxCeleb-style crop
    "id10001/talk/00002.mpg": "LipNet/evaluation/samples/GRID/bbaf2n.mpg",  # uncropped 360x288, MPEG-1
    "id10002/studio/00001.mp4": "LivePortrait/assets/examples/driving/d19.mp4",  # 480 px
}
FRAMES = 12
R = 128


def _config(src: Path, dst: Path, **changes) -> PrepareConfig:
    config = PrepareConfig(src=src, dst=dst, images=True, max_frames=FRAMES, progress=False, test_fraction=0.5)
    return replace(config, crop=CropConfig(resolution=R), **changes)


@pytest.fixture(scope="module")
def source(media, tmp_path_factory) -> Path:
    """A VoxCeleb-like folder of links to real clips, plus inputs that must be rejected."""
    src = tmp_path_factory.mktemp("src")
    for rel, name in CLIPS.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).symlink_to(media / name)
    bad = src / "bad"
    bad.mkdir()
    (bad / "dog.jpg").symlink_to(media / "LivePortrait/assets/examples/source/s25.jpg")
    (bad / "dunes.png").symlink_to(media / "Real3DPortrait/data/raw/examples/bg.png")
    (bad / "notes.mp4").write_text("not a video\n")
    frames = list(read_frames(media / "DPE/data/d.mp4", max_frames=FRAMES))
    with VideoWriter(bad / "short.mp4", fps=25) as writer:  # 4 frames: below min_frames
        for frame in frames[:4]:
            writer.write(frame)
    with VideoWriter(bad / "two_people.mp4", fps=25) as writer:  # two faces of the same size
        for frame in frames:
            writer.write(np.concatenate([frame, frame[:, ::-1]], axis=1))
    vox_frames = src / "id10003" / "still" / "00001"  # VoxCeleb frame-folder layout
    vox_frames.mkdir(parents=True)
    for i, frame in enumerate(read_frames(media / "DPE/data/s.mp4", max_frames=10)):
        cv2.imwrite(str(vox_frames / f"{i:04d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return src


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory) -> tuple[Path, object]:
    dst = tmp_path_factory.mktemp("prepared")
    return dst, prepare(_config(source, dst))


def _manifest(dst: Path) -> list[dict]:
    return [json.loads(line) for line in (dst / "manifest.jsonl").read_text().splitlines()]


@pytest.mark.media
def test_prepared_layout_and_rejects(prepared):
    dst, summary = prepared
    entries = {e["clip"]: e for e in _manifest(dst)}
    assert set(entries) == {
        "id10001__talk__00001", "id10001__talk__00002", "id10002__studio__00001", "id10003__still__00001"
    }
    assert entries["id10003__still__00001"]["kind"] == "frames"
    rejects = {json.loads(line)["clip"]: json.loads(line) for line in (dst / "rejects.jsonl").read_text().splitlines()}
    assert {c: r["reason"] for c, r in rejects.items()} == {
        "bad__dog": "no face",
        "bad__dunes": "no face",
        "bad__notes": "unreadable",
        "bad__short": "too short",
        "bad__two_people": "several faces",
    }
    assert all(r["detail"] for r in rejects.values())
    assert summary.prepared == 4 and summary.rejected == 5 and summary.frames == 3 * FRAMES + 10
    for clip, entry in entries.items():
        folder = dst / "clips" / clip
        assert len(list(folder.glob("*.jpg"))) == entry["frames"]
        assert cv2.imread(str(folder / "00000.jpg")).shape == (R, R, 3)
        with np.load(folder / "landmarks.npz") as data:
            assert data["points"].shape == data["points_raw"].shape == (entry["frames"], 68, 2)
            assert data["transforms"].shape == (entry["frames"], 3) and len(data["frame_index"]) == entry["frames"]
    assert json.loads((dst / "config.json").read_text())["crop"]["resolution"] == R
    assert not list((dst / "clips").glob(".tmp-*"))


@pytest.mark.media
def test_stored_landmarks_are_sane_and_steady(prepared):
    dst, _ = prepared
    for entry in _manifest(dst):
        with np.load(dst / "clips" / entry["clip"] / "landmarks.npz") as data:
            points = data["points"]
        assert points.min() > -0.1 * R and points.max() < 1.1 * R  # the face is inside its crop
        eyes, nose, mouth = points[:, 36:48, 1].mean(1), points[:, 30, 1], points[:, 48:68, 1].mean(1)
        assert (eyes < nose).all() and (nose < mouth).all()
        scale = np.median([interocular(p) for p in points])
        assert 0.15 * R < scale < 0.4 * R  # face size as in VoxCeleb crops
        rigid = points[:, list(range(17)) + list(range(27, 36))]
        shake = np.abs(rigid[2:] - 2 * rigid[1:-1] + rigid[:-2]).mean() / scale
        assert shake < 0.02, entry["clip"]


@pytest.mark.media
def test_split_is_by_identity(prepared):
    dst, _ = prepared
    entries = _manifest(dst)
    by_identity: dict[str, set] = {}
    for e in entries:
        by_identity.setdefault(e["identity"], set()).add(e["split"])
    assert set(by_identity) == {"id10001", "id10002", "id10003"} and all(len(s) == 1 for s in by_identity.values())


@pytest.mark.media
def test_resume_skips_finished_and_redoes_missing(prepared, source, tmp_path):
    dst, _ = prepared
    again = prepare(_config(source, dst))
    assert (again.skipped, again.prepared, again.rejected) == (9, 0, 0)
    copy = tmp_path / "copy"
    prepare(_config(source, copy, images=False))
    removed = copy / "clips" / "id10002__studio__00001"
    first = np.load(removed / "landmarks.npz")["points"]
    shutil.rmtree(removed)
    redo = prepare(_config(source, copy, images=False, retry_rejects=True))
    assert redo.prepared == 1 and redo.rejected == 3  # the retried rejects fail again, for the same reasons
    assert np.array_equal(np.load(removed / "landmarks.npz")["points"], first)  # deterministic
    with pytest.raises(UserError, match="different crop"):
        prepare(replace(_config(source, copy), crop=CropConfig(resolution=64)))


@pytest.mark.media
def test_episodes_from_prepared_clips(prepared):
    dst, _ = prepared
    ds = PreparedEpisodes(dst, k=4, split=None, min_frames=FRAMES)
    assert ds.num_videos == len(ds) == 3 and ds.resolution == R and ds.k == 4
    episode = ds[4]
    assert episode["frames"].shape == episode["landmarks"].shape == (5, 3, R, R)
    assert episode["frames"].dtype == episode["landmarks"].dtype == torch.float32
    assert episode["points"].shape == (5, 68, 2) and episode["video"].dtype == torch.int64
    assert int(episode["video"]) == 4 % 3
    assert episode["frames"].min() >= -1 and episode["frames"].max() <= 1 and episode["landmarks"].min() == -1
    frames = episode["frames"].flatten(1)
    assert all(not torch.equal(frames[i], frames[j]) for i in range(5) for j in range(i))  # distinct frames
    assert torch.equal(ds[4]["frames"], episode["frames"])  # seeded by the episode number
    drawn = episode["landmarks"][0].amax(0)  # the landmark image has ink at the nose tip
    x, y = episode["points"][0, 30].round().long().tolist()
    assert drawn[y - 2 : y + 3, x - 2 : x + 3].max() > 0
    small = PreparedEpisodes(dst, k=2, split=None, resolution=64)
    assert small[0]["frames"].shape == (3, 3, 64, 64) and small.num_videos == 4  # the 10-frame clip too
    batch = torch.utils.data.default_collate([ds[n] for n in range(3)])
    assert batch["frames"].shape == (3, 5, 3, R, R) and batch["video"].tolist() == [0, 1, 2]


@pytest.mark.media
def test_flip_and_colour_jitter_are_consistent(prepared):
    dst, _ = prepared
    plain = PreparedEpisodes(dst, k=3, split=None, seed=7)
    flipped = PreparedEpisodes(
        dst, k=3, split=None, seed=7, augment=Augment(flip=1.0, brightness=0, contrast=0, saturation=0, hue=0)
    )
    a, b = plain[2], flipped[2]
    assert torch.allclose(b["frames"], a["frames"].flip(-1), atol=1e-6)
    expected = np.stack([flip_points(p, R) for p in a["points"].numpy()])
    assert np.allclose(b["points"].numpy(), expected, atol=1e-4)
    jittered = PreparedEpisodes(dst, k=3, split=None, seed=7, augment=Augment(flip=0.0, brightness=0.3))[2]
    ratio = (jittered["frames"] + 1) / (a["frames"] + 1).clamp(min=0.05)
    per_frame = [r[(a["frames"][i] > -0.5)].median() for i, r in enumerate(ratio)]
    assert max(per_frame) - min(per_frame) < 0.02  # one brightness factor for the whole episode
    assert torch.equal(jittered["landmarks"], a["landmarks"])  # landmark images are not colour-jittered


@pytest.mark.media
def test_cli_dry_run_and_empty_split(prepared, source, capsys):
    dst, _ = prepared
    main(["prepare", str(source), str(dst), "--dry-run", "--max-frames", "5", "--crop.resolution", "64"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["max_frames"] == 5 and shown["crop"]["resolution"] == 64 and shown["src"] == str(source)
    with pytest.raises(ValueError, match="no clip"):
        PreparedEpisodes(dst, split="train", min_frames=10_000)


@pytest.mark.media
@pytest.mark.slow
def test_two_workers_give_the_same_clips(prepared, source, tmp_path):
    dst, _ = prepared
    summary = prepare(_config(source, tmp_path / "parallel", workers=2))
    assert summary.prepared == 4 and summary.rejected == 5
    for entry in _manifest(dst):
        ours = np.load(tmp_path / "parallel" / "clips" / entry["clip"] / "landmarks.npz")["points"]
        assert np.array_equal(ours, np.load(dst / "clips" / entry["clip"] / "landmarks.npz")["points"])


@pytest.mark.media
@pytest.mark.slow
def test_bench_prepare_writes_json(media, tmp_path):
    out = tmp_path / "bench.json"
    config = PrepareBenchConfig(src=media, clips=2, max_frames=8, workers=(1,), detect_every=(1, 10), out=out)
    report = bench_prepare(config)
    assert json.loads(out.read_text()) == report
    assert [r["detect_every"] for r in report["results"]] == [1, 10]
    assert all(r["frames_per_second"] > 0 for r in report["results"])


@pytest.mark.media
def test_int8_calibrates_on_prepared_clips(prepared, tmp_path):
    """`heads export --calibration-data`: int8 calibrated and scored on landmark images of the real clips."""
    dst, _ = prepared
    cfg = replace(ModelConfig.tiny(), guidance="warp")
    sample = realistic(cfg, 3, seed=1, prepared=dst)
    assert sample["landmarks"].shape == (3, 3, 64, 64) and sample["guide"].shape == (3, 4, 64, 64)
    assert len({float(frame.mean()) for frame in sample["frames"]}) == 3  # three different clips
    torch.manual_seed(0)
    model = Networks.build(cfg, with_discriminator=False).save_pretrained(tmp_path / "model")
    manifest = export(ExportConfig(model=model, out=tmp_path / "out", variants=("int8",), calibration=3,
                                   calibration_data=dst))
    assert 0.5 < manifest["graphs"]["generator"]["int8"]["ssim_min"] <= 1
    with pytest.raises(UserError, match="calibration-data"):
        export(ExportConfig(model=model, out=tmp_path / "out2", variants=("int8",), calibration_data=tmp_path))
