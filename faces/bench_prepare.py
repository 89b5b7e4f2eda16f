"""`heads bench prepare`: end-to-end frames/s of `heads prepare` on real clips, per setting, as JSON.

Each setting prepares the same clips into a fresh temporary folder through the real `prepare` function, so the
number includes decoding, detection or tracking, smoothing, cropping, JPEG writing and worker start-up.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
from pathlib import Path

import av
import cv2

from base.bench_report import BenchReport
from base.errors import UserError
from faces.config import PrepareBenchConfig, PrepareConfig, TrackConfig
from faces.prepare import prepare
from faces.sources import find_sources
from faces.video import probe


def pick_clips(src: Path, count: int) -> list[Path]:
    """`count` videos spread evenly over the sorted list under src (a mix of sizes on a mixed folder)."""
    videos = [s.path for s in find_sources(src) if s.kind == "video"]
    if not videos:
        raise UserError(f"no video under {src}")
    step = max(1, len(videos) // count)
    return videos[::step][:count]


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the workers, once their pool closed)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_prepare(config: PrepareBenchConfig) -> dict:
    """Wall-clock frames/s, plus frames per CPU-second: on a shared machine the wall clock measures the other
    jobs too, while CPU time shows what the run itself costs (an idle N-core machine gives about N times it)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    report = BenchReport("prepare", config)
    clips = pick_clips(config.src, config.clips)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for i, clip in enumerate(clips):  # links keep the clips' own bytes and names without copying
            (src / f"{i:02d}-{clip.name}").symlink_to(clip.resolve())
        for every in config.detect_every:
            for workers in config.workers:
                run = PrepareConfig(
                    src=src,
                    dst=Path(tmp) / f"out-{every}-{workers}",
                    max_frames=config.max_frames,
                    workers=workers,
                    progress=False,
                    track=TrackConfig(detect_every=every),
                )
                cpu = cpu_seconds()
                summary = prepare(run)
                cpu = cpu_seconds() - cpu
                result = {
                    "detect_every": every,
                    "workers": workers,
                    "frames": summary.frames,
                    "decoded": summary.decoded,
                    "seconds": round(summary.seconds, 3),
                    "frames_per_second": round(summary.frames_per_second, 2),
                    "frames_per_second_per_worker": round(summary.frames_per_second / workers, 2),
                    "cpu_seconds": round(cpu, 3),
                    "frames_per_cpu_second": round(summary.frames / cpu, 2) if cpu > 0 else None,
                    "rejected": summary.reasons,
                }
                print(json.dumps(result))
                results.append(result)
    return report.write(
        config.out, versions={"av": av.__version__, "opencv": cv2.__version__},
        clips=[{"file": str(c), **{k: getattr(probe(c), k) for k in ("width", "height", "fps")}} for c in clips],
        results=results,
    )
