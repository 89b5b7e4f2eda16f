"""`heads evaluate-cross`: cross-identity reenactment, the app's real use, where self-reenactment cannot look.

Self-reenactment (training/evaluate.py) has the real frame to compare with; here there is none: each test clip
drives another person's photo (a single-image clip of the same split, of another identity) and a painting of the
public media, in relative mode (`faces.motion.retarget`: the driver's head motion and expression since its
reference frame, applied to the photo's own landmarks), as the app animates them. Without a ground truth, the
result is judged on three things a viewer would check:

- detected: does it still look like a face at all (share of frames where the face pipeline's dlib backend finds
  one, `training.metrics.akd.detect_landmarks`);
- identity: is it still the photo's person (cosine of dlib face descriptors, result frame vs the photo, computed
  as CSIM computes them, `training.metrics.csim`); the cosine to the driver's frame is beside it, so that a
  driver's face leaking into the result shows (dlib's descriptors are not centred: strangers score about 0.8);
- mouth r, eye r: does it open its mouth and eyes when the driver does (Pearson r between the driver's opening and
  the one detected on the result, `training.metrics.motion.opening_correlation`).

Photos and paintings get separate rows: paintings are outside what the detector and the model were trained on.
"""

from __future__ import annotations

import csv
import functools
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from base.errors import InputError, UserError
from faces.config import DetectorConfig
from faces.detect import load_detector
from faces.landmark_image import draw_landmarks
from faces.motion import MotionConfig, mouth_opening, retarget
from faces.source_faces import crops, load_faces
from faces.warp import MultiSourceWarp
from training.evaluate import LABELS, Clip, load_clips
from training.fewshot_config import FEED_FORWARD, CrossEvaluateConfig
from training.finetune import load_networks, personalize, render
from training.metrics.akd import detect_landmarks
from training.metrics.csim import cosine, dlib_embeddings
from training.metrics.motion import opening_correlation
from training.models import Networks
from training.mouth_refiner import MouthRefiner, refine
from training.mouth_refiner import load as load_mouth_refiner
from training.phases import resolve_device

KINDS = {"photo": "photos", "painting": "paintings"}  # target kind -> the table's row label
# (key, header) of the results table, in order; the CSV also has the bookkeeping columns.
COLUMNS = (("detected", "detected↑"), ("identity", "identity to photo↑"), ("to_driver", "identity to driver↓"),
           ("mouth", "mouth r↑"), ("mouth_moving", "mouth r, moving drivers↑"), ("eye", "eye r↑"))
# A driver whose mouth opening spans less than this (interoculars) over a pair's frames barely moves its mouth: the
# correlation with it is noise (of the 18 test drivers, three span 0.03, 0.06 and 0.09, the others 0.11-0.34), so
# mouth r is also averaged over the pairs whose driver moves its mouth at least this much.
MOVING_MOUTH = 0.1
GRID_ROWS = 4


@dataclass(frozen=True)
class Target:
    """A face to animate: one photo or painting as a crop at the evaluation's resolution."""

    name: str
    kind: str  # "photo" or "painting"
    identity: str
    frame: np.ndarray  # (R, R, 3) uint8 RGB
    points: np.ndarray  # (68, 2) landmarks in crop pixels


def media_kinds(media: Path) -> dict[str, str]:
    """File (relative to the media folder) -> its `kind` in MANIFEST.tsv; empty when there is no manifest."""
    manifest = media / "MANIFEST.tsv"
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as f:
        return {row["file"]: row["kind"] for row in csv.DictReader(f, delimiter="\t")}


def photo_targets(clips: list[Clip], entries: dict[str, dict], kinds: dict[str, str]) -> list[Target]:
    """The single-image clips that MANIFEST.tsv calls a portrait photo (not a painting, drawing or render)."""
    return [Target(c.name, "photo", entries[c.name]["identity"], c.frames[0], c.points[0]) for c in clips
            if len(c.frames) == 1 and kinds.get(entries[c.name]["source"]) == "portrait_photo"]


def painting_targets(media: Path, kinds: dict[str, str], resolution: int) -> tuple[list[Target], list[str]]:
    """The paintings of the media folder, found and cropped by the app's own path (faces.source_faces: the face
    pipeline's dlib backend, the largest face, the crop `heads prepare` makes), and the files where no face was
    found, which are left out."""
    detector = load_detector(DetectorConfig(backend="dlib"))
    targets, missed = [], []
    for name in sorted(f for f, kind in kinds.items() if kind == "painting"):
        try:
            faces, _ = load_faces([media / name], detector)
        except InputError:
            missed.append(name)
            continue
        crop = crops(faces, resolution)
        targets.append(Target(name, "painting", name, crop.frames[0], crop.points[0]))
    return targets, missed


