"""AdamW and Cautious AdamW with decoupled weight decay applied only to matrices (not to norms, biases or embeddings).

Weight decay is decoupled (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization"):
``p <- p - eta * lambda * p`` before the Adam step, with ``eta`` the current (scheduled) LR by default, as in torch's
AdamW and Levanter/Marin, or the fixed peak LR when ``optim.weight_decay_follows_lr`` is false.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

_NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._NormBase)

# Floor of the cautious mask's mean: an almost fully masked tensor is scaled up by at most 1 / MIN_MASK_MEAN.
MIN_MASK_MEAN = 1e-3


@dataclass(kw_only=True)
class OptimConfig:
    """Optimizer hyper-parameters; ``lr`` is the peak LR that the schedule multiplies.

    ``name``: "adamw" (torch AdamW) or "cautious_adamw" (Liang et al. 2024). ``weight_decay_follows_lr``: the decay
    step is ``lr(t) * weight_decay * p`` (True, torch/Levanter behaviour) or ``lr * weight_decay * p`` with the peak
    ``lr`` at every step (False).
    """

    name: Literal["adamw", "cautious_adamw"] = "adamw"
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.01
    weight_decay_follows_lr: bool = True
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optim.name {self.name!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be positive, got {self.lr}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas must be in [0, 1), got {self.betas}")
        if self.eps < 0:
            raise ValueError(f"optim.eps must be >= 0, got {self.eps}")
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


def _decay_(param: torch.Tensor, group: dict) -> None:
    """Decoupled weight decay ``p <- p * (1 - eta * lambda)``; ``eta`` = ``group["decay_lr"]``, None = ``group["lr"]``.

    A step with ``lr`` 0 leaves parameters untouched in both modes: torch's distributed state-dict API initialises
    optimizer state through such a step before loading a checkpoint, which must not move the weights.
    """
    eta = group["lr"] if group["decay_lr"] is None else group["decay_lr"]
    if group["weight_decay"] != 0 and group["lr"] != 0:
        param.mul_(1 - eta * group["weight_decay"])


class PeakDecayAdamW(torch.optim.AdamW):
    """torch AdamW whose decoupled weight decay uses a fixed LR (``decay_lr``, the peak LR) instead of the current one.

    The Adam moments and update are torch's own; only the decay factor differs. With ``decay_lr`` equal to the current
    LR it is bit-identical to ``torch.optim.AdamW`` (same operations, same order).
    """

    def __init__(self, params: Iterable, *, decay_lr: float, **kwargs) -> None:
        super().__init__(params, **kwargs)
        for group in self.param_groups:
            group.setdefault("decay_lr", decay_lr)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        decays = [group["weight_decay"] for group in self.param_groups]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    _decay_(p, group)
            group["weight_decay"] = 0.0  # already applied; torch's step must not decay again
        try:
            super().step()
        finally:
            for group, wd in zip(self.param_groups, decays, strict=True):
                group["weight_decay"] = wd
        return loss


class CautiousAdamW(torch.optim.Optimizer):
    """AdamW whose update is masked where it disagrees in sign with the gradient (Liang et al. 2024, Alg. 1).

    With the Adam update ``u = m_hat / (sqrt(v_hat) + eps)`` and gradient ``g``, the step is
    ``p <- p - lr * u * phi / max(mean(phi), MIN_MASK_MEAN)`` with ``phi = 1[u * g > 0]``, the mean taken per
    tensor, after the decoupled weight decay. The normaliser is the mean of the mask clamped from below (as in timm and
    Levanter): an all-agreeing mask gives exactly AdamW; the paper's code uses ``numel / (sum(phi) + 1)``, which shrinks
    even an all-agreeing update by ``numel / (numel + 1)``.

    State per parameter is torch AdamW's (``step``, ``exp_avg``, ``exp_avg_sq``), so checkpoints load through torch's
    state-dict API. The maths is per tensor with no foreach kernels; under FSDP2 the parameters and states are DTensors,
    and the mask mean is the mean over the whole (unsharded) tensor, computed by DTensor's reduction.
    """

    def __init__(
        self,
        params: Iterable,
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        decay_lr: float | None = None,
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"CautiousAdamW: bad hyper-parameters lr={lr} betas={betas} eps={eps} wd={weight_decay}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "decay_lr": decay_lr}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("CautiousAdamW does not support sparse gradients")
                self._update(p, self._state(p), group)
        return loss

    def _state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:  # torch AdamW's layout: a CPU float32 step count and two moments shaped like the parameter
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @staticmethod
    def _update(p: torch.Tensor, state: dict, group: dict) -> None:
        grad, exp_avg, exp_avg_sq = p.grad, state["exp_avg"], state["exp_avg_sq"]
        beta1, beta2 = group["betas"]
        state["step"] += 1
        _decay_(p, group)
        # The same operations in the same order as torch's single-tensor AdamW, so an all-ones mask is bit-identical.
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = state["step"].item()
        step_size = group["lr"] / (1 - beta1**step)
        denom = (exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(group["eps"])
        # sign(u) = sign(exp_avg) because denom > 0, so the mask needs no extra division.
        mask = (exp_avg * grad > 0).to(grad.dtype)
        mask = mask / mask.mean().clamp(min=MIN_MASK_MEAN)  # out of place: DTensor cannot clamp a partial sum in place
        p.addcdiv_(exp_avg * mask, denom, value=-step_size)


def _adamw(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.weight_decay_follows_lr:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    return PeakDecayAdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, decay_lr=cfg.lr)


def _cautious_adamw(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    decay_lr = None if cfg.weight_decay_follows_lr else cfg.lr
    return CautiousAdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, decay_lr=decay_lr)


OPTIMIZERS: dict[str, Callable[[list[dict], OptimConfig], torch.optim.Optimizer]] = {
    "adamw": _adamw,
    "cautious_adamw": _cautious_adamw,
}


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """``cfg.name`` over two parameter groups (decayed matrices, everything else without decay)."""
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"unknown optim.name {cfg.name!r}; valid: {', '.join(OPTIMIZERS)}")
    params = dict(model.named_parameters())
    decay, no_decay = decay_groups(model)
    groups = [
        {"params": [params[n] for n in decay], "weight_decay": cfg.weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]
    return OPTIMIZERS[cfg.name](groups, cfg)
