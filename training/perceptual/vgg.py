"""VGG19 (ImageNet) and VGG-Face (VGG16) up to relu5_1, the layers L_CNT compares (Zakharov et al. 2019).

Both take caffe-style input (BGR, 0–255, minus a per-channel mean); the converter rewrites every supported
source file into that one convention, and the mean travels in the weights file as `mean_bgr`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.nn import functional as F

from .feature_net import FeatureNet, seeded, to_caffe_bgr
from .paths import DOCS, MissingWeightsError, weights_dir

# Convolutions per block, for the layers up to conv5_1 (later ones never influence relu5_1).
BLOCKS = {"vgg19": (2, 2, 4, 4, 1), "vggface": (2, 2, 3, 3, 1)}
# Training means in BGR order: caffe ILSVRC VGG19, and VGG-Face's (from the matconvnet/caffe release).
MEAN_BGR = {
    "vgg19": (103.939, 116.779, 123.68),
    "vggface": (93.59396362304688, 104.76238250732422, 129.186279296875),
}
CHANNELS = (64, 128, 256, 512, 512)
# Where to get each network's weights, and the converter format for that file.
DOWNLOADS = {
    "vgg19": ("vgg19-d01eb7cb.pth (caffe VGG19 for PyTorch, jcjohnson/pytorch-vgg)", "vgg19-caffe"),
    "vggface": ("vgg_face_dag.pth (VGG-Face for PyTorch by S. Albanie, pytorch-mcn)", "vggface-dag"),
}


def conv_names(arch: str) -> list[str]:
    """conv1_1, conv1_2, ..., conv5_1 in forward order."""
    return [f"conv{b + 1}_{i + 1}" for b, n in enumerate(BLOCKS[arch]) for i in range(n)]


class VGG(FeatureNet):
    """VGG trunk returning relu1_1, relu2_1, relu3_1, relu4_1, relu5_1; convs are attributes named as in the
    papers so the weights file's keys read `conv1_1.weight`, `conv1_1.bias`, ..."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        if arch not in BLOCKS:
            raise ValueError(f"unknown VGG {arch!r}; choose one of {', '.join(BLOCKS)}")
        self.name = arch
        c_in = 3
        for block, n in enumerate(BLOCKS[arch]):
            for i in range(n):
                self.add_module(f"conv{block + 1}_{i + 1}", nn.Conv2d(c_in, CHANNELS[block], 3, padding=1))
                c_in = CHANNELS[block]
        self.register_buffer("mean_bgr", torch.tensor(MEAN_BGR[arch]))

    def features(self, x: Tensor) -> list[Tensor]:
        """Activations for input already in the caffe convention (B, 3, H, W)."""
        out = []
        for block, n in enumerate(BLOCKS[self.name]):
            if block:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)  # caffe rounds pooled sizes up
            for i in range(n):
                x = F.relu(getattr(self, f"conv{block + 1}_{i + 1}")(x))
                if i == 0:
                    out.append(x)
        return out

    def forward(self, images: Tensor) -> list[Tensor]:
        return self.features(to_caffe_bgr(images, self.mean_bgr))


def weights_path(arch: str, directory: str | Path | None = None) -> Path:
    return weights_dir(directory) / f"{arch}.safetensors"


def load_vgg(arch: str, directory: str | Path | None = None) -> VGG:
    """The pretrained network from <directory>/<arch>.safetensors, written by `heads convert-weights`."""
    path = weights_path(arch, directory)
    if not path.is_file():
        download, fmt = DOWNLOADS[arch]
        raise MissingWeightsError(
            f"{path} not found: the {arch} feature network needs converted weights. Download {download}, "
            f"then run `heads convert-weights --source FILE --format {fmt}` (see {DOCS})."
        )
    net = VGG(arch)
    net.load_state_dict(load_file(path))
    return net.freeze()


def random_vgg(arch: str, seed: int = 0) -> VGG:
    """Randomly initialised, for tests only."""
    with seeded(seed):
        return VGG(arch).freeze()
