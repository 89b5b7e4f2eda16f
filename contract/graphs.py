"""The ONNX graph contract: names, shapes and metadata of every graph `heads export` writes and `demo.engine` reads.

One home for these rules, so that the exporter writes exactly what the engine accepts and the benchmarks feed what
both expect: change a name here and both sides change with it. Torch-free and numpy-free.

Four kinds of graph:
- `embedder`: E(frames, landmarks) -> embedding, ê of each frame;
- `generator`: the generic G(landmarks[, guide], embedding) -> frames;
- `personalized`: one person's G′(landmarks[, guide]) -> frames, with ψ′ baked in;
- `mouth`: the mouth refiner (training/mouth_refiner.py), mouth(mouth, lips) -> correction: a (B, 3, C, C) crop of
  the warp about the mouth (`faces.mouth_crop`, C = its `resolution`) and (B, 2, C, C) masks of the target's inner
  and outer lips in [0, 1] -> the (B, 3, C, C) correction to add to the crop, in image units.

Images are float32 (B, C, R, R) in [-1, 1]; `guide` exists only in warp-guided models. The G graphs of a refining
model (guidance "refine") write no frame: they write `refinement`, (B, 4, R, R), a correction δ of the guide's warp
(in image units, so guide + δ lies in [-1, 1]) and its weight α in [0, 1], which the engine's caller upsamples and
adds to a warp at the output's own resolution (frame = warp + region·α·δ, the region being
`faces.guide.refine_region`), so that a 128-px model never sets how sharp the result is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from faces.layout import GUIDE_CHANNELS

FORMAT_VERSION = "heads-onnx-v1"
Kind = Literal["personalized", "embedder", "generator", "mouth"]
WARP_GUIDANCE = "warp"  # ModelConfig.guidance of models that read a warp guide and blend it into their frame
REFINE_GUIDANCE = "refine"  # ... of models that read a warp guide and return a refinement of it (see above)
GUIDED = (WARP_GUIDANCE, REFINE_GUIDANCE)  # the guidances with a guide input ("none" has none)

# Graph inputs in order; "guide" is left out of models that are not warp-guided (see `graph_inputs`).
INPUTS: dict[Kind, tuple[str, ...]] = {
    "personalized": ("landmarks", "guide"),
    "embedder": ("frames", "landmarks"),
    "generator": ("landmarks", "guide", "embedding"),
    "mouth": ("mouth", "lips"),
}
OUTPUTS: dict[Kind, str] = {"personalized": "frames", "embedder": "embedding", "generator": "frames",
                            "mouth": "correction"}
REFINEMENT = "refinement"  # the G graphs' output in refining models, in place of "frames"
# The rest, "embedding", is (B, embed_dim).
IMAGE_CHANNELS = {"frames": 3, "landmarks": 3, "guide": GUIDE_CHANNELS, REFINEMENT: 4, "mouth": 3, "lips": 2,
                  "correction": 3}

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
    "mouth": ("model_id", "provenance"),
}


def graph_inputs(kind: Kind, guided: bool) -> tuple[str, ...]:
    """The input names, in order, of a `kind` graph of a warp-guided (or not) model."""
    return tuple(name for name in INPUTS[kind] if name != "guide" or guided)


def graph_output(kind: Kind, guidance: str) -> str:
    """The output name of a `kind` graph of a model with this guidance."""
    return REFINEMENT if guidance == REFINE_GUIDANCE and kind in ("generator", "personalized") else OUTPUTS[kind]


def input_shape(name: str, resolution: int, embed_dim: int) -> tuple[int, ...]:
    """One frame's shape of input `name` (without the batch axis)."""
    if name == "embedding":
        return (embed_dim,)
    return (IMAGE_CHANNELS[name], resolution, resolution)


def is_guided(metadata: Mapping[str, str]) -> bool:
    """Whether a graph, by its metadata, belongs to a warp-guided model (blending or refining)."""
    return metadata.get("guidance") in GUIDED


def refines(metadata: Mapping[str, str]) -> bool:
    """Whether a graph, by its metadata, returns a refinement to composite onto a warp rather than a frame."""
    return metadata.get("guidance") == REFINE_GUIDANCE
