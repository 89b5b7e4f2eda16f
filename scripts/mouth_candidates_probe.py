"""Probe, not product: can the mouth refiner gain at T = 8 by choosing among the photos' own mouths?

Three commands, each on the prepared media (docs/warp-guided.md, "Why T = 8 is short, measured"):

  oracle   Diagnostic that reads the answer (never a renderer): each personalization photo warped alone onto each
           open-mouth hold-out frame of a split at T = 8, its mouth SSIM against the real frame, against the warp
           renderer's; then how well picking by landmark rules, and by the best of the k nearest by the lips, does.
  train    A refiner that also sees the K photos nearest by the lips, each warped alone and cut with the same box,
           and blends each into the crop per pixel (zero-initialised: untrained it returns the warp), trained with the
           shipped recipe; `--control` puts the warp crop itself in the candidates' place, to tell the candidates'
           content from the wider network.
  measure  Its mouth SSIM on open-mouth frames against the warp renderer, paired per test clip (T = 1 and 8).

  OMP_WAIT_POLICY=PASSIVE python scripts/mouth_candidates_probe.py oracle --data data/media_prepared
  OMP_WAIT_POLICY=PASSIVE python scripts/mouth_candidates_probe.py train runs/cand3.pt --data data/media_prepared
  python scripts/mouth_candidates_probe.py measure runs/cand3.pt --data data/media_prepared

A probe reaches into private helpers of the modules it probes (the evaluation's warps at the data's resolution, the
refiner's tensor layout); nothing imports it, and it goes once its answer is in the product or ruled out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faces.motion import _head_turn, _interocular, apply_affine, fit_similarity, mouth_opening
from faces.mouth_crop import CROP, MouthCrop
from faces.regions import mouth_box
from faces.warp import MultiSourceWarp, source_distances
from training.evaluate import HoldoutWarps, _at_data_resolution, _shrunk, load_clips
from training.losses import ssim_loss
from training.metrics.mouth_ssim import OPEN_MOUTH, mouth_ssim
from training.metrics.ssim import WINDOW, ssim
from training.mouth_refiner import GROW, _tensor, training_picks
from training.prepared import PreparedEpisodes
from training.protocol import split_frames

LIPS = np.arange(48, 68)


def _bootstrap_sd(d: np.ndarray) -> float:
    rng = np.random.default_rng(0)
    return float(np.std([rng.choice(d, len(d)).mean() for _ in range(2000)]))


# ------------------------------------------------------------------------------------------------ the oracle


def _single_scores(data: str, split: str) -> list[dict]:
    """Per clip with open-mouth hold-out frames at T = 8: the warp renderer's mouth SSIM per frame, each photo's
    alone (T, N), and the photos' and targets' landmarks at the data's resolution."""
    records = []
    for clip in [c for c in load_clips(data, split, 128) if len(c.frames) >= 64]:
        personal, holdout = split_frames(len(clip.frames), (8,), 32)
        hold = holdout[mouth_opening(clip.points[holdout]) > OPEN_MOUTH]
        if not len(hold):
            continue
        frames, points, targets = _at_data_resolution(clip, personal[8], hold)
        real = clip.frames[hold]

        boxes = [mouth_box(p, real.shape[1:3], min_side=2 * WINDOW) for p in clip.points[hold]]

        def scores(images: np.ndarray, real: np.ndarray = real, boxes: list = boxes) -> np.ndarray:
            return np.array([ssim(image[None, y0:y1, x0:x1], truth[None, y0:y1, x0:x1])[0]
                             for image, truth, (x0, y0, x1, y1) in zip(images, real, boxes, strict=True)])

        singles = np.zeros((len(frames), len(hold)))
        for k in range(len(frames)):
            alone = MultiSourceWarp([frames[k]], points[k][None])
            singles[k] = scores(_shrunk(clip, [alone.image(t) for t in targets]))
        records.append({"current": scores(HoldoutWarps(clip, personal[8], hold).frames), "singles": singles,
                        "sources": points, "targets": targets})
    return records


def _lips_local(sources: np.ndarray, target: np.ndarray) -> np.ndarray:
    errors = [np.sqrt(((apply_affine(fit_similarity(p[LIPS], target[LIPS]), p[LIPS]) - target[LIPS]) ** 2)
                      .sum(1).mean()) for p in sources]
    return np.array(errors) / _interocular(target[None])[0]


