"""Exponential moving average of model weights, kept in fp32 beside the model."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta, with warm-up decay min(decay, (1 + n) / (10 + n)).

    The warm-up form (as in TensorFlow's ExponentialMovingAverage with num_updates) keeps early averages from
    being dominated by the random initialisation.
    """

    def __init__(self, state: dict[str, torch.Tensor], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().to(torch.float32, copy=True) for k, v in state.items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, state: dict[str, torch.Tensor]) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, shadow in self.shadow.items():
            shadow.lerp_(state[k].detach().to(torch.float32), 1.0 - d)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, shadow: dict[str, torch.Tensor], updates: int) -> None:
        missing = set(self.shadow) ^ set(shadow)
        if missing:
            raise ValueError(f"EMA state does not match the model: {sorted(missing)[:5]}")
        self.shadow = {k: v.to(torch.float32) for k, v in shadow.items()}
        self.updates = updates


def local_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by name, unwrapped from DDP if needed (for single-process and DDP EMA)."""
    return dict(getattr(model, "module", model).state_dict())
