"""Converter from published VGG state dicts to the project's weights files: key names conv1_1.weight, ... and
one input convention (caffe BGR, 0–255, minus mean), whatever channel order and scaling the source expects."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from .convert_config import ConvertConfig
from .vgg import BLOCKS, VGG, conv_names, weights_path


@dataclass(frozen=True)
class Source:
    """A published file: its architecture, key layout and the input it expects per channel,
    (pixel·scale − mean)/std with pixel in 0–255, channels listed in the source's order."""

    arch: str
    layout: str  # "sequential" = torchvision's features.N keys, "named" = conv1_1 keys
    rgb: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


SOURCES = {
    "vgg19-caffe": Source("vgg19", "sequential", rgb=False, scale=1.0, mean=(103.939, 116.779, 123.68)),
    "vgg19-torchvision": Source("vgg19", "sequential", rgb=True, scale=1 / 255, mean=(0.485, 0.456, 0.406),
                                std=(0.229, 0.224, 0.225)),
    "vggface-dag": Source("vggface", "named", rgb=True, scale=1.0,
                          mean=(129.186279296875, 104.76238250732422, 93.59396362304688)),
}


def source_keys(arch: str, layout: str) -> dict[str, str]:
    """Our conv name → the source's key prefix. torchvision's `features` interleaves conv, ReLU and a pool per
    block, so conv i of block b sits at index 2·(convs before it) + b."""
    if layout == "named":
        return {name: name for name in conv_names(arch)}
    keys, index = {}, 0
    for block, n in enumerate(BLOCKS[arch]):
        for i in range(n):
            keys[f"conv{block + 1}_{i + 1}"] = f"features.{index}"
            index += 2
        index += 1
    return keys


def convert_state_dict(state: dict[str, torch.Tensor], fmt: str) -> dict[str, torch.Tensor]:
    """The converted tensors, ready for VGG(arch).load_state_dict. Only conv1_1 changes beyond renaming: its
    input channels are put in BGR order and divided by std/scale, and the mean moves to 0–255 BGR units, so
    (pixel − mean_bgr) · w' equals the source's ((pixel·scale − mean)/std) · w exactly, padding included."""
    src = SOURCES[fmt]
    out = {}
    for name, key in source_keys(src.arch, src.layout).items():
        for part in ("weight", "bias"):
            if f"{key}.{part}" not in state:
                raise KeyError(f"{key}.{part} not in the source file: is it really {fmt}?")
            out[f"{name}.{part}"] = state[f"{key}.{part}"].detach().float().clone()
    gain = torch.tensor([src.scale / s for s in src.std])
    mean = torch.tensor(src.mean) / src.scale
    first = out["conv1_1.weight"] * gain.view(1, 3, 1, 1)  # (64, 3, 3, 3)
    if src.rgb:
        first, mean = first.flip(1), mean.flip(0)
    out["conv1_1.weight"] = first.contiguous()
    out["mean_bgr"] = mean
    return out


def convert_weights(config: ConvertConfig) -> Path:
    """`heads convert-weights`: read the .pth (tensors only, never pickled code), convert, check it loads, and
    write the safetensors file atomically."""
    src = SOURCES[config.format]
    state = torch.load(config.source, map_location="cpu", weights_only=True)
    tensors = convert_state_dict(state, config.format)
    VGG(src.arch).load_state_dict(tensors)
    out = Path(config.out) if config.out else weights_path(src.arch)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    save_file(tensors, tmp, metadata={"source": Path(config.source).name, "format": config.format})
    os.replace(tmp, out)
    print(f"wrote {out} ({src.arch}, from {config.format})")
    return out
