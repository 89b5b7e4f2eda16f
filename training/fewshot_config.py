"""Typed configs for few-shot personalization and its evaluation. Torch-free, so the CLI can parse them cheaply.

`FinetuneSettings` is shared by `heads finetune`, `heads evaluate` and `heads bench finetune`, and stored in every
avatar it produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, cast

from base.errors import ConfigError
from faces.config import MAX_SHOTS
from training.config import LossConfig
from training.metrics.registry import METRICS as METRIC_REGISTRY

METHODS = ("still", "plainwarp", "warp", "ff", "ft")
METRICS = tuple(METRIC_REGISTRY)  # every metric, in the results table's order


# The named fine-tuning recipes (`--tune.recipe`), one home for what each sets. `light` (the default) was chosen by
# measurement on the test split (docs/fewshot.md): ψ′ alone on L_CNT, the step chosen on a held-out photo, at most
# LIGHT_STEPS steps. `paper` is Zakharov et al.'s: all of G with ψ′, against D, every photo trained on, the
# meta-learning learning rate, `default_steps(T)` steps.
RECIPES: dict[str, dict[str, object]] = {
    "light": {"train": "psi", "adversarial": False, "holdout": 1, "lr_g": 3e-3},
    "paper": {"train": "all", "adversarial": True, "holdout": 0, "lr_g": 5e-5},
}
DEFAULT_RECIPE = "light"
LIGHT_STEPS = 100  # the held-out photo usually stops it sooner; 100 steps keep T = 8 within a minute on 2 CPU cores
# With one photo, fewer: on the 18 test photos (2026-12-07) the held-out photo chose step 0-60 every time (runs stopped
# at 30-90 steps), so 60 keeps every one of those avatars and bounds the wait at 20 s on the slower of two machines.
LIGHT_STEPS_ONE_PHOTO = 60


@dataclass(frozen=True)
class FinetuneSettings:
    """The paper's second stage, or a lighter recipe of it: ψ′ (starting at P·ê_NEW) and, in the paper's, G and D
    (with w′ = w0 + ê_NEW) trained on one person's T frames, starting from the meta-learned weights. `recipe` names a
    whole set of choices (RECIPES); its fields `train`, `adversarial`, `holdout` and `lr_g` can be set one by one
    instead, starting from the default recipe's values."""

    recipe: Literal["light", "paper"] = DEFAULT_RECIPE
    """`light`: ψ′ alone on L_CNT (no D), one photo held out to choose the step, Adam at 3e-3, at most 100 steps
    (60 with one photo): measured better than feed-forward at T = 8 and 32 (docs/fewshot.md). `paper`: Zakharov et
    al.'s full fine-tuning (all of G with ψ′, L_CNT + L_ADV against D, every photo trained on, Adam at 5e-5,
    `default_steps(T)` steps). A recipe other than the default sets train, adversarial, holdout and lr_g itself:
    leave those unset with it."""
    steps: int | None = None
    """Fine-tuning steps: 0 is feed-forward (ψ = P·ê_NEW, nothing trained, well under a second), N fine-tunes for N
    steps (at most: the held-out photos may stop it sooner); unset: the recipe's (`default_steps`). The same option
    as `heads animate --finetune-steps` and the app's slider."""
    batch: int = 4
    """Target frames per step, drawn from the training photos with replacement (all of them, once each, when there
    are no more than this)."""
    lr_g: float = cast(float, RECIPES[DEFAULT_RECIPE]["lr_g"])
    """Adam learning rate of ψ′ (and G). 3e-3 moves ψ′'s few thousand numbers within 100 steps; the paper's
    recipe trains G too, at meta-learning's 5e-5."""
    lr_d: float = 2e-4
    """Adam learning rate of D and w′ (meta-learning's), when adversarial."""
    betas: tuple[float, float] = (0.0, 0.9)
    loss: LossConfig = field(default_factory=lambda: LossConfig(perceptual=("dlib",)))
    """L_CNT networks and weights; `match` is unused (there is no W to match)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Autocast dtype (fp16 would need a gradient scaler; bf16 does not)."""
    seed: int = 0
    """Seeds the choice of target frames, so a fine-tuning run is repeatable."""
    train: Literal["all", "psi"] = cast(Literal["all", "psi"], RECIPES[DEFAULT_RECIPE]["train"])
    """What fine-tuning changes: `psi`, ψ′ alone (G stays the meta-learned one: a few thousand numbers, which cannot
    learn the few photos by heart the way G's weights can), or `all` of G with ψ′ (the paper's)."""
    adversarial: bool = cast(bool, RECIPES[DEFAULT_RECIPE]["adversarial"])
    """Train against D (its adversarial and feature-matching terms, and D's own phase: the paper's), or on L_CNT
    alone, with no D at all (about half the work a step, no D to swing, and a model without D can fine-tune)."""
    holdout: int = cast(int, RECIPES[DEFAULT_RECIPE]["holdout"])
    """Photos kept out of training to choose the step by (T > 1; with T = 1, G trains on the photo's mirror image and
    small crops of it, and the photo, re-made from the mirror, is held out): every `check_every` steps their error
    (pixel L1 + L_CNT) is measured, and the best state is kept, the feed-forward avatar included (step 0). 0 trains
    on every photo and keeps the last step (the paper's)."""
    check_every: int = 10
    """Steps between measurements of the held-out photos' error."""
    patience: int = 3
    """Measurements in a row without a new best before fine-tuning stops early."""

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown fine-tuning recipe {self.recipe!r}; known: {', '.join(RECIPES)}")
        if self.recipe != DEFAULT_RECIPE:
            default, own = RECIPES[DEFAULT_RECIPE], RECIPES[self.recipe]
            # Unset (the default recipe's value) or already this recipe's (dataclasses.replace copies every field).
            changed = [key for key, value in default.items() if getattr(self, key) not in (value, own[key])]
            if changed:
                raise ConfigError(f"--tune.recipe {self.recipe} sets {', '.join(changed)} itself; to change one of "
                                  f"its choices, set them all on the default recipe instead")
            for key, value in RECIPES[self.recipe].items():
                object.__setattr__(self, key, value)
        if self.batch < 1 or (self.steps is not None and self.steps < 0):
            raise ConfigError("batch must be >= 1 and steps >= 0")
        if self.holdout < 0 or self.check_every < 1 or self.patience < 1:
            raise ConfigError("holdout must be >= 0, check_every and patience >= 1")

    def resolved_steps(self, shots: int) -> int:
        """The steps to run for T = `shots` frames: `steps`, or the recipe's default when it is unset."""
        return default_steps(shots, self.batch, self.recipe) if self.steps is None else self.steps