RULES = {
    "face": lambda s, t: source_distances(s, t),
    "lips": lambda s, t: source_distances(s, t, LIPS),
    "inner lips": lambda s, t: source_distances(s, t, np.arange(60, 68)),
    "lips fitted locally": _lips_local,
    "opening": lambda s, t: np.abs(mouth_opening(s) - mouth_opening(t[None])[0]),
    "lips + head turn": lambda s, t: source_distances(s, t, LIPS) + np.abs(_head_turn(s) - _head_turn(t[None])[0]),
    "lips + face": lambda s, t: source_distances(s, t, LIPS) + source_distances(s, t),
}


def oracle(data: str) -> None:
    for split in ("train", "test"):
        records = _single_scores(data, split)
        current = np.array([r["current"].mean() for r in records])
        best = np.array([r["singles"].max(0).mean() for r in records])
        print(f"{split}: {len(records)} clips, warp renderer {current.mean():.4f}, best photo per frame "
              f"{best.mean():.4f} ({(best - current).mean():+.4f})")
        for name, rule in RULES.items():
            picked = np.array([np.mean([r["singles"][int(np.argmin(rule(r["sources"], t))), i]
                                        for i, t in enumerate(r["targets"])]) for r in records])
            d = picked - current
            print(f"  by {name:20s} {picked.mean():.4f} ({d.mean():+.4f} ± {_bootstrap_sd(d):.4f})")
        for k in (2, 3, 4):
            top = np.array([np.mean([max(r["current"][i], r["singles"][np.argsort(
                source_distances(r["sources"], t, LIPS))[:k], i].max()) for i, t in enumerate(r["targets"])])
                for r in records])
            print(f"  best of the warp renderer's and the {k} nearest by the lips {top.mean():.4f} "
                  f"({(top - current).mean():+.4f})")


# --------------------------------------------------------------------------------------- the candidate refiner


