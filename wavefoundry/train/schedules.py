"""Learning-rate schedules as pure functions of the step: ``factor(step) -> multiplier of the peak LR``.

Being pure in the step, a schedule needs no state of its own in a checkpoint: resume recomputes it exactly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass(kw_only=True)
class ScheduleConfig:
    """LR schedule: ``name`` picks the shape; all shapes start with ``warmup_steps`` of linear warm-up.

    - constant: warm-up, then 1.
    - cosine: warm-up, then cosine from 1 to ``min_ratio`` at ``total_steps``.
      ``total_steps`` None means the run's ``train.steps``.
    - inverse_sqrt: warm-up, then sqrt(warmup / step) (Vaswani et al. 2017), floored at ``min_ratio``.
    - wsd: warm-up, stable at 1, then linear decay to ``min_ratio`` over the last ``decay_fraction`` of
      ``total_steps`` (warmup-stable-decay; Hu et al. 2024, MiniCPM).
    """

    name: Literal["constant", "cosine", "inverse_sqrt", "wsd"] = "cosine"
    warmup_steps: int = 0
    total_steps: int | None = None
    min_ratio: float = 0.0
    decay_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.warmup_steps < 0 or (self.total_steps is not None and self.total_steps < 1):
            raise ValueError("schedule: warmup_steps must be >= 0 and total_steps >= 1")
        if not 0.0 <= self.min_ratio <= 1.0:
            raise ValueError(f"schedule.min_ratio must be in [0, 1], got {self.min_ratio}")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError(f"schedule.decay_fraction must be in [0, 1], got {self.decay_fraction}")


def _warmup(step: int, cfg: ScheduleConfig) -> float | None:
    # (step + 1) so that the first update already uses a non-zero LR.
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    return None


def constant(step: int, cfg: ScheduleConfig) -> float:
    return _warmup(step, cfg) or 1.0


def cosine(step: int, cfg: ScheduleConfig) -> float:
    warm = _warmup(step, cfg)
    if warm is not None:
        return warm
    span = max(1, cfg.total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_ratio + (1.0 - cfg.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def inverse_sqrt(step: int, cfg: ScheduleConfig) -> float:
    warm = _warmup(step, cfg)
    if warm is not None:
        return warm
    return max(cfg.min_ratio, math.sqrt(max(1, cfg.warmup_steps) / (step + 1)))


def wsd(step: int, cfg: ScheduleConfig) -> float:
    warm = _warmup(step, cfg)
    if warm is not None:
        return warm
    decay_steps = round(cfg.decay_fraction * cfg.total_steps)
    decay_start = cfg.total_steps - decay_steps
    if step < decay_start or decay_steps == 0:
        return 1.0
    progress = min(1.0, (step - decay_start + 1) / decay_steps)
    return 1.0 - (1.0 - cfg.min_ratio) * progress


SCHEDULES: dict[str, Callable[[int, ScheduleConfig], float]] = {
    "constant": constant,
    "cosine": cosine,
    "inverse_sqrt": inverse_sqrt,
    "wsd": wsd,
}


def lr_factor_fn(cfg: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
    """Resolve ``cfg.name`` once; return ``step -> factor``. ``total_steps`` fills ``cfg.total_steps`` if None."""
    if cfg.name not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg.name!r}; valid: {', '.join(SCHEDULES)}")
    fn = SCHEDULES[cfg.name]
    resolved = dataclasses.replace(cfg, total_steps=cfg.total_steps or total_steps)
    return lambda step: fn(step, resolved)