def default_steps(shots: int, batch: int = FinetuneSettings.batch, recipe: str = DEFAULT_RECIPE) -> int:
    """The one default of the fine-tuning step count, for T = `shots` frames (`heads finetune`, `heads evaluate`, and
    the app's slider as photos are added). The light recipe: LIGHT_STEPS, at most (its held-out photo stops it), and
    LIGHT_STEPS_ONE_PHOTO at T = 1.
    The paper's: about 40 passes over the T frames (the reference implementation's 40 epochs), at least 100 steps
    so that one photo still moves ψ′, and at most 400 (T = 32 at batch 4) to keep CPU runs within minutes."""
    if recipe == "light":
        return LIGHT_STEPS_ONE_PHOTO if shots == 1 else LIGHT_STEPS
    return int(min(400, max(100, round(40 * shots / batch))))


FEED_FORWARD = FinetuneSettings(steps=0)
"""Settings of a feed-forward avatar: `personalize`'s default, as it is the demo's (`--finetune-steps 0`)."""


@dataclass(frozen=True)
class FinetuneConfig:
    """`heads finetune`: personalize a meta-learned model to one person and write an avatar folder."""

    model: str
    """A training run directory (its newest checkpoint), a checkpoint folder, or a weights folder (save_pretrained)."""
    images: tuple[str, ...] = ()
    """1 to 32 photos of one person, or one painting."""
    video: str | None = None
    """Take the T frames from this video instead of photos (evenly spaced over the clip)."""
    shots: int = 8
    """T, the number of frames taken from --video."""
    landmarks: str | None = None
    """For one image where detection fails (a painting): its 68 landmarks (x, y pixels) as .json or .npy."""
    box: tuple[float, float, float, float] | None = None
    """For one image where detection fails: the face box x0 y0 x1 y1 (pixels); landmarks are fitted inside it."""
    out: str = "avatars/avatar"
    """Avatar folder to write (avatar.json + avatar.safetensors)."""
    feed_forward: bool = False
    """No training: ψ = P·ê_NEW with the meta-learned G (well under a second); short for --tune.steps 0."""
    tune: FinetuneSettings = field(default_factory=FinetuneSettings)
    device: str = "auto"
    """auto = cuda when available, else cpu."""
    progress: bool = True
    """Show a progress bar with the losses and the time left."""

    def __post_init__(self) -> None:
        if not 1 <= self.shots <= MAX_SHOTS:
            raise ConfigError(f"shots must be in 1..{MAX_SHOTS}")
        if self.feed_forward and self.tune.steps:
            raise ConfigError("--feed-forward means --tune.steps 0: pass one of them")

    @property
    def settings(self) -> FinetuneSettings:
        """`tune`, with steps = 0 when --feed-forward asks for no training."""
        return replace(self.tune, steps=0) if self.feed_forward else self.tune


