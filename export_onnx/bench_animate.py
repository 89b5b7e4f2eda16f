"""`heads bench animate`: end-to-end frames/s of the app's pipeline on a real clip, per renderer.

Each case is one `Pipeline.animate` call timed from the first decoded frame to the closed mp4 (decode, landmark
tracking, smoothing and adaptation, render, compose, encode with audio), with the per-step split the pipeline
measures. Neural cases without --weights use random weights exported to ONNX: speed does not depend on them.
Resident memory is sampled at every progress report of the rendering, so that a long clip (`--frames 900` of a
30-s clip) shows whether it stays flat.

It lives in export_onnx/, not beside the pipeline it times, because making those random-weight models needs the
exporter and the networks, which the torch-free demo layer may not import. They are imported only when needed, so
that a torch-free install can still time a given --weights folder.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import av
import cv2
import onnxruntime

from base.bench_report import BenchReport
from base.errors import UserError
from demo.animate_config import AnimateConfig
from demo.pipeline import Pipeline, Progress
from export_onnx.config import AnimateBenchConfig, ExportConfig
from faces.config import LimitsConfig
from faces.video import read_frames
from training.config import MODEL_PRESETS

MEDIA = Path(os.environ.get("HEADS_MEDIA", Path(__file__).resolve().parents[2] / "shared" / "media"))


def _from_manifest(kind: str, needs: str = "") -> str:
    """The first file of `kind` in the shared media manifest whose notes mention `needs`."""
    manifest = MEDIA / "MANIFEST.tsv"
    if not manifest.is_file():
        raise UserError(f"no media at {MEDIA}: pass --driving and --source (or set HEADS_MEDIA)")
    with manifest.open(newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["kind"] == kind and needs in row["notes"]:
                return str(MEDIA / row["file"])
    raise UserError(f"{manifest} lists no {kind}")


def _random_model(preset: str, resolution: int, folder: Path) -> Path:
    """A preset at `resolution` with random weights, exported with its int8 variant (torch needed here only)."""
    try:
        from export_onnx.release import export
        from training.models import Networks
    except ImportError as error:
        raise UserError(f"random neural weights need torch ({error}); pass --weights DIR") from None
    cfg = replace(MODEL_PRESETS[preset](), resolution=resolution)
    Networks.build(cfg, with_discriminator=False).save_pretrained(folder / "torch")
    export(ExportConfig(model=folder / "torch", out=folder, variants=("int8",)))
    return folder


def _cases(cfg: AnimateBenchConfig, work: Path):
    """(case name, pipeline, config) for every renderer and, for neural ones, every precision."""
    limits = LimitsConfig(max_frames=cfg.frames, max_seconds=3600)
    base = AnimateConfig(driving=cfg.driving or _from_manifest("driving_video", "+audio"),
                         source=(cfg.source or _from_manifest("portrait_photo"),), out=str(work / "out.mp4"),
                         identity_score=False, limits=limits, progress=False, output="face")
    for name in cfg.renderers:
        kind, *rest = name.split("-")
        if name == "warp-photo":  # the app's default: the whole photo, the face warped at its own resolution
            yield name, Pipeline(device="cpu"), replace(base, renderer="warp", output="photo")
        elif kind == "warp" and len(rest) == 1:
            yield name, Pipeline(device="cpu"), replace(base, renderer="warp", resolution=int(rest[0]))
        elif kind == "mouth" and len(rest) == 1:
            pipeline = Pipeline(cfg.weights, device="cpu")
            if pipeline.mouth is None:
                raise UserError(f"{name}: the model folder holds no mouth graph (heads export --mouth-refiner)")
            yield name, pipeline, replace(base, renderer="mouth", weights=cfg.weights, resolution=int(rest[0]))
        elif kind == "neural" and len(rest) == 2:
            weights = cfg.weights or str(_random_model(rest[0], int(rest[1]), work / name))
            pipeline = Pipeline(weights, device="cpu")
            for precision in cfg.precisions:
                yield f"{name}-{precision}", pipeline, replace(base, renderer="neural", weights=weights,
                                                               precision=precision)
        else:
            raise UserError(f"unknown case {name!r}: use warp-photo, warp-R, mouth-R or neural-PRESET-R")


def _resident_mb() -> float:
    """This process's resident memory now (not its peak): read after each case, it shows whether memory grows
    with the clip's length or stays flat."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def resident_growth(samples: list[tuple[int, float]]) -> float | None:
    """MB gained from half-way through the rendering to its end, from (frames rendered, resident MB) samples: the
    first half is the warm-up (buffers and pools reach their size); a pipeline whose memory is flat gains about
    nothing after it, one that keeps frames gains in proportion to the clip's length. None with too few samples."""
    if len(samples) < 2:
        return None
    half = samples[-1][0] / 2
    start = next(mb for done, mb in samples if done >= half)
    return round(samples[-1][1] - start, 1)


def bench_animate(cfg: AnimateBenchConfig) -> dict:
    report = BenchReport("animate", cfg)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-animate-") as tmp:
        for name, pipeline, config in _cases(cfg, Path(tmp)):
            start = time.perf_counter()
            persona, _ = pipeline.personalize(config)
            personalized = time.perf_counter() - start
            memory: list[tuple[int, float]] = []  # (frames rendered, resident MB) at each progress report

            def watch(progress: Progress, memory=memory) -> None:
                if progress.stage == "rendering":
                    memory.append((progress.done, round(_resident_mb(), 1)))

            start = time.perf_counter()
            result = pipeline.animate(persona, config, progress=watch)
            seconds = time.perf_counter() - start
            row = {
                "case": name,
                "renderer": result.renderer,
                "resolution": persona.renderer.resolution,
                "output": list(next(read_frames(result.video)).shape[:2]),
                "resident_mb": round(_resident_mb(), 1),
                "resident_growth_mb": resident_growth(memory),  # over the second half of the rendering
                "resident_mb_rendering": memory,
                "frames": result.frames,
                "frames_per_second": round(result.frames / seconds, 2),
                "personalize_seconds": round(personalized, 3),
                "ms_per_frame": {k: round(1e3 * v / result.frames, 2) for k, v in result.timings.items()},
            }
            results.append(row)
            print(f"{name:<22} {row['frames_per_second']:6.1f} frames/s at {row['resolution']} px  "
                  + "  ".join(f"{k} {v:.1f}" for k, v in row["ms_per_frame"].items()) + "  (ms/frame)  "
                  f"resident {row['resident_mb']} MB, {row['resident_growth_mb']} MB gained in the second half")
    return report.write(cfg.out, versions={"onnxruntime": onnxruntime.__version__, "av": av.__version__,
                                            "opencv": cv2.__version__}, driving=config.driving,
                        source=config.source[0], results=results)
