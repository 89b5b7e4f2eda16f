"""Make the README's result image: the project's drawn portrait animated by a driving clip, rendered three ways.

The grid has one column per sampled time step (one of them the moment the mouth opens widest) and a row each for the
adapted landmarks the renderers are driven by, the still source (what doing nothing looks like), the classical warp,
the warp with its mouth corrected by the mouth refiner (where the model folder has one), and the shipped neural
model in feed-forward mode.
Everything goes through `demo.pipeline.Pipeline` with the app's default settings (relative motion with landmark
adaptation, neutral reference, the default smoothing and precision), so the image shows what the app would give, and
the script can be rerun from the command line whenever the model in weights/ changes:

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/readme_result.py

The defaults use only media the project drew itself (demo/examples/); `--driving` accepts any clip, and the grid then
shows that clip's motion only as landmark drawings on the project's face, never its frames.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from demo.animate_config import AnimateConfig
from demo.compose import fit_height
from demo.example_media import DRIVING, PORTRAIT
from demo.pipeline import Pipeline, Result
from faces.config import LimitsConfig
from faces.landmark_image import draw_landmarks
from faces.motion import mouth_opening

ROOT = Path(__file__).resolve().parents[1]
LABELS = {"warp": "classical\nwarp", "mouth": "warp +\nlearned\nmouth", "neural": "neural FF\n(shipped)"}
ROWS = ("adapted\nlandmarks", "still\n(source)")  # then one row per renderer of LABELS the model folder has
LABEL_WIDTH = 84  # px of the label column on the left
HEADER = 18  # px of the time-stamp strip on top
FONT, FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.4
BACKDROP = (32, 32, 32)


@dataclass
class Recorder:
    """Stands in for a persona's renderer inside `Pipeline.animate` and keeps every target it is asked for and
    every face it returns (shrunk to the tile size), so the grid shows the very frames the pipeline encoded rather
    than frames decoded back from a lossy mp4."""

    renderer: object  # the WarpRenderer or NeuralRenderer the pipeline made
    tile: int
    compose: Callable[[np.ndarray], np.ndarray]  # the persona's: a rendered face as the output shows it
    targets: list[np.ndarray] = field(default_factory=list)
    faces: list[np.ndarray] = field(default_factory=list)

    @property
    def sources(self):
        return self.renderer.sources

    @property
    def resolution(self) -> int:
        return self.renderer.resolution

    def render(self, targets: np.ndarray) -> np.ndarray:
        faces = self.renderer.render(targets)
        self.targets.extend(targets)
        self.faces.extend(fit_height(self.compose(face), self.tile) for face in faces)
        return faces


def animate(pipeline: Pipeline, config: AnimateConfig, tile: int) -> tuple[Recorder, Result]:
    """Personalize and animate as `Pipeline.run` does, with the renderer wrapped in a Recorder."""
    persona, notices = pipeline.personalize(config)
    recorder = Recorder(persona.renderer, tile, persona.compose)
    result = pipeline.animate(replace(persona, renderer=recorder), config, notices=notices)
    for notice in result.notices:
        print(f"  notice: {notice}")
    return recorder, result


def label(canvas: np.ndarray, text: str, x: int, y: int) -> None:
    """Draw `text` (lines split on newlines) with its first line's top-left corner at (x, y)."""
    (_, height), _ = cv2.getTextSize("Ag", FONT, FONT_SCALE, 1)
    for k, line in enumerate(text.split("\n")):
        cv2.putText(canvas, line, (x, y + height + k * (height + 5)), FONT, FONT_SCALE, (235, 235, 235), 1,
                    cv2.LINE_AA)


