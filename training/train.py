"""Meta-learning, the paper's first stage: one step in `MetaLearner.step`, the loop around it in `train`.

The losses of its G and D phases, and the stop on a non-finite loss, are those of fine-tuning too
(`training.phases`); what is meta-learning's own stays here: E, P and W learning, the EMA copies, and the
averaging over processes.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

from base.errors import UserError
from training import distributed
from training.checkpoint import load_state, load_weights, resolve_checkpoint, save_checkpoint
from training.config import TrainConfig, from_dict, to_dict
from training.data import EpisodeSampler, SyntheticEpisodes, WarpGuided, WarpGuidedStream, to_uint8
from training.generator import composite
from training.losses import ContentLoss, focus_weights, match
from training.models import Networks
from training.phases import (
    autocast,
    check_finite,
    discriminator_loss,
    generator_input,
    generator_losses,
    resolve_device,
)
from training.stats import StatsLog


def lerp_module(ema: nn.Module, live: nn.Module, decay: float) -> None:
    """EMA of parameters; buffers (spectral-norm vectors) are copied."""
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), live.parameters(), strict=True):
            pe.lerp_(p, 1.0 - decay)
        for be, b in zip(ema.buffers(), live.buffers(), strict=True):
            be.copy_(b)


class MetaLearner:
    """E, G, D with their optimisers; `step` runs one G phase (E, G, P and W through L_MCH) and the D phases."""

    def __init__(self, cfg: TrainConfig, num_videos: int, device: torch.device, world: int = 1):
        self.cfg, self.device, self.world = cfg, device, world
        self.nets = Networks.build(cfg.model, num_videos).to(device)
        self.content = ContentLoss(cfg.loss).to(device)
        if cfg.init:
            warm_start(self.nets, cfg.init)
        E, G, D = self.nets.E, self.nets.G, self.nets.D
        self.ema = {"E_ema": copy.deepcopy(E), "G_ema": copy.deepcopy(G)} if cfg.ema else {}
        for m in self.ema.values():
            m.requires_grad_(False)
        # W learns in both phases: towards ê_i through L_MCH here, and as part of D through the hinge loss.
        self.g_params = [*E.parameters(), *G.parameters(), *([D.W] if cfg.loss.match else [])]
        self.opt_g = torch.optim.Adam(self.g_params, lr=cfg.lr_g, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        fp16 = cfg.precision == "fp16"
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=fp16)
        compile_ = torch.compile if cfg.compile else (lambda m: m)
        self.E, self.G, self.D = compile_(E), compile_(G), compile_(D)
        self.last: list[Tensor] = []  # image columns of the latest step, for grids

    def modules(self) -> dict[str, nn.Module]:
        return {**self.nets.modules(), **self.ema}

    def _check(self, losses: dict[str, Tensor], step: int) -> dict[str, float]:
        """Average over processes first, so that every process stops alike when a loss is not finite."""
        values = distributed.average(torch.stack([v.detach().float() for v in losses.values()]), self.world)
        return check_finite(
            dict(zip(losses, values.tolist(), strict=True)), step, "meta-learning",
            "the weights were not updated and the last checkpoint is intact. Lower the learning rates or use "
            "--precision fp32, then --resume.",
        )

    def _update(self, loss: Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, params) -> None:
        """Backward, average the still-scaled gradients over processes, then unscale and step (or skip) on them.

        The gradients are averaged while still scaled, as DistributedDataParallel does: every process then holds
        the same gradients, bit for bit, so every scaler finds the same overflow (an inf or NaN on one process is
        in everyone's sum), skips or steps alike and moves its scale alike, and the weights stay identical.
        Unscaling first would let each scaler judge only its own gradients: an inf on one process reaches the
        others through the all-reduce after their check, and they would step on it. Averaging first needs no
        second collective and no reach into the scaler's private per-device state. The scales agree because they
        start equal (a fresh scaler, or one checkpoint) and are updated on the same overflow decisions.
        """
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        distributed.average_gradients(params, self.world)
        scaler.step(opt)  # unscales, and skips the step when any gradient is not finite
        scaler.update()

    def step(self, batch: dict, step: int = 0) -> dict[str, float]:
        cfg, dev = self.cfg, self.device
        frames = batch["frames"].to(dev, non_blocking=True)  # (B, K+1, 3, R, R)
        lms = batch["landmarks"].to(dev, non_blocking=True)
        video = batch["video"].to(dev)  # (B,)
        x, y = frames[:, 0], lms[:, 0]
        D = self.nets.D

        # G phase: E, G, P (and W through L_MCH); D's own parameters frozen.
        D.requires_grad_(False)
        D.W.requires_grad_(bool(cfg.loss.match))
        with autocast(dev, cfg.precision):
            b, k = lms.shape[:2]
            e = self.E(frames[:, 1:].flatten(0, 1), lms[:, 1:].flatten(0, 1)).view(b, k - 1, -1).mean(1)  # (B, N)
            guide = batch.get("guide")
            g_in = generator_input(y, None if guide is None else guide.to(dev), cfg.guide_dropout)
            if cfg.model.refines:
                region = batch["region"].to(dev)  # (B, 1, R, R): where α counts
                refinement = self.G(g_in, e, refinement=True)
                fake = composite(g_in[:, 3:6], refinement, region)
            else:
                fake = self.G(g_in, e)
            weights = None
            if cfg.loss.focus and guide is not None:
                weights = focus_weights(g_in[:, 3:], x, batch["mouth"].to(dev), cfg.loss.focus, cfg.loss.focus_share)
            terms = generator_losses(fake, x, y, D.video_vector(video).detach(), self.D, self.content,
                                     cfg.loss.feature_matching, weights)
            if cfg.model.refines and cfg.loss.alpha:
                terms["alpha"] = cfg.loss.alpha * (region * refinement[:, 3:]).mean()
            if cfg.model.refines and cfg.loss.synthesis:
                synthesis = g_in[:, 3:6] + refinement[:, :3]
                miss = (region * (synthesis - x).abs()).sum() / (3 * region.sum()).clamp(min=1.0)
                terms["syn"] = cfg.loss.synthesis * miss
            if cfg.loss.match:
                terms["mch"] = cfg.loss.match * match(D.W[video], e.float(), cfg.loss.match_to_embedder)
        logged = self._check(terms, step)
        self._update(sum(terms.values()), self.opt_g, self.scaler_g, self.g_params)
        D.requires_grad_(True)
        for name, ema in self.ema.items():
            lerp_module(ema, self.nets.modules()[name[0]], cfg.ema)

        # D phase(s) on the same fake, detached.
        for _ in range(cfg.d_steps):
            with autocast(dev, cfg.precision):
                dsc = discriminator_loss(self.D, x, y, fake, D.video_vector(video))
            logged.update(self._check({"dsc": dsc}, step))
            self._update(dsc, self.opt_d, self.scaler_d, list(D.parameters()))

        with torch.no_grad():
            logged["l1"] = float(distributed.average((fake.float() - x).abs().mean(), self.world))
            # Embedder health: a collapsed E (every ê the same, or all zero) makes FF person-independent.
            e = e.float()
            logged["e_abs"] = float(distributed.average(e.abs().mean(), self.world))
            logged["e_spread"] = float(distributed.average(e.std(0).mean() if b > 1 else e.new_zeros(()), self.world))
        guide = [batch["guide"][:, :3].to(x)] if "guide" in batch else []
        self.last = [y.detach(), *guide, x.detach(), fake.detach().float()]
        return logged

    def state(self, step: int) -> dict:
        state = {
            "step": step,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "rng_cpu": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load(self, checkpoint: Path) -> int:
        """Restore weights, optimisers and RNG from a checkpoint folder; returns the step to continue from."""
        load_weights(checkpoint, self.modules())
        state = load_state(checkpoint)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        self.scaler_d.load_state_dict(state["scaler_d"])
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        return int(state["step"])


def warm_start(nets: Networks, folder: str) -> None:
    """Start `nets` from the model in `folder` (`TrainConfig.init`): E and G whole, D but its per-video vectors W."""
    source = Networks.from_pretrained(folder)
    ours, theirs = to_dict(nets.cfg), to_dict(source.cfg)
    same = {**theirs, "guidance": ours["guidance"]} == ours and source.cfg.guided == nets.cfg.guided
    if not same:
        raise UserError(f"--init {folder}: its architecture {theirs} differs from this run's {ours}")
    nets.E.load_state_dict(source.E.state_dict())
    nets.G.load_state_dict(source.G.state_dict())
    if source.D is None:
        raise UserError(f"--init {folder}: it has no D.safetensors")
    state = {k: v for k, v in source.D.state_dict().items() if k != "W"}
    missing, unexpected = nets.D.load_state_dict(state, strict=False)
    if missing != ["W"] or unexpected:
        raise UserError(f"--init {folder}: its D does not fit ({missing}, {unexpected})")
    if nets.cfg.refines and not source.cfg.refines:
        nets.G.reset_blend()


def make_dataset(cfg: TrainConfig):
    data = cfg.data
    if data.source == "synthetic":
        episodes = SyntheticEpisodes(data.synthetic_videos, cfg.model.resolution, cfg.k, cfg.seed)
    elif not data.root:
        raise UserError(f"--data.root is required with --data.source {data.source} (a folder written by "
                        f"`heads prepare{' --to-shards' if data.source == 'shards' else ''}`)")
    else:
        from training.prepared import Augment, PreparedEpisodes

        options = dict(split=data.split, resolution=cfg.model.resolution, augment=Augment() if data.augment else None,
                       seed=cfg.seed, min_frames=data.min_frames)
        if data.source == "shards":
            from training.shards import ShardEpisodes

            episodes = ShardEpisodes(data.root, cfg.k, shuffle=data.shuffle, **options)
            return WarpGuidedStream(episodes) if cfg.model.guided else episodes
        episodes = PreparedEpisodes(data.root, cfg.k, **options)
    return WarpGuided(episodes) if cfg.model.guided else episodes


def make_loader(cfg: TrainConfig, dataset, start: int, rank: int = 0, world: int = 1, pin_memory: bool = False):
    """Endless batches for process `rank` of `world` from step `start` on: episode numbers drawn by EpisodeSampler
    for a dataset read by index, or a stream (shards) placed at that step, split over the DataLoader's workers."""
    options = dict(
        batch_size=cfg.batch, num_workers=cfg.data.workers, pin_memory=pin_memory,
        worker_init_fn=lambda _: torch.set_num_threads(1), persistent_workers=cfg.data.workers > 0,
    )
    if isinstance(dataset, torch.utils.data.IterableDataset):
        dataset.check_workers(world * max(1, cfg.data.workers))
        return torch.utils.data.DataLoader(dataset.at(start, rank, world, cfg.batch), **options)
    sampler = EpisodeSampler(dataset.num_videos, cfg.batch, cfg.seed, start, rank, world)
    return torch.utils.data.DataLoader(dataset, sampler=sampler, **options)


def image_grid(columns: list[Tensor], rows: int = 4) -> np.ndarray:
    """(B, 3, R, R) columns, e.g. landmarks | [warp guide |] real | generated -> one uint8 image of `rows` rows."""
    images = to_uint8(torch.stack([c[:rows] for c in columns], 1))  # (rows, columns, R, R, 3)
    return np.concatenate([np.concatenate(list(row), 1) for row in images], 0)


def new_run_dir(outdir: str, name: str) -> Path:
    """runs/00007-NAME: the next free number, like StyleGAN's run directories."""
    root = Path(outdir)
    root.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name[:5]) for p in root.iterdir() if p.name[:5].isdigit()]
    run_dir = root / f"{max(numbers, default=-1) + 1:05d}-{name}"
    run_dir.mkdir()
    return run_dir


