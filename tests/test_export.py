"""ONNX export of the tiny model: parity with PyTorch, metadata, the engine on real graphs, variants, the command."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from base.errors import UserError
from contract.graphs import METADATA_KEYS
from demo.engine import Engine, OnnxModel, SessionSettings
from export_onnx.config import ExportConfig
from export_onnx.export import (
    bake,
    check_parity,
    export_embedder,
    export_generator,
    export_personalized,
    graph_metadata,
)
from export_onnx.quantize import SCOPES, fidelity, to_fp16, to_int8
from export_onnx.release import export
from export_onnx.samples import realistic
from faces.layout import PALETTE_VERSION
from training.avatar import FORMAT, Avatar, model_id
from training.config import ModelConfig
from training.data import to_uint8
from training.layers import ResBlock
from training.models import Networks

CPU = SessionSettings(device="cpu", threads=1)


def _nets(seed: int = 0) -> Networks:
    torch.manual_seed(seed)
    nets = Networks.build(ModelConfig.tiny(), with_discriminator=False)
    nets.E.eval(), nets.G.eval()  # eval: no spectral-norm power iteration changes the weights between calls
    return nets


@pytest.fixture(scope="module")
def nets() -> Networks:
    return _nets()


@pytest.fixture(scope="module")
def faces(nets) -> dict[str, np.ndarray]:
    return realistic(nets.cfg, 5, seed=42)


@pytest.fixture(scope="module")
def psi(nets, faces) -> torch.Tensor:
    with torch.no_grad():
        return nets.G.psi(nets.E(torch.from_numpy(faces["frames"][:1]), torch.from_numpy(faces["landmarks"][:1])))


@pytest.fixture(scope="module")
def exported(nets, psi, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("onnx")
    meta = {"model_id": "tiny-test", "provenance": "tests/test_export.py"}
    parity = {
        "embedder": export_embedder(nets.E, folder / "embedder.onnx", meta),
        "generator": export_generator(nets.G, folder / "generator.onnx", meta),
        "personalized": export_personalized(
            nets.G, psi, folder / "personalized.onnx", {**meta, "T": 3, "steps": 40}
        ),
    }
    return {"folder": folder, "parity": parity}


def test_bake_leaves_the_network_intact(nets):
    """Baking works on a rebuilt copy: removing parametrizations from a deep copy would break the original."""
    y, e = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, nets.cfg.embed_dim)
    with torch.no_grad():
        before = nets.G(y, e)
        baked = bake(nets.G)(y, e)
        after = nets.G(y, e)
    assert not any("parametrizations" in k for k in bake(nets.G).state_dict())
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    torch.testing.assert_close(baked, before, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_every_graph_matches_pytorch(exported):
    assert all(0 <= v <= 1e-4 for v in exported["parity"].values()), exported["parity"]


@pytest.mark.slow
def test_metadata_round_trip(exported, nets):
    model = OnnxModel(exported["folder"] / "personalized.onnx", ("personalized",), CPU)
    meta = model.metadata
    assert set(meta) == set(METADATA_KEYS)
    assert (meta["kind"], meta["palette"], meta["resolution"], meta["psi_size"]) == (
        "personalized", PALETTE_VERSION, "64", str(nets.G.psi_size)
    )
    assert (meta["model_id"], meta["T"], meta["steps"], meta["precision"]) == ("tiny-test", "3", "40", "fp32")
    assert json.loads(meta["model_config"])["base_channels"] == 8 and meta["created"].startswith("20")
    generic = OnnxModel(exported["folder"] / "generator.onnx", ("generator",), CPU).metadata
    assert generic["kind"] == "generator" and "T" not in generic


@pytest.mark.slow
def test_engine_renders_what_pytorch_renders(exported, nets, psi, faces):
    """Through the engine's uint8 interface, on synthetic faces and a batch size the export never saw."""
    folder, y = exported["folder"], to_uint8(torch.from_numpy(faces["landmarks"]))
    with torch.no_grad():
        expected = to_uint8(nets.G.render(torch.from_numpy(faces["landmarks"]), psi))
    frames = Engine.load(folder / "personalized.onnx", CPU).render(y)
    assert frames.shape == (5, 64, 64, 3) and np.abs(frames.astype(int) - expected).max() <= 1

    photos = to_uint8(torch.from_numpy(faces["frames"][:3]))
    engine = Engine.from_photos(folder / "embedder.onnx", folder / "generator.onnx", photos, y[:3], CPU)
    with torch.no_grad():
        e = nets.E(torch.from_numpy(faces["frames"][:3]), torch.from_numpy(faces["landmarks"][:3])).mean(0, True)
        expected = to_uint8(nets.G(torch.from_numpy(faces["landmarks"]), e.expand(5, -1)))
    np.testing.assert_allclose(engine.embedding, e.numpy(), atol=1e-4)
    assert np.abs(engine.render(y).astype(int) - expected).max() <= 1


@pytest.mark.slow
def test_parity_failure_is_a_user_error(exported, psi):
    """A graph that renders differently from PyTorch (here: checked against another G) fails the export."""
    from export_onnx.export import _Personalized, rebuild

    other = _Personalized(rebuild(_nets(seed=1).G), psi)
    with pytest.raises(UserError, match="does not match PyTorch"):
        check_parity(other, exported["folder"] / "personalized.onnx", "personalized", ModelConfig.tiny(), 1e-4)


