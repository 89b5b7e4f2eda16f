"""Generator G(y, ê): landmark image to frame, with every AdaIN scale and bias taken from ψ̂ = P·ê."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.config import ModelConfig
from training.layers import AdaIN, DownTrunk, ResBlock, SelfAttention, conv, linear

# Refining models: α's starting logit (sigmoid(2) ≈ 0.88): inside the region it counts in (faces.guide.refine_region)
# the synthesis mostly shows from the start, so the correction, which starts at zero, gets the loss's gradient.
ALPHA_START = 2.0


class Generator(nn.Module):
    """Encoder: residual down-sampling with affine instance norm (attention at 32×32) to the bottleneck.
    Decoder: AdaIN residual blocks, then AdaIN up-sampling blocks (attention at 64×64), AdaIN, ReLU, conv, tanh.
    With `subpixel`, a strided conv comes before the encoder and the last conv writes four pixels per position.

    Warp-guided (beyond the paper): a fourth output channel is a per-pixel blending weight α, and the frame is
    α·warp + (1 − α)·synthesis. The warp keeps texture and identity wherever it is right, and G only has to paint
    what the warp cannot show (mouth interior, disocclusions); α starts near 0.9 so training starts from the warp.

    Refining (`guidance="refine"`): a correction δ of the warp and its weight α, frame = warp + region·α·δ.
    `refinement` returns δ and α apart, so that the app adds them (upsampled) to a warp of the photo at its own
    resolution; `render` composites onto the guide's warp for training's losses. δ's last weights start at zero,
    so an untrained G returns the warp exactly, whatever α is, and the renderer starts at the warp's score and leaves it
    only where that lowers the loss. α = sigmoid(z) has no flat part to get stuck in (a clamped α pushed to 0 in the
    mouth never came back), and the composite counts it only inside `faces.guide.refine_region`.

    `psi(e)` and `render(y, psi)` are separate so that fine-tuning can train ψ′ directly and export can bake it in.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        top = cfg.resolution // 2 if cfg.subpixel else cfg.resolution  # side of the outermost feature maps
        self.stem = conv(cfg.input_channels, ch(top), 4, stride=2) if cfg.subpixel else nn.Identity()
        self.encoder = DownTrunk(
            ch(top) if cfg.subpixel else cfg.input_channels, top, ch, cfg.attention_down, norm="instance",
            stop=cfg.bottleneck,
        )
        side, c = cfg.bottleneck, self.encoder.out_channels
        decoder: list[nn.Module] = [ResBlock(c, c, norm="adain") for _ in range(cfg.res_blocks)]
        while side < top:
            side *= 2
            decoder.append(ResBlock(c, ch(side), "up", "adain"))
            c = ch(side)
            if side == cfg.attention_up:
                decoder.append(SelfAttention(c))
        self.decoder = nn.ModuleList(decoder)
        self.out_norm = AdaIN(c)
        self.guided = cfg.guided
        outputs, phases = 4 if self.guided else 3, 4 if cfg.subpixel else 1
        self.out_conv = conv(c, outputs * phases)
        self.shuffle = nn.PixelShuffle(2) if cfg.subpixel else nn.Identity()
        self.refines = cfg.refines
        if self.refines:
            self.reset_blend()
        elif self.guided:
            with torch.no_grad():
                self.out_conv.bias.view(outputs, phases)[3] = 2.0  # sigmoid(2) ≈ 0.88: mostly warp at the start
        self.adaptive = [m for m in [*decoder, self.out_norm] if getattr(m, "psi_size", 0)]
        self.psi_size = sum(m.psi_size for m in self.adaptive)
        self.P = linear(cfg.embed_dim, self.psi_size, bias=False)

    @torch.no_grad()
    def reset_blend(self) -> None:
        """Refining models: the correction's last weights and bias to zero, so that G returns the warp exactly (also
        after a warm start from a blending model, whose features are kept), and α's bias to ALPHA_START. Spectral
        norm divides by the whole kernel's σ, which α's row keeps above zero, so zero rows stay zero."""
        phases = 4 if self.cfg.subpixel else 1
        self.out_conv.parametrizations.weight.original.view(4, phases, -1)[:3] = 0.0
        self.out_conv.bias.view(4, phases)[:3] = 0.0
        self.out_conv.bias.view(4, phases)[3] = ALPHA_START

    def psi(self, e: Tensor) -> Tensor:
        """ψ̂ = P·ê: (B, N) -> (B, psi_size), all AdaIN parameters of one person."""
        return self.P(e)

    def encode(self, y: Tensor) -> Tensor:
        """The encoder's bottleneck features of the input (B, C, b, b). They do not depend on ψ: fine-tuning ψ′ alone
        computes them once per photo and passes them back as `encoded` (a sixth of a step's work)."""
        return self.encoder(self.stem(y))[-1]

    def _decode(self, y: Tensor, psi: Tensor, encoded: Tensor | None = None) -> Tensor:
        """The raw output channels (B, 3 or 4, R, R) before any squashing; `encoded`: `encode(y)` when known."""
        if psi.shape[0] != y.shape[0]:
            psi = psi.expand(y.shape[0], -1)
        chunks = iter(psi.split([m.psi_size for m in self.adaptive], 1))
        h = self.encode(y) if encoded is None else encoded
        for block in self.decoder:
            h = block(h, next(chunks)) if isinstance(block, ResBlock) else block(h)
        return self.shuffle(self.out_conv(self.out_norm(h, next(chunks)).relu()))

    def refinement(self, y: Tensor, psi: Tensor, encoded: Tensor | None = None) -> Tensor:
        """Refining models: (B, 4, R, R), the correction δ of the guide's warp (guide + δ in [-1, 1]) and its
        weight α in (0, 1), before the composite restricts α to `faces.guide.refine_region`.

        A correction, not a frame painted from nothing: a run warm-started from a blending model inherited a
        synthesis that was never needed where that model kept the warp (saturated colours, no face), and α then
        painted it over edges. And a correction adds to a sharper warp than the guide it was learnt on: the app adds
        it, upsampled, to the warp of the photo at its own resolution, which keeps the photo's detail."""
        out = self._decode(y, psi, encoded)
        guide = y[:, 3:6]  # the guide's warp
        delta = (guide + out[:, :3].tanh()).clamp(-1.0, 1.0) - guide
        return torch.cat([delta, out[:, 3:].sigmoid()], 1)

    def render(self, y: Tensor, psi: Tensor, region: Tensor | None = None, encoded: Tensor | None = None) -> Tensor:
        """y: (B, 3 or 7, R, R) landmark image, then the warp guide when warp-guided; psi: (B or 1, psi_size);
        region (B, 1, R, R): refining models only, where their α counts (`faces.guide.refine_region`); encoded:
        `encode(y)` when already computed.

        Returns (B, 3, R, R) frames in [-1, 1].
        """
        if self.refines:
            if region is None:
                raise ValueError("a refining G composites within a region: pass faces.guide.refine_region's")
            return composite(y[:, 3:6], self.refinement(y, psi, encoded), region)
        out = self._decode(y, psi, encoded)
        if not self.guided:
            return out.tanh()
        alpha = out[:, 3:].sigmoid()
        return alpha * y[:, 3:6] + (1 - alpha) * out[:, :3].tanh()  # y[:, 3:6]: the warped reference

    def forward(self, y: Tensor, e: Tensor, refinement: bool = False) -> Tensor:
        """The frame (B, 3, R, R); with `refinement` (refining models), synthesis and α (B, 4, R, R) instead."""
        return self.refinement(y, self.psi(e)) if refinement else self.render(y, self.psi(e))


def composite(warp: Tensor, refinement: Tensor, region: Tensor) -> Tensor:
    """warp + region·α·δ: (B, 3, R, R) warp in [-1, 1], (B, 4, R, R) refinement (δ, α) and (B, 1, R, R) region
    (`faces.guide.refine_region`) -> (B, 3, R, R). Outside the region, the warp exactly."""
    return (warp + region * refinement[:, 3:] * refinement[:, :3]).clamp(-1.0, 1.0)