def assign(drivers: list[Clip], entries: dict[str, dict], targets: list[Target]) -> list[Target | None]:
    """One target per driver, in turn (driver i takes target i, or the next one of another identity), so that
    every target is used about equally often; None when every target is the driver's own person."""
    out: list[Target | None] = []
    for i, driver in enumerate(drivers):
        identity = entries[driver.name]["identity"]
        order = [targets[(i + k) % len(targets)] for k in range(len(targets))]
        out.append(next((t for t in order if t.identity != identity), None))
    return out


def warped(target: Target, points: np.ndarray) -> np.ndarray:
    """(N, 68, 2) retargeted landmarks -> (N, R, R, 3) uint8: the warp renderer's frames of `target`, which the
    warp row shows, the mouth refiner corrects and a refining model refines (made once per pair: `animate`)."""
    warp = MultiSourceWarp([target.frame], target.points[None])
    return np.stack([warp.image(p) for p in points])


def animate(method: str, networks: Networks | None, target: Target, points: np.ndarray,
            refiner: MouthRefiner | None = None, warps: Callable[[], np.ndarray] | None = None) -> np.ndarray:
    """(N, 68, 2) retargeted landmarks -> (N, R, R, 3) uint8 frames of `target` by `method`; `warps()` gives the
    pair's `warped` frames (kept by the caller, so that the methods that start from them share one warp)."""
    warps = warps or functools.partial(warped, target, points)
    if method == "warp":
        return warps()
    if method == "mouth":
        assert refiner is not None
        return refine(refiner, warps(), points)
    assert networks is not None
    size = target.frame.shape[0]
    avatar = personalize(networks, target.frame[None], draw_landmarks(target.points, size)[None], FEED_FORWARD,
                         target.points[None])
    return render(networks, avatar, np.stack([draw_landmarks(p, size) for p in points]), points,
                  warped=warps() if networks.cfg.refines else None)


def measure(result: np.ndarray, photo: np.ndarray, driver_frames: np.ndarray, driver_points: np.ndarray) -> dict:
    """One pair's numbers: (N, R, R, 3) result, (128,) photo descriptor, (N, 128) driver descriptors and (N, 68, 2)
    driver landmarks -> detected, identity, to_driver, mouth, mouth_moving (mouth, or NaN where the driver's mouth
    moves less than `MOVING_MOUTH`), driver_mouth_span (how much it moves), eye, and identity_unaligned (the share
    of result frames whose descriptor came from a whole-frame resize, no face being found, as CSIM counts them)."""
    detected = detect_landmarks(result)
    embeddings, unaligned = dlib_embeddings(result)
    mouth = opening_correlation(detected, driver_points, "mouth")
    span = float(np.ptp(mouth_opening(np.asarray(driver_points, np.float64))))
    return {
        "detected": float(np.isfinite(detected).all((1, 2)).mean()),
        "identity": float(cosine(embeddings, np.broadcast_to(photo, embeddings.shape)).mean()),
        "to_driver": float(cosine(embeddings, driver_frames).mean()),
        "mouth": mouth,
        "mouth_moving": mouth if span >= MOVING_MOUTH else float("nan"),
        "driver_mouth_span": span,
        "eye": opening_correlation(detected, driver_points, "eye"),
        "identity_unaligned": unaligned / len(result),
    }


def _mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _format(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.3g}"


