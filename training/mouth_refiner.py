"""The mouth refiner: a small network that corrects the warp renderer's mouth, where the warp fails most.

The warp moves the photo's own pixels, so it cannot show what the photo does not: opened wider than any photo shows,
the mouth is a painted cavity between stretched lips (faces/warp.py). The refiner sees a mouth-centred crop of the
warp renderer's output (`faces.mouth_crop`: the box mouth SSIM judges, at 48 px) and the target's lips as two masks,
and adds a correction there, within the outer lips grown by 3 px; everything else stays the warp's, at the photo's
resolution. It never sees the driving frame's pixels (they are the answer in self-reenactment, another person's
mouth in cross-reenactment), only its landmarks.

Why so: a refiner of the whole 128-px face learnt to return the warp (docs/warp-guided.md, run 4); on a crop where
the mouth fills the input, trained on the metric it is judged by (1 − SSIM, plus L1), a correction does lower the
loss (the probe of 2026-12-07). Its last convolution starts at zero, so an untrained refiner returns the warp and
training moves it away only where that pays.

Read top to bottom: the network, its files (`save` / `load`, safetensors and a config), the training crops, the
training loop, and `refine`, which applies it to whole images as `heads evaluate` does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from base.errors import UserError
from faces.motion import mouth_opening
from faces.mouth_crop import CROP, MouthCrop, correct_mouths
from faces.warp import MultiSourceWarp
from training.checkpoint import load_weights, read_config, save_pretrained
from training.config import MouthRefinerConfig, MouthTrainConfig, from_dict, to_dict
from training.losses import ssim_loss
from training.prepared import PreparedEpisodes
from training.protocol import split_frames

KIND = "mouth-refiner"  # config.json's "kind": what a folder holds
WEIGHTS = "mouth_refiner"  # <WEIGHTS>.safetensors
OPEN = 0.05  # interoculars: a target mouth opened more than this is an open training target
GROW = 3  # px of the crop: the correction's region is the outer lips grown by this much


class MouthRefiner(nn.Module):
    """(B, 3, CROP, CROP) warp crop in [-1, 1] and (B, 2, CROP, CROP) lip masks (inner, outer) -> the correction
    (B, 3, CROP, CROP) to add to the crop, zero outside the outer lips grown by GROW px, such that crop + correction
    stays in [-1, 1]. A three-level U-Net (width, 2×, 3× channels)."""

    def __init__(self, cfg: MouthRefinerConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or MouthRefinerConfig()
        w = cfg.width

        def pair(a: int, b: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(a, b, 3, stride, 1), nn.ReLU(), nn.Conv2d(b, b, 3, padding=1), nn.ReLU()]

        self.top = nn.Sequential(*pair(5, w))
        self.middle = nn.Sequential(*pair(w, 2 * w, 2))
        self.bottom = nn.Sequential(*pair(2 * w, 3 * w, 2), nn.Conv2d(3 * w, 3 * w, 3, padding=1), nn.ReLU())
        self.up_middle = nn.Sequential(nn.Conv2d(5 * w, 2 * w, 3, padding=1), nn.ReLU())
        self.up_top = nn.Sequential(nn.Conv2d(3 * w, w, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(w, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # an untrained refiner returns the warp
        nn.init.zeros_(self.out.bias)

    def forward(self, warp: torch.Tensor, lips: torch.Tensor) -> torch.Tensor:
        top = self.top(torch.cat([warp, lips], 1))
        middle = self.middle(top)
        bottom = self.bottom(middle)
        up = self.up_middle(torch.cat([F.interpolate(bottom, scale_factor=2.0), middle], 1))
        up = self.up_top(torch.cat([F.interpolate(up, scale_factor=2.0), top], 1))
        region = F.max_pool2d(lips[:, 1:2], 2 * GROW + 1, 1, GROW)
        return (warp + region * self.out(up)).clamp(-1.0, 1.0) - warp


def save(model: MouthRefiner, folder: str | Path, training: dict | None = None) -> Path:
    """A model folder: config.json (kind, architecture, how it was trained) and mouth_refiner.safetensors."""
    config = {"kind": KIND, "crop": CROP, "model": to_dict(model.cfg), "training": training or {}}
    return save_pretrained(folder, {WEIGHTS: model}, config)


def load(folder: str | Path) -> MouthRefiner:
    """The refiner saved in `folder`, in eval mode; a clear error for anything else."""
    try:
        config = read_config(folder)
    except FileNotFoundError as error:
        raise UserError(f"{folder} is not a mouth refiner folder: {error}") from None
    if config.get("kind") != KIND or config.get("crop") != CROP:
        raise UserError(f"{folder} holds no mouth refiner for {CROP}-px crops (train one with `heads train-mouth`)")
    model = MouthRefiner(from_dict(MouthRefinerConfig, config["model"]))
    try:
        load_weights(folder, {WEIGHTS: model})
    except (FileNotFoundError, RuntimeError) as error:
        raise UserError(str(error)) from None
    return model.eval()


def _tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def training_picks(points: np.ndarray, t_shots: int, per_clip: int, seed: list[int]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One clip's (F, 68, 2) landmarks -> the T photos `heads evaluate` would pick (`training.protocol`) and the
    sorted training targets among the other frames: up to `per_clip` with the mouth open and a quarter as many
    closed (so closed mouths stay closed), drawn by `seed`."""
    photos = split_frames(len(points), (t_shots,), 1)[0][t_shots]
    rng = np.random.default_rng(seed)
    free = ~np.isin(np.arange(len(points)), photos)
    opening = mouth_opening(points)
    opened = np.flatnonzero((opening > OPEN) & free)
    closed = np.flatnonzero((opening <= OPEN) & free)
    targets = np.sort(np.concatenate([rng.choice(opened, min(per_clip, len(opened)), replace=False),
                                      rng.choice(closed, min(per_clip // 4, len(closed)), replace=False)]).astype(int))
    return photos, targets


def training_crops(cfg: MouthTrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, CROP, CROP, 3) warp crops, the real frames' crops, (N, 2, CROP, CROP) lip masks, from the training split.

    For each clip with >= min_frames frames and each T of `shots`: the photos `heads evaluate` would pick (T evenly
    spaced in the first half), warped by the warp renderer at the stored resolution onto up to `per_clip` other
    frames with the mouth open (and a quarter as many closed), cut as the app cuts them. A bad clip is skipped with
    a message, not fatal."""
    try:
        episodes = PreparedEpisodes(cfg.data, split="train", min_frames=cfg.min_frames)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(str(error)) from error
    warps, reals, masks = [], [], []
    for video in tqdm(range(episodes.num_videos), desc="crops", unit="clip", disable=not cfg.progress):
        try:
            points = episodes.points(video)
            for t_shots in cfg.shots:
                photos, targets = training_picks(points, t_shots, cfg.per_clip, [cfg.seed, video, t_shots])
                if not len(targets):
                    continue
                sources, source_points = episodes.read(video, photos)
                warp = MultiSourceWarp(list(sources), source_points)
                frames, target_points = episodes.read(video, targets)
                for frame, target in zip(frames, target_points, strict=True):
                    where = MouthCrop.at(target, frame.shape)
                    warps.append(where.cut(warp.image(target)))
                    reals.append(where.cut(frame))
                    masks.append(where.masks(target))
        except (OSError, ValueError) as error:
            print(f"skipping clip {episodes.clips[video]['clip']}: {error}")
    if not warps:
        raise UserError(f"no training clip in {cfg.data} has {cfg.min_frames} frames with an open mouth")
    return np.stack(warps), np.stack(reals), np.stack(masks)


def train(cfg: MouthTrainConfig) -> Path:
    """Train a refiner from zero on `training_crops`; writes the model folder (every 100 steps, so a stopped run
    keeps its last weights) and train_log.jsonl (the loss curve)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    warps, reals, masks = training_crops(cfg)
    print(f"{len(warps)} training crops ({time.time() - start:.0f} s)")
    warps, reals, masks = _tensor(warps), _tensor(reals), torch.from_numpy(masks)
    model = MouthRefiner(cfg.model)
    optimizer = torch.optim.Adam(model.parameters(), cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    (out / "train_log.jsonl").write_text("")
    bar = tqdm(range(1, cfg.steps + 1), desc="train", unit="step", disable=not cfg.progress)
    running = []
    for step in bar:
        index = torch.randint(len(warps), (cfg.batch,), generator=generator)
        x, y, m = warps[index], reals[index], masks[index]
        if step % 2:  # mirrored half the time: a mouth's left and right are alike
            x, y, m = x.flip(3), y.flip(3), m.flip(3)
        fixed = x + model(x, m)
        loss = ssim_loss(fixed, y) + cfg.l1 * (fixed - y).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running.append(loss.item())
        if step % 100 == 0 or step == cfg.steps:
            entry = {"step": step, "loss": float(np.mean(running)), "seconds": round(time.time() - start, 1)}
            with open(out / "train_log.jsonl", "a") as log:
                log.write(json.dumps(entry) + "\n")
            bar.set_postfix(loss=f"{entry['loss']:.4f}")
            running = []
            save(model, out, {**to_dict(cfg), "crops": len(warps), "step": step})
    print(f"wrote {out}")
    return out


@torch.no_grad()
def refine(model: MouthRefiner, images: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 warp renderer output and the targets' (B, 68, 2) landmarks in its pixels -> the images
    with their mouths corrected (new arrays), at the images' own resolution, as the app's `MouthRenderer` does."""

    def correct(crops: np.ndarray, lips: np.ndarray) -> np.ndarray:
        return model(_tensor(crops), torch.from_numpy(lips)).permute(0, 2, 3, 1).numpy() * 127.5

    return correct_mouths(images, points, correct)
