"""Options of `heads export`, `heads bench infer` and `heads bench animate`. Torch-free, so that `heads --help` stays
fast."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from base.errors import ConfigError
from demo.animate_config import Precision
from training.config import MODEL_PRESETS

Variant = Literal["fp16", "int8"]


@dataclass(frozen=True)
class ExportConfig:
    """Export a model folder (and optionally one avatar) to ONNX graphs for the torch-free engine."""

    model: Path
    """Model folder written by `save_pretrained` (config.json, E.safetensors, G.safetensors)."""
    out: Path = Path("runs/export")
    """Folder for the .onnx files and their config.json (graph list, parity, fidelity and speed of each)."""
    avatar: Path | None = None
    """Avatar folder (avatar.json + avatar.safetensors, see docs/inference.md): also export its personalized G′."""
    generic: bool = True
    """Export embedder.onnx and generator.onnx, for personalizing from photos without torch."""
    variants: tuple[Variant, ...] = ("int8", "fp16")
    """Extra precisions of each generator: int8 (CPU, calibrated on landmark images) and fp16 (GPU)."""
    calibration: int = 16
    """Landmark images that calibrate int8 (8 others measure each variant's SSIM)."""
    calibration_data: Path | None = None
    """A folder made by `heads prepare`: take those images from its real clips (target frames spread over the
    clips) instead of synthetic faces."""
    tolerance: float = 1e-4
    """Largest |ONNX - PyTorch| allowed in fp32; the export fails above it."""
    mouth_refiner: Path | None = None
    """A mouth refiner's folder (`heads train-mouth`): also export it (mouth.onnx), for the `mouth` renderer."""
    evaluation: Path | None = None
    """The `heads evaluate` output folder of this model on the test split (with a warp row, and FF and/or "warp +
    mouth" rows): its table is stored in the model folder, and the app and `heads animate` default to a learned
    renderer only when it beats the warp there (export_onnx/verdict.py); without it they default to the warp and say
    why."""

    def __post_init__(self) -> None:
        if self.calibration < 2 or self.tolerance <= 0:
            raise ConfigError("calibration needs at least 2 images and tolerance must be positive")


@dataclass(frozen=True)
class InferBenchConfig:
    """Inference speed of the generator per engine, precision, resolution and batch size, against the CPU's GEMM."""

    presets: tuple[str, ...] = ("paper", "compact", "compact256")
    """Model presets to time (random weights: speed does not depend on them)."""
    resolutions: tuple[int, ...] = (128, 256)
    batches: tuple[int, ...] = (1, 8)
    engines: tuple[Literal["torch", "torch-bf16", "ort-fp32", "ort-int8"], ...] = (
        "torch", "torch-bf16", "ort-fp32", "ort-int8",
    )
    seconds: float = 3.0
    """Least time spent timing each case (after one warm-up run); at least 3 runs are timed."""
    threads: int = 0
    """Threads for torch and onnxruntime; 0 means one per core."""
    split_batches: bool = True
    """onnxruntime as the engine runs it by default: a batch split over 1-thread sessions side by side (see
    demo.engine.SessionSettings); off, one session with all threads."""
    models: tuple[Path, ...] = ()
    """Model folders (save_pretrained) to time too: trained weights make the SSIM of int8 and bf16 meaningful."""
    candidates: tuple[str, ...] = ()
    """Extra configs at 256 px (onnxruntime only), each base,max,res_blocks,bottleneck, e.g. 16,128,1,16."""
    fidelity_images: int = 8
    """Landmark images of synthetic faces for the SSIM of int8 and bf16 against fp32."""
    out: Path = Path("runs/bench/infer.json")

    def __post_init__(self) -> None:
        unknown = [p for p in self.presets if p not in MODEL_PRESETS]
        if unknown:
            raise ConfigError(f"unknown presets {unknown}; choose from {list(MODEL_PRESETS)}")
        if any(r not in (64, 128, 256) for r in self.resolutions) or min(self.batches, default=0) < 1:
            raise ConfigError("resolutions must be 64, 128 or 256 and batches at least 1")
        for spec in self.candidates:
            if len(spec.split(",")) != 4 or not all(v.strip().isdigit() for v in spec.split(",")):
                raise ConfigError(f"candidate {spec!r} is not base,max,res_blocks,bottleneck")


@dataclass(frozen=True)
class AnimateBenchConfig:
    """End-to-end frames/s of `heads animate` (decode, landmarks, adaptation, render, encode) per renderer.

    Here rather than beside `AnimateConfig` in demo/ because, without --weights, the benchmark exports random-weight
    models, which only this layer (above both training and demo) may do."""

    driving: str | None = None
    """Driving clip; default: the first driving clip listed in ../shared/media/MANIFEST.tsv."""
    source: str | None = None
    """Source photo; default: the first portrait photo listed there."""
    frames: int = 150
    """Frames of the clip to animate per case."""
    renderers: tuple[str, ...] = ("warp-photo", "warp-512", "neural-compact-128", "neural-compact256-256")
    """warp-photo: the app's default, the whole photo with the face warped at the photo's own resolution; warp-R: the
    warp renderer's face crop at R px; mouth-R: the same with the mouth refiner (the --weights folder's mouth graph,
    by default the embedded one's); neural-PRESET-R: that preset's face crop at R px (random weights, exported to
    ONNX, when no trained model is given with --weights)."""
    weights: str | None = None
    """A model folder made by `heads export` to time instead of random weights."""
    precisions: tuple[Precision, ...] = ("fp32", "int8")
    """Generator variants to time in each neural case."""
    out: Path = Path("runs/bench/animate.json")

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise ConfigError("frames must be at least 2")
