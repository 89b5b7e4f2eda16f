"""Perceptual feature networks of L_CNT: conventions, shapes, frozen weights, the VGG converter, and the dlib
port against dlib itself on real photos."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from training.perceptual import (
    DlibFaceResNet,
    MissingWeightsError,
    dlib_model_path,
    load_feature_net,
    random_feature_net,
)
from training.perceptual.convert import SOURCES, convert_weights, source_keys
from training.perceptual.convert_config import ConvertConfig
from training.perceptual.dlib_resnet import load_dlib_face_resnet
from training.perceptual.feature_net import to_caffe_bgr
from training.perceptual.vgg import VGG


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder, so the dlib port is parsed from its .dat and written there."""
    monkeypatch.setenv("HEADS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_caffe_convention_on_a_known_pixel():
    pixel = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1)  # RGB 0, 127.5, 255
    mean_bgr = torch.tensor([103.939, 116.779, 123.68])
    out = to_caffe_bgr(pixel, mean_bgr).flatten()
    torch.testing.assert_close(out, torch.tensor([255 - 103.939, 127.5 - 116.779, 0 - 123.68]))


def test_dlib_input_on_a_known_pixel():
    net = DlibFaceResNet()
    pixel = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 150, 150)
    out = net.prepare(pixel)[0, :, 0, 0]
    expected = (torch.tensor([0.0, 127.5, 255.0]) - torch.tensor([122.782, 117.001, 104.298])) / 256
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(
    ("name", "shapes"),
    [
        ("vgg19", [(64, 64), (128, 32), (256, 16), (512, 8), (512, 4)]),
        ("vggface", [(64, 64), (128, 32), (256, 16), (512, 8), (512, 4)]),
        ("dlib", [(32, 35), (32, 35), (64, 17), (128, 8), (256, 2)]),
    ],
)
def test_feature_shapes_frozen_and_differentiable(name, shapes):
    net = random_feature_net(name)
    net.train()  # a trainer switching its modules to train mode must not unfreeze the loss network
    assert net.name == name and not net.training
    assert not any(p.requires_grad for p in net.parameters())
    x = images(2, 3, 64, 64).requires_grad_()
    features = net(x)
    assert [tuple(f.shape) for f in features] == [(2, c, s, s) for c, s in shapes]
    sum(f.abs().mean() for f in features).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_random_nets_are_seeded():
    a, b = random_feature_net("vggface", seed=3), random_feature_net("vggface", seed=3)
    assert torch.equal(a.conv1_1.weight, b.conv1_1.weight)
    assert not torch.equal(a.conv1_1.weight, random_feature_net("vggface", seed=4).conv1_1.weight)


@pytest.mark.parametrize("name", ["vgg19", "vggface"])
def test_missing_weights_name_the_file_and_the_fix(tmp_path, name):
    with pytest.raises(MissingWeightsError) as error:
        load_feature_net(name, tmp_path)
    message = str(error.value)
    assert f"{name}.safetensors" in message and "heads convert-weights" in message
    assert "docs/perceptual.md" in message
    assert isinstance(error.value, FileNotFoundError)


def test_unknown_network_is_refused():
    with pytest.raises(ValueError, match="vgg19, vggface, dlib"):
        load_feature_net("resnet50")


def source_state(fmt: str) -> dict[str, torch.Tensor]:
    """Random tensors under the published file's key names, plus a classifier key the converter must skip."""
    src = SOURCES[fmt]
    gen = torch.Generator().manual_seed(1)
    ours = VGG(src.arch).state_dict()
    state = {}
    for name, key in source_keys(src.arch, src.layout).items():
        weight = ours[f"{name}.weight"]
        state[f"{key}.weight"] = torch.randn(weight.shape, generator=gen) * (2 / weight[0].numel()) ** 0.5
        state[f"{key}.bias"] = torch.randn(weight.shape[0], generator=gen) * 0.1
    state["classifier.6.bias" if src.layout == "sequential" else "fc8.bias"] = torch.zeros(1000)
    return state


