"""`heads evaluate`: the paper's self-reenactment protocol (Zakharov et al. 2019, Table 1) on prepared test clips.

Per test clip: T ∈ {1, 8, 32} personalization frames from the first half, 32 hold-out frames from the second half;
every method re-renders the hold-out frames from their landmarks and is compared with the real ones. Methods: the
still frame, the plain piecewise-affine warp and the app's warp renderer (baselines that need no learning), that
warp with its mouth corrected by the mouth refiner, and the feed-forward (FF) and fine-tuned (FT) avatars.
"""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from base.errors import UserError
from faces.landmark_image import draw_landmarks
from faces.plain_warp import PlainWarp
from faces.warp import MultiSourceWarp, nearest_source
from training.avatar import model_id
from training.config import to_dict
from training.fewshot_config import FEED_FORWARD, EvaluateConfig, FinetuneSettings
from training.finetune import load_networks, personalize, render
from training.metrics.registry import METRICS, NOTE_HEADERS, Sample, count_key
from training.models import Networks
from training.mouth_refiner import MouthRefiner, refine
from training.mouth_refiner import load as load_mouth_refiner
from training.phases import resolve_device
from training.prepared import PreparedEpisodes
from training.protocol import split_frames

LABELS = {"still": "still frame", "plainwarp": "plain warp", "warp": "warp", "mouth": "warp + mouth", "ff": "FF",
          "ft": "FT"}
# Table columns (key, header), all of them from the metric registry: every metric (and the clip count of those
# that some clips lack), then the notes shown.
COLUMNS = (*(column for name, metric in METRICS.items() for column in metric.columns(name)), *NOTE_HEADERS.items())


@dataclass
class Clip:
    """One test video as aligned crops at the model's resolution."""

    name: str
    frames: np.ndarray  # (F, R, R, 3) uint8 RGB
    points: np.ndarray  # (F, 68, 2) landmarks in crop pixels
    landmark_images: np.ndarray  # (F, R, R, 3) uint8, as the model saw them in training
    read_full: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    """Frame indices -> those frames (K, S, S, 3) and landmarks (K, 68, 2) at the dataset's own resolution S, read
    on demand (a clip at 256 px would take 50 MB held whole); None where R is all there is (synthetic clips)."""


def still_frames(clip: Clip, personal: np.ndarray, holdout: np.ndarray) -> np.ndarray:
    """Baseline: the first personalization frame, repeated for every hold-out frame."""
    return np.repeat(clip.frames[personal[:1]], len(holdout), 0)


