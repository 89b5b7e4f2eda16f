"""Export E, the generic G and personalized G′ to ONNX: baked spectral norms, metadata, and a parity check.

Every graph is checked against PyTorch right after it is written, on noise and on synthetic faces, through the same
`demo.engine` loader the app uses: an export that would render differently, or that the engine would refuse, fails
here with a UserError instead of surfacing in the app.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnx
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from base.errors import UserError
from contract.graphs import CALLER_KEYS, FORMAT_VERSION, Kind, graph_inputs, graph_output
from demo.engine import OnnxModel, SessionSettings
from export_onnx.forms import export_form
from export_onnx.samples import noise, realistic
from faces.layout import PALETTE_VERSION
from faces.mouth_crop import CROP, MouthCrop
from training.config import ModelConfig, MouthRefinerConfig, to_dict
from training.embedder import Embedder
from training.generator import Generator
from training.mouth_refiner import MouthRefiner

OPSET = 18  # runs on onnxruntime >= 1.14 and TensorRT >= 8.6
Net = TypeVar("Net", Embedder, Generator)
TRACE_BATCH = 2  # tracing at batch 1 could let the exporter treat the batch axis as the constant 1


def rebuild(net: Net) -> Net:
    """An eval-mode CPU copy of E or G, rebuilt from its config and state dict.

    Not `copy.deepcopy`: a deep copy shares the class that parametrization injects into each spectral-normed layer,
    and removing the parametrization from the copy deletes `weight` from that shared class, breaking the original.
    """
    fresh = type(net)(net.cfg)
    fresh.load_state_dict(net.state_dict(), strict=True)
    return fresh.eval()


def bake(net: Net) -> Net:
    """`rebuild(net)` with every spectral-normed weight replaced by the plain tensor W/σ(W), a graph constant."""
    baked = rebuild(net)
    for m in baked.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return baked


class _Embedder(nn.Module):
    def __init__(self, E: Embedder):
        super().__init__()
        self.E = E

    def forward(self, frames: Tensor, landmarks: Tensor) -> Tensor:
        return self.E(frames, landmarks)  # (B, N)


class _Generator(nn.Module):
    """G(y[, guide], ê) with the inputs as separate tensors, so the app never concatenates channels itself."""

    def __init__(self, G: Generator):
        super().__init__()
        self.G = G

    def forward(self, *inputs: Tensor) -> Tensor:
        *images, e = inputs
        y = torch.cat(images, 1)
        if self.G.refines:
            return self.G.refinement(y, self.G.psi(e))  # (B, 4, R, R)
        return self.G(y, e)  # (B, 3, R, R)


class _Personalized(nn.Module):
    """G′(y[, guide]) = G.render(y, ψ′): one person's AdaIN parameters are a constant of the graph."""

    def __init__(self, G: Generator, psi: Tensor):
        super().__init__()
        self.G = G
        self.register_buffer("psi", psi.detach().float().cpu().clone())

    def forward(self, *images: Tensor) -> Tensor:
        y = torch.cat(images, 1)
        if self.G.refines:
            return self.G.refinement(y, self.psi)  # (B, 4, R, R)
        return self.G.render(y, self.psi)  # (B, 3, R, R)