def write_cross_tables(out: Path, rows: list[dict], notes: list[str]) -> None:
    """results-cross.md (one row per method and target kind, then the notes) and results-cross.csv."""
    keys = [k for k, _ in COLUMNS]
    extra = sorted({k for r in rows for k in r} - set(keys) - {"method", "target"})
    with open(out / "results-cross.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "target", *keys, *extra])
        writer.writerows([[r["method"], r["target"], *[r.get(k, "") for k in keys + extra]] for r in rows])
    lines = ["| method | target | pairs | " + " | ".join(h for _, h in COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    lines += [f"| {r['method']} | {r['target']} | {r['pairs']} | " + " | ".join(_format(r[k]) for k in keys) + " |"
              for r in rows]
    (out / "results-cross.md").write_text("\n".join(lines + [""] + notes) + "\n")


def evaluate_cross(cfg: CrossEvaluateConfig) -> Path:
    """The whole cross-identity run; returns the output folder."""
    start = time.time()
    networks = load_networks(cfg.model, resolve_device(cfg.device)) if cfg.model else None
    refiner = load_mouth_refiner(cfg.mouth_refiner) if "mouth" in cfg.methods else None
    methods = [m for m in cfg.methods if m != "ff" or networks is not None]
    notes = [] if methods == list(cfg.methods) else ["FF left out: no --model given."]
    # The warp alone is judged at the prepared crops' own resolution (the photo's pixels, as the app warps them);
    # with a model, every method at the model's, so that they compare on the same pixels.
    clips = load_clips(cfg.data, cfg.split, networks.cfg.resolution if networks else cfg.resolution)
    resolution = clips[0].frames.shape[1] if clips else 0
    with open(Path(cfg.data) / "manifest.jsonl") as f:
        entries = {e["clip"]: e for e in map(json.loads, f) if e.get("split") == cfg.split}
    drivers = [c for c in clips if len(c.frames) >= cfg.min_frames][: cfg.max_drivers]
    if not drivers:
        raise UserError(f"no {cfg.split} clip in {cfg.data} has {cfg.min_frames} frames to drive with")
    kinds = media_kinds(Path(cfg.media))
    if not kinds:
        notes.append(f"No paintings: {Path(cfg.media) / 'MANIFEST.tsv'} not found.")
    photos = photo_targets(clips, entries, kinds)
    paintings, missed = painting_targets(Path(cfg.media), kinds, resolution) if kinds else ([], [])
    if missed:
        notes.append(f"Paintings without a detected face, left out: {len(missed)} of {len(missed) + len(paintings)} "
                     f"({', '.join(missed)}).")
    notes.insert(0, f"{len(drivers)} driver clips (≥ {cfg.min_frames} frames, {cfg.frames} frames each), "
                    f"{len(photos)} photos, {len(paintings)} paintings; relative mode, {cfg.reference} reference.")
    out = Path(cfg.out)
    (out / "grids-cross").mkdir(parents=True, exist_ok=True)
    pairs = [(d, t) for group in (photos, paintings) if group
             for d, t in zip(drivers, assign(drivers, entries, group), strict=True) if t is not None]
    motion = MotionConfig(mode="relative", reference=cfg.reference)
    results: dict[tuple[str, str], list[dict]] = defaultdict(list)
    driver_embeddings: dict[str, np.ndarray] = {}
    with open(out / "per_pair-cross.jsonl", "w") as log:
        for driver, target in tqdm(pairs, disable=not cfg.progress, unit="pair", desc="evaluate-cross"):
            picks = np.linspace(0, len(driver.frames) - 1, cfg.frames).round().astype(int)
            if driver.name not in driver_embeddings:
                driver_embeddings[driver.name] = dlib_embeddings(driver.frames[picks])[0]
            photo = dlib_embeddings(target.frame[None])[0][0]
            points = retarget(driver.points, target.points, motion)[picks]
            outputs, warps = {}, functools.cache(functools.partial(warped, target, points))
            for method in methods:
                outputs[method] = animate(method, networks, target, points, refiner, warps)
                r = measure(outputs[method], photo, driver_embeddings[driver.name], driver.points[picks])
                results[(method, target.kind)].append(r)
                log.write(json.dumps({"driver": driver.name, "target": target.name, "kind": target.kind,
                                      "method": method, **r}) + "\n")
            rows = np.linspace(0, cfg.frames - 1, GRID_ROWS).round().astype(int)
            grid = np.concatenate([np.concatenate([driver.frames[picks[k]], target.frame,
                                                   *(outputs[m][k] for m in methods)], 1) for k in rows])
            Image.fromarray(grid).save(out / "grids-cross" / f"{driver.name}__{Path(target.name).stem}.png")
    table = []
    for method in methods:
        for kind, label in KINDS.items():
            found = results[(method, kind)]
            if found:
                row = {"method": LABELS[method], "target": label, "pairs": len(found)}
                row.update({key: _mean([r[key] for r in found]) for key in found[0]})
                table.append(row)
    spans = [r["driver_mouth_span"] for kind in KINDS for r in results[(methods[0], kind)]]  # one per pair
    notes.append(f"mouth r, moving drivers: the {sum(v >= MOVING_MOUTH for v in spans)} of {len(spans)} pairs whose "
                 f"driver's mouth opening spans ≥ {MOVING_MOUTH} interoculars over the frames (a driver that barely "
                 "moves its mouth gives a mouth r of noise).")
    notes.append(f"{time.time() - start:.0f} s.")
    write_cross_tables(out, table, notes)
    print((out / "results-cross.md").read_text())
    print(f"wrote {out}")
    return out
