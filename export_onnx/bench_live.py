"""`heads bench live`: per-frame latency and frames/s of the live mode, a clip of the media replayed as a camera.

A camera thread hands the clip's frames, shrunk to a webcam's size and JPEG-encoded as the browser sends them, to a
`demo.live.LatestFrame` at the clip's own frame rate and in real time; the renderer takes the newest, decodes it,
runs `LiveSession.step` and encodes the result as the app's server does for each frame (`demo.live.page_image`, a
JPEG in a data: URL; Gradio's own transport and the browser's drawing are not in it). Latency is from the moment
the camera gave a frame to the moment its rendered frame was encoded, waiting included; frames the camera gave while
one rendered are dropped, as in the app, so a slow machine shows fewer frames per second rather than a growing
delay. Speed targets live here, not in timed tests.

It sits beside `bench animate`, whose lookup of the shared media it uses; it needs no torch.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import onnxruntime
from PIL import Image

from base.bench_report import BenchReport
from base.errors import ConfigError
from demo.animate_config import Renderer
from demo.live import LatestFrame, LiveConfig, LiveSession, page_image
from demo.pipeline import Pipeline
from export_onnx.bench_animate import _from_manifest
from faces.video import VideoReader

TARGET_FPS = 15.0  # issue 20: at least this many frames/s shown...
TARGET_LATENCY_MS = 150.0  # ...and at most this long from camera frame to rendered frame


@dataclass(frozen=True)
class LiveBenchConfig:
    """Frames/s shown and latency of the live mode, replaying a clip as a camera in real time."""

    driving: str | None = None
    """The clip played as the camera; default: the uncropped selfie clip of ../shared/media (the closest to a
    webcam)."""
    source: str | None = None
    """The portrait; default: the first portrait photo listed in the media's manifest."""
    seconds: float = 10.0
    """Camera time to replay (the clip loops if it is shorter)."""
    camera_side: int = 640
    """Long side of the camera's frames (browsers' default webcam size is 640x480)."""
    renderer: Renderer = "warp"
    """The live session's renderer (as `heads animate --renderer`)."""
    weights: str | None = None
    """Model folder for a neural renderer; default as `heads animate`."""
    out: Path = Path("runs/bench/live.json")

    def __post_init__(self) -> None:
        if self.seconds <= 0 or not 64 <= self.camera_side <= 4096:
            raise ConfigError("seconds must be > 0 and camera_side in 64..4096")

    def live(self, source: str) -> LiveConfig:
        """The live mode's own defaults (its output and resolution), with this renderer."""
        return LiveConfig(source=(source,), renderer=self.renderer, weights=self.weights)


def _jpeg(image: np.ndarray) -> bytes:
    """A camera frame as the browser sends it (JPEG)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG")
    return buffer.getvalue()


def _camera_frames(path: str, side: int) -> tuple[list[bytes], float]:
    """The clip's frames as a webcam would send them: at most `side` px on the long side, JPEG; and its frame rate."""
    frames = []
    with VideoReader(path) as reader:
        fps = reader.info.fps
        for frame in reader:
            factor = min(1.0, side / max(frame.shape[:2]))
            if factor < 1.0:
                frame = cv2.resize(frame, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
            frames.append(_jpeg(frame))
    return frames, fps


def _play(frames: list[bytes], fps: float, seconds: float, box: LatestFrame) -> None:
    """The camera: each frame at its time on the clip's clock, looping, for `seconds`; then close."""
    start = time.monotonic()
    for k in range(int(seconds * fps)):
        delay = start + k / fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        box.put(frames[k % len(frames)], time.monotonic())
    box.close()


def run_live(session: LiveSession, frames: list[bytes], fps: float, seconds: float) -> dict:
    """Replay `frames` at `fps` for `seconds` into `session`; the frame rate shown, latencies and drops."""
    box = LatestFrame()
    camera = threading.Thread(target=_play, args=(frames, fps, seconds, box), name="camera", daemon=True)
    latencies, steps, found = [], [], 0
    camera.start()
    start = time.monotonic()
    while (item := box.take()) is not None:
        data, captured = item
        decode = time.perf_counter()
        frame = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        decoded = time.perf_counter()
        shown = session.step(frame, captured)
        encode = time.perf_counter()
        page_image(shown.image)
        latencies.append(time.monotonic() - captured)
        steps.append({"decode": decoded - decode, **shown.seconds, "encode": time.perf_counter() - encode})
        found += shown.found
    wall = time.monotonic() - start
    camera.join()
    ms = 1e3 * np.array(latencies)
    offered = int(seconds * fps)
    return {
        "camera_fps": round(fps, 2),
        "frames_offered": offered,
        "frames_shown": len(latencies),
        "frames_dropped": box.dropped,
        "frames_with_face": found,
        "frames_per_second": round(len(latencies) / wall, 2),
        "latency_ms": {f"p{q}": round(float(np.percentile(ms, q)), 1) for q in (50, 90, 99)} | {
            "max": round(float(ms.max()), 1)},
        "ms_per_frame": {k: round(1e3 * float(np.mean([s.get(k, 0.0) for s in steps])), 2) for k in steps[0]},
    }


def bench_live(cfg: LiveBenchConfig) -> dict:
    report = BenchReport("live", cfg)
    driving = cfg.driving or _from_manifest("driving_video", "NOT cropped")
    source = cfg.source or _from_manifest("portrait_photo")
    live = cfg.live(source)
    frames, fps = _camera_frames(driving, cfg.camera_side)
    pipeline = Pipeline(cfg.weights, device="cpu")
    started = time.perf_counter()
    persona, _ = pipeline.personalize(live.personalization())
    personalized = time.perf_counter() - started
    session = LiveSession(persona, live, pipeline.detector)
    result = {"renderer": persona.description, "shown_px": list(session.last.shape[:2]),
              "camera_px": list(np.asarray(Image.open(io.BytesIO(frames[0]))).shape[:2]),
              "personalize_seconds": round(personalized, 3), **run_live(session, frames, fps, cfg.seconds)}
    result["meets_target"] = (result["frames_per_second"] >= TARGET_FPS
                              and result["latency_ms"]["p90"] <= TARGET_LATENCY_MS)
    latency = result["latency_ms"]
    print(f"live: {result['frames_per_second']:.1f} frames/s shown of {result['camera_fps']:g} "
          f"({result['frames_dropped']} dropped), latency p50 {latency['p50']:.0f} ms, p90 {latency['p90']:.0f} ms  "
          + "  ".join(f"{k} {v:.1f}" for k, v in result["ms_per_frame"].items()) + "  (ms/frame)")
    return report.write(cfg.out, versions={"onnxruntime": onnxruntime.__version__, "av": av.__version__,
                                            "opencv": cv2.__version__}, driving=driving, source=source,
                        live=live, targets={"frames_per_second": TARGET_FPS, "latency_ms_p90":
                                                    TARGET_LATENCY_MS}, results=[result])