def graph_metadata(kind: Kind, cfg: ModelConfig | MouthRefinerConfig, psi_size: int, given: dict) -> dict[str, str]:
    """The metadata_props `demo.engine` reads: derived fields plus the caller's CALLER_KEYS, all as strings. A
    mouth refiner has no guide, embedding or ψ; its resolution is its crop's."""
    missing = [k for k in CALLER_KEYS[kind] if k not in given]
    unknown = [k for k in given if k not in CALLER_KEYS[kind]]
    if missing or unknown:
        raise ValueError(f"{kind} metadata needs exactly {CALLER_KEYS[kind]}; missing {missing}, unknown {unknown}")
    mouth = isinstance(cfg, MouthRefinerConfig)
    return {
        "format": FORMAT_VERSION,
        "kind": kind,
        "palette": PALETTE_VERSION,
        "resolution": str(CROP if mouth else cfg.resolution),
        "guidance": "none" if mouth else cfg.guidance,
        "precision": "fp32",
        "embed_dim": str(0 if mouth else cfg.embed_dim),
        "psi_size": str(psi_size),
        "model_config": json.dumps(to_dict(cfg)),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **{key: str(value) for key, value in given.items()},
    }


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's progress lines and notes about optional torchvision ops say nothing about this export."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export(
    kind: Kind, net: Net, wrap: Callable[[Net], nn.Module], path: Path, metadata: dict, tolerance: float
) -> float:
    cfg = net.cfg
    names = graph_inputs(kind, cfg.guided)
    sample = noise(cfg, TRACE_BATCH)
    args = tuple(torch.from_numpy(sample[name]) for name in names)
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes = ({0: batch},) * len(names)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            wrap(export_form(bake(net))), args, dynamo=True, opset_version=OPSET, input_names=list(names),
            output_names=[graph_output(kind, cfg.guidance)], dynamic_shapes=shapes if kind == "embedder" else (shapes,),
            external_data=False, verbose=False,
        )
    model = program.model_proto
    set_metadata(model, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return check_parity(wrap(rebuild(net)), path, kind, cfg, tolerance)


def check_parity(reference: nn.Module, path: Path, kind: Kind, cfg: ModelConfig, tolerance: float) -> float:
    """Largest |ONNX − PyTorch| over noise and synthetic faces at batch sizes other than the traced one; raises
    UserError above `tolerance`. `reference` is the eval-mode module taking the graph's inputs in order."""
    model = OnnxModel(path, (kind,), SessionSettings(device="cpu"))
    names = graph_inputs(kind, cfg.guided)
    worst = 0.0
    for sample in (noise(cfg, 3, seed=1), {**noise(cfg, 4, seed=2), **realistic(cfg, 4, seed=3)}):
        feeds = {name: sample[name] for name in names}
        with torch.no_grad():
            expected = reference(*(torch.from_numpy(v) for v in feeds.values())).numpy()
        worst = max(worst, float(np.abs(model(**feeds) - expected).max()))
    if not worst <= tolerance:
        raise UserError(
            f"{path.name} does not match PyTorch: max |ONNX - torch| = {worst:.3g} > {tolerance:g}; the file is left "
            "for inspection but must not be used"
        )
    return worst


def export_mouth(model: MouthRefiner, path: str | Path, metadata: dict, tolerance: float = 1e-4) -> float:
    """The mouth refiner: mouth(mouth, lips) -> correction on CROP-px crops (contract.graphs); returns the parity
    against PyTorch over noise and real lip shapes (masks of one drawn mouth) at batch sizes other than the traced
    one."""
    path = Path(path)
    model = model.eval()
    names = graph_inputs("mouth", False)
    rng = np.random.default_rng(0)

    def sample(count: int) -> tuple[np.ndarray, np.ndarray]:
        crops = rng.uniform(-1, 1, (count, 3, CROP, CROP)).astype(np.float32)
        points = np.zeros((68, 2))
        outer, inner = (np.linspace(0, 2 * np.pi, n, endpoint=False) for n in (12, 8))
        points[48:60] = np.c_[np.cos(outer) * 16, np.sin(outer) * 9] + CROP / 2  # lips as ellipses, mouth open
        points[60:68] = np.c_[np.cos(inner) * 10, np.sin(inner) * 4] + CROP / 2
        lips = MouthCrop((0, 0, CROP, CROP)).masks(points)
        return crops, np.repeat(lips[None], count, 0)

    batch = torch.export.Dim("batch", min=1, max=4096)
    args = tuple(torch.from_numpy(a) for a in sample(TRACE_BATCH))
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            model, args, dynamo=True, opset_version=OPSET, input_names=list(names),
            output_names=[graph_output("mouth", "none")], dynamic_shapes=({0: batch}, {0: batch}),
            external_data=False, verbose=False,
        )
    onnx_model = program.model_proto
    set_metadata(onnx_model, graph_metadata("mouth", model.cfg, 0, metadata))
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx_model, path)
    graph = OnnxModel(path, ("mouth",), SessionSettings(device="cpu"))
    worst = 0.0
    for count in (1, 3):
        crops, lips = sample(count)
        with torch.no_grad():
            expected = model(torch.from_numpy(crops), torch.from_numpy(lips)).numpy()
        worst = max(worst, float(np.abs(graph(mouth=crops, lips=lips) - expected).max()))
    if not worst <= tolerance:
        raise UserError(f"{path.name} does not match PyTorch: max |ONNX - torch| = {worst:.3g} > {tolerance:g}")
    return worst


def export_embedder(E: Embedder, path: str | Path, metadata: dict, tolerance: float = 1e-4) -> float:
    """E(frames, landmarks) -> ê, both (B, 3, R, R) in [-1, 1]; returns the parity (max abs difference)."""
    return _export("embedder", E, _Embedder, Path(path), graph_metadata("embedder", E.cfg, 0, metadata), tolerance)


def export_generator(G: Generator, path: str | Path, metadata: dict, tolerance: float = 1e-4) -> float:
    """G(landmarks[, guide], ê) -> frames with P inside: any person from an embedding; returns the parity."""
    meta = graph_metadata("generator", G.cfg, G.psi_size, metadata)
    return _export("generator", G, _Generator, Path(path), meta, tolerance)


def export_personalized(
    G: Generator, psi: Tensor, path: str | Path, metadata: dict, tolerance: float = 1e-4
) -> float:
    """G′(landmarks[, guide]) -> frames with ψ′ (1, psi_size) baked in; `metadata` holds CALLER_KEYS
    ["personalized"] (model_id, T, steps, provenance). Returns the parity (max abs difference)."""
    if psi.shape != (1, G.psi_size):
        raise UserError(f"ψ has shape {tuple(psi.shape)}; this generator needs (1, {G.psi_size})")
    meta = graph_metadata("personalized", G.cfg, G.psi_size, metadata)
    return _export("personalized", G, lambda g: _Personalized(g, psi), Path(path), meta, tolerance)
