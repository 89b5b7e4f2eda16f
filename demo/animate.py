"""`heads animate` and `heads edit`: the app's pipeline from the command line, with tqdm bars in place of the
browser's progress."""

from __future__ import annotations

from tqdm import tqdm

from demo.animate_config import AnimateConfig, EditConfig
from demo.pipeline import Edited, Pipeline, Progress, Result


class _Bars:
    """One tqdm bar per pipeline stage, fed by the pipeline's progress callback."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar: tqdm | None = None

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        if self.bar is None or self.bar.desc != progress.stage:
            self.close()
            unit = {"fine-tuning": "step", "faces": "photo"}.get(progress.stage, "frame")
            self.bar = tqdm(total=progress.total, desc=progress.stage, unit=unit, dynamic_ncols=True)
        self.bar.update(progress.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def animate(config: AnimateConfig) -> Result:
    pipeline = Pipeline.from_config(config)
    print(pipeline.status())
    bars = _Bars(config.progress)
    try:
        result = pipeline.run(config, bars)
    finally:
        bars.close()
    for notice in result.notices:
        print(f"note: {notice}")
    print(f"wrote {result.video}: {result.frames} frames at {result.fps:g} fps, {result.renderer}, "
          f"animated at {result.frames / max(result.seconds, 1e-9):.1f} frames/s")
    if result.identity is not None:
        print(result.identity)
    if result.avatar is not None:
        print(f"wrote avatar {result.avatar}")
    return result


def edit(config: EditConfig) -> Edited:
    edited = Pipeline(device="cpu").edit(config)  # the warp alone edits a still: no model is run
    for notice in edited.notices:
        print(f"note: {notice}")
    print(f"wrote {edited.image}")
    return edited