@dataclass(frozen=True)
class EvaluateConfig:
    """`heads evaluate`: the paper's self-reenactment protocol on the test clips of a prepared dataset."""

    model: str
    """A training run directory, a checkpoint folder, or a weights folder."""
    data: str
    """Prepared dataset folder (written by `heads prepare`)."""
    split: str = "test"
    shots: tuple[int, ...] = (1, 8, 32)
    """Values of T: personalization frames, taken evenly from the first half of each clip."""
    holdout: int = 32
    """Hold-out frames per clip, taken evenly from the second half and never used for personalization."""
    methods: tuple[Literal["still", "plainwarp", "warp", "mouth", "ff", "ft"], ...] = METHODS
    """still: the first personalization frame repeated; plainwarp: the nearest personalization frame warped onto the
    driver's landmarks by a plain piecewise-affine warp (landmarks and frame anchors only) at the dataset's own
    resolution, the baseline every renderer is read against; warp: the app's classical renderer (head points that
    follow the skull, the mouth of the nearest lips, the mouth fill) at the dataset's own resolution; mouth: that
    warp with its mouth corrected by --mouth-refiner; ff: feed-forward avatar; ft: fine-tuned avatar."""
    mouth_refiner: str | None = None
    """A mouth refiner's folder (`heads train-mouth`), needed by the `mouth` method."""
    metrics: tuple[str, ...] = METRICS
    """Names from training/metrics/registry.py. FID is over all clips per method and T; the rest are per clip, then
    averaged."""
    lpips_net: Literal["dlib", "vgg19", "vggface"] = "dlib"
    """Feature network of the LPIPS-style distance."""
    max_videos: int | None = None
    """Evaluate only the first clips of the split."""
    tune: FinetuneSettings = field(default_factory=FinetuneSettings)
    grid_rows: int = 4
    """Hold-out frames shown in each clip's image grid."""
    out: str = "runs/eval"
    """Output folder: results.md, results.csv, metric-*.jsonl (appended), grids/."""
    device: str = "auto"
    """auto = cuda when available, else cpu."""
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.shots or not all(1 <= t <= MAX_SHOTS for t in self.shots):
            raise ConfigError(f"shots must be in 1..{MAX_SHOTS}")
        if self.holdout < 1:
            raise ConfigError("holdout must be >= 1")
        unknown = [m for m in self.metrics if m not in METRIC_REGISTRY]
        if unknown:
            raise ConfigError(f"unknown metrics: {', '.join(unknown)}; choose from {', '.join(METRICS)}")
        if "mouth" in self.methods and not self.mouth_refiner:
            raise ConfigError("the mouth method needs --mouth-refiner FOLDER (written by `heads train-mouth`)")


