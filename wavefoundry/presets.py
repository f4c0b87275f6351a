"""Named run configs. A preset is a function returning a run config; a variant calls another and edits fields."""

from __future__ import annotations

from collections.abc import Callable

from wavefoundry.config import ConfigError
from wavefoundry.data.synth import SynthConfig
from wavefoundry.train.datasource import DataConfig
from wavefoundry.train.engine import TrainConfig
from wavefoundry.train.optim import OptimConfig
from wavefoundry.train.schedules import ScheduleConfig
from wavefoundry.train.tagging import TaggerRunConfig
from wavefoundry.train.tasks import RunConfig


def tagger_tiny() -> TaggerRunConfig:
    """SynthCaps tagger that trains in about a minute on 2 CPU cores (the ``make demo`` job)."""
    return TaggerRunConfig(
        data=DataConfig(synth=SynthConfig(n_items=480, seconds=2.0, channels=1, valid_fraction=0.15)),
        train=TrainConfig(steps=300, batch_size=32, eval_every=100, ckpt_every=100, log_every=10),
        optim=OptimConfig(lr=2e-3, weight_decay=0.05),
        schedule=ScheduleConfig(name="cosine", warmup_steps=20, min_ratio=0.05),
    )


def tagger_small() -> TaggerRunConfig:
    """A larger tagger on 2,000 four-second SynthCaps items (about 15 minutes on 2 CPU cores)."""
    cfg = tagger_tiny()
    cfg.data.synth = SynthConfig(n_items=2000, seconds=4.0, channels=1)
    cfg.model.width, cfg.model.depth = 32, 4
    cfg.train.steps = 2000
    return cfg


PRESETS: dict[str, Callable[[], RunConfig]] = {
    "tagger-tiny": tagger_tiny,
    "tagger-small": tagger_small,
}


def get_preset(name: str) -> RunConfig:
    """The run config of preset ``name``; an unknown name raises ``ConfigError`` listing the valid ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()