def _at_data_resolution(clip: Clip, personal: np.ndarray, holdout: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The personalization frames, their landmarks and the hold-out's landmarks at the dataset's own resolution
    (256 px for `heads prepare`'s default): a warp renderer works on the photo at its own resolution, as the app's
    does, and loses no detail to resampling at the model's resolution. Synthetic clips: at R."""
    if clip.read_full is None:
        return clip.frames[personal], clip.points[personal], clip.points[holdout]
    frames, points = clip.read_full(personal)
    scale = frames.shape[1] / clip.frames.shape[1]
    return frames, points, (clip.points[holdout] + 0.5) * scale - 0.5  # pixel-centre coordinates, as training.prepared


def _shrunk(clip: Clip, images: list[np.ndarray]) -> np.ndarray:
    """Images at the dataset's resolution -> (N, R, R, 3) at the evaluation's, shrunk the way the real frames were
    (INTER_AREA, as training.prepared reads them)."""
    size = clip.frames.shape[1]
    if images[0].shape[0] != size:
        images = [cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) for image in images]
    return np.stack(images)


class HoldoutWarps:
    """The app's classical renderer (`faces.warp.MultiSourceWarp.image`) on one clip's hold-out frames from one set
    of personalization frames: the personalization frame nearest in expression and pose, warped onto each hold-out's
    landmarks at the dataset's own resolution, with the head's motion fading out beyond the face, an open mouth taken
    from the frame whose lips are nearest, and the mouth filled.

    Made on first use and kept: the warp row, the mouth refiner's row (which corrects these very frames at the
    dataset's resolution, as the app corrects them at the photo's) and a refining model (which refines them) share
    one warp per hold-out frame and T."""

    def __init__(self, clip: Clip, personal: np.ndarray, holdout: np.ndarray):
        self.clip, self.personal, self.holdout = clip, personal, holdout

    @cached_property
    def _full(self) -> tuple[list[np.ndarray], np.ndarray]:
        frames, points, targets = _at_data_resolution(self.clip, self.personal, self.holdout)
        warp = MultiSourceWarp(list(frames), points)
        return [warp.image(target) for target in targets], targets

    @cached_property
    def frames(self) -> np.ndarray:
        """(N, R, R, 3) uint8: the warp renderer's frames at the evaluation's resolution."""
        return _shrunk(self.clip, self._full[0])

    def refined(self, refiner: MouthRefiner) -> np.ndarray:
        """(N, R, R, 3) uint8: the same frames, each mouth corrected by `refiner` before the frame is shrunk."""
        images, targets = self._full
        return _shrunk(self.clip, list(refine(refiner, np.stack(images), targets)))


def plain_warp_frames(clip: Clip, personal: np.ndarray, holdout: np.ndarray) -> np.ndarray:
    """Baseline every renderer is read against: the nearest personalization frame warped onto each hold-out's
    landmarks by the plainest piecewise-affine warp of the whole frame (faces.plain_warp, kept apart from the
    app's improving faces.warp so that the baseline does not move), triangulated on the 68 landmarks and the
    frame's fixed corners and edge midpoints only: no head points, so everything outside the face is stretched
    between the jaw and the frame's edge. Warped at the dataset's resolution, as `HoldoutWarps`."""
    frames, points, targets = _at_data_resolution(clip, personal, holdout)
    warps = [PlainWarp(frame, p) for frame, p in zip(frames, points, strict=True)]
    return _shrunk(clip, [warps[nearest_source(points, target)].warp(target) for target in targets])


def score(fake: np.ndarray, real: np.ndarray, driving: np.ndarray, metrics: tuple[str, ...],
          lpips_net: str) -> dict[str, float]:
    """The per-clip metrics among `metrics` for one method: (N, R, R, 3) uint8 generated and real frames, (N, 68, 2)
    driving landmarks; their notes (e.g. the share of frames with a detected face) come along. Pooled metrics (FID)
    are left to `evaluate_clips`, as they need every clip."""
    sample = Sample(fake, real, driving, lpips_net)
    out = {name: METRICS[name].per_clip(sample) for name in metrics if not METRICS[name].pooled}
    return {**out, **sample.notes}


def _grid(clip: Clip, personal: np.ndarray, holdout: np.ndarray, outputs: dict[str, np.ndarray],
          rows: int) -> np.ndarray:
    """Rows of hold-out frames: source photo | driving landmarks | real | one column per method."""
    picks = np.linspace(0, len(holdout) - 1, min(rows, len(holdout))).round().astype(int)
    lines = []
    for r, k in enumerate(picks):
        cells = [clip.frames[personal[r % len(personal)]], clip.landmark_images[holdout[k]], clip.frames[holdout[k]]]
        lines.append(np.concatenate(cells + [outputs[m][k] for m in outputs], 1))
    return np.concatenate(lines, 0)


def _format(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.4g}"


def write_tables(out: Path, rows: list[dict]) -> None:
    """results.md and results.csv shaped like the paper's Table 1: one row per (method, T). The CSV also carries the
    bookkeeping columns (clips, share of CSIM frames without an aligned face)."""
    headers = dict(COLUMNS)
    shown = [k for k in headers if any(k in r for r in rows)]
    extra = sorted({k for r in rows for k in r} - set(shown) - {"method", "T"})
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "T", *shown, *extra])
        writer.writerows([[r["method"], r["T"], *[r.get(k, "") for k in shown + extra]] for r in rows])
    lines = ["| method | T | " + " | ".join(headers[k] for k in shown) + " |", "|---|---|" + "---|" * len(shown)]
    lines += [f"| {r['method']} | {r['T']} | " + " | ".join(_format(r.get(k)) for k in shown) + " |" for r in rows]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def append_jsonl(out: Path, rows: list[dict], header: dict) -> None:
    """One line per metric in metric-<name>.jsonl (appended, as stylegan3 does), all methods and T in it."""
    for key, _ in COLUMNS:
        results = {f"{r['method']}/T={r['T']}": r[key] for r in rows if key in r}
        if results:
            with open(out / f"metric-{key}.jsonl", "a") as f:
                f.write(json.dumps({"metric": key, "results": results, **header}) + "\n")


