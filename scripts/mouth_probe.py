"""Probe for the neural-refinement issue: can a small network, shown only the warp and the target's lips, correct
the warp's mouth so that it is nearer the real one?

Not yet part of the product (no ONNX graph, no renderer, no `heads evaluate` method): a research script that keeps
its data, model, training and measurement in one file so that its result (docs/warp-guided.md, "A mouth refiner")
can be reproduced and built on.

- Data: each training clip's photos as `heads evaluate` picks them (T = 1 and T = 8: T frames evenly spaced in the
  first half); targets are its other frames with the mouth open (and a quarter as many closed), the photos warped
  onto them by the warp renderer (`MultiSourceWarp.image`, at the
  prepared media's resolution, area-shrunk to 128 px as `heads evaluate` does). A crop of the mouth box that
  `training.metrics.mouth_ssim` measures, resized to 48 px, of the warp and of the real frame, and two masks
  rasterised from the target's landmarks (inside the inner lips, inside the outer lips). Never the driving frame's
  pixels as input: they are the answer.
- Model: a three-level U-Net (32-64-96 channels, 0.3 M parameters) whose output is a correction added to the warp
  within the outer lips grown by 3 px; the last convolution starts at zero, so the untrained model returns the warp.
- Loss: 1 - SSIM (the metric's window and constants) plus L1, on the crop.
- Measure: on every test clip with >= 64 frames, `heads evaluate`'s protocol (T photos evenly spaced in the first
  half, 32 hold-out frames in the second), the correction resized into the 128-px warp frame; mouth SSIM on
  open-mouth frames, whole-frame SSIM and sharpness, each against the warp, paired per clip.

    OMP_WAIT_POLICY=PASSIVE python scripts/mouth_probe.py train --data /work/data/media_prepared --steps 1000
    python scripts/mouth_probe.py measure --data /work/data/media_prepared --shots 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faces.motion import mouth_opening  # noqa: E402
from faces.regions import MOUTH, MOUTH_MARGIN, landmark_box  # noqa: E402
from faces.warp import MultiSourceWarp, mouth_distances  # noqa: E402
from training.evaluate import load_clips, split_frames  # noqa: E402
from training.metrics.mouth_ssim import mouth_ssim  # noqa: E402
from training.metrics.sharpness import sharpness  # noqa: E402
from training.metrics.ssim import K1, K2, WINDOW, _window, ssim  # noqa: E402

CROP = 48  # px: the mouth box (about 40-50 px at 128) resized to this
EVAL_SIZE = 128
OPEN = 0.05  # interoculars: a target mouth opened more than this is an "open" training target
LIPS = (np.arange(60, 68), np.arange(48, 60))  # inner, outer


def mouth_box(points: np.ndarray) -> tuple[int, int, int, int]:
    """The box `training.metrics.mouth_ssim` measures, for (68, 2) points in 128-px crop coordinates."""
    return landmark_box(points[MOUTH], MOUTH_MARGIN, (EVAL_SIZE, EVAL_SIZE), square=True, min_side=2 * WINDOW)


def lip_masks(points: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(2, CROP, CROP) float32: inside the inner lips, inside the outer lips, in the crop's pixels."""
    x0, y0, x1, _ = box
    scale = CROP / (x1 - x0)
    out = np.zeros((2, CROP, CROP), np.float32)
    for k, part in enumerate(LIPS):
        polygon = ((points[part] - [x0 - 0.5, y0 - 0.5]) * scale - 0.5) * 16
        mask = np.zeros((CROP, CROP), np.uint8)
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1, cv2.LINE_AA, 4)
        out[k] = mask
    return out


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    interpolation = cv2.INTER_AREA if x1 - x0 > CROP else cv2.INTER_LINEAR
    return cv2.resize(image[y0:y1, x0:x1], (CROP, CROP), interpolation=interpolation)


