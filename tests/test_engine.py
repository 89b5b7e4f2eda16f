"""The torch-free engine on small hand-built graphs: batch rendering, input formats, provider fallback, bad files."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from base.errors import UserError
from contract.graphs import FORMAT_VERSION
from demo import engine
from demo.engine import Engine, ModelFileError, OnnxModel, SessionSettings
from faces.layout import PALETTE_VERSION

ROOT = Path(__file__).resolve().parents[1]
R = 64  # resolution of the hand-built graphs
N = 3  # their embedding size


def _metadata(kind: str, **overrides: str) -> dict[str, str]:
    meta = {
        "format": FORMAT_VERSION, "kind": kind, "palette": PALETTE_VERSION, "resolution": str(R),
        "guidance": "none", "precision": "fp32", "embed_dim": str(N), "psi_size": "6", "model_id": "m1",
        "created": "2026-01-01T00:00:00+00:00", "provenance": "tests/test_engine.py",
    }
    return {**meta, **overrides}


def _image(name: str, channels: int = 3) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", channels, R, R])


def _graph(kind: str, path: Path, **metadata: str) -> Path:
    """Tiny stand-ins with the real graphs' inputs and outputs:
    personalized frames = tanh(0.5·y); embedder ê = mean over pixels of x + y; generator frames = tanh(y·ê)."""
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [-1, N, 1, 1])
    if kind == "personalized":
        nodes = [helper.make_node("Mul", ["landmarks", "half"], ["h"]), helper.make_node("Tanh", ["h"], ["frames"])]
        inputs, output, inits = [_image("landmarks")], _image("frames"), [half]
    elif kind == "embedder":
        nodes = [
            helper.make_node("Add", ["frames", "landmarks"], ["s"]),
            helper.make_node("ReduceMean", ["s", "axes"], ["embedding"], keepdims=0),
        ]
        inputs, inits = [_image("frames"), _image("landmarks")], [axes]
        output = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", N])
    else:
        nodes = [
            helper.make_node("Reshape", ["embedding", "shape"], ["e"]),
            helper.make_node("Mul", ["landmarks", "e"], ["h"]),
            helper.make_node("Tanh", ["h"], ["frames"]),
        ]
        inputs = [_image("landmarks"), helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", N])]
        output, inits = _image("frames"), [shape]
    graph = helper.make_graph(nodes, kind, inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    helper.set_model_props(model, _metadata(kind, **metadata))
    onnx.save(model, path)
    return path


def _landmarks(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, R, R, 3), dtype=np.uint8)


def _as_float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1


def test_personalized_renders_batches_of_uint8_and_float(tmp_path):
    model = Engine.load(_graph("personalized", tmp_path / "p.onnx"), SessionSettings(device="cpu", threads=1))
    y = _landmarks(5)
    frames = model.render(y)
    expected = np.rint((np.tanh(0.5 * _as_float(y)) + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)
    assert frames.shape == (5, R, R, 3) and frames.dtype == np.uint8
    assert np.abs(frames.astype(int) - expected).max() <= 1
    np.testing.assert_array_equal(model.render(_as_float(y)), frames)  # float (B, 3, R, R) in [-1, 1]
    np.testing.assert_array_equal(model.render(_as_float(y).transpose(0, 2, 3, 1)), frames)  # float channels-last
    np.testing.assert_array_equal(model.render(y[:1]), frames[:1])
    with pytest.raises(ValueError, match="64, 64"):
        model.render(np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="batch"):
        model.render(y[0])
    with pytest.raises(ValueError, match="no guide"):
        model.render(y, guide=np.zeros((5, R, R, 4), np.float32))


def test_cpu_batches_split_over_single_threaded_sessions(tmp_path):
    """On CPU a batch of at least one frame per thread runs in shares on 1-thread side sessions, made on first need;
    results equal one whole run."""
    G = _graph("generator", tmp_path / "g.onnx")
    split = OnnxModel(G, ("generator",), SessionSettings(device="cpu", threads=3))
    whole = OnnxModel(G, ("generator",), SessionSettings(device="cpu", threads=3, split_batches=False))
    y = _as_float(_landmarks(7))
    e = np.random.default_rng(3).normal(size=(7, N)).astype(np.float32)  # per-frame inputs must stay with their frame
    split(landmarks=y[:1], embedding=e[:1])
    assert not split._side  # single frames use the main session only
    np.testing.assert_array_equal(split(landmarks=y, embedding=e), whole(landmarks=y, embedding=e))
    assert len(split._side) == 3 and not whole._side
    split._side.clear()
    np.testing.assert_array_equal(split(landmarks=y[:2], embedding=e[:2]), whole(landmarks=y[:2], embedding=e[:2]))
    assert not split._side  # fewer frames than threads: all threads on the one batch


def test_generic_pair_embeds_the_photos_once(tmp_path):
    E, G = _graph("embedder", tmp_path / "e.onnx"), _graph("generator", tmp_path / "g.onnx")
    frames, lms = _landmarks(3, seed=1), _landmarks(3, seed=2)
    model = Engine.from_photos(E, G, frames, lms, SessionSettings(device="cpu", threads=1))
    e = (_as_float(frames) + _as_float(lms)).mean((2, 3)).mean(0)  # (N,): E's mean over the photos
    np.testing.assert_allclose(model.embedding[0], e, atol=1e-5)
    y = _landmarks(4, seed=3)
    expected = np.rint((np.tanh(_as_float(y) * e[:, None, None]) + 1) * 127.5).astype(np.uint8)
    assert np.abs(model.render(y).astype(int) - expected.transpose(0, 2, 3, 1)).max() <= 1


def test_pair_from_different_models_is_refused(tmp_path):
    E = _graph("embedder", tmp_path / "e.onnx", model_id="m1")
    G = _graph("generator", tmp_path / "g.onnx", model_id="m2")
    with pytest.raises(ModelFileError, match="different models"):
        Engine.from_photos(E, G, _landmarks(1), _landmarks(1))


def _truncated(tmp_path: Path) -> Path:
    good = _graph("personalized", tmp_path / "good.onnx").read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(good[: len(good) // 2])
    return tmp_path / "truncated.onnx"


def _random_bytes(tmp_path: Path) -> Path:
    (tmp_path / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    return tmp_path / "random.onnx"


def _foreign(tmp_path: Path) -> Path:
    """A valid ONNX model from elsewhere: one Identity node and no heads metadata."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9),
              tmp_path / "identity.onnx")
    return tmp_path / "identity.onnx"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.onnx", "not found"),
        (_truncated, "not a readable ONNX model"),
        (_random_bytes, "not a readable ONNX model"),
        (_foreign, "not one made by `heads export`"),
        (lambda d: _graph("personalized", d / "p.onnx", palette="ibug68-v0"), "palette 'ibug68-v0'"),
        (lambda d: _graph("personalized", d / "p.onnx", format="heads-onnx-v0"), "format 'heads-onnx-v0'"),
        (lambda d: _graph("embedder", d / "e.onnx"), "'embedder' graph; expected personalized"),
        (lambda d: _graph("personalized", d / "p.onnx", guidance="warp"), "metadata promises"),
    ],
    ids=["missing", "truncated", "random-bytes", "foreign", "palette", "format", "kind", "inputs"],
)
def test_bad_model_files_give_clear_errors(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ModelFileError, match=message) as error:
        Engine.load(path, SessionSettings(device="cpu"))
    assert path.name in str(error.value)
    assert isinstance(error.value, UserError)  # the CLI prints these without a traceback