CROSS_METHODS = ("warp", "ff")


@dataclass(frozen=True)
class CrossEvaluateConfig:
    """`heads evaluate-cross`: cross-identity reenactment. Each test clip drives another person's photo (a
    single-image clip of the split) and a painting of the public media, in relative mode as the app animates them;
    measured by detection rate, identity to the photo and the mouth and eye correlations with the driver."""

    data: str
    """Prepared dataset folder (written by `heads prepare --images`): its test clips drive, its photos are driven."""
    model: str | None = None
    """A training run directory, a checkpoint folder or a weights folder; without one only the warp runs."""
    media: str = "../shared/media"
    """The public media folder: the files its MANIFEST.tsv marks as `painting` are driven too (none when absent)."""
    split: str = "test"
    methods: tuple[Literal["warp", "mouth", "ff"], ...] = CROSS_METHODS
    """warp: the photo warped onto the retargeted landmarks (faces.warp, with head points); mouth: that warp with its
    mouth corrected by --mouth-refiner; ff: feed-forward avatar of the photo (needs --model)."""
    mouth_refiner: str | None = None
    """A mouth refiner's folder (`heads train-mouth`), needed by the `mouth` method."""
    frames: int = 32
    """Driving frames per pair, evenly spaced over the driver clip."""
    min_frames: int = 64
    """Driver clips shorter than this are left out (the clips `heads evaluate` keeps at its default T and hold-out)."""
    max_drivers: int | None = None
    """Use only the first driver clips."""
    reference: Literal["first", "neutral"] = "neutral"
    """Driver frame mapped onto the photo as it is (relative mode's reference; the app's default is neutral)."""
    resolution: int | None = None
    """Crop side in pixels without a model (default: the prepared crops' own, e.g. 256); with one, the model's."""
    out: str = "runs/eval"
    """Output folder: results-cross.md, results-cross.csv, per_pair-cross.jsonl, grids-cross/."""
    device: str = "auto"
    """auto = cuda when available, else cpu."""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.frames < 3:
            raise ConfigError("frames must be >= 3 (the mouth and eye correlations need three)")
        if self.min_frames < self.frames:
            raise ConfigError(f"min_frames must be >= frames ({self.frames})")
        if not self.methods:
            raise ConfigError(f"choose at least one method of {', '.join(CROSS_METHODS)}")
        if "mouth" in self.methods and not self.mouth_refiner:
            raise ConfigError("the mouth method needs --mouth-refiner FOLDER (written by `heads train-mouth`)")
        if self.resolution is not None and self.resolution < 32:
            raise ConfigError("resolution must be >= 32")


@dataclass(frozen=True)
class FinetuneBenchConfig:
    """`heads bench finetune`: fine-tuning and feed-forward time per preset and T on this device."""

    presets: tuple[str, ...] = ("compact", "paper")
    """Untrained model presets, each timed over `steps` steps and extrapolated (when no --model is given)."""
    model: str | None = None
    """A trained model (a weights folder such as weights/torch, a checkpoint or a run directory): the whole recipe
    timed end to end instead, every step of it, for each T."""
    shots: tuple[int, ...] = (1, 8, 32)
    steps: int = 3
    """Presets: timed steps per (preset, T) after one warm-up step; the total is extrapolated to the default step
    count."""
    tune: FinetuneSettings = field(default_factory=FinetuneSettings)
    device: str = "auto"
    out: str = "runs/bench/finetune.json"