def _fp32_conv_scopes(graph: onnx.GraphProto) -> list[str]:
    """Module paths of an int8 graph's convs left in fp32: those reading no DequantizeLinear output."""
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    return [next(p.value for p in n.metadata_props if p.key == SCOPES) for n in graph.node
            if n.op_type == "Conv" and n.input[0] not in dequantized]


def test_subpixel_generator_exports_within_parity(tmp_path):
    """The strided stem and the sub-pixel output (DepthToSpace) of `subpixel` G keep fp32 parity in onnxruntime;
    int8 keeps the stem in fp32."""
    torch.manual_seed(0)
    nets = Networks.build(replace(ModelConfig.tiny(), subpixel=True, guidance="warp"), with_discriminator=False)
    psi = nets.G.eval().psi(torch.randn(1, nets.cfg.embed_dim)).detach()
    parity = export_personalized(nets.G, psi, tmp_path / "p.onnx", {"model_id": "sub", "T": 1, "steps": 0,
                                                                     "provenance": "tests"})
    assert parity <= 1e-4
    faces = realistic(nets.cfg, 4, seed=1)
    graph = onnx.load(to_int8(tmp_path / "p.onnx", tmp_path / "p.int8.onnx",
                              {k: faces[k] for k in ("landmarks", "guide")})).graph
    assert sum("G.stem" in scope for scope in _fp32_conv_scopes(graph)) == 1  # the conv reading the images


def test_metadata_needs_exactly_the_caller_keys():
    cfg = ModelConfig.tiny()
    with pytest.raises(ValueError, match="missing \\['T', 'steps'\\]"):
        graph_metadata("personalized", cfg, 10, {"model_id": "m", "provenance": "p"})
    with pytest.raises(ValueError, match="unknown \\['step'\\]"):
        graph_metadata("generator", cfg, 10, {"model_id": "m", "provenance": "p", "step": 3})


@pytest.mark.slow
def test_int8_and_fp16_stay_close_to_fp32(exported, nets, tmp_path):
    fp32 = exported["folder"] / "personalized.onnx"
    calibration = realistic(nets.cfg, 8, seed=100)["landmarks"]
    check = {"landmarks": realistic(nets.cfg, 4, seed=200)["landmarks"]}
    reference = OnnxModel(fp32, ("personalized",), CPU)
    for variant, make, bound in (
        ("int8", lambda: to_int8(fp32, tmp_path / "p.int8.onnx", {"landmarks": calibration}), 0.9),
        ("fp16", lambda: to_fp16(fp32, tmp_path / "p.fp16.onnx"), 0.99),
    ):
        model = OnnxModel(make(), ("personalized",), CPU)
        assert model.metadata["precision"] == variant and model.metadata["model_id"] == "tiny-test"
        assert fidelity(reference, model, check)["ssim_min"] >= bound, variant
    # int8 leaves exactly the residual shortcuts and the output conv in fp32: their convs read no DequantizeLinear
    graph = onnx.load(tmp_path / "p.int8.onnx").graph
    scopes = _fp32_conv_scopes(graph)
    shortcuts = [m for m in nets.G.modules() if isinstance(m, ResBlock) and m.skip is not None]
    assert len(scopes) == len(shortcuts) + 1 and len(shortcuts) > 0
    assert sum(".skip" in s for s in scopes) == len(shortcuts) and sum("G.out_conv" in s for s in scopes) == 1
    assert sum(n.op_type == "Conv" for n in graph.node) > len(scopes)  # and the others are quantized


@pytest.fixture
def model_folder(nets, tmp_path):
    return nets.save_pretrained(tmp_path / "model")


def _avatar(nets, psi, folder, model: str):
    e = torch.zeros(1, nets.cfg.embed_dim)
    return Avatar(psi, e, {"format": FORMAT, "model_id": model, "T": 2, "steps": 0}).save(folder)


def test_export_refuses_an_avatar_of_another_model(nets, psi, model_folder, tmp_path):
    avatar = _avatar(nets, psi, tmp_path / "avatar", "0123456789abcdef")
    with pytest.raises(UserError, match="0123456789abcdef"):
        export(ExportConfig(model=model_folder, out=tmp_path / "out", avatar=avatar, generic=False))


@pytest.mark.slow
def test_export_command_writes_graphs_and_config(nets, psi, model_folder, tmp_path):
    avatar = _avatar(nets, psi, tmp_path / "avatar", model_id(nets))
    out = tmp_path / "out"
    manifest = export(ExportConfig(model=model_folder, out=out, avatar=avatar, generic=False, variants=("int8",),
                                   calibration=4))
    assert json.loads((out / "config.json").read_text()) == manifest
    # Folders by name alone: the model travels, the exporting machine's layout stays behind.
    provenance = Engine.load(out / "personalized.onnx", CPU).generator.metadata["provenance"]
    assert manifest["provenance"].startswith("heads export of model (model ") and "avatar avatar (T=2" in provenance
    for text in ((out / "config.json").read_text(), provenance):
        assert str(tmp_path) not in text
    graphs = manifest["graphs"]["personalized"]
    assert graphs["fp32"]["parity_max_abs"] <= 1e-4 and 0.5 < graphs["int8"]["ssim_min"] <= 1
    for row in graphs.values():
        assert (out / row["file"]).is_file() and row["cpu_ms_per_frame"] > 0
    assert Engine.load(out / "personalized.int8.onnx", CPU).render(np.zeros((2, 64, 64, 3), np.uint8)).shape == (
        2, 64, 64, 3
    )
