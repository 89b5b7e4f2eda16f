"""Data parallelism over processes launched by `torchrun` (NCCL on GPUs, gloo on CPU).

Gradients are averaged by hand after each backward pass, as StyleGAN2-ADA does, instead of wrapping the networks
in DistributedDataParallel: a step runs D once with its parameters frozen (G phase) and once training (D phase),
and the W table learns in both phases, which DDP's one-forward-one-backward reducer does not express.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device: str) -> Dist:
    """Join the process group when torchrun's environment says there is one; a no-op for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world)
    return Dist(rank, world, local)


def average_gradients(params, world: int) -> None:
    """All-reduce the gradients of `params` as one flat buffer and divide by the number of processes.

    Under fp16 the caller passes the gradients still scaled (`MetaLearner._update`): afterwards every process holds
    the same values, so every gradient scaler reaches the same overflow decision.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if world == 1 or not grads:
        return
    flat = torch.cat([g.flatten() for g in grads]).div_(world)
    dist.all_reduce(flat)
    for g, chunk in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        g.copy_(chunk.view_as(g))


def average(values: torch.Tensor, world: int) -> torch.Tensor:
    """Mean of a tensor over processes (losses for logging and the shared NaN check)."""
    if world > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= world
    return values


def broadcast_module(module: torch.nn.Module, world: int) -> None:
    """Give every process rank 0's parameters and buffers (spectral-norm vectors included)."""
    if world == 1:
        return
    for t in [*module.parameters(), *module.buffers()]:
        dist.broadcast(t.data, src=0)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
