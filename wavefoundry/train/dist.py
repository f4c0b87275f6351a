"""Distributed set-up and wrapping: single process, DDP or FSDP2 (``fully_shard`` over ``model.blocks``).

The training loop is the same in all three modes; this module is the only place that knows about
``torch.distributed``. Under ``torchrun`` the environment variables RANK/WORLD_SIZE/LOCAL_RANK select the process;
on CPU the backend is gloo.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

STRATEGIES = ("none", "ddp", "fsdp")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group if launched by torchrun (WORLD_SIZE > 1); otherwise single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, strategy: str, info: DistInfo) -> nn.Module:
    """Wrap for the strategy: DDP, or FSDP2 applied to each of ``model.blocks`` then to the root."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown distributed strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    if strategy == "none" or not info.enabled:
        return model
    if strategy == "ddp":
        return nn.parallel.DistributedDataParallel(model)
    from torch.distributed.fsdp import fully_shard

    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ValueError(f"FSDP needs model.blocks (nn.ModuleList); {type(model).__name__} has none")
    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def apply_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each of ``model.blocks`` in the backward pass instead of storing its activations."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ValueError(f"activation checkpointing needs model.blocks; {type(model).__name__} has none")
    for i, block in enumerate(blocks):
        blocks[i] = checkpoint_wrapper(block)


def unwrap(model: nn.Module) -> nn.Module:
    """The user model inside a DDP wrapper (FSDP2 shards in place and needs no unwrapping)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def no_grad_sync(model: nn.Module, sync: bool) -> AbstractContextManager:
    """Skip the gradient all-reduce on accumulation micro-steps (``sync=False``)."""
    if isinstance(model, nn.parallel.DistributedDataParallel) and not sync:
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2 module
        model.set_requires_gradient_sync(sync)
    return nullcontext()


_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The complete, unsharded model state on CPU (collective under FSDP: every rank must call it)."""
    return get_model_state_dict(unwrap(model), options=_FULL)


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer state keyed by parameter name, unsharded (collective under FSDP)."""
    return get_optimizer_state_dict(unwrap(model), optimizer, options=_FULL)


def load_full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer | None, model_state: dict | None, optim_state: dict | None
) -> None:
    """Load full (unsharded) states into a possibly sharded model/optimizer (every rank calls it)."""
    options = StateDictOptions(full_state_dict=True, strict=True)
    if model_state is not None:
        set_model_state_dict(unwrap(model), model_state, options=options)
    if optimizer is not None and optim_state is not None:
        set_optimizer_state_dict(unwrap(model), optimizer, optim_state, options=options)


def to_full(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Gather DTensor shards (FSDP2) into full CPU tensors; plain tensors pass through."""
    from torch.distributed.tensor import DTensor

    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu() for k, v in tensors.items()}


def shard_like(full: dict[str, torch.Tensor], like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Shard full tensors the way the tensors of ``like`` are sharded (DTensor under FSDP2; else unchanged)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    out = {}
    for k, v in full.items():
        ref = like.get(k)
        out[k] = distribute_tensor(v, ref.device_mesh, ref.placements) if isinstance(ref, DTensor) else v
    return out


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over ranks (identity in a single process)."""
    if info.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= info.world_size
    return values


def all_true(flag: bool, info: DistInfo) -> bool:
    """Whether ``flag`` holds on every rank (so all ranks take the same branch)."""
    if not info.enabled:
        return flag
    t = torch.tensor([0.0 if flag else 1.0])
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.item() == 0.0


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
