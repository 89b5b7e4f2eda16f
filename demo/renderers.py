"""The ways to turn target landmarks into face crops: the classical piecewise-affine warp of the source photos, that
warp with its mouth corrected by the mouth refiner (ONNX), the few-shot generator (ONNX engine) that writes whole
frames, and a refining generator whose synthesis is composited onto the warp where it predicts the warp is wrong.
All take (B, 68, 2) target points in their square's pixels and return (B, S, S, 3) uint8 frames, so the pipeline
does not care which one it drives.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from base.errors import InputError
from demo.engine import ACCELERATED, Engine, OnnxModel, SessionSettings, to_network
from faces.config import MAX_SHOTS
from faces.crop import CropTransform
from faces.guide import pack_guide, refine_region
from faces.landmark_image import draw_landmarks
from faces.mouth_crop import correct_mouths
from faces.source_faces import Crops
from faces.warp import MultiSourceWarp

AUTO_MIN_SSIM = 0.95  # below this, a faster variant visibly changes the face: auto keeps fp32


def frames_in_parallel(render, *columns: list) -> list:
    """[render(*row) for row in zip(*columns)], rows spread over one thread per core: a warp is OpenCV and numpy
    work on whole frames, which releases the GIL, so a batch of frames renders on every core at once (OpenCV's
    own threads alone left a core idle for most of each frame). Order is kept."""
    rows = list(zip(*columns, strict=True))
    if len(rows) < 2 or _workers() < 2:
        return [render(*row) for row in rows]
    return list(_pool().map(lambda row: render(*row), rows))


@functools.cache
def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@functools.cache
def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """One pool for the process (made on first use), shared by every request: threads are not made per frame."""
    return concurrent.futures.ThreadPoolExecutor(_workers(), thread_name_prefix="render")


class WarpRenderer:
    """The nearest source photo warped onto each target: instant, CPU only, and the baseline for the generator.

    Where the crops have iris centres, `render` also takes (B, 2, 2) target irises and moves the photo's irises to
    them (`faces.warp`); without, it renders exactly as it did before irises existed.
    """

    name = "warp"

    def __init__(self, crops: Crops):
        self.sources = crops
        self.resolution = crops.frames.shape[1]
        self._warp = MultiSourceWarp(list(crops.frames), crops.points, irises=crops.pupils)

    @property
    def moves_irises(self) -> bool:
        return self.sources.pupils is not None

    def render(self, targets: np.ndarray, irises: np.ndarray | None = None) -> np.ndarray:
        each = [None] * len(targets) if irises is None else list(irises)
        return np.stack(frames_in_parallel(lambda t, i: self._warp.image(t, i), list(targets), each))


class MouthRenderer(WarpRenderer):
    """The warp renderer's frames with the mouth corrected by the mouth refiner (training/mouth_refiner.py): the
    crop about each target's mouth (`faces.mouth_crop`) goes through the graph in one batch, and the correction is
    resized back into the frame at its own resolution; outside the mouth the frames are the warp's, pixel for pixel.
    """

    name = "mouth"

    def __init__(self, crops: Crops, refiner: OnnxModel):
        if refiner.kind != "mouth":
            raise ValueError(f"{refiner.path.name} is a {refiner.kind} graph, not a mouth refiner")
        super().__init__(crops)
        self.refiner = refiner

    def render(self, targets: np.ndarray, irises: np.ndarray | None = None) -> np.ndarray:
        def correct(crops: np.ndarray, lips: np.ndarray) -> np.ndarray:
            mouths = to_network(crops, 3, self.refiner.resolution)
            return self.refiner(mouth=mouths, lips=lips).transpose(0, 2, 3, 1) * 127.5

        return correct_mouths(super().render(targets, irises), targets, correct)


class NeuralRenderer:
    """A personalised engine driven by landmark images (plus warp guides for warp-guided models)."""

    def __init__(self, engine: Engine, sources: Crops, name: str):
        if engine.refines:
            raise ValueError("a refining model composites onto a warp: use RefiningRenderer")
        if sources.frames.shape[1] != engine.resolution:
            raise ValueError(f"source crops are {sources.frames.shape[1]} px, the model reads {engine.resolution}")
        self.engine, self.sources, self.name = engine, sources, name
        self.resolution = engine.resolution
        self._warp = MultiSourceWarp(list(sources.frames), sources.points) if engine.guided else None

    def landmark_images(self, targets: np.ndarray) -> np.ndarray:
        return np.stack([draw_landmarks(t, self.resolution) for t in targets])

    def render(self, targets: np.ndarray) -> np.ndarray:
        guide = None if self._warp is None else np.stack([pack_guide(self._warp(t)) for t in targets])
        return self.engine.render(self.landmark_images(targets), guide)


class RefiningRenderer:
    """The warp of the photo at its own resolution (as `WarpRenderer`), refined by a model that sees the face at its
    own resolution: the model's correction of the warp and its weight α are upsampled into the work square and
    added to the warp there, so the output keeps the warp's detail and a 128-px model never sets its size. α counts
    only within `faces.guide.refine_region` (the inner mouth and the disocclusions), as in training.

    `sources` are the work square's crops (what the warp moves); `model_sources` the same photos framed as the
    model was trained (its guide is warped from them, exactly as in training); `view` maps the work square to the
    model's crop.
    """

    def __init__(self, engine: Engine, sources: Crops, model_sources: Crops, view: CropTransform, name: str):
        if not engine.refines:
            raise ValueError("RefiningRenderer needs a refining model (guidance 'refine')")
        if model_sources.frames.shape[1] != engine.resolution or view.size != engine.resolution:
            raise ValueError(f"the model reads {engine.resolution} px crops")
        self.engine, self.sources, self.model_sources, self.view, self.name = engine, sources, model_sources, view, name
        self.resolution = sources.frames.shape[1]
        self._warp = MultiSourceWarp(list(sources.frames), sources.points)
        self._guide = MultiSourceWarp(list(model_sources.frames), model_sources.points)

    def render(self, targets: np.ndarray) -> np.ndarray:
        inner = [self.view.to_crop(t).astype(np.float64) for t in targets]
        landmarks = np.stack([draw_landmarks(t, self.engine.resolution) for t in inner])
        guide = np.stack([pack_guide(self._guide(t)) for t in inner])
        layers = self.engine.refine(landmarks, guide)  # (B, r, r, 4)
        for layer, points in zip(layers, inner, strict=True):
            layer[..., 3] *= refine_region(points, layer.shape[:2])  # α counts only where the warp fails
        return np.stack(frames_in_parallel(lambda t, layer: self.view.add(layer, self._warp.image(t)),
                                           list(targets), list(layers)))


@dataclass(frozen=True)
class ModelFolder:
    """A folder written by `heads export`: config.json listing the graphs, embedder.onnx, generator*.onnx."""

    path: Path
    manifest: dict

    @classmethod
    def open(cls, path: Path) -> ModelFolder:
        try:
            manifest = json.loads((path / "config.json").read_text())
        except (OSError, ValueError) as error:
            raise InputError(f"{path}/config.json cannot be read ({error}).") from None
        graphs = manifest.get("graphs", {})
        if "embedder" not in graphs or "generator" not in graphs:
            raise InputError(f"{path} holds no embedder and generator graphs: export the model with `heads export`.")
        return cls(path, manifest)

    @property
    def model_id(self) -> str:
        return self.manifest["model_id"]

    @property
    def resolution(self) -> int:
        return int(self.manifest["model"]["resolution"])

    def default(self, photos: int | None = None) -> tuple[str, str]:
        """The renderer `auto` means for this model with `photos` photos of the person, and why in one line (stored
        by `heads export`, which decides it from the model's evaluation: export_onnx/verdict.py). The evaluation
        judges each T of its table alone too (`by_shots`): `photos` follows the row of the nearest T on a log scale
        (1-2 photos the T = 1 row, 3 or more the T = 8 row of a 1-and-8 table), ties to the larger T; without a
        count, or in a folder exported before rows were judged alone, the verdict over every T."""
        stored = self.manifest.get("default") or {}
        rows = stored.get("by_shots") or {}
        shown = ""
        if photos and rows:
            t = min(rows, key=lambda t: (abs(math.log(int(t) / photos)), -int(t)))
            stored, shown = rows[t], f" (the T = {t} row, nearest to {photos} photo{'s' * (photos > 1)})"
        if stored.get("renderer") not in ("neural", "mouth", "warp"):
            return "warp", "the model folder says nothing of how its renderer measured against the warp"
        if stored["renderer"] == "mouth" and "mouth" not in self.manifest["graphs"]:
            return "warp", "the model folder names the mouth refiner best but holds no mouth graph"
        return stored["renderer"], stored.get("reason", "") + shown

    def defaults(self, most: int = MAX_SHOTS) -> list[tuple[int, int, str]]:
        """(fewest photos, most photos, renderer) for each run of photo counts 1..`most` that `default` gives the
        same renderer: what the app says `auto` will pick before any photo is given."""
        runs: list[tuple[int, int, str]] = []
        for photos in range(1, most + 1):
            renderer = self.default(photos)[0]
            if runs and runs[-1][2] == renderer:
                runs[-1] = (runs[-1][0], photos, renderer)
            else:
                runs.append((photos, photos, renderer))
        return runs

    def mouth(self, settings: SessionSettings) -> OnnxModel | None:
        """The mouth refiner's graph, when the folder has one (`heads export --mouth-refiner`)."""
        graph = self.manifest["graphs"].get("mouth")
        return None if graph is None else OnnxModel(self.path / graph["fp32"]["file"], ("mouth",), settings)

    def embedder(self) -> Path:
        return self.path / self.manifest["graphs"]["embedder"]["fp32"]["file"]

    def generator(self, precision: str, settings: SessionSettings) -> Path:
        """The generator variant asked for. auto: fp16 where a GPU provider is installed, int8 on CPU, when the
        export measured it close enough to fp32 (SSIM >= AUTO_MIN_SSIM on every check image); else fp32."""
        variants = self.manifest["graphs"]["generator"]
        if precision == "auto":
            gpu = settings.device == "auto" and any(p in ort.get_available_providers() for p in ACCELERATED)
            wanted = "fp16" if gpu else "int8"
            faithful = variants.get(wanted, {}).get("ssim_min", 0.0) >= AUTO_MIN_SSIM
            precision = wanted if faithful else "fp32"
        if precision not in variants:
            raise InputError(f"{self.path} has no {precision} generator; it has {', '.join(variants)}.")
        return self.path / variants[precision]["file"]

    def engine(self, crops: Crops, precision: str, settings: SessionSettings) -> Engine:
        """Feed-forward personalization: ê = mean of E over the crops, with the generic generator."""
        landmarks = np.stack([draw_landmarks(p, self.resolution) for p in crops.points])
        return Engine.from_photos(self.embedder(), self.generator(precision, settings), crops.frames, landmarks,
                                  settings)