def generate(networks: Networks, clip: Clip, method: str, personal: np.ndarray, holdout: np.ndarray,
             tune: FinetuneSettings, progress: bool, refiner: MouthRefiner | None = None,
             warps: HoldoutWarps | None = None) -> np.ndarray:
    """One method's (N, R, R, 3) uint8 re-rendering of the hold-out frames from T personalization frames (`warps`:
    the warp renderer's frames of the same, shared by the methods that start from them)."""
    warps = warps or HoldoutWarps(clip, personal, holdout)
    if method == "still":
        return still_frames(clip, personal, holdout)
    if method == "warp":
        return warps.frames
    if method == "mouth":
        if refiner is None:
            raise ValueError("the mouth method needs a mouth refiner")
        return warps.refined(refiner)
    if method == "plainwarp":
        return plain_warp_frames(clip, personal, holdout)
    settings = FEED_FORWARD if method == "ff" else tune
    avatar = personalize(networks, clip.frames[personal], clip.landmark_images[personal], settings,
                         clip.points[personal], progress=progress)
    # A refining model refines the very warp of the `warp` row: the comparison isolates what it adds.
    warped = warps.frames if networks.cfg.refines else None
    return render(networks, avatar, clip.landmark_images[holdout], clip.points[holdout], warped=warped)


