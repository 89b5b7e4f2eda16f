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

from base.errors import ConfigError, UserError
from export_onnx.config import ExportConfig
from export_onnx.release import export
from export_onnx.samples import realistic
from faces.bench_prepare import bench_prepare
from faces.config import CropConfig, MergeConfig, PrepareBenchConfig, PrepareConfig, ShardsConfig, parse_shard
from faces.layout import flip_points, interocular
from faces.prepare import merge, prepare
from faces.shards import to_shards
from faces.sources import shard_of
from faces.video import VideoWriter, read_frames
from heads.cli import main
from training.config import ModelConfig
from training.data import EpisodeSampler
from training.models import Networks
from training.prepared import Augment, PreparedEpisodes
from training.shards import ShardEpisodes

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
def test_shards_stream_the_folder_layouts_episodes(prepared, tmp_path):
    """The shared media's clips, prepared and converted to shards (`heads prepare --to-shards`, one clip a shard):
    over two processes of two loader workers each, every pass holds each clip's episode once, and each streamed
    episode equals the folder layout's of the same number, byte for byte (augmentation on)."""
    dst, _ = prepared
    index = to_shards(ShardsConfig(dst, tmp_path / "shards", clips_per_shard=1, progress=False))
    assert len(index["shards"]) == 4 and {s["split"] for s in index["shards"]} == {"train", "test"}
    options = dict(k=4, split=None, seed=2, augment=Augment(), min_frames=10)
    folder, stream = PreparedEpisodes(dst, **options), ShardEpisodes(tmp_path / "shards", shuffle=2, **options)
    videos = stream.num_videos
    assert videos == folder.num_videos == 4
    passes: dict[int, list[int]] = {}
    for rank in range(2):
        placed = stream.at(0, rank, 2, batch=1)
        for worker in range(2):
            pairs = zip(placed.plan(worker, 2), placed.stream(worker, 2), strict=False)
            for (i, episode), _ in zip(pairs, range(2), strict=False):  # one clip a pass here: two passes
                passes.setdefault(i // videos**2, []).append(i)
                expected = folder[i]
                assert all(torch.equal(episode[key], expected[key]) for key in expected), i
    sampler = EpisodeSampler(videos, 1, seed=2)
    assert {e: sorted(p) for e, p in passes.items()} == {
        e: sorted(sampler.episode(n) for n in range(e * videos, (e + 1) * videos)) for e in (0, 1)}


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
@pytest.mark.parametrize("budget, regions", [(2 << 20, True), (300 << 10, True), (2 << 20, False)])
def test_frames_too_big_to_keep_give_the_same_clips(prepared, source, tmp_path, monkeypatch, budget, regions):
    """Clips whose frames do not fit in memory whole (HD video): the tracker reads each frame converted only where it
    looks, the first pass keeps a rectangle around the face (YUV, or RGB copies when regions are off) and, over the
    budget, decodes the rest again. The clips come out byte for byte as from whole frames."""
    import faces.prepare as module

    monkeypatch.setattr(module, "FRAME_BUFFER_BYTES", budget)
    if not regions:
        monkeypatch.setattr(module.VideoReader, "region", lambda self, frame, box: None)
    dst, _ = prepared
    prepare(_config(source, tmp_path / "hd"))
    for entry in _manifest(dst):
        ours, theirs = tmp_path / "hd" / "clips" / entry["clip"], dst / "clips" / entry["clip"]
        assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
        for jpeg in theirs.glob("*.jpg"):
            assert (ours / jpeg.name).read_bytes() == jpeg.read_bytes(), (entry["clip"], jpeg.name)
        with np.load(ours / "landmarks.npz") as a, np.load(theirs / "landmarks.npz") as b:
            assert all(np.array_equal(a[k], b[k]) for k in b.files)


@pytest.mark.media
def test_regions_convert_as_whole_frames(media):
    """A rectangle kept as YUV 4:2:0 converts to the very RGB of the whole frame's conversion, at any position."""
    from faces.video import VideoReader

    with VideoReader(media / CLIPS["id10002/studio/00001.mp4"], threads=1) as reader:
        _, frame = next(reader.decoded())
        whole = reader.rgb(frame)
        for box in [(0, 0, 480, 480), (1, 3, 100, 61), (301, 250, 479, 477), (2, 2, 4, 4)]:
            region = reader.region(frame, box)
            assert region.x <= box[0] and region.y <= box[1]
            assert region.x + region.width >= box[2] and region.y + region.height >= box[3]
            rgb, x, y = region.rgb(box, {})
            assert np.array_equal(rgb, whole[y : y + rgb.shape[0], x : x + rgb.shape[1]])


@pytest.mark.media
def test_biggest_clips_start_first(source):
    """With few clips per worker the biggest go first, so that no long clip starts when the others are done."""
    from faces.prepare import _balanced
    from faces.sources import find_sources

    config = _config(source, source / "unused", workers=2)
    order = [s.clip for s in _balanced(find_sources(source, images=True), config)]
    assert order.index("id10002__studio__00001") < order.index("id10001__talk__00002") < order.index(
        "id10001__talk__00001")


@pytest.mark.media
def test_hog_detector_is_cached_and_detects_the_same(media, tmp_path, monkeypatch):
    """Workers load dlib's HOG detector from a cached binary (~2 ms) instead of rebuilding it (~0.3 s)."""
    import dlib

    from faces.dlib_landmarks import frontal_face_detector

    monkeypatch.setenv("HEADS_CACHE", str(tmp_path))
    built = frontal_face_detector(dlib)  # builds and caches it
    assert len(list(tmp_path.glob("dlib-*-frontal_face_detector.svm"))) == 1
    cached = frontal_face_detector(dlib)
    for name in CLIPS.values():
        gray = cv2.cvtColor(next(read_frames(media / name, max_frames=1)), cv2.COLOR_RGB2GRAY)
        for upsample in (0, 1):
            a, b = built.run(gray, upsample, -0.5), cached.run(gray, upsample, -0.5)
            assert a[0] and [str(r) for r in a[0]] == [str(r) for r in b[0]]
            assert list(a[1]) == list(b[1]) and list(a[2]) == list(b[2])


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


# ---------------------------------------------------------------------------------------------------- shards


def test_shards_are_a_stable_partition_of_the_clips():
    paths = [f"id{i:05d}/video/{j:05d}.mp4" for i in range(100) for j in range(4)]
    parts = [{p for p in paths if shard_of(p, 4) == k} for k in range(4)]
    assert set().union(*parts) == set(paths) and sum(map(len, parts)) == len(paths)  # each clip in one shard
    assert all(60 < len(part) < 140 for part in parts)  # about a quarter each
    assert shard_of("id10001/1zcIwhmdeo4/00001.mp4", 64) == 9  # pinned: a changed hash would reshuffle a job array
    assert parse_shard("3/64") == (3, 64) and PrepareConfig(Path("s"), Path("d"), shard="0/1").shard_index == (0, 1)
    for bad in ("4/4", "1", "a/4", "-1/4", "1/0"):
        with pytest.raises(ConfigError, match="K/N"):
            PrepareConfig(Path("s"), Path("d"), shard=bad)


def _broken_source(root: Path, count: int = 12) -> Path:
    """Clips that are all rejected at once (text, not video): the shard and merge bookkeeping without media."""
    src = root / "src"
    for n in range(count):
        (src / f"id{n:05d}").mkdir(parents=True)
        (src / f"id{n:05d}" / "00001.mp4").write_text("not a video\n")
    return src


def _shard(src: Path, dst: Path, k: int, n: int, **changes) -> PrepareConfig:
    return PrepareConfig(src=src, dst=dst, progress=False, shard=f"{k}/{n}", **changes)


def _edited_copy(folder: Path, to: Path, file: str, **changes) -> Path:
    """A copy of a shard folder whose config.json or shard.json says something else."""
    shutil.copytree(folder, to)
    data = json.loads((to / file).read_text())
    (to / file).write_text(json.dumps({**data, **changes}))
    return to


def test_merge_joins_shard_rejects_and_refuses_mismatched_shards(tmp_path, monkeypatch):
    monkeypatch.setattr("faces.prepare.load_detector", lambda config: None)  # no clip gets as far as a detector
    src = _broken_source(tmp_path)
    shards = [tmp_path / f"shard{k}" for k in range(3)]
    for k, folder in enumerate(shards):
        summary = prepare(_shard(src, folder, k, 3))
        record = json.loads((folder / "shard.json").read_text())
        assert record == {"index": k, "count": 3, "found": 12, "clips": summary.clips, "identities_sha1": None}
    counts = [len((f / "rejects.jsonl").read_text().splitlines()) for f in shards]
    assert sum(counts) == 12 and all(counts)

    out = tmp_path / "merged"
    with pytest.raises(UserError, match="shards 2 of 3 are missing"):
        merge(MergeConfig(out, tuple(shards[:2]), progress=False))
    assert not out.exists()  # refused before anything was written
    partial = merge(MergeConfig(tmp_path / "partial", tuple(shards[:2]), allow_missing=True, progress=False))
    assert partial["missing"] == [2] and partial["rejects"] == counts[0] + counts[1]
    with pytest.raises(UserError, match="shard 1 given more than once"):
        merge(MergeConfig(out, (shards[0], shards[1], shards[1], shards[2]), progress=False))
    whole = tmp_path / "whole"
    prepare(PrepareConfig(src=src, dst=whole, progress=False))
    assert not (whole / "shard.json").exists()
    with pytest.raises(UserError, match="not prepared with --shard"):
        merge(MergeConfig(out, (*shards, whole), progress=False))
    with pytest.raises(UserError, match="different shard settings"):  # one folder, one shard
        prepare(_shard(src, shards[0], 1, 3))

    for n, (file, change, message) in enumerate((
        ("config.json", {"jpeg_quality": 90}, r"other settings .*jpeg_quality \(95 vs 90\)"),
        ("config.json", {"crop": {**json.loads((shards[2] / "config.json").read_text())["crop"], "resolution": 64}},
         r"other settings .*crop.resolution \(256 vs 64\)"),
        ("shard.json", {"found": 11}, "different source folder"),
        ("shard.json", {"identities_sha1": "0" * 40}, "different --identities file"),
    )):
        odd = _edited_copy(shards[2], tmp_path / f"odd{n}", file, **change)
        with pytest.raises(UserError, match=message):
            merge(MergeConfig(out, (*shards[:2], odd), progress=False))
    assert not out.exists()

    record = merge(MergeConfig(out, tuple(reversed(shards)), progress=False))
    assert record["missing"] == [] and record["clips"] == 0 and record["rejects"] == 12
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [r["clip"] for r in rejects] == sorted(f"id{n:05d}__00001" for n in range(12))
    assert {r["reason"] for r in rejects} == {"unreadable"}
    merged_config = json.loads((out / "config.json").read_text())
    assert merged_config["shard"] is None and merged_config["dst"] == str(out)
    assert prepare(PrepareConfig(src=src, dst=out, progress=False)).skipped == 12  # a plain prepared folder now


def test_merge_cli_shape(tmp_path, capsys):
    main(["prepare", "--merge", str(tmp_path / "out"), "a", "b", "--mode", "link", "--dry-run"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["shards"] == ["a", "b"] and shown["mode"] == "link"
    main(["prepare", "SRC", "DST", "--shard", "3/8", "--dry-run"])
    assert json.loads(capsys.readouterr().out)["shard"] == "3/8"


@pytest.mark.media
def test_merged_shards_equal_one_run(prepared, source, tmp_path):
    """Two shards of the test source, merged (linked, then moved), hold what one unsharded run wrote."""
    dst, _ = prepared
    shards = [tmp_path / f"shard{k}" for k in range(2)]
    for k, folder in enumerate(shards):
        summary = prepare(_config(source, folder, shard=f"{k}/2"))
        assert summary.prepared >= 1 and summary.rejected >= 1  # both shards hold clips and rejects
    whole = {e["clip"]: e for e in _manifest(dst)}
    whole_rejects = (dst / "rejects.jsonl").read_text()
    for mode in ("link", "move"):
        out = tmp_path / f"merged-{mode}"
        record = merge(MergeConfig(out, tuple(shards), mode=mode, progress=False))
        assert record["clips"] == 4 and record["rejects"] == 5
        assert {e["clip"]: e for e in _manifest(out)} == whole  # same clips, identities and split
        assert (out / "rejects.jsonl").read_text() == whole_rejects
        for clip in whole:
            ours, theirs = out / "clips" / clip, dst / "clips" / clip
            assert (ours / "00003.jpg").read_bytes() == (theirs / "00003.jpg").read_bytes()
            with np.load(ours / "landmarks.npz") as a, np.load(theirs / "landmarks.npz") as b:
                assert a.files == b.files and all(np.array_equal(a[key], b[key]) for key in b.files)
        assert (out / "clips" / next(iter(whole))).is_symlink() == (mode == "link")
    assert not list((shards[0] / "clips").iterdir()) and not _manifest(shards[0])  # moved out
    again = prepare(_config(source, tmp_path / "merged-move"))
    assert (again.skipped, again.prepared) == (9, 0)  # the merged folder resumes like one prepared whole
