"""The ONNX graph contract: names, shapes and metadata of every graph `heads export` writes and `demo.engine` reads.

One home for these rules, so that the exporter writes exactly what the engine accepts and the benchmarks feed what
both expect: change a name here and both sides change with it. Torch-free and numpy-free.

Three kinds of graph:
- `embedder`: E(frames, landmarks) -> embedding, ê of each frame;
- `generator`: the generic G(landmarks[, guide], embedding) -> frames;
- `personalized`: one person's G′(landmarks[, guide]) -> frames, with ψ′ baked in.

Images are float32 (B, C, R, R) in [-1, 1]; `guide` exists only in warp-guided models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from faces.layout import GUIDE_CHANNELS

FORMAT_VERSION = "heads-onnx-v1"
Kind = Literal["personalized", "embedder", "generator"]
WARP_GUIDANCE = "warp"  # ModelConfig.guidance of models that read a warp guide (the other value is "none")

# Graph inputs in order; "guide" is left out of models that are not warp-guided (see `graph_inputs`).
INPUTS: dict[Kind, tuple[str, ...]] = {
    "personalized": ("landmarks", "guide"),
    "embedder": ("frames", "landmarks"),
    "generator": ("landmarks", "guide", "embedding"),
}
OUTPUTS: dict[Kind, str] = {"personalized": "frames", "embedder": "embedding", "generator": "frames"}
IMAGE_CHANNELS = {"frames": 3, "landmarks": 3, "guide": GUIDE_CHANNELS}  # the rest, "embedding", is (B, embed_dim)

# metadata_props of every graph (all values are strings). The engine checks format, kind, palette and guidance.
METADATA_KEYS = (
    "format", "kind", "palette", "resolution", "guidance", "precision", "embed_dim", "psi_size", "model_config",
    "model_id", "T", "steps", "created", "provenance",
)
# Of those, the ones the exporter's caller supplies (the rest derive from the network): what it came from, how made.
CALLER_KEYS: dict[Kind, tuple[str, ...]] = {
    "personalized": ("model_id", "T", "steps", "provenance"),
    "embedder": ("model_id", "provenance"),
    "generator": ("model_id", "provenance"),
}


def graph_inputs(kind: Kind, guided: bool) -> tuple[str, ...]:
    """The input names, in order, of a `kind` graph of a warp-guided (or not) model."""
    return tuple(name for name in INPUTS[kind] if name != "guide" or guided)


def input_shape(name: str, resolution: int, embed_dim: int) -> tuple[int, ...]:
    """One frame's shape of input `name` (without the batch axis)."""
    if name == "embedding":
        return (embed_dim,)
    return (IMAGE_CHANNELS[name], resolution, resolution)


def is_guided(metadata: Mapping[str, str]) -> bool:
    """Whether a graph, by its metadata, belongs to a warp-guided model."""
    return metadata.get("guidance") == WARP_GUIDANCE