def samples(data: str, split: str, shots: tuple[int, ...], per_clip: int | None, sources: int = 0):
    """Crops of warp and real frame and the lip masks. With `per_clip` (training): from each clip with >= 32 frames
    and each T of `shots`, open-mouth targets (and a quarter as many closed ones) among the frames that are not
    photos, the photos `heads evaluate`'s (T evenly spaced in the first half). Without (measuring): `heads
    evaluate`'s split of each clip with >= 64 frames at the one T of `shots`. Yields (clip, frame index, box, 128-px
    warp, warp crop, real crop, masks)."""
    clips = load_clips(data, split, EVAL_SIZE)
    for number, clip in enumerate(clips):
        count = len(clip.frames)
        if count < (32 if per_clip else 64):
            continue
        for t_shots in shots:
            photos, targets = split_frames(count, (t_shots,), 32 if per_clip is None else 1)
            personal = photos[t_shots]
            if per_clip is not None:
                rng = np.random.default_rng([number, t_shots])
                opening = mouth_opening(clip.points)
                free = ~np.isin(np.arange(count), personal)
                opened, closed = np.flatnonzero((opening > OPEN) & free), np.flatnonzero((opening <= OPEN) & free)
                targets = np.concatenate([rng.choice(opened, min(per_clip, len(opened)), replace=False),
                                          rng.choice(closed, min(per_clip // 4, len(closed)), replace=False)])
            frames, points = clip.read_full(personal)
            scale = frames.shape[1] / clip.frames.shape[1]
            warp = MultiSourceWarp(list(frames), points)
            for t in np.sort(targets).astype(int):
                target = (clip.points[t] + 0.5) * scale - 0.5
                warped = warp.image(target)
                warped = cv2.resize(warped, (EVAL_SIZE, EVAL_SIZE), interpolation=cv2.INTER_AREA)
                box = mouth_box(clip.points[t])
                shown = crop(warped, box)
                if sources:  # the photos whose lips are nearest the target's, each warped onto it alone
                    order = np.resize(np.argsort(mouth_distances(points, target), kind="stable"), sources)
                    each = [cv2.resize(warp.warps[k].picture(target), (EVAL_SIZE, EVAL_SIZE),
                                       interpolation=cv2.INTER_AREA) for k in order]  # T = 1: one photo, repeated
                    shown = np.concatenate([shown] + [crop(e, box) for e in each], 2)
                yield clip, t, box, warped, shown, crop(clip.frames[t], box), lip_masks(clip.points[t], box)


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B,) SSIM with the metric's window and constants, differentiable."""
    a, b = (a + 1) * 127.5, (b + 1) * 127.5
    g = _window(torch.float32)  # the metric's own window

    def blur(x):
        c = x.shape[1]
        x = F.conv2d(x, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        return F.conv2d(x, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)

    c1, c2 = (K1 * 255) ** 2, (K2 * 255) ** 2
    ma, mb = blur(a), blur(b)
    va, vb, cab = blur(a * a) - ma**2, blur(b * b) - mb**2, blur(a * b) - ma * mb
    return (((2 * ma * mb + c1) * (2 * cab + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))).mean((1, 2, 3))


class MouthRefiner(nn.Module):
    """Warp crop (3) and lip masks (2) -> the warp corrected within the outer lips grown by 3 px."""

    def __init__(self, width: int = 32, sources: int = 0):
        super().__init__()
        w = width
        relu = nn.ReLU

        def pair(a, b, stride=1):
            return [nn.Conv2d(a, b, 3, stride, 1), relu(), nn.Conv2d(b, b, 3, padding=1), relu()]

        self.top = nn.Sequential(*pair(5 + 3 * sources, w))
        self.middle = nn.Sequential(*pair(w, 2 * w, 2))
        self.bottom = nn.Sequential(*pair(2 * w, 3 * w, 2), nn.Conv2d(3 * w, 3 * w, 3, padding=1), relu())
        self.up_middle = nn.Sequential(nn.Conv2d(5 * w, 2 * w, 3, padding=1), relu())
        self.up_top = nn.Sequential(nn.Conv2d(3 * w, w, 3, padding=1), relu())
        self.out = nn.Conv2d(w, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # an untrained refiner returns the warp
        nn.init.zeros_(self.out.bias)

    def forward(self, shown: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        warp = shown[:, :3]
        top = self.top(torch.cat([shown, masks], 1))
        middle = self.middle(top)
        bottom = self.bottom(middle)
        up = self.up_middle(torch.cat([F.interpolate(bottom, scale_factor=2), middle], 1))
        up = self.up_top(torch.cat([F.interpolate(up, scale_factor=2), top], 1))
        region = F.max_pool2d(masks[:, 1:2], 7, 1, 3)  # the outer lips grown by 3 px
        return (warp + region * self.out(up)).clamp(-1.0, 1.0)


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train(args) -> None:
    torch.manual_seed(0)
    rows = list(samples(args.data, "train", tuple(args.train_shots), args.per_clip, args.sources))
    print(f"{len(rows)} training crops from {len({id(r[0]) for r in rows})} clips", flush=True)
    warps, reals = _tensor(np.stack([r[4] for r in rows])), _tensor(np.stack([r[5] for r in rows]))
    masks = torch.from_numpy(np.stack([r[6] for r in rows]))
    model = MouthRefiner(sources=args.sources)
    optimizer = torch.optim.Adam(model.parameters(), args.lr)
    start = time.time()
    for step in range(1, args.steps + 1):
        index = torch.randint(len(warps), (args.batch,))
        x, y, m = warps[index], reals[index], masks[index]
        if step % 2:  # mirrored half the time: a mouth's left and right are alike
            x, y, m = x.flip(3), y.flip(3), m.flip(3)
        out = model(x, m)
        loss = (1 - ssim_map(out, y)).mean() + (out - y).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == args.steps:
            torch.save(model.state_dict(), args.out)
            print(f"step {step} loss {loss.item():.4f} ({time.time() - start:.0f} s)", flush=True)


def measure(args) -> None:
    model = MouthRefiner(sources=args.sources)
    model.load_state_dict(torch.load(args.out))
    model.eval()
    per_clip: dict[int, list] = {}
    for clip, t, box, warped, warp_crop, _, masks in samples(args.data, "test", (args.shots,), None, args.sources):
        with torch.no_grad():
            out = model(_tensor(warp_crop[None]), torch.from_numpy(masks[None]))
        delta = (out - _tensor(warp_crop[None, ..., :3]))[0].permute(1, 2, 0).numpy() * 127.5
        x0, y0, x1, y1 = box
        fixed = warped.astype(np.float32)
        fixed[y0:y1, x0:x1] += cv2.resize(delta, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        per_clip.setdefault(id(clip), [clip, [], [], []])
        entry = per_clip[id(clip)]
        entry[1].append(t), entry[2].append(warped), entry[3].append(np.clip(np.round(fixed), 0, 255).astype(np.uint8))
    rows = {"mouth SSIM": [], "SSIM": [], "sharpness": []}
    for clip, ts, warped, fixed in per_clip.values():
        real, points, warped, fixed = clip.frames[ts], clip.points[ts], np.stack(warped), np.stack(fixed)
        pairs = {"mouth SSIM": (mouth_ssim(warped, real, points)[0], mouth_ssim(fixed, real, points)[0]),
                 "SSIM": (ssim(warped, real).mean(), ssim(fixed, real).mean()),
                 "sharpness": (sharpness(warped, real, points), sharpness(fixed, real, points))}
        for name, (before, after) in pairs.items():
            if np.isfinite(before) and np.isfinite(after):
                rows[name].append((before, after))
    print(f"{len(per_clip)} test clips with >= 64 frames, T = {args.shots}")
    for name, values in rows.items():
        before, after = np.array(values).T
        diff = after - before
        print(f"{name}: warp {before.mean():.4f}, refined {after.mean():.4f}, per clip {diff.mean():+.4f} +- "
              f"{diff.std(ddof=1) / np.sqrt(len(diff)):.4f} ({len(diff)} clips)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["train", "measure"])
    parser.add_argument("--data", required=True, help="the prepared media (heads prepare --test-fraction 0.3)")
    parser.add_argument("--out", default="runs/mouth_probe.pt", help="the model's weights (written, or read)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--per-clip", type=int, default=40, help="open-mouth targets per training clip")
    parser.add_argument("--sources", type=int, default=0,
                        help="also show the refiner this many photos, nearest by the lips, each warped alone")
    parser.add_argument("--shots", type=int, default=1, help="T, the photos per test clip (measure)")
    parser.add_argument("--train-shots", type=int, nargs="+", default=[1, 8],
                        help="the T whose warps the training crops come from (train)")
    args = parser.parse_args(argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    (train if args.what == "train" else measure)(args)


if __name__ == "__main__":
    main()
