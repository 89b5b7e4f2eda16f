"""WebDataset shards (`heads prepare --to-shards`) and the loader that streams them: the same episodes as the folder
layout, each clip read by one worker of one process per pass, exact resumes, and training on them.

A small prepared folder is written here directly in `heads prepare`'s layout (noise frames, random landmarks), so
that these tests need neither media nor a detector; tests/test_prepare.py runs the same comparison on real clips.
"""

from __future__ import annotations

import itertools
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from base.errors import ConfigError, UserError
from faces.config import ShardsConfig
from faces.prepare import write_manifest
from faces.shards import read_index, sample_key, to_shards
from heads.cli import main
from training.bench_loader import bench_loader
from training.config import DataConfig, LoaderBenchConfig, LossConfig, ModelConfig, TrainConfig
from training.data import EpisodeSampler
from training.prepared import Augment, PreparedEpisodes
from training.shards import ShardEpisodes, shuffle_order
from training.train import make_dataset, make_loader, train

R = 64
K = 2
# name -> frames: 12 ordinary clips, a name with a dot and a percent sign (WebDataset keys end at the first dot), a
# clip shorter than K + 1 and a single photo (left out by min_frames, as in the folder layout).
CLIPS = {**{f"id{n:05d}__talk__{n:05d}": 5 + n % 4 for n in range(12)}, "odd.name%25__x": 6, "short__a": 2,
         "photo__b": 1}