def _resumed_config(cfg: TrainConfig) -> tuple[TrainConfig, Path, Path]:
    """A resumed run keeps its own config.json; only the length and the reporting cadence may change."""
    checkpoint = resolve_checkpoint(cfg.resume)
    run_dir = checkpoint.parent.parent
    saved = from_dict(TrainConfig, json.loads((run_dir / "config.json").read_text()))
    keep = {k: getattr(cfg, k) for k in ("steps", "progress", "checkpoint_every", "image_every", "log_every")}
    return replace(saved, resume=cfg.resume, **keep), run_dir, checkpoint


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) meta-learning; returns the run directory."""
    device = resolve_device(cfg.device)
    dist = distributed.init(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    checkpoint = run_dir = None
    if cfg.resume:
        cfg, run_dir, checkpoint = _resumed_config(cfg)
    elif dist.main:
        run_dir = new_run_dir(cfg.outdir, cfg.run_name)
        (run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    torch.manual_seed(cfg.seed)
    dataset = make_dataset(cfg)
    learner = MetaLearner(cfg, dataset.num_videos, device, dist.world)
    start = learner.load(checkpoint) if checkpoint else 0
    for module in learner.modules().values():
        distributed.broadcast_module(module, dist.world)
    loader = make_loader(cfg, dataset, start, dist.rank, dist.world, pin_memory=device.type == "cuda")
    stats = StatsLog(run_dir if dist.main else None)
    bar = tqdm(total=cfg.steps, initial=start, disable=not (dist.main and cfg.progress), unit="it", dynamic_ncols=True)
    try:
        for step, batch in zip(range(start, cfg.steps), loader, strict=False):  # the loader never ends
            losses = learner.step(batch, step)
            stats.add(losses)
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                stats.flush(done)
            if not dist.main:
                continue
            if cfg.image_every and (done % cfg.image_every == 0 or done == cfg.steps):
                grid = image_grid(learner.last)
                (run_dir / "images").mkdir(exist_ok=True)
                Image.fromarray(grid).save(run_dir / "images" / f"step-{done:07d}.png")
                stats.image("grid", grid, done)
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                save_checkpoint(run_dir, done, learner.modules(), learner.nets.metadata(), learner.state(done),
                                cfg.keep_checkpoints)
    finally:
        bar.close()
        stats.close()
        distributed.shutdown()
    return run_dir
