"""Torch-free inference: onnxruntime sessions for graphs made by `heads export`, and a batch renderer on top.

The graphs' names, shapes and metadata are defined in `contract.graphs`, which the exporter writes by: whatever the
engine accepts is by construction what the exporter produces. Providers: TensorRT or CUDA when they really run the
graph, else CPU, with one warning at most when an installed GPU provider cannot be used.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from base.errors import UserError
from contract.graphs import FORMAT_VERSION, Kind, graph_inputs, graph_output, input_shape, is_guided, refines
from faces.layout import PALETTE_VERSION

ACCELERATED = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU = "CPUExecutionProvider"


class ModelFileError(UserError):
    """An ONNX file that is missing, damaged, not made by `heads export`, or made for another landmark format."""


@dataclass(frozen=True)
class SessionSettings:
    """How sessions run; the defaults suit a real-time renderer sharing the machine with video decoding."""

    device: Literal["auto", "cpu"] = "auto"
    """auto: TensorRT or CUDA when installed and working, else CPU."""
    threads: int = 0
    """Intra-op threads on CPU; 0 lets onnxruntime use one per physical core."""
    split_batches: bool = True
    """On CPU, run a batch of at least one frame per thread as single-threaded sessions side by side, one per thread
    (`threads`, or the CPUs the process may use), each on its share of the frames; smaller batches use one session
    with all threads. A CNN's many small ops (norms, layout reorders) scale poorly over threads: on the 2-core VM,
    two 1-thread sessions rendered 1.3-1.6× the frames/s of one 2-thread session (docs/inference.md). Each side
    session holds its own copy of the weights."""
    spin: bool = False
    """Let idle worker threads spin: lower latency, but they burn CPU that a decoder or UI on the same cores needs."""


def _cpus() -> int:
    """CPUs this process may run on: its affinity where the OS tells it (containers, taskset), else all."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def _options(settings: SessionSettings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # folds the baked ψ, fuses convs
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # a CNN's branches are too short for parallel nodes
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    options.enable_mem_pattern = True  # the same batch shape frame after frame: plan buffers once, reuse them
    options.enable_cpu_mem_arena = True
    options.log_severity_level = 3  # errors only: per-node placement notes are noise for the user
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spin else "0")
    return options


def _provider_options(name: str, path: Path) -> dict[str, str]:
    if name == "TensorrtExecutionProvider":  # building an engine takes minutes: keep it beside the model
        return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(path.parent / ".trt-cache")}
    return {}


def _session(path: Path, settings: SessionSettings) -> tuple[ort.InferenceSession, str]:
    """A session on the first accelerated provider that loads, else on CPU; returns it and its IO-binding device."""
    options = _options(settings)
    wanted = [p for p in ACCELERATED if p in ort.get_available_providers()] if settings.device == "auto" else []
    failure = None
    if wanted:
        ort.set_default_logger_severity(4)  # a GPU build without CUDA libraries logs an error per provider tried
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                session = ort.InferenceSession(
                    str(path), options, providers=[*wanted, CPU],
                    provider_options=[*(_provider_options(p, path) for p in wanted), {}],
                )
            if session.get_providers()[0] in ACCELERATED:
                return session, "cuda"
            failure = "its libraries did not load"
        except Exception as error:  # onnxruntime raises untyped errors here; the CPU attempt below tells them apart
            failure = str(error).strip().splitlines()[0]
        finally:
            ort.set_default_logger_severity(3)
    try:
        session = ort.InferenceSession(str(path), options, providers=[CPU])
    except Exception as error:
        raise ModelFileError(f"{path} is not a readable ONNX model ({str(error).strip().splitlines()[0]})") from None
    if failure is not None:
        _warn_once(f"{wanted[0]} is installed but unusable ({failure}); running on CPU")
    return session, "cpu"