@pytest.fixture
def fake_gpu(monkeypatch):
    """onnxruntime as on a machine with onnxruntime-gpu but without a GPU: CUDA is listed, but cannot be used."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    engine._warn_once.cache_clear()
    yield
    engine._warn_once.cache_clear()


def _count_fallback_warnings(path: Path) -> tuple[OnnxModel, int]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = OnnxModel(path, ("personalized",))
        model = OnnxModel(path, ("personalized",))  # a second session warns no more
    return model, sum("running on CPU" in str(w.message) for w in caught)


def test_unusable_cuda_falls_back_to_cpu_quietly(tmp_path, fake_gpu):
    model, count = _count_fallback_warnings(_graph("personalized", tmp_path / "p.onnx"))
    assert (model.provider, model.device, count) == ("CPUExecutionProvider", "cpu", 1)
    assert model(landmarks=np.zeros((2, 3, R, R), np.float32)).shape == (2, 3, R, R)


def test_cuda_session_that_raises_falls_back_to_cpu(tmp_path, fake_gpu, monkeypatch):
    real = ort.InferenceSession

    def session(path, options=None, providers=None, **kwargs):
        if "CUDAExecutionProvider" in (providers or []):
            raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected")
        return real(path, options, providers=providers, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", session)
    model, count = _count_fallback_warnings(_graph("personalized", tmp_path / "p.onnx"))
    assert (model.provider, count) == ("CPUExecutionProvider", 1)


def test_cuda_session_that_fails_to_run_falls_back_to_cpu(tmp_path, fake_gpu, monkeypatch):
    """A provider that loads but fails on the first run (e.g. a driver too old) is caught by the warm-up."""
    real = ort.InferenceSession

    class BrokenGpuSession(real):
        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def io_binding(self):
            raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    def session(path, options=None, providers=None, **kwargs):
        cls = BrokenGpuSession if "CUDAExecutionProvider" in (providers or []) else real
        return cls(path, options, providers=["CPUExecutionProvider"], **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", session)
    model, count = _count_fallback_warnings(_graph("personalized", tmp_path / "p.onnx"))
    assert (model.provider, model.device, count) == ("CPUExecutionProvider", "cpu", 1)


def test_engine_runs_without_torch(tmp_path):
    """demo.engine must import and render in an install without torch: torch is made unimportable first."""
    path = _graph("personalized", tmp_path / "p.onnx")
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from demo.engine import Engine\n"
        f"frames = Engine.load({str(path)!r}).render(np.zeros((2, {R}, {R}, 3), np.uint8))\n"
        "assert frames.shape == (2, 64, 64, 3), frames.shape\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules if sys.modules[m] is not None)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
