"""AdamW with decoupled weight decay applied only to matrices (not to norms, biases or embeddings)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

_NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._NormBase)


@dataclass(kw_only=True)
class OptimConfig:
    """AdamW hyper-parameters; ``lr`` is the peak LR that the schedule multiplies."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.01
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be positive, got {self.lr}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas must be in [0, 1), got {self.betas}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("optim.weight_decay and optim.grad_clip must be >= 0 (grad_clip 0 disables clipping)")


def decay_groups(model: nn.Module) -> tuple[list[str], list[str]]:
    """Split parameter names into (decayed, not decayed).

    Not decayed: parameters of embedding and normalisation modules, and every parameter with fewer than two
    dimensions (biases, gains, scalars such as Snake alphas).
    """
    no_decay_modules = {name for name, mod in model.named_modules() if isinstance(mod, _NO_DECAY_MODULES)}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        owner = name.rpartition(".")[0]
        (no_decay if param.ndim < 2 or owner in no_decay_modules else decay).append(name)
    return decay, no_decay


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over two parameter groups (decayed matrices, everything else without decay)."""
    params = dict(model.named_parameters())
    decay, no_decay = decay_groups(model)
    groups = [
        {"params": [params[n] for n in decay], "weight_decay": cfg.weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