def _mean(values: list[float]) -> float:
    """Mean over the clips where the metric exists (e.g. a face was detected); NaN when it exists for none."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _pool_key(method: str, t: int) -> tuple[str, int | None]:
    """The still frame does not depend on T: its frames are pooled once per clip, under every T alike."""
    return method, None if method == "still" else t


def evaluate_clips(networks: Networks, clips: list[Clip], cfg: EvaluateConfig, out: Path,
                   refiner: MouthRefiner | None = None) -> list[dict]:
    """Run every method on every clip; returns the table rows (per-clip means; pooled metrics over all clips)."""
    per_clip: dict[tuple[str, int], list[dict]] = defaultdict(list)
    pooled = [name for name in cfg.metrics if METRICS[name].pooled]
    # (metric, "real" or _pool_key(method, T)) -> per-clip features
    features: dict[tuple[str, object], list[np.ndarray]] = defaultdict(list)
    (out / "grids").mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(clips) * len(cfg.shots), disable=not cfg.progress, unit="run", desc="evaluate")
    for clip in clips:
        personal_sets, holdout = split_frames(len(clip.frames), cfg.shots, cfg.holdout)
        real, driving = clip.frames[holdout], clip.points[holdout]
        for name in pooled:
            features[(name, "real")].append(METRICS[name].features(real))
        cache: dict[str, tuple[np.ndarray, dict]] = {}  # the still frame does not depend on T: made and scored once
        for t in cfg.shots:
            personal, outputs = personal_sets[t], {}
            warps = HoldoutWarps(clip, personal, holdout)
            for method in cfg.methods:
                if method in cache:
                    images, result = cache[method]
                else:
                    images = generate(networks, clip, method, personal, holdout, cfg.tune, cfg.progress, refiner,
                                      warps)
                    result = score(images, real, driving, cfg.metrics, cfg.lpips_net)
                    for name in pooled:
                        features[(name, _pool_key(method, t))].append(METRICS[name].features(images))
                    if method == "still":
                        cache[method] = (images, result)
                outputs[method] = images
                per_clip[(method, t)].append(result)
            if t == max(cfg.shots):
                grid = _grid(clip, personal, holdout, outputs, cfg.grid_rows)
                Image.fromarray(grid).save(out / "grids" / f"{clip.name}.png")
            bar.update(1)
    bar.close()
    rows = []
    for t in sorted(cfg.shots):
        for method in cfg.methods:
            results = per_clip[(method, t)]
            row = {"method": LABELS[method], "T": t, "videos": len(results)}
            row.update({key: _mean([r[key] for r in results]) for key in results[0]})
            for name in cfg.metrics:
                if METRICS[name].count_label:
                    row[count_key(name)] = int(sum(np.isfinite(r[name]) for r in results))
            for name in pooled:
                real_features = np.concatenate(features[(name, "real")])
                fake_features = np.concatenate(features[(name, _pool_key(method, t))])
                row[name] = METRICS[name].pool(real_features, fake_features)
            rows.append(row)
    with open(out / "per_video.jsonl", "w") as f:
        for (method, t), results in per_clip.items():
            for clip, r in zip(clips, results, strict=True):
                f.write(json.dumps({"video": clip.name, "method": LABELS[method], "T": t, **r}) + "\n")
    return rows


def evaluate(cfg: EvaluateConfig) -> Path:
    """The whole protocol; returns the output folder."""
    device = resolve_device(cfg.device)
    networks = load_networks(cfg.model, device)
    clips = load_clips(cfg.data, cfg.split, networks.cfg.resolution, cfg.max_videos)
    needed = 2 * max(max(cfg.shots), cfg.holdout)
    usable = [c for c in clips if len(c.frames) >= needed]
    if len(usable) < len(clips):
        print(f"skipping {len(clips) - len(usable)} clips with fewer than {needed} frames")
    if not usable:
        raise UserError(f"no {cfg.split} clip in {cfg.data} has the {needed} frames that T = {max(cfg.shots)} and "
                        f"{cfg.holdout} hold-out frames need; lower --shots / --holdout")
    refiner = load_mouth_refiner(cfg.mouth_refiner) if "mouth" in cfg.methods else None
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    rows = evaluate_clips(networks, usable, cfg, out, refiner)
    write_tables(out, rows)
    header = {
        "model": str(cfg.model), "model_id": model_id(networks), "mouth_refiner": cfg.mouth_refiner,
        "data": str(cfg.data), "split": cfg.split,
        "videos": len(usable), "holdout": cfg.holdout, "lpips_net": cfg.lpips_net,
        "steps": {t: cfg.tune.resolved_steps(t) for t in cfg.shots}, "tune": to_dict(cfg.tune),
        "total_time": time.time() - start, "timestamp": time.time(),
    }
    append_jsonl(out, rows, header)
    print((out / "results.md").read_text())
    print(f"wrote {out}")
    return out




def load_clips(root: str | Path, split: str, resolution: int | None, max_videos: int | None = None) -> list[Clip]:
    """The `split` clips of a `heads prepare` folder at the model's resolution (None: the stored crops' own), read
    the way training reads them (training.prepared: same resizing, landmark images with pupils when the clips have
    them)."""
    try:
        episodes = PreparedEpisodes(root, split=split, resolution=resolution)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(str(error)) from error
    resolution = episodes.resolution
    full = PreparedEpisodes(root, split=split)  # the same clips at the stored resolution, for the plain warp
    clips = []
    for video, entry in enumerate(episodes.clips[:max_videos]):
        points, pupils = episodes.points(video), episodes._arrays(video).get("pupils")
        frames = np.stack([episodes._frame(video, row) for row in range(len(points))])
        landmark_images = np.stack([draw_landmarks(p, resolution, None if pupils is None else pupils[i])
                                    for i, p in enumerate(points)])
        clips.append(Clip(entry["clip"], frames, points, landmark_images, partial(full.read, video)))
    return clips