def _prepared(root: Path) -> Path:
    """A prepared folder in `heads prepare`'s layout: JPEG frames, landmarks.npz, meta.json, manifest with splits."""
    rng = np.random.default_rng(0)
    for n, (clip, frames) in enumerate(CLIPS.items()):
        folder = root / "clips" / clip
        folder.mkdir(parents=True)
        base = rng.uniform(40, 220, 3)
        for row in range(frames):
            image = np.clip(base + rng.normal(0, 40, (R, R, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{row:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        points = (rng.uniform(0.2, 0.8, (frames, 68, 2)) * R).astype(np.float32)
        arrays = {"points": points, "points_raw": points + 0.5, "transforms": np.ones((frames, 3)),
                  "frame_index": np.arange(frames, dtype=np.int64)}
        if n % 2:  # some clips with irises, as the mediapipe backend stores them
            arrays["pupils"] = points[:, 36:38].copy()
        np.savez(folder / "landmarks.npz", **arrays)
        meta = {"clip": clip, "identity": clip.split("__")[0], "frames": frames, "resolution": R, "kind": "video"}
        (folder / "meta.json").write_text(json.dumps(meta))
    (root / "config.json").write_text(json.dumps({"crop": {"resolution": R}, "jpeg_quality": 90}))
    write_manifest(root, 0.25)
    return root


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> tuple[Path, Path]:
    """(prepared folder, its shards at 2 clips per shard)."""
    root = tmp_path_factory.mktemp("layouts")
    prepared = _prepared(root / "prepared")
    to_shards(ShardsConfig(prepared, root / "shards", clips_per_shard=2, progress=False))
    return prepared, root / "shards"


def _manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def test_shards_hold_every_clip_byte_for_byte_in_webdataset_samples(layouts, tmp_path):
    prepared, shards = layouts
    entries = {e["clip"]: e for e in _manifest(prepared)}
    index = read_index(shards)
    assert index["resolution"] == R and index["settings"]["jpeg_quality"] == 90
    by_split = {s: [e for e in entries.values() if e["split"] == s] for s in ("train", "test")}
    assert all(by_split.values())  # both splits hold clips
    for split, clips in by_split.items():
        files = [s for s in index["shards"] if s["split"] == split]
        assert [s["name"] for s in files] == [f"{split}-{n:06d}.tar" for n in range(len(files))]
        assert len(files) == (len(clips) + 1) // 2 and all(len(s["clips"]) <= 2 for s in files)
        listed = [c for s in files for c in s["clips"]]
        assert sorted(listed) == sorted([e["clip"], e["frames"]] for e in clips)  # each clip once, its own split
        assert index["splits"][split] == {"shards": len(files), "clips": len(clips),
                                          "frames": sum(e["frames"] for e in clips)}
    assert sample_key("odd.name%25__x") == "odd%2Ename%2525__x"
    for shard in index["shards"]:
        with tarfile.open(shards / shard["name"]) as tar:
            members = [(m.name, tar.extractfile(m).read()) for m in tar]
        keys = [name.partition(".")[0] for name, _ in members]  # WebDataset's grouping: up to the first dot
        samples = [key for key, _ in itertools.groupby(keys)]
        assert samples == [sample_key(c) for c, _ in shard["clips"]]  # one run of members per clip, as indexed
        for (clip, frames), key in zip(shard["clips"], samples, strict=True):
            got = {name[len(key) + 1 :]: data for name, data in members if name.partition(".")[0] == key}
            folder = prepared / "clips" / clip
            assert json.loads(got.pop("json")) == entries[clip]
            assert got.pop("npz") == (folder / "landmarks.npz").read_bytes()
            assert got == {f"{row:05d}.jpg": (folder / f"{row:05d}.jpg").read_bytes() for row in range(frames)}
    assert (shards / "manifest.jsonl").read_text() == (prepared / "manifest.jsonl").read_text()

    again = tmp_path / "again"  # reproducible: the same bytes from the same folder
    to_shards(ShardsConfig(prepared, again, clips_per_shard=2, progress=False))
    assert all((again / s["name"]).read_bytes() == (shards / s["name"]).read_bytes() for s in index["shards"])
    fewer = to_shards(ShardsConfig(prepared, again, clips_per_shard=100, progress=False))  # replaces, no stale tars
    assert sorted(p.name for p in again.glob("*.tar")) == sorted(s["name"] for s in fewer["shards"])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        to_shards(ShardsConfig(prepared, tmp_path / "busy", progress=False))
    with pytest.raises(UserError, match="manifest.jsonl not found"):
        to_shards(ShardsConfig(tmp_path / "busy", tmp_path / "out", progress=False))
    with pytest.raises(ConfigError, match="clips_per_shard"):
        ShardsConfig(prepared, tmp_path / "x", clips_per_shard=0)


def test_shuffle_order_is_a_bounded_permutation():
    order = shuffle_order(50, 8, np.random.default_rng(0))
    assert sorted(order) == list(range(50)) and order != list(range(50))
    assert all(position <= turn + 7 for turn, position in enumerate(order))  # never read more than 7 ahead
    assert shuffle_order(10, 1, np.random.default_rng(0)) == list(range(10))


@pytest.mark.parametrize("world, workers", [(1, 1), (2, 2)])
def test_every_pass_holds_the_folder_layouts_episodes_once(layouts, world, workers):
    """Over all workers of all processes, pass e of the stream is pass e of EpisodeSampler: each clip's episode
    once, with the same dataset index, hence the same seed and the same frames."""
    prepared, shards = layouts
    options = dict(k=K, split="train", seed=5, min_frames=K + 1)
    folder, stream = PreparedEpisodes(prepared, **options), ShardEpisodes(shards, shuffle=3, **options)
    assert stream.num_videos == folder.num_videos and stream.names == [e["clip"] for e in folder.clips]
    videos = stream.num_videos
    sampler = EpisodeSampler(videos, 1, seed=5)
    passes: dict[int, list[int]] = {}
    for rank in range(world):
        placed = stream.at(0, rank, world, batch=2)
        for worker in range(workers):
            for i in itertools.islice(placed.plan(worker, workers), 3 * videos):
                passes.setdefault(i // videos**2, []).append(i)
    for e in (0, 1):
        assert sorted(passes[e]) == sorted(sampler.episode(n) for n in range(e * videos, (e + 1) * videos))


def test_streamed_episodes_equal_the_folder_layouts(layouts):
    """Frames, landmark images, points and video of each streamed episode equal PreparedEpisodes[i], byte for byte:
    with augmentation, at another resolution, with and without pupils, across a pass boundary."""
    prepared, shards = layouts
    for resolution in (None, 32):
        options = dict(k=K, split="train", seed=1, min_frames=K + 1, augment=Augment(), resolution=resolution)
        folder, stream = PreparedEpisodes(prepared, **options), ShardEpisodes(shards, shuffle=4, **options)
        placed = stream.at(0, 1, 2, batch=1)
        count = stream.num_videos if resolution is None else 3
        for i, episode in itertools.islice(zip(placed.plan(1, 2), placed.stream(1, 2), strict=False), count):
            expected = folder[i]
            assert episode.keys() == expected.keys()
            assert all(torch.equal(episode[key], expected[key]) for key in expected), (i, resolution)


def _tiny(tmp_path: Path, root: Path, **data) -> TrainConfig:
    return TrainConfig(
        model=ModelConfig.tiny(), loss=LossConfig(perceptual=(), l1=1.0), k=K, batch=2, steps=2,
        data=DataConfig(source="shards", root=str(root), min_frames=K + 1, **data), outdir=str(tmp_path / "runs"),
        checkpoint_every=2, image_every=0, log_every=1, progress=False,
    )


def test_loader_workers_interleave_and_resume_exactly(layouts, tmp_path):
    """With 2 DataLoader workers the batches are the planned streams of worker 0 and 1 in turn; a loader placed at
    step 3 continues with the batches the first one gave from step 3 on."""
    _, shards = layouts
    cfg = _tiny(tmp_path, shards, workers=2, shuffle=2)
    dataset = make_dataset(cfg)
    first = [b for _, b in zip(range(7), make_loader(cfg, dataset, 0), strict=False)]
    plans = [dataset.at(0, 0, 1, 2).plan(w, 2) for w in range(2)]
    for step, batch in enumerate(first):  # batch s comes from worker s % 2
        indices = [next(plans[step % 2]) for _ in range(2)]
        assert batch["video"].tolist() == [i % dataset.num_videos for i in indices]
    resumed = [b for _, b in zip(range(4), make_loader(cfg, dataset, 3), strict=False)]
    for a, b in zip(first[3:], resumed, strict=True):
        assert all(torch.equal(a[key], b[key]) for key in a)
    with pytest.raises(UserError, match="fewer than the 40 readers"):
        make_loader(cfg, dataset, 0, rank=0, world=20)


def test_training_reads_shards(layouts, tmp_path):
    """`heads train --data.source shards`: two steps; a warp-guided model gets its guides from the stream too."""
    _, shards = layouts
    run_dir = train(_tiny(tmp_path, shards))
    assert len((run_dir / "log.jsonl").read_text().splitlines()) == 2
    guided = make_dataset(replace(_tiny(tmp_path, shards), model=replace(ModelConfig.tiny(), guidance="warp")))
    episode = next(iter(guided.at(0)))
    assert episode["guide"].shape == (4, R, R) and episode["mouth"].shape == (1, R, R)
    with pytest.raises(UserError, match="--to-shards"):
        make_dataset(replace(_tiny(tmp_path, shards), data=DataConfig(source="shards")))
    with pytest.raises(ConfigError, match="shuffle"):
        DataConfig(shuffle=0)


def test_cli_shapes_and_loader_bench(layouts, tmp_path, capsys):
    prepared, shards = layouts
    main(["prepare", "--to-shards", str(prepared), str(tmp_path / "s"), "--clips-per-shard", "7", "--dry-run"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["clips_per_shard"] == 7 and shown["out"] == str(tmp_path / "s")
    main(["train", "--data.source", "shards", "--data.root", str(shards), "--data.shuffle", "4", "--dry-run"])
    assert json.loads(capsys.readouterr().out)["data"]["shuffle"] == 4
    out = tmp_path / "loader.json"
    report = bench_loader(LoaderBenchConfig(prepared=str(prepared), shards=str(shards), workers=(0, 1), batch=2,
                                            k=K, resolution=R, batches=2, min_frames=K + 1, out=str(out)))
    assert json.loads(out.read_text()) == report
    assert [(r["layout"], r["workers"]) for r in report["results"]] == [
        ("prepared", 0), ("shards", 0), ("prepared", 1), ("shards", 1)]
    assert all(r["episodes_per_second"] > 0 and r["images_per_second"] > 0 for r in report["results"])
    assert report["results"][0]["cpu_seconds_per_episode"] > 0
