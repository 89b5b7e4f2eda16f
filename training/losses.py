"""The paper's losses: content (perceptual), adversarial with feature matching, embedding match, and hinge; and the
SSIM loss of the mouth refiner, which is trained on the very number it is judged by."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.config import LossConfig
from training.metrics.ssim import RANGE, ssim_map


def hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    """L_DSC = max(0, 1 + D(x̂)) + max(0, 1 − D(x)), averaged over the batch."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def adversarial_g(fake: Tensor) -> Tensor:
    """The generator's half of L_ADV: −D(x̂)."""
    return -fake.mean()


def feature_matching(fake_feats: list[Tensor], real_feats: list[Tensor]) -> Tensor:
    """L_FM: L1 between D's block outputs on fake and real, averaged over blocks; real side is a constant."""
    return torch.stack([F.l1_loss(f, r.detach()) for f, r in zip(fake_feats, real_feats, strict=True)]).mean()


def match(w: Tensor, e: Tensor, to_embedder: bool = True) -> Tensor:
    """L_MCH = ‖W_i − ê_i‖₁, as a per-component mean so that its weight does not depend on N.

    to_embedder=False stops its gradient into ê: only W_i moves (LossConfig.match_to_embedder says why).
    """
    return F.l1_loss(w, e if to_embedder else e.detach())


def ssim_loss(fake: Tensor, real: Tensor) -> Tensor:
    """1 − SSIM of (B, 3, H, W) images in [-1, 1], averaged over the batch: `heads evaluate`'s SSIM (its window and
    constants, on grey levels 0–255) in the images' float type, so the loss is the metric itself."""
    scale = RANGE / 2.0
    x, y = ((v + 1.0) * scale for v in (fake, real))
    return 1.0 - ssim_map(x.flatten(0, 1)[:, None], y.flatten(0, 1)[:, None]).mean()


class ContentLoss(nn.Module):
    """L_CNT: weighted sum over feature networks of the summed L1 distances of their activations.

    The feature networks are frozen; gradients reach the generated image only.
    """

    def __init__(self, cfg: LossConfig):
        super().__init__()
        from training.perceptual import load_feature_net, random_feature_net

        make = random_feature_net if cfg.random_perceptual else lambda n: load_feature_net(n, cfg.perceptual_dir)
        self.nets = nn.ModuleDict({name: make(name) for name in cfg.perceptual})
        self.weights = {name: float(getattr(cfg, name)) for name in cfg.perceptual}
        self.l1 = cfg.l1

    @torch.no_grad()
    def features(self, real: Tensor) -> dict[str, list[Tensor]]:
        """The feature networks' activations of (B, 3, R, R) real frames, for `forward`'s `real_features` when the
        same targets come back step after step (fine-tuning on a person's few photos): computed once, not with
        every step. The networks are frozen and see each image alone (no batch statistics), so the activations
        are the ones `forward` would compute."""
        return {name: [level.detach() for level in net(real)] for name, net in self.nets.items()}

    def forward(self, fake: Tensor, real: Tensor, weights: Tensor | None = None,
                real_features: dict[str, list[Tensor]] | None = None) -> Tensor:
        """fake, real: (B, 3, R, R) RGB in [-1, 1]; weights: (B, 1, R, R) per-pixel weights of the L1 term (1 where
        nothing is singled out, see `focus_weights`); real_features: `features(real)`, when it was kept."""
        if not self.l1:
            loss = fake.new_zeros(())
        elif weights is None:
            loss = self.l1 * F.l1_loss(fake, real)
        else:
            loss = self.l1 * (weights * (fake - real).abs()).mean()
        for name, net in self.nets.items():
            if real_features is None:
                pairs = (t.chunk(2) for t in net(torch.cat([fake, real])))  # one pass over fake and real halves
            else:
                pairs = zip(net(fake), real_features[name], strict=True)
            dist = sum(F.l1_loss(f, r.detach()) for f, r in pairs)
            loss = loss + self.weights[name] * dist
        return loss


def focus_weights(guide: Tensor, real: Tensor, mouth: Tensor, strength: float, share: float = 0.1) -> Tensor:
    """(B, 1, R, R) weights of the pixel loss: 1 + `strength` where the warp is known to fail, so that a refining G
    spends its capacity there and leaves the rest to the warp.

    Where it fails: inside the target's inner-lip polygon (`mouth`, (B, 1, R, R) in {0, 1}: teeth and cavity the
    source may not show), outside the warp's valid mask (guide channel 3, in [-1, 1]: disocclusions), and the
    `share` of each frame's pixels where the warped frame (guide channels 0–2) is furthest from the real one.
    """
    invalid = (guide[:, 3:4] < 0).to(real.dtype)
    if not share:
        return 1.0 + strength * torch.maximum(mouth.to(real.dtype), invalid)
    error = (guide[:, :3] - real).abs().mean(1, keepdim=True)  # (B, 1, R, R)
    cut = torch.quantile(error.flatten(1).float(), 1.0 - share, dim=1).view(-1, 1, 1, 1)
    worst = (error >= cut).to(real.dtype)
    return 1.0 + strength * torch.maximum(torch.maximum(mouth.to(real.dtype), invalid), worst)