class OnnxModel:
    """One exported graph: its checked metadata and a session on the best provider that really runs it."""

    def __init__(self, path: str | Path, kinds: tuple[Kind, ...], settings: SessionSettings | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFileError(f"{self.path} not found")
        self.settings = settings or SessionSettings()
        self.session, self.device = _session(self.path, self.settings)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self._check(kinds)
        self.kind: Kind = self.metadata["kind"]  # type: ignore[assignment]
        self.resolution = int(self.metadata["resolution"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._side: list[ort.InferenceSession] = []  # single-threaded CPU sessions for shares of a batch
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._warm_up()

    def _check(self, kinds: tuple[Kind, ...]) -> None:
        meta, name = self.metadata, self.path.name
        if "format" not in meta:
            raise ModelFileError(f"{name} is an ONNX model but not one made by `heads export` (no heads metadata)")
        if meta["format"] != FORMAT_VERSION:
            raise ModelFileError(f"{name} has format {meta['format']!r}; this engine reads {FORMAT_VERSION!r}")
        if meta.get("kind") not in kinds:
            raise ModelFileError(f"{name} is a {meta.get('kind')!r} graph; expected {' or '.join(kinds)}")
        if meta.get("palette") != PALETTE_VERSION:
            raise ModelFileError(
                f"{name} reads landmark images in palette {meta.get('palette')!r}, but this installation draws "
                f"{PALETTE_VERSION!r}: re-export the model, or install the version that matches it"
            )
        names = tuple(i.name for i in self.session.get_inputs())
        expected = graph_inputs(meta["kind"], is_guided(meta))
        outputs = tuple(o.name for o in self.session.get_outputs())
        if names != expected or outputs != (graph_output(meta["kind"], meta.get("guidance", "")),):
            raise ModelFileError(f"{name} has inputs {names} and outputs {outputs}; its metadata promises {expected}")

    def _warm_up(self) -> None:
        """One run on zeros: proves the provider really works (else falls back to CPU) and pays first-run costs."""
        embed_dim = int(self.metadata.get("embed_dim", 0))
        feeds = {name: np.zeros((1, *input_shape(name, self.resolution, embed_dim)), np.float32)
                 for name in self.input_names}
        try:
            self(**feeds)
        except Exception as error:  # onnxruntime raises untyped errors
            if self.device == "cpu":
                raise ModelFileError(f"{self.path.name} loads but does not run: {error}") from None
            _warn_once(f"{self.session.get_providers()[0]} failed on {self.path.name} ({error}); running on CPU")
            self.session, self.device = _session(self.path, replace(self.settings, device="cpu"))
            self(**feeds)

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def __call__(self, **feeds: np.ndarray) -> np.ndarray:
        """Named float32 inputs, batch first -> the single output."""
        feeds = {name: np.ascontiguousarray(array, np.float32) for name, array in feeds.items()}
        parts = self._side_capacity()
        if parts < 2 or len(next(iter(feeds.values()))) < parts:  # a share per thread, or all threads on the batch
            return self._run(self.session, feeds)
        sessions = self._side_sessions(parts)
        shares = [{name: part for name, part in zip(feeds, split, strict=True)}
                  for split in zip(*(np.array_split(array, parts) for array in feeds.values()), strict=True)]
        return np.concatenate(list(self._pool.map(self._run, sessions, shares)))

    def _run(self, session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Through IO binding, so that on CUDA the output stays on the device until the one copy back."""
        binding = session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        binding.bind_output(session.get_outputs()[0].name, self.device)
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def _side_capacity(self) -> int:
        """How many 1-thread sessions a batch is split over: 1 unless on CPU with split_batches."""
        if self.device != "cpu" or not self.settings.split_batches:
            return 1
        return self.settings.threads or _cpus()

    def _side_sessions(self, count: int) -> list[ort.InferenceSession]:
        """`count` single-threaded CPU sessions, made on first need (a model that only sees single frames pays
        nothing) and kept for the next batches."""
        with self._lock:
            while len(self._side) < count:
                self._side.append(_session(self.path, replace(self.settings, device="cpu", threads=1))[0])
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._side_capacity(), thread_name_prefix="onnx-share")
            return self._side[:count]


def to_network(images: np.ndarray, channels: int, resolution: int) -> np.ndarray:
    """Images as G and E read them: float32 (B, C, R, R) in [-1, 1].

    Accepts uint8 (B, R, R, C) images, or float arrays already in [-1, 1] with channels first or last (the layout
    of `faces.guide.pack_guide`).
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"expected a batch (B, H, W, C) or (B, C, H, W), got shape {images.shape}")
    if images.dtype == np.uint8:
        if images.shape[-1] != channels:
            raise ValueError(f"uint8 images must be (B, H, W, {channels}), got {images.shape}")
        images = images.astype(np.float32) / 127.5 - 1.0
    elif not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be uint8 or float, not {images.dtype}")
    if images.shape[-1] == channels and images.shape[1] != channels:
        images = images.transpose(0, 3, 1, 2)
    if images.shape[1:] != (channels, resolution, resolution):
        raise ValueError(f"this model reads ({channels}, {resolution}, {resolution}) images, got {images.shape[1:]}")
    return np.ascontiguousarray(images, np.float32)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """(B, 3, R, R) in [-1, 1] -> (B, R, R, 3) uint8 RGB."""
    return np.rint(np.clip(frames, -1.0, 1.0) * 127.5 + 127.5).astype(np.uint8).transpose(0, 2, 3, 1)


class Engine:
    """Renders one person from batches of landmark images (and warp guides, for warp-guided models).

    Either a personalized graph G′(y) with the person's ψ′ inside (`Engine.load`), or the generic generator with
    ê computed once from a few photos by the embedder (`Engine.from_photos`).
    """

    def __init__(self, generator: OnnxModel, embedding: np.ndarray | None = None):
        if (generator.kind == "generator") != (embedding is not None):
            raise ValueError("a generic generator needs an embedding; a personalized one has its person inside")
        self.generator, self.embedding = generator, embedding
        self.resolution = generator.resolution
        self.guided = is_guided(generator.metadata)
        self.refines = refines(generator.metadata)

    @classmethod
    def load(cls, path: str | Path, settings: SessionSettings | None = None) -> Engine:
        return cls(OnnxModel(path, ("personalized",), settings))

    @classmethod
    def from_photos(
        cls,
        embedder: str | Path,
        generator: str | Path,
        frames: np.ndarray,
        landmarks: np.ndarray,
        settings: SessionSettings | None = None,
    ) -> Engine:
        """frames, landmarks: (K, R, R, 3) uint8 face crops and their landmark images; ê is E's mean over the K."""
        E = OnnxModel(embedder, ("embedder",), settings)
        G = OnnxModel(generator, ("generator",), settings)
        for key in ("model_id", "resolution", "embed_dim"):
            if E.metadata.get(key) != G.metadata.get(key):
                raise ModelFileError(
                    f"{E.path.name} and {G.path.name} come from different models "
                    f"({key} {E.metadata.get(key)} vs {G.metadata.get(key)})"
                )
        x, y = (to_network(a, 3, E.resolution) for a in (frames, landmarks))
        if len(x) != len(y) or not len(x):
            raise ValueError(f"need as many landmark images as photos, and at least one: {len(x)} vs {len(y)}")
        embedding = np.concatenate([E(frames=x[i : i + 8], landmarks=y[i : i + 8]) for i in range(0, len(x), 8)])
        return cls(G, embedding.mean(0, keepdims=True))

    def render(self, landmarks: np.ndarray, guide: np.ndarray | None = None) -> np.ndarray:
        """(B, R, R, 3) landmark images (uint8, or float in [-1, 1]) -> (B, R, R, 3) uint8 RGB frames."""
        if self.refines:
            raise ValueError("this model refines a warp: call refine() and composite its output")
        return to_uint8(self._run(landmarks, guide))

    def refine(self, landmarks: np.ndarray, guide: np.ndarray) -> np.ndarray:
        """Refining models: landmark images and guides -> (B, R, R, 4) float32, the correction δ of the guide's warp
        in grey levels (±255) and its weight α in [0, 1], to add to a warp (`faces.crop.CropTransform.add`)."""
        if not self.refines:
            raise ValueError("this model writes frames: call render()")
        out = self._run(landmarks, guide).transpose(0, 2, 3, 1)
        delta = np.clip(out[..., :3], -2.0, 2.0) * 127.5
        return np.concatenate([delta, np.clip(out[..., 3:], 0.0, 1.0)], -1)

    def _run(self, landmarks: np.ndarray, guide: np.ndarray | None) -> np.ndarray:
        if self.guided != (guide is not None):
            raise ValueError("this model is warp-guided: pass guide" if self.guided else "this model takes no guide")
        feeds = {"landmarks": to_network(landmarks, 3, self.resolution)}
        if guide is not None:
            feeds["guide"] = to_network(guide, 4, self.resolution)
        if self.embedding is not None:
            feeds["embedding"] = np.repeat(self.embedding, len(feeds["landmarks"]), 0)
        return self.generator(**feeds)
