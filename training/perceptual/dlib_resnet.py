"""dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1.dat) in torch: an identity feature
network for L_CNT that needs no download, and the 128-d descriptor for identity metrics (CSIM).

Ported from the .dat file shipped by the PyPI package face-recognition-models, read in plain Python
(dlib_dat.py); its descriptors match dlib's compute_face_descriptor (tests/test_perceptual.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F

from base.paths import cache_dir

from .dlib_dat import read_dat
from .feature_net import FeatureNet, resize, seeded, to_pixels
from .paths import dlib_model_path

__all__ = [
    "DlibFaceResNet", "dlib_model_path", "load_dlib_face_resnet", "port_dat", "random_dlib_face_resnet",
]

DAT_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHIP = 150  # side of dlib's aligned face chips, the network's input
MEAN_RGB = (122.782, 117.001, 104.298)
# Residual stages: (channels, blocks); "down" blocks halve the side with a stride-2 conv and a 2×2
# average-pool shortcut. The last stage is dlib's 256-channel level (down + 2 blocks) and its last down block.
STAGES = (
    (32, ("same", "same", "same")),
    (64, ("down", "same", "same", "same")),
    (128, ("down", "same", "same")),
    (256, ("down", "same", "same", "down")),
)


class Affine(nn.Module):
    """dlib's `affine` layer: batch norm folded into a per-channel scale and shift."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)


def add_padded(a: Tensor, b: Tensor) -> Tensor:
    """dlib's add_prev: when shapes differ (channels, or 3×3 + 4×4 after unpadded stride-2 convs), the smaller
    tensor is zero-padded at the end of each axis, i.e. the maps are aligned at the top-left."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t: Tensor) -> Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)


class Block(nn.Module):
    """Residual block: conv3×3 → affine → ReLU → conv3×3 → affine, plus the shortcut, then ReLU. Only stride-1
    layers are padded, as in dlib."""

    def __init__(self, c_in: int, c_out: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.affine1 = Affine(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.affine2 = Affine(c_out)

    def forward(self, x: Tensor) -> Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(add_padded(y, shortcut))


class DlibFaceResNet(FeatureNet):
    """Feature levels (at 150×150 input): after the stem (32×35×35) and after each residual stage, 32×35×35,
    64×17×17, 128×8×8 and 256×2×2; the descriptor is the last level averaged, times a 256→128 matrix."""

    name = "dlib"

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 7, stride=2)  # unpadded, as are all stride-2 layers
        self.affine = Affine(32)
        stages, c_in = [], 32
        for channels, kinds in STAGES:
            blocks = []
            for kind in kinds:
                blocks.append(Block(c_in, channels, kind == "down"))
                c_in = channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(256, 128, bias=False)
        self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB))

    def prepare(self, images: Tensor) -> Tensor:
        """RGB [-1, 1] (B, 3, H, W) → dlib's input: 150×150, RGB 0–255 minus the means, divided by 256."""
        return (to_pixels(resize(images, CHIP)) - self.mean_rgb.view(1, 3, 1, 1)) / 256.0

    def levels(self, x: Tensor) -> list[Tensor]:
        x = F.max_pool2d(F.relu(self.affine(self.conv(x))), 3, 2)
        out = [x]
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out

    def forward(self, images: Tensor) -> list[Tensor]:
        return self.levels(self.prepare(images))

    def descriptor(self, chips: Tensor) -> Tensor:
        """(B, 128) face descriptors of aligned chips (RGB [-1, 1], 150×150 or resized to it), unnormalised as
        dlib's: two faces are the same person below Euclidean distance 0.6."""
        return self.fc(self.levels(self.prepare(chips))[-1].mean((2, 3)))


def port_dat(path: str | Path) -> dict[str, Tensor]:
    """State dict of DlibFaceResNet from the .dat file; layers with parameters come in the module's order."""
    dat = read_dat(path)
    if dat.size != CHIP:
        raise ValueError(f"{path}: input side {dat.size}, expected {CHIP}")
    net = DlibFaceResNet()
    modules = [(name, m) for name, m in net.named_modules() if isinstance(m, (nn.Conv2d, Affine, nn.Linear))]
    layers = [layer for layer in dat.layers if layer.params is not None]
    if len(layers) != len(modules):
        raise ValueError(f"{path}: {len(layers)} layers with parameters, expected {len(modules)}")
    state = {"mean_rgb": torch.tensor(dat.mean_rgb, dtype=torch.float32)}
    for (name, module), layer in zip(modules, layers, strict=True):
        params = torch.from_numpy(layer.params)
        prefix = f"{name}." if name else ""
        if isinstance(module, nn.Conv2d):
            expected = (module.out_channels, *module.kernel_size, *module.stride, *module.padding)
            if layer.kind != "con" or layer.settings != expected:
                raise ValueError(f"{path}: {name} is {layer.kind}{layer.settings}, expected con{expected}")
            n = module.weight.numel()
            state[prefix + "weight"] = params[:n].view_as(module.weight)
            state[prefix + "bias"] = params[n:].view_as(module.bias)
        elif isinstance(module, Affine):
            if layer.kind != "affine" or params.numel() != 2 * module.scale.numel():
                raise ValueError(f"{path}: {name} is {layer.kind}, {params.numel()} values; expected affine")
            state[prefix + "scale"], state[prefix + "shift"] = params.chunk(2)
        else:
            if layer.kind != "fc" or layer.settings != (module.in_features, module.out_features):
                raise ValueError(f"{path}: {name} is {layer.kind}{layer.settings}, expected fc")
            state[prefix + "weight"] = params.view(module.in_features, module.out_features).t()  # stored x·W
    return {k: v.contiguous() for k, v in state.items()}


def load_dlib_face_resnet() -> DlibFaceResNet:
    """The ported network; the conversion is cached as safetensors (keyed by the .dat's size and mtime)."""
    path = dlib_model_path(DAT_FILE)
    stat = path.stat()
    cached = cache_dir() / f"dlib_face_resnet_v1-{stat.st_size}-{stat.st_mtime_ns}.safetensors"
    if cached.is_file():
        state = load_file(cached)
    else:
        state = port_dat(path)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        save_file(state, tmp, metadata={"source": str(path)})
        os.replace(tmp, cached)  # atomic: concurrent loaders see the whole file or none
    net = DlibFaceResNet()
    net.load_state_dict(state)
    return net.freeze()


def random_dlib_face_resnet(seed: int = 0) -> DlibFaceResNet:
    """Randomly initialised, for tests only."""
    with seeded(seed):
        return DlibFaceResNet().freeze()
