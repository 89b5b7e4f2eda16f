"""The G phase and the D phase, shared by both stages of the paper: meta-learning (`training.train`) and few-shot
fine-tuning (`training.finetune`).

Fine-tuning is meant to continue meta-learning on one person with the same objective, so both stages build G's input,
compute the losses of each phase, run under autocast and stop on a non-finite loss through these functions: a change
to a loss here changes both stages alike, instead of one drifting from the other. What differs stays with each
stage: which parameters learn (E, P and W in meta-learning; ψ′ and w′ in fine-tuning), and the averaging over
processes, which only meta-learning has.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

import torch
from torch import Tensor

from base.errors import UserError
from training.discriminator import Discriminator
from training.losses import ContentLoss, adversarial_g, feature_matching, hinge_d


class TrainingDiverged(UserError):
    """A loss became NaN or inf; the run stops before the bad step touches the weights."""


def resolve_device(name: str) -> torch.device:
    """auto = cuda when available, else cpu; any other name as torch spells it."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """The autocast context of a phase: none for fp32, bf16 or fp16 otherwise (fp16 needs the caller's scaler)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def generator_input(landmark_images: Tensor, guide: Tensor | None = None, guide_dropout: float = 0.0) -> Tensor:
    """The tensor G reads, (B, ModelConfig.input_channels, R, R): the landmark images (B, 3, R, R), followed by the
    warp guide (B, 4, R, R) when the model is warp-guided (`guide` is None otherwise).

    The one place that orders G's channels, which the exported graphs' `landmarks` and `guide` inputs
    (`contract.graphs.graph_inputs`) must follow. A `guide_dropout` share of the guides is blanked (black, empty mask:
    a warp that covers nothing), so that meta-learning teaches G to paint those frames itself.
    """
    if guide is None:
        return landmark_images
    guide = guide.to(landmark_images)
    if guide_dropout:
        blank = torch.rand(len(guide), 1, 1, 1, device=guide.device) < guide_dropout
        guide = torch.where(blank, -torch.ones_like(guide), guide)
    return torch.cat([landmark_images, guide], 1)


def generator_losses(
    fake: Tensor, x: Tensor, y: Tensor, w: Tensor, D: Discriminator, content: ContentLoss, fm_weight: float,
    weights: Tensor | None = None,
) -> dict[str, Tensor]:
    """G phase: L_CNT and L_ADV = −D(x̂) + L_FM for a generated batch. The caller freezes D's parameters.
    `weights` (B, 1, R, R) weigh L_CNT's pixel term (`losses.focus_weights`)."""
    scores, feats = D(torch.cat([fake, x]), torch.cat([y, y]), torch.cat([w, w]))  # one pass, fake half first
    halves = [f.chunk(2) for f in feats]
    return {
        "cnt": content(fake, x, weights),
        "adv": adversarial_g(scores.chunk(2)[0]),
        "fm": fm_weight * feature_matching([f for f, _ in halves], [r for _, r in halves]),
    }


def discriminator_loss(D: Discriminator, x: Tensor, y: Tensor, fake: Tensor, w: Tensor) -> Tensor:
    """D phase: L_DSC on real frames and a detached fake, so no gradient reaches E or G."""
    scores, _ = D(torch.cat([x, fake.detach()]), torch.cat([y, y]), torch.cat([w, w]))
    real, fake_scores = scores.chunk(2)
    return hinge_d(real, fake_scores)


def check_finite(losses: Mapping[str, float], step: int, stage: str, advice: str) -> dict[str, float]:
    """`losses` as a dict once every value is finite; else TrainingDiverged, raised before the optimiser step so that
    the weights (and the last checkpoint) stay as they were. `advice` tells the person what to change.

    Takes plain numbers, already averaged over processes where there are several, so that every process sees the
    same values and stops alike.
    """
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        raise TrainingDiverged(f"{stage} loss {', '.join(bad)} became non-finite at step {step}; {advice}")
    return dict(losses)