def source_input(fmt: str, x: torch.Tensor) -> torch.Tensor:
    """What the source network was fed: (pixel·scale − mean)/std in its own channel order."""
    src = SOURCES[fmt]
    pixels = (x + 1) * 127.5  # RGB 0–255
    if not src.rgb:
        pixels = pixels.flip(1)
    mean, std = torch.tensor(src.mean).view(1, 3, 1, 1), torch.tensor(src.std).view(1, 3, 1, 1)
    return (pixels * src.scale - mean) / std


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_converter_round_trip(tmp_path, fmt):
    src = SOURCES[fmt]
    state = source_state(fmt)
    # jcjohnson's file predates torch's zip format: exercise the legacy reader too
    torch.save(state, tmp_path / "source.pth", _use_new_zipfile_serialization=fmt != "vgg19-caffe")
    convert_weights(ConvertConfig(str(tmp_path / "source.pth"), fmt, str(tmp_path / f"{src.arch}.safetensors")))
    assert not list(tmp_path.glob(".*.tmp"))

    converted = load_file(tmp_path / f"{src.arch}.safetensors")
    first = state[f"{source_keys(src.arch, src.layout)['conv1_1']}.weight"]
    assert torch.equal(converted["conv1_1.weight"].flip(1) if src.rgb else converted["conv1_1.weight"],
                       first * torch.tensor([src.scale / s for s in src.std]).view(1, 3, 1, 1))

    reference = VGG(src.arch)  # the source network, fed its own input convention
    reference.load_state_dict({f"{name}.{part}": state[f"{key}.{part}"]
                               for name, key in source_keys(src.arch, src.layout).items()
                               for part in ("weight", "bias")} | {"mean_bgr": torch.zeros(3)})
    net = load_feature_net(src.arch, tmp_path)
    x = images(2, 3, 48, 48)
    with torch.no_grad():
        expected, got = reference.features(source_input(fmt, x)), net(x)
    for e, g in zip(expected, got, strict=True):
        assert e.abs().max() > 0
        assert (e - g).abs().max() <= 1e-4 * e.abs().max()


def test_converter_rejects_a_file_of_another_format(tmp_path):
    torch.save(source_state("vggface-dag"), tmp_path / "source.pth")
    with pytest.raises(KeyError, match="vgg19-caffe"):
        convert_weights(ConvertConfig(str(tmp_path / "source.pth"), "vgg19-caffe", str(tmp_path / "out.safetensors")))


def test_dlib_port_is_cached(cache):
    first = load_dlib_face_resnet()
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"  # no temporary file left behind
    second = load_feature_net("dlib")
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(),
                                                    strict=True))
    assert sum(p.numel() for p in second.parameters()) == 5_614_592


def test_dlib_resizes_to_its_chip_size(cache):
    net = load_feature_net("dlib")
    x = images(1, 3, 256, 256)
    small = torch.nn.functional.interpolate(x, size=(150, 150), mode="bilinear", antialias=True)
    with torch.no_grad():
        for a, b in zip(net(x), net(small), strict=True):
            torch.testing.assert_close(a, b)


def portrait_chips(media, count: int) -> list[np.ndarray]:
    """dlib's own aligned 150-px chips of the first `count` portrait photos in which it finds a face."""
    import dlib
    from PIL import Image

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
    chips = []
    with open(media / "MANIFEST.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["kind"] != "portrait_photo":
                continue
            image = np.asarray(Image.open(media / row["file"]).convert("RGB"))
            faces = detector(image, 0)
            if faces:
                chips.append(dlib.get_face_chip(image, predictor(image, faces[0]), 150, 0.25))
            if len(chips) == count:
                return chips
    pytest.fail(f"fewer than {count} portrait photos with a face detected by dlib")


@pytest.mark.media
def test_dlib_port_matches_dlib_on_photos(media, cache):
    import dlib

    chips = portrait_chips(media, 4)
    reference = dlib.face_recognition_model_v1(str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))
    expected = np.array([reference.compute_face_descriptor(chip) for chip in chips])
    net = load_feature_net("dlib")
    assert isinstance(net, DlibFaceResNet)
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 127.5 - 1  # (B, 3, 150, 150)
    with torch.no_grad():
        got = net.descriptor(x).double().numpy()
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    print("cosine to dlib:", np.round(cosine, 6), "distance:", np.linalg.norm(got - expected, axis=1))
    assert (cosine >= 0.999).all() and (np.linalg.norm(got - expected, axis=1) < 0.01).all()


def test_convert_command_parses_without_torch():
    code = (
        "import sys; from heads.cli import parse; "
        "cmd, cfg, dry = parse(['convert-weights', '--source', 'v.pth', '--format', 'vggface-dag', '--dry-run']); "
        "assert (cfg.source, cfg.format, cfg.out, dry) == ('v.pth', 'vggface-dag', None, True); "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ | {"OMP_WAIT_POLICY": "PASSIVE"})
