"""The two ways to turn target landmarks into face crops: the few-shot generator (ONNX engine) and the classical
piecewise-affine warp of the source photos. Both take (B, 68, 2) target points in crop pixels and return
(B, R, R, 3) uint8 frames, so the pipeline does not care which one it drives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from base.errors import InputError
from demo.engine import ACCELERATED, Engine, SessionSettings
from faces.guide import pack_guide
from faces.landmark_image import draw_landmarks
from faces.source_faces import Crops
from faces.warp import MultiSourceWarp

AUTO_MIN_SSIM = 0.95  # below this, a faster variant visibly changes the face: auto keeps fp32


class WarpRenderer:
    """The nearest source photo warped onto each target: instant, CPU only, and the baseline for the generator."""

    name = "warp"

    def __init__(self, crops: Crops):
        self.sources = crops
        self.resolution = crops.frames.shape[1]
        self._warp = MultiSourceWarp(list(crops.frames), crops.points)

    def render(self, targets: np.ndarray) -> np.ndarray:
        return np.stack([self._warp(t).image for t in targets])


class NeuralRenderer:
    """A personalised engine driven by landmark images (plus warp guides for warp-guided models)."""

    def __init__(self, engine: Engine, sources: Crops, name: str):
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
