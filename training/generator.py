"""Generator G(y, ê): landmark image to frame, with every AdaIN scale and bias taken from ψ̂ = P·ê."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.config import ModelConfig
from training.layers import AdaIN, DownTrunk, ResBlock, SelfAttention, conv, linear

# Share of the gradient a clamped α still passes back (training only; the forward is the exact clamp). At 1 %, a
# run's α, pushed below 0 in the mouth while the synthesis was still poor, had not come back 400 steps later.
ALPHA_LEAK = 0.1


class Generator(nn.Module):
    """Encoder: residual down-sampling with affine instance norm (attention at 32×32) to the bottleneck.
    Decoder: AdaIN residual blocks, then AdaIN up-sampling blocks (attention at 64×64), AdaIN, ReLU, conv, tanh.
    With `subpixel`, a strided conv comes before the encoder and the last conv writes four pixels per position.

    Warp-guided (beyond the paper): a fourth output channel is a per-pixel blending weight α, and the frame is
    α·warp + (1 − α)·synthesis. The warp keeps texture and identity wherever it is right, and G only has to paint
    what the warp cannot show (mouth interior, disocclusions); α starts near 0.9 so training starts from the warp.

    Refining (`guidance="refine"`): the same two outputs, the other way round: α is the weight of the synthesis,
    frame = warp + α·(synthesis − warp). `refinement` returns synthesis and α apart, so that the app composites
    them (upsampled) onto a warp of the photo at its own resolution; `render` composites onto the guide's warp for
    training's losses. α's weights and bias start at zero and α = clamp(z, 0, 1): an untrained G returns the warp
    exactly, so the renderer starts at the warp's score and leaves it only where that lowers the loss. The clamp's
    gradient is leaky below 0 (forward exact), so a pixel whose α was pushed to 0 can come back.

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
        """Refining models: α's weights and bias to zero, so that G returns the warp exactly (also after a warm
        start from a blending model, whose synthesis is kept). Spectral norm divides by the whole kernel's σ, so
        zero rows stay zero."""
        phases = 4 if self.cfg.subpixel else 1
        self.out_conv.parametrizations.weight.original.view(4, phases, -1)[3] = 0.0
        self.out_conv.bias.view(4, phases)[3] = 0.0

    def psi(self, e: Tensor) -> Tensor:
        """ψ̂ = P·ê: (B, N) -> (B, psi_size), all AdaIN parameters of one person."""
        return self.P(e)

    def _decode(self, y: Tensor, psi: Tensor) -> Tensor:
        """The raw output channels (B, 3 or 4, R, R) before any squashing."""
        if psi.shape[0] != y.shape[0]:
            psi = psi.expand(y.shape[0], -1)
        chunks = iter(psi.split([m.psi_size for m in self.adaptive], 1))
        h = self.encoder(self.stem(y))[-1]
        for block in self.decoder:
            h = block(h, next(chunks)) if isinstance(block, ResBlock) else block(h)
        return self.shuffle(self.out_conv(self.out_norm(h, next(chunks)).relu()))

    def refinement(self, y: Tensor, psi: Tensor) -> Tensor:
        """Refining models: (B, 4, R, R), the synthesis in [-1, 1] and its blend weight α in [0, 1].

        The synthesis is the guide's warp plus a learned correction (clamped to the image range), not a frame
        painted from nothing: a run warm-started from a blending model inherited a synthesis that was never
        needed where that model kept the warp (saturated colours, no face), and α then painted it over edges."""
        out = self._decode(y, psi)
        z = out[:, 3:]
        alpha = z.clamp(0.0, 1.0)
        if self.training:  # forward exactly the clamp; backward leaks ALPHA_LEAK where it clamps (see the class)
            alpha = alpha + ALPHA_LEAK * (z - z.detach())
        synthesis = (y[:, 3:6] + out[:, :3].tanh()).clamp(-1.0, 1.0)  # y[:, 3:6]: the guide's warp
        return torch.cat([synthesis, alpha], 1)

    def render(self, y: Tensor, psi: Tensor) -> Tensor:
        """y: (B, 3 or 7, R, R) landmark image, then the warp guide when warp-guided; psi: (B or 1, psi_size).

        Returns (B, 3, R, R) frames in [-1, 1].
        """
        if self.refines:
            return composite(y[:, 3:6], self.refinement(y, psi))
        out = self._decode(y, psi)
        if not self.guided:
            return out.tanh()
        alpha = out[:, 3:].sigmoid()
        return alpha * y[:, 3:6] + (1 - alpha) * out[:, :3].tanh()  # y[:, 3:6]: the warped reference

    def forward(self, y: Tensor, e: Tensor, refinement: bool = False) -> Tensor:
        """The frame (B, 3, R, R); with `refinement` (refining models), synthesis and α (B, 4, R, R) instead."""
        return self.refinement(y, self.psi(e)) if refinement else self.render(y, self.psi(e))


def composite(warp: Tensor, refinement: Tensor) -> Tensor:
    """warp + α·(synthesis − warp): (B, 3, R, R) warp in [-1, 1] and (B, 4, R, R) refinement -> (B, 3, R, R)."""
    return warp + refinement[:, 3:] * (refinement[:, :3] - warp)
