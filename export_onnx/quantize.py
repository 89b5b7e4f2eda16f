"""Reduced-precision variants of an exported generator, and how close each stays to the fp32 frames.

fp16 is for GPUs (inputs and outputs stay fp32, with casts inside, so the engine feeds every variant alike). int8
is static QDQ quantization for CPUs with VNNI: activations uint8 and weights int8 per channel (onnxruntime's fast
u8s8 path), only the convolutions quantized, activation ranges set at the 99.99th percentile of the calibration
images (landmark images of synthetic faces, or of real clips with `heads export --calibration-data`): the extreme
values that min/max calibration keeps would coarsen the steps of every other value.

Three kinds of conv stay fp32 (FP32_MODULES). The residual blocks' 1×1 shortcuts read and write the residual
stream, whose per-tensor range is set by a few wide channels, so uint8 steps there are coarse for all the others,
and every later block inherits the error. On a paper generator at 256 px after 50 training steps, quantizing only
the shortcuts gave SSIM 0.957 against fp32, and keeping them fp32 took the whole int8 graph from 0.954 to 0.992; on
one thread it then ran 2.2× faster than fp32 instead of 2.4×. The stem that reads the input images and the conv
that writes the frame: on a trained warp-guided compact256 (whose stem also reads the warp guide) they took SSIM
from 0.945 to 0.986.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxconverter_common import float16
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from demo.engine import OnnxModel, to_uint8
from export_onnx.export import set_metadata
from training.generator import composite
from training.metrics.ssim import ssim


def _relabel(model: onnx.ModelProto, source: onnx.ModelProto, precision: str) -> None:
    """Carry the source's metadata over (quantization drops it) with the new precision."""
    set_metadata(model, {**{p.key: p.value for p in source.metadata_props}, "precision": precision})


def to_fp16(src: Path, dst: Path) -> Path:
    source = onnx.load(src)
    half = float16.convert_float_to_float16(source, keep_io_types=True)
    _relabel(half, source, "fp16")
    onnx.save(half, dst)
    return dst


class _Calibration(CalibrationDataReader):
    """One image (with its other inputs) per read: calibration statistics then cover every image equally."""

    def __init__(self, feeds: dict[str, np.ndarray]):
        count = len(next(iter(feeds.values())))
        self._items = iter([{name: v[i : i + 1] for name, v in feeds.items()} for i in range(count)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


SCOPES = "pkg.torch.onnx.name_scopes"  # the module path of each node, written by torch's ONNX exporter


# Modules whose convs stay fp32, matched in the module path: shortcuts, stem, output conv (module docstring).
FP32_MODULES = (".skip", "G.stem", "G.out_conv")


def _quantized_convs(model: onnx.ModelProto) -> list[str]:
    """Names of the Conv nodes to quantize: all but those of FP32_MODULES."""
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    scopes = {node.name: next((p.value for p in node.metadata_props if p.key == SCOPES), None) for node in convs}
    if None in scopes.values():
        raise ValueError("int8 quantization needs a graph written by heads export (its nodes name their modules)")
    return [name for name, scope in scopes.items() if not any(module in scope for module in FP32_MODULES)]


def to_int8(src: Path, dst: Path, feeds: dict[str, np.ndarray]) -> Path:
    """Static int8 quantization of `src`'s convolutions but those of FP32_MODULES, calibrated on `feeds` (the
    graph's named inputs).

    The percentile calibrator keeps every activation of every calibration image in memory until it builds its
    histograms: about 0.3 GB per image for the paper model at 256 px.
    """
    source = onnx.load(src, load_external_data=False)  # names the convs to quantize, and carries the metadata
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):  # calibration progress
        prepared = Path(tmp) / "prepared.onnx"
        # onnx shape inference plus constant folding; the symbolic pass cannot follow the dynamic batch and is skipped
        quant_pre_process(src, prepared, skip_symbolic_shape=True)
        quantize_static(
            prepared, dst, _Calibration(feeds), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
            nodes_to_quantize=_quantized_convs(source), per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": 99.99, "CalibTensorRangeSymmetric": False},  # ReLU outputs are >= 0
        )
    quantized = onnx.load(dst)
    _relabel(quantized, source, "int8")
    onnx.save(quantized, dst)
    return dst


def fidelity(reference: OnnxModel, variant: OnnxModel, feeds: dict[str, np.ndarray]) -> dict[str, float]:
    """SSIM of the variant's uint8 frames against the fp32 graph's on the same inputs, and the largest difference.
    A refining model's frames are its refinement composited onto the guide's warp."""

    def frames(model: OnnxModel) -> np.ndarray:
        out = model(**feeds)
        if out.shape[1] == 4:  # contract.graphs.REFINEMENT: synthesis and α
            # α everywhere (no region): stricter than the app, which counts α only in faces.guide.refine_region.
            out = torch.from_numpy(out)
            out = composite(torch.from_numpy(feeds["guide"][:, :3]), out, torch.ones_like(out[:, :1])).numpy()
        return to_uint8(out)

    a, b = frames(reference), frames(variant)
    scores = ssim(a, b)
    return {
        "ssim_min": round(float(scores.min()), 4),
        "ssim_mean": round(float(scores.mean()), 4),
        "max_abs_uint8": int(np.abs(a.astype(np.int16) - b).max()),
    }
