"""Avatars as one downloadable file: a personalised generator graph (`kind=personalized`, as `demo.engine` reads
it) that also carries the source faces it was made from, so uploading it later needs nothing else.

Feed-forward avatars are made without torch: the generic generator graph with ê turned from an input into a
constant. The source crops and landmarks ride along in the graph's metadata (`heads_sources`): relative motion
needs the source's face shape, warp-guided models need the frames for their guide, and the identity score needs a
reference face. Writing needs the `onnx` package; reading needs only onnxruntime.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from base.errors import InputError
from base.paths import public
from demo.engine import Engine
from faces.source_faces import Crops

SOURCES_KEY = "heads_sources"


def _onnx():
    try:
        import onnx
    except ImportError:
        raise InputError("Saving an avatar needs the onnx package: pip install onnx") from None
    return onnx


def _encode(crops: Crops) -> str:
    frames = [base64.b64encode(cv2.imencode(".png", f[..., ::-1])[1].tobytes()).decode("ascii") for f in crops.frames]
    return json.dumps({"points": np.round(crops.points, 3).tolist(), "frames": frames})


def read_sources(engine: Engine) -> Crops | None:
    """The source faces stored in an avatar's metadata, or None for a graph without them."""
    raw = engine.generator.metadata.get(SOURCES_KEY)
    if raw is None:
        return None
    data = json.loads(raw)
    encoded = [np.frombuffer(base64.b64decode(f), np.uint8) for f in data["frames"]]
    frames = [cv2.imdecode(f, cv2.IMREAD_COLOR)[..., ::-1] for f in encoded]
    return Crops(np.ascontiguousarray(np.stack(frames)), np.asarray(data["points"], np.float64))


def _set_metadata(model, values: dict[str, str]) -> None:
    kept = {p.key: p.value for p in model.metadata_props}
    kept.update(values)
    del model.metadata_props[:]
    _onnx().helper.set_model_props(model, kept)


def attach_sources(path: Path, crops: Crops) -> Path:
    """Add the source faces to a personalised graph written by `heads export` (fine-tuned avatars)."""
    onnx = _onnx()
    model = onnx.load(str(path))
    _set_metadata(model, {SOURCES_KEY: _encode(crops)})
    onnx.save(model, str(path))
    return path


def bake_embedding(generator: Path, embedding: np.ndarray, crops: Crops, out: Path) -> Path:
    """A generic generator graph G(y[, guide], ê) -> the personalised G′(y[, guide]) with ê (1, N) inside, which
    renders what the generic graph renders with that ê (to float rounding: P·ê is folded when the session
    optimises)."""
    onnx = _onnx()
    from onnx import helper, numpy_helper

    model = onnx.load(str(generator))
    graph = model.graph
    if [i.name for i in graph.input][-1] != "embedding":
        raise InputError(f"{generator.name} is not a generic generator graph (its last input is not 'embedding').")
    e = np.asarray(embedding, np.float32).reshape(1, -1)
    kept = [i for i in graph.input if i.name != "embedding"]
    del graph.input[:]
    graph.input.extend(kept)
    graph.initializer.extend([
        numpy_helper.from_array(e, "avatar_embedding"),
        numpy_helper.from_array(np.array([0], np.int64), "avatar_zero"),
        numpy_helper.from_array(np.array([1], np.int64), "avatar_one"),
        numpy_helper.from_array(np.array([e.shape[1]], np.int64), "avatar_width"),
    ])
    # embedding = Expand(ê, [batch of landmarks, N]), so every consumer of the old input stays as it was
    nodes = [
        helper.make_node("Shape", ["landmarks"], ["avatar_shape"]),
        helper.make_node("Slice", ["avatar_shape", "avatar_zero", "avatar_one"], ["avatar_batch"]),
        helper.make_node("Concat", ["avatar_batch", "avatar_width"], ["avatar_target"], axis=0),
        helper.make_node("Expand", ["avatar_embedding", "avatar_target"], ["embedding"]),
    ]
    for node in reversed(nodes):
        graph.node.insert(0, node)
    del graph.value_info[:]  # shapes inferred for the old input would pin the batch
    meta = {p.key: p.value for p in model.metadata_props}
    _set_metadata(model, {
        "kind": "personalized",
        "T": str(len(crops.frames)),
        "steps": "0",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # public(): graphs exported before config.json named folders by name alone carry the exporting machine's
        # paths, which must not travel to whoever downloads the avatar.
        "provenance": public(f"{meta.get('provenance', generator.name)}; feed-forward avatar (T={len(crops.frames)})"),
        SOURCES_KEY: _encode(crops),
    })
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out
