"""Measure how much of a driver's gaze reaches the animated photo: photo and clips of ../shared/media, relative mode,
the warp renderer with the driver's gaze (`--gaze auto`, mediapipe), with the same mediapipe track but the irises left
where the photo has them ("still"), and as without mediapipe (`--gaze off`, dlib's track).

Per frame, mediapipe finds the irises of the driving clip and of the result, and their horizontal place within each
eye (u of `faces.motion.gaze_coordinates`: 0 at the image-left corner, 1 at the other), averaged over both eyes.
The script prints, per clip and setting, the correlation between the driver's u and the result's, the slope of the
result's on the driver's (1: the whole gaze arrives), and the spread of each, as JSON lines:

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/gaze_transfer.py

The driver is measured as the pipeline tracks it (`FaceTracker`) but on every frame, and the result on the decoded
mp4, so that the number is what a viewer of the file gets, compression included.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from demo.animate_config import AnimateConfig
from demo.pipeline import Pipeline
from demo.renderers import WarpRenderer
from faces.config import DetectorConfig, LimitsConfig, TrackConfig
from faces.detect import load_detector
from faces.motion import gaze_coordinates
from faces.track import FaceTracker
from faces.video import read_frames

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
EXAMPLES = "LivePortrait/assets/examples/driving"
CLIPS = (f"{EXAMPLES}/d0.mp4", f"{EXAMPLES}/d14.mp4", f"{EXAMPLES}/d3.mp4")  # eye gaze, eye movements, eye roll
PHOTO = f"{EXAMPLES}/d9.jpg"  # a woman looking at the camera, eyes wide open


def horizontal_gaze(frames, detector) -> np.ndarray:
    """Mean u of both irises per frame (NaN where mediapipe finds no face), tracked as the pipeline tracks."""
    tracker = FaceTracker(detector, TrackConfig(detect_every=1))
    out = []
    for frame in frames:
        face = tracker(frame)
        seen = face is not None and face.pupils is not None
        out.append(gaze_coordinates(face.points, face.pupils)[:, 0].mean() if seen else np.nan)
    return np.array(out)


class StillIrises:
    """A warp renderer that is tracked for like one that moves irises, but leaves them where the photo has them."""

    moves_irises = True

    def __init__(self, renderer: WarpRenderer):
        self.renderer, self.sources, self.resolution = renderer, renderer.sources, renderer.resolution

    def render(self, targets: np.ndarray, irises: np.ndarray | None = None) -> np.ndarray:
        return self.renderer.render(targets)


def compare(driver: np.ndarray, result: np.ndarray) -> dict:
    both = np.isfinite(driver) & np.isfinite(result)
    d, r = driver[both], result[both]
    slope = float(np.polyfit(d, r, 1)[0]) if len(d) > 2 and d.std() > 0 else float("nan")
    return {"frames": int(both.sum()), "r": round(float(np.corrcoef(d, r)[0, 1]), 3), "slope": round(slope, 3),
            "driver_sd": round(float(d.std()), 4), "result_sd": round(float(r.std()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", type=Path, default=MEDIA)
    parser.add_argument("--photo", default=PHOTO)
    parser.add_argument("--clips", nargs="+", default=list(CLIPS))
    parser.add_argument("--frames", type=int, default=150)
    args = parser.parse_args()
    mesh = load_detector(DetectorConfig(backend="mediapipe"))
    pipeline = Pipeline(weights=None, device="cpu")
    with tempfile.TemporaryDirectory() as work:
        for clip in args.clips:
            driver = horizontal_gaze(read_frames(args.media / clip, max_frames=args.frames), mesh)
            for setting in ("auto", "still", "off"):
                out = Path(work) / f"{Path(clip).stem}-{setting}.mp4"
                config = AnimateConfig(driving=str(args.media / clip), source=(str(args.media / args.photo),),
                                       out=str(out), renderer="warp", mode="relative", output="face",
                                       gaze="off" if setting == "off" else "auto", identity_score=False,
                                       watermark=False, progress=False, limits=LimitsConfig(max_frames=args.frames))
                persona, _ = pipeline.personalize(config)
                if setting == "still":
                    persona = replace(persona, renderer=StillIrises(persona.renderer))
                pipeline.animate(persona, config)
                result = horizontal_gaze(read_frames(out), mesh)
                print(json.dumps({"clip": clip, "photo": args.photo, "gaze": setting, **compare(driver, result)}),
                      flush=True)


if __name__ == "__main__":
    main()