class CandidateRefiner(nn.Module):
    """The shipped MouthRefiner's U-Net with K candidate crops as input and K per-pixel blend weights as output."""

    def __init__(self, k: int, width: int = 32):
        super().__init__()
        w, self.k = width, k

        def pair(a: int, b: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(a, b, 3, stride, 1), nn.ReLU(), nn.Conv2d(b, b, 3, padding=1), nn.ReLU()]

        self.top = nn.Sequential(*pair(5 + 3 * k, w))
        self.middle = nn.Sequential(*pair(w, 2 * w, 2))
        self.bottom = nn.Sequential(*pair(2 * w, 3 * w, 2), nn.Conv2d(3 * w, 3 * w, 3, padding=1), nn.ReLU())
        self.up_middle = nn.Sequential(nn.Conv2d(5 * w, 2 * w, 3, padding=1), nn.ReLU())
        self.up_top = nn.Sequential(nn.Conv2d(3 * w, w, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(w, 3 + k, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, warp: torch.Tensor, lips: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """(B, 3, C, C) warp crop, (B, 2, C, C) lips, (B, K, 3, C, C) candidates -> the correction to add."""
        top = self.top(torch.cat([warp, lips, candidates.flatten(1, 2)], 1))
        middle = self.middle(top)
        bottom = self.bottom(middle)
        up = self.up_middle(torch.cat([F.interpolate(bottom, scale_factor=2.0), middle], 1))
        up = self.up_top(torch.cat([F.interpolate(up, scale_factor=2.0), top], 1))
        out = self.out(up)
        region = F.max_pool2d(lips[:, 1:2], 2 * GROW + 1, 1, GROW)
        blend = (out[:, 3:, None] * (candidates - warp[:, None])).sum(1)
        return (warp + region * (blend + out[:, :3])).clamp(-1.0, 1.0) - warp


def _candidates(warp: MultiSourceWarp, points: np.ndarray, target: np.ndarray, k: int) -> list[np.ndarray]:
    order = np.resize(np.argsort(source_distances(points, target, LIPS), kind="stable")[:k], k)
    return [warp.warps[i].picture(target) for i in order]


def _crops(data: str, k: int, control: bool, seed: int = 0) -> tuple[np.ndarray, ...]:
    """As `training.mouth_refiner.training_crops` (T = 1 and 8, 40 open targets a clip and a quarter as many
    closed), with each target's K candidate crops."""
    episodes = PreparedEpisodes(data, split="train", min_frames=32)
    warps, reals, masks, candidates = [], [], [], []
    for video in range(episodes.num_videos):
        points = episodes.points(video)
        for t_shots in (1, 8):
            photos, targets = training_picks(points, t_shots, 40, [seed, video, t_shots])
            if not len(targets):
                continue
            sources, source_points = episodes.read(video, photos)
            warp = MultiSourceWarp(list(sources), source_points)
            frames, target_points = episodes.read(video, targets)
            for frame, target in zip(frames, target_points, strict=True):
                where = MouthCrop.at(target, frame.shape)
                image = warp.image(target)
                warps.append(where.cut(image))
                reals.append(where.cut(frame))
                masks.append(where.masks(target))
                shown = [image] * k if control else _candidates(warp, source_points, target, k)
                candidates.append(np.stack([where.cut(c) for c in shown]))
    return np.stack(warps), np.stack(reals), np.stack(masks), np.stack(candidates)


def _candidate_tensor(crops: np.ndarray, k: int) -> torch.Tensor:
    return _tensor(crops.reshape(-1, CROP, CROP, 3)).reshape(-1, k, 3, CROP, CROP)


def train(out: str, data: str, k: int, control: bool, steps: int, seed: int = 0) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    start = time.time()
    warps, reals, masks, candidates = _crops(data, k, control, seed)
    print(f"{len(warps)} crops ({time.time() - start:.0f} s)", flush=True)
    warps, reals, masks, candidates = _tensor(warps), _tensor(reals), torch.from_numpy(masks), _candidate_tensor(
        candidates, k)
    model = CandidateRefiner(k)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    generator, running = torch.Generator().manual_seed(seed), []
    for step in range(1, steps + 1):
        index = torch.randint(len(warps), (32,), generator=generator)
        x, y, m, c = warps[index], reals[index], masks[index], candidates[index]
        if step % 2:
            x, y, m, c = x.flip(3), y.flip(3), m.flip(3), c.flip(4)
        fixed = x + model(x, m, c)
        loss = ssim_loss(fixed, y) + (fixed - y).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running.append(loss.item())
        if step % 200 == 0 or step == steps:
            print(f"step {step} loss {np.mean(running):.4f} ({time.time() - start:.0f} s)", flush=True)
            running = []
            torch.save({"k": k, "control": control, "state": model.state_dict()}, out)


@torch.no_grad()
def measure(out: str, data: str) -> None:
    torch.set_num_threads(1)
    saved = torch.load(out)
    k, control = saved["k"], saved["control"]
    model = CandidateRefiner(k)
    model.load_state_dict(saved["state"])
    model.eval()
    clips = [c for c in load_clips(data, "test", 128) if len(c.frames) >= 64]
    per_clip = {}
    for t in (1, 8):
        differences = []
        for clip in clips:
            personal, holdout = split_frames(len(clip.frames), (t,), 32)
            frames, points, targets = _at_data_resolution(clip, personal[t], holdout)
            warp = MultiSourceWarp(list(frames), points)
            plain, fixed = [], []
            for target in targets:
                image = warp.image(target)
                shown = [image] * k if control else _candidates(warp, points, target, k)
                where = MouthCrop.at(target, image.shape)
                correction = model(_tensor(where.cut(image)[None]), torch.from_numpy(where.masks(target)[None]),
                                   _candidate_tensor(np.stack([where.cut(c) for c in shown]), k))
                plain.append(image)
                fixed.append(where.add(image, correction[0].permute(1, 2, 0).numpy() * 127.5))
            real = clip.frames[holdout]
            before = mouth_ssim(_shrunk(clip, plain), real, clip.points[holdout])[0]
            after = mouth_ssim(_shrunk(clip, fixed), real, clip.points[holdout])[0]
            if np.isfinite(before):
                differences.append(after - before)
                per_clip[f"{clip.name} T={t}"] = after - before
        d = np.array(differences)
        print(f"T = {t}: {len(d)} open-mouth clips, mouth SSIM {d.mean():+.4f} ± {_bootstrap_sd(d):.4f}", flush=True)
    Path(out).with_suffix(".json").write_text(json.dumps(per_clip, indent=1))  # to pair two probes clip by clip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("oracle", "train", "measure"))
    parser.add_argument("out", nargs="?", default="runs/cand3.pt", help="the probe's weights (train, measure)")
    parser.add_argument("--data", default="data/media_prepared")
    parser.add_argument("--k", type=int, default=3, help="candidates: the photos nearest by the lips")
    parser.add_argument("--control", action="store_true", help="the warp crop repeated in the candidates' place")
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--seed", type=int, default=0, help="seeds the targets' choice, the weights and the batches")
    args = parser.parse_args()
    if args.command == "oracle":
        oracle(args.data)
    elif args.command == "train":
        train(args.out, args.data, args.k, args.control, args.steps, args.seed)
    else:
        measure(args.out, args.data)