def grid(rows: list[list[np.ndarray]], names: tuple[str, ...], stamps: list[str], tile: int) -> np.ndarray:
    """Tiles laid out row by row, with each row's name on the left and each column's time stamp on top."""
    canvas = np.full((HEADER + len(rows) * tile, LABEL_WIDTH + len(stamps) * tile, 3), BACKDROP, np.uint8)
    for c, stamp in enumerate(stamps):
        label(canvas, stamp, LABEL_WIDTH + c * tile + 4, 2)
    for r, (name, tiles) in enumerate(zip(names, rows, strict=True)):
        y = HEADER + r * tile
        label(canvas, name, 6, y + tile // 2 - 12)
        for c, image in enumerate(tiles):
            canvas[y : y + tile, LABEL_WIDTH + c * tile : LABEL_WIDTH + (c + 1) * tile] = image
    return canvas


def write_gif(path: Path, warp: list[np.ndarray], neural: list[np.ndarray], fps: float, every: int = 2) -> None:
    """Warp | neural side by side under their names, every `every`-th frame; one shared palette keeps the file
    small and the colours steady from frame to frame."""
    tile = warp[0].shape[0]
    header = np.full((HEADER, 2 * tile, 3), BACKDROP, np.uint8)
    label(header, "classical warp", 4, 2)
    label(header, "neural FF", tile + 4, 2)
    frames = [np.concatenate([header, np.concatenate([w, n], axis=1)])
              for w, n in zip(warp[::every], neural[::every], strict=True)]
    palette = Image.fromarray(np.concatenate(frames[:: max(1, len(frames) // 8)], axis=0)).quantize(128)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 * every / fps), loop=0,
                   optimize=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--weights", default=None,
                        help="model folder made by `heads export` (or a Hugging Face repo id); default: resolved as "
                             "the app does it, $HEADS_WEIGHTS else the embedded weights/")
    parser.add_argument("--driving", type=Path, default=DRIVING,
                        help="driving clip; only its motion (as landmarks) appears in the image, never its frames")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "result.png", help="PNG to write")
    parser.add_argument("--frames", type=int, default=6, help="time steps (columns), evenly spread over the clip")
    parser.add_argument("--max-frames", type=int, default=None, help="use only the first N frames of the clip")
    parser.add_argument("--tile", type=int, default=256, help="side of each tile in px")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads (0: one per core)")
    parser.add_argument("--gif", type=Path, default=None, help="also write a warp | neural GIF of the whole clip here")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.tile < 32:
        parser.error("--frames must be at least 1 and --tile at least 32")
    return args


def main(argv: list[str] | None = None) -> np.ndarray:
    """Render the grid, write it to --out, and return it as (H, W, 3) uint8 RGB."""
    args = parse(argv)
    pipeline = Pipeline(weights=args.weights, device="cpu")
    if pipeline.model is None:
        raise SystemExit(f"readme_result: no neural model to show ({pipeline.model_problem})")
    pipeline.settings = replace(pipeline.settings, threads=args.threads)
    print(pipeline.status())
    with tempfile.TemporaryDirectory(prefix="readme-result-") as tmp:
        # Face crops, so that both rows show the same framing: the warp's at 512 px, the model's at its own 128 px.
        base = AnimateConfig(driving=str(args.driving), source=(str(PORTRAIT),), weights=args.weights, output="face",
                             limits=LimitsConfig(max_frames=args.max_frames), progress=False)
        recorders = {}
        renderers = [r for r in LABELS if r != "mouth" or pipeline.mouth is not None]
        for renderer in renderers:
            config = replace(base, renderer=renderer, out=str(Path(tmp) / f"{renderer}.mp4"))
            recorders[renderer], result = animate(pipeline, config, args.tile)
            print(f"{result.renderer}: {result.frames} frames; {result.identity}")
    warp, neural = recorders["warp"], recorders["neural"]
    picks = np.linspace(0, len(neural.faces) - 1, min(args.frames, len(neural.faces))).round().astype(int)
    widest = int(np.argmax(mouth_opening(np.asarray(neural.targets))))  # the open-mouth moment is always shown
    if widest not in picks:
        picks[np.argmin(np.abs(picks - widest))] = widest
    still = fit_height(neural.sources.frames[0], args.tile)
    rows = [
        [fit_height(draw_landmarks(neural.targets[i], neural.resolution), args.tile) for i in picks],
        [still] * len(picks),
        *([recorders[r].faces[i] for i in picks] for r in renderers),
    ]
    names = (*ROWS, *(LABELS[r] for r in renderers))
    image = grid(rows, names, [f"t = {i / result.fps:.2f} s" for i in picks], args.tile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), image[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]} px, {args.out.stat().st_size // 1024} KB)")
    if args.gif is not None:
        write_gif(args.gif, warp.faces, neural.faces, result.fps)
        print(f"wrote {args.gif} ({args.gif.stat().st_size // 1024} KB)")
    return image


if __name__ == "__main__":
    main()
