"""A small deterministic regression task for engine tests (registered as task "toy")."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from wavefoundry.train.tasks import RunConfig, Task, register


@dataclass(kw_only=True)
class ToyModelConfig:
    width: int = 16
    depth: int = 2
    dropout: float = 0.0
    nan_at_steps: tuple[int, ...] = ()


@dataclass(kw_only=True)
class ToyRunConfig(RunConfig):
    task: str = "toy"
    model: ToyModelConfig = field(default_factory=ToyModelConfig)
    n_items: int = 64
    noise: float = 0.0


class Block(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.drop(torch.tanh(self.fc(self.norm(h))))


class ToyModel(nn.Module):
    def __init__(self, cfg: ToyModelConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(8, cfg.width)
        self.blocks = nn.ModuleList([Block(cfg.width, cfg.dropout) for _ in range(cfg.depth)])
        self.out = nn.Linear(cfg.width, 2)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = block(h)
        return self.out(h)


class ToyDataset(Dataset):
    def __init__(self, n: int, noise: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((n, 8)).astype(np.float32)
        w = rng.standard_normal((8, 2)).astype(np.float32)
        self.y = (0.3 * self.x @ w).astype(np.float32)
        self.noise = noise

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, sample_seed = key
        jitter = np.random.default_rng(sample_seed).standard_normal(8).astype(np.float32) * self.noise
        return {"x": torch.from_numpy(self.x[index] + jitter), "y": torch.from_numpy(self.y[index])}


@register
class ToyTask(Task):
    name = "toy"
    Config = ToyRunConfig

    def build_model(self) -> nn.Module:
        return ToyModel(self.config.model)

    def datasets(self):
        return ToyDataset(self.config.n_items, self.config.noise, 0), ToyDataset(16, 0.0, 1)

    def loss_fn(self, model, batch):
        pred = model(batch["x"])
        loss = torch.nn.functional.mse_loss(pred, batch["y"])
        # a test hook: poison the loss at chosen steps (counted by forward calls of the wrapped model)
        inner = getattr(model, "module", model)
        if model.training:
            if int(inner.calls) in self.config.model.nan_at_steps:
                loss = loss * float("nan")
            inner.calls += 1
        return loss, {"mae": (pred - batch["y"]).abs().mean().detach()}
