"""Typed configs for the networks and the meta-learning stage. Torch-free, so the CLI can parse them cheaply.

A ModelConfig is stored next to every checkpoint and release, so a model always rebuilds from its own files.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Literal

from base.errors import ConfigError
from contract.graphs import GUIDED, REFINE_GUIDANCE
from faces.layout import GUIDE_CHANNELS


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of E, G and D. Channels at a feature map of side r are min(max_channels, base * res / (2r))."""

    resolution: int = 128
    """Side of frames and landmark images (64, 128 or 256)."""
    base_channels: int = 32
    """Channels after the first down-sampling block (64 in the paper)."""
    max_channels: int = 256
    """Cap on channels anywhere (512 in the paper)."""
    embed_dim: int = 256
    """N: size of the identity embedding ê and of D's projection vectors (512 in the paper)."""
    res_blocks: int = 2
    """Number of AdaIN residual blocks at G's bottleneck (5 in the paper)."""
    bottleneck: int = 16
    """Side of G's lowest feature map (16 in the paper at 256 px)."""
    attention_down: int = 32
    """Side at which E, D and G's encoder apply self-attention."""
    attention_up: int = 64
    """Side at which G's decoder applies self-attention."""
    embed_relu: bool = True
    """ReLU on ê after E's sum pooling, as in the paper. Off, ê cannot die: in CPU runs the ReLU'd ê fell to all zeros
    (L_MCH pulls it towards W's small initial values) and FF stopped depending on the person."""
    guidance: Literal["none", "warp", "refine"] = "none"
    """`warp`: G also reads a reference frame warped onto y and the warp's mask, and blends its own synthesis with
    that warp into its frame (beyond the paper). `refine`: the same inputs, but G returns the synthesis and the
    blend weight α apart, so that they are composited onto a warp at the output's resolution, and α starts at
    exactly 0: an untrained G gives the warp back (see `Generator`)."""
    subpixel: bool = False
    """G without layers at full resolution (beyond the paper): a strided 4×4 conv reads y down to half the side, and
    a sub-pixel conv (Shi et al. 2016: a conv at half the side whose four output phases are interleaved) writes the
    frame. At 256 px on a CPU, G's full-resolution blocks cost far more in memory traffic than in arithmetic."""

    def __post_init__(self) -> None:
        if self.resolution not in (64, 128, 256):
            raise ConfigError(f"resolution must be 64, 128 or 256, not {self.resolution}")
        if not 4 <= self.bottleneck < self.resolution or self.resolution % self.bottleneck:
            raise ConfigError(f"bottleneck {self.bottleneck} must divide the resolution and be smaller")
        if self.res_blocks < 0 or self.embed_dim < 1 or self.base_channels < 4:
            raise ConfigError("res_blocks must be >= 0, embed_dim >= 1 and base_channels >= 4")

    @property
    def guided(self) -> bool:
        """Whether G reads a warp guide besides the landmark image: the one test of it, everywhere."""
        return self.guidance in GUIDED

    @property
    def refines(self) -> bool:
        """Whether G's output is a refinement (synthesis and α) of a warp made outside it: the one test of it."""
        return self.guidance == REFINE_GUIDANCE

    @property
    def input_channels(self) -> int:
        """Channels of G's input tensor: the landmark image, plus the warped frame and its mask when guided."""
        return 3 + (GUIDE_CHANNELS if self.guided else 0)

    def channels(self, side: int) -> int:
        return min(self.max_channels, self.base_channels * self.resolution // (2 * side))

    @staticmethod
    def paper() -> ModelConfig:
        """Zakharov et al. at 256×256: G ≈ 38M, E ≈ 15M, D ≈ 20M parameters (without W)."""
        return ModelConfig(256, 64, 512, 512, 5, 16)

    @staticmethod
    def compact() -> ModelConfig:
        """Narrow model for CPU meta-learning and real-time CPU inference; ê without the ReLU that died on CPU runs."""
        return ModelConfig(embed_relu=False)

    @staticmethod
    def compact256() -> ModelConfig:
        """compact's channels at every feature-map side, one level deeper, and no layers at 256 px (`subpixel`): 256 px
        in real time on a 2-core CPU (2.7 GFLOP per frame against 12.6 for compact's widths scaled up with the
        resolution)."""
        return ModelConfig(256, base_channels=16, embed_relu=False, subpixel=True)

    @staticmethod
    def tiny() -> ModelConfig:
        """Smallest useful model: tests and smoke runs."""
        return ModelConfig(64, 8, 64, 64, 1, 16)


MODEL_PRESETS = {
    "compact": ModelConfig.compact, "compact256": ModelConfig.compact256, "paper": ModelConfig.paper,
    "tiny": ModelConfig.tiny,
}


@dataclass(frozen=True)
class LossConfig:
    """Loss weights; defaults are the published paper's."""

    perceptual: tuple[str, ...] = ("dlib",)
    """Feature networks of L_CNT, any of vgg19, vggface, dlib (dlib needs no download)."""
    perceptual_dir: str | None = None
    """Folder with vgg19.safetensors / vggface.safetensors (see docs/perceptual.md)."""
    vgg19: float = 1.5e-1
    vggface: float = 2.5e-2
    dlib: float = 2.5e-2
    """Weight of the dlib face-recognition features (same role as VGGFace's)."""
    l1: float = 0.0
    """Optional pixel L1 (not in the paper; helps tiny CPU runs converge)."""
    feature_matching: float = 10.0
    """L_FM weight inside L_ADV."""
    match: float = 10.0
    """L_MCH weight (80 in the paper's first version, 10 in the published one); 0 gives the FF variant."""
    match_to_embedder: bool = True
    """L_MCH pulls ê towards W_i as well as W_i towards ê (the paper). Off, only W_i follows ê, which is all that
    fine-tuning's w′ = w0 + ê_NEW needs: on CPU-sized data the two-way pull shrank ê towards W's small start."""
    focus: float = 0.0
    """Warp-guided models: extra weight of the pixel L1 (`l1`) where the warp fails: the target's inner mouth, the
    warp's invalid pixels and the 10 % of pixels where the warp is furthest from the target (beyond the paper)."""
    focus_share: float = 0.1
    """Share of each frame's pixels, those where the warp is furthest from the target, that `focus` also weighs (0:
    only the mouth and the invalid pixels). Those are mostly edges the warp misplaces by a pixel or two, which a
    refining G learned to paint over with noise in a first run."""
    alpha: float = 0.0
    """Refining models: weight of the mean of α within the region it counts in (`faces.guide.refine_region`), so
    that G covers the warp only where that pays."""
    synthesis: float = 0.0
    """Refining models: weight of the pixel L1 between the synthesis itself and the real frame inside the region α
    counts in (`faces.guide.refine_region`), whatever α is: the synthesis learns there even where α is still low."""
    random_perceptual: bool = False
    """Use randomly initialised feature networks: only for tests that ask for it."""


@dataclass(frozen=True)
class DataConfig:
    """Where episodes come from."""

    source: Literal["synthetic", "prepared", "shards"] = "synthetic"
    """`synthetic` draws cartoon faces in code (no files); `prepared` reads `heads prepare` output; `shards` streams
    the tar shards of `heads prepare --to-shards` (the same episodes, read from a few large files)."""
    root: str | None = None
    """Prepared dataset folder (source=prepared) or shard folder (source=shards)."""
    split: str = "train"
    synthetic_videos: int = 16
    """Number of synthetic identities (videos) for source=synthetic."""
    workers: int = 0
    """DataLoader worker processes."""
    augment: bool = True
    """Random horizontal flips and colour jitter, the same for all frames of an episode (prepared data)."""
    min_frames: int = 8
    """Prepared clips with fewer frames are left out (1 would admit single photos as one-frame identities)."""
    shuffle: int = 32
    """source=shards: clips each loader worker holds to shuffle the order of its shards' clips (1: none); about
    0.2 MB each at 256 px (the K+1 chosen JPEGs)."""

    def __post_init__(self) -> None:
        if self.workers < 0 or self.shuffle < 1 or self.min_frames < 1:
            raise ConfigError("data.workers must be >= 0, data.shuffle and data.min_frames >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """Meta-learning of E, G, D (the paper's first stage)."""

    model: ModelConfig = field(default_factory=ModelConfig.compact)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    k: int = 8
    """K: reference frames per episode embedded by E."""
    batch: int = 4
    """Episodes per step (per process under DDP)."""
    steps: int = 1000
    lr_g: float = 5e-5
    """Adam learning rate of E, G (and P, W)."""
    lr_d: float = 2e-4
    d_steps: int = 1
    """Discriminator updates per generator update."""
    guide_dropout: float = 0.0
    """Warp-guided models: share of episodes whose guide is blanked in G's step. Without it, runs of `compact256`
    learned α = 1 everywhere within 200 steps (the warp beats an untrained synthesis), after which (1 − α) starves
    the synthesis of gradient and G adds nothing to the warp."""
    betas: tuple[float, float] = (0.0, 0.9)
    ema: float = 0.0
    """EMA decay for E and G (0 disables), e.g. 0.999."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Autocast dtype; fp16 uses a gradient scaler (CUDA)."""
    compile: bool = False
    """torch.compile the networks (CUDA)."""
    device: str = "auto"
    """auto = cuda when available, else cpu."""
    seed: int = 0
    outdir: str = "runs"
    """Parent of the numbered run directories."""
    run_name: str = "meta"
    resume: str | None = None
    """Run directory (or checkpoint folder) to continue exactly where it stopped."""
    init: str | None = None
    """A model folder (`save_pretrained`, e.g. weights/torch) whose E, G and D start this run, with fresh optimisers
    and fresh per-video vectors W (the videos differ). Its architecture must match `model` except the guidance: a
    blending (`warp`) model may start a refining one, whose α then starts at zero (the run begins at the warp)."""
    checkpoint_every: int = 500
    image_every: int = 250
    log_every: int = 10
    keep_checkpoints: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        if self.k < 1 or self.batch < 1 or self.steps < 0 or self.d_steps < 1:
            raise ConfigError("k, batch and d_steps must be >= 1 and steps >= 0")
        if not 0.0 <= self.guide_dropout < 1.0:
            raise ConfigError("guide_dropout must be in [0, 1)")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError("ema must be in [0, 1)")

    @staticmethod
    def presets() -> dict[str, TrainConfig]:
        return {name: TrainConfig(model=make()) for name, make in MODEL_PRESETS.items()}

    def with_model(self, model: ModelConfig) -> TrainConfig:
        return replace(self, model=model)


@dataclass(frozen=True)
class MouthRefinerConfig:
    """The mouth refiner's architecture (training/mouth_refiner.py)."""

    width: int = 32
    """Channels of the U-Net's first level; the next two have 2× and 3× as many."""

    def __post_init__(self) -> None:
        if self.width < 4:
            raise ConfigError("width must be >= 4")


@dataclass(frozen=True)
class MouthTrainConfig:
    """`heads train-mouth`: the mouth refiner, trained on mouth crops of the warp renderer's output against the real
    frames of the training split's clips, with 1 − SSIM (the metric's own) plus L1 as its loss."""

    data: str
    """Prepared dataset folder (`heads prepare`); its training split is used, the test split never."""
    out: str = "runs/mouth-refiner"
    """Output model folder: config.json, mouth_refiner.safetensors, train_log.jsonl."""
    model: MouthRefinerConfig = field(default_factory=MouthRefinerConfig)
    shots: tuple[int, ...] = (1, 8)
    """The warps are made from the photos `heads evaluate` picks at each of these T (evenly spaced in each clip's
    first half): a refiner trained on one T alone learnt nothing that helps at the other (docs/warp-guided.md)."""
    per_clip: int = 40
    """Open-mouth targets per clip and T (a quarter as many closed ones are added, so closed mouths stay closed)."""
    min_frames: int = 32
    """Clips with fewer frames are left out (T = 8 photos come from the first half, targets from the rest)."""
    steps: int = 2400
    """Adam steps; the weights are written every 100 (2400 took 38 minutes on one thread of this 2-core CPU)."""
    batch: int = 32
    """Crops per step (mirrored every other step)."""
    lr: float = 1e-3
    """Adam's learning rate."""
    l1: float = 1.0
    """Weight of the crop's L1 beside 1 − SSIM."""
    seed: int = 0
    """Seeds the training targets' choice, the initial weights and the batches."""
    threads: int = 0
    """torch threads (0: torch's default)."""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1 or self.per_clip < 1 or self.min_frames < 2 * max(self.shots, default=1):
            raise ConfigError("steps, batch and per_clip must be >= 1, and min_frames at least twice the largest T")
        if not self.shots or min(self.shots) < 1:
            raise ConfigError("shots must be a non-empty list of T >= 1")


@dataclass(frozen=True)
class TrainBenchConfig:
    """Training-step speed of named model presets on this device."""

    presets: tuple[str, ...] = ("compact", "paper")
    batch: int = 2
    k: int = 8
    steps: int = 3
    """Timed steps per preset (after one warm-up step)."""
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    out: str = "runs/bench/train.json"

    def __post_init__(self) -> None:
        if self.batch < 1 or self.k < 1 or self.steps < 1:
            raise ConfigError("batch, k and steps must be at least 1")


@dataclass(frozen=True)
class LoaderBenchConfig:
    """Episodes/s and images/s of meta-learning's data loader, per DataLoader worker, from a prepared folder and
    from its shards (`heads prepare --to-shards`): what sizes --data.workers for a GPU's step rate."""

    prepared: str | None = None
    """A prepared folder (`heads prepare`); None skips the folder layout."""
    shards: str | None = None
    """Its shards (`heads prepare --to-shards`); None skips the shard layout."""
    workers: tuple[int, ...] = (1, 2)
    """DataLoader worker counts to measure (0 reads in the benchmark's own process)."""
    batch: int = 4
    k: int = 8
    resolution: int = 256
    augment: bool = True
    """Flips and colour jitter, as training applies them."""
    guided: bool = False
    """Add the warp guide (warp-guided models; the paper preset has none)."""
    batches: int = 20
    """Timed batches per setting, after each worker has delivered one (start-up left out)."""
    split: str = "train"
    min_frames: int = 8
    shuffle: int = 32
    out: str = "runs/bench/loader.json"

    def __post_init__(self) -> None:
        if self.prepared is None and self.shards is None:
            raise ConfigError("give --prepared, --shards or both")
        if self.batch < 1 or self.k < 1 or self.batches < 1 or min(self.workers, default=-1) < 0:
            raise ConfigError("batch, k and batches must be at least 1, and workers at least 0")
        ModelConfig(self.resolution)  # 64, 128 or 256


def to_dict(config) -> dict:
    """A config as plain JSON-ready values."""
    return json.loads(json.dumps(asdict(config)))


def from_dict(cls, values: dict):
    """Rebuild a (nested) config dataclass from `to_dict` output; unknown keys are an error, not ignored."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if is_dataclass(hint):
            value = from_dict(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)
