"""Tasks: what the engine trains. A task builds its model and datasets from a run config and defines
``loss_fn(model, batch) -> (loss, metrics)``; the engine's train step knows nothing about audio.

Every run config is a dataclass deriving from :class:`RunConfig` (``task``, ``train``, ``optim``, ``schedule`` plus the
family's own sections); ``TASKS`` maps the ``task`` name saved in ``config.json`` back to the task class, so a run
directory can be reloaded strictly.
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from wavefoundry.config import ConfigError, from_dict, read_json
from wavefoundry.train.engine import TrainConfig
from wavefoundry.train.optim import OptimConfig
from wavefoundry.train.schedules import ScheduleConfig


@dataclass(kw_only=True)
class RunConfig:
    """Sections shared by every run; families add ``model`` and ``data`` sections."""

    task: str
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


class Task(abc.ABC):
    """Base class of trainable tasks; subclasses set ``name`` and ``Config`` and register with :func:`register`."""

    name: ClassVar[str]
    Config: ClassVar[type[RunConfig]]

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.step = 0  # set by the engine before each training step (e.g. for adversarial warm-up)

    def prepare_data(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Build the data on disk if missing (never downloads); the engine runs it on rank 0 before ``datasets``."""

    def after_eval(self, model: nn.Module, step: int, run_dir: Path) -> None:  # noqa: B027 - optional hook
        """Called on rank 0 after each evaluation (e.g. to write demo generations into ``run_dir``)."""

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (the engine seeds torch before calling it)."""

    @abc.abstractmethod
    def datasets(self) -> tuple[Dataset, Dataset | None]:
        """(train, eval) datasets indexed by ``(index, sample_seed)`` keys (see ``train/batches.py``)."""

    @abc.abstractmethod
    def loss_fn(
        self, model: nn.Module, batch: Any
    ) -> tuple[torch.Tensor | dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Scalar loss to minimise (or one per optimizer name) and detached scalar metrics to log."""

    def init_module(self, model: nn.Module) -> nn.Module:
        """The part of ``model`` that ``train.init_from`` weights load into, in its own key layout (default: the
        whole model, as a run checkpoint's ``model.safetensors`` holds it)."""
        return model

    def optimizer_groups(self, model: nn.Module) -> dict[str, tuple[nn.Module, OptimConfig]]:
        """Optimizers by name: the sub-module each updates and its settings. ``loss_fn`` then returns a dict of
        losses with the same names (e.g. generator and discriminator). Default: one optimizer over the model."""
        return {"main": (model, self.config.optim)}

    def collate(self, samples: list[Any]) -> Any:
        return default_collate(samples)


TASKS: dict[str, type[Task]] = {}
#: Modules that register the built-in tasks; imported on first lookup so a saved run always resolves.
BUILTIN_TASK_MODULES = (
    "wavefoundry.train.tagging",
    "wavefoundry.train.autoencoding",
    "wavefoundry.train.diffusion",
    "wavefoundry.train.contrastive",
    "wavefoundry.train.semantic_codec",
    "wavefoundry.train.lm",
    "wavefoundry.train.masked",
)


def register(cls: type[Task]) -> type[Task]:
    """Class decorator adding a task to ``TASKS`` under ``cls.name``."""
    TASKS[cls.name] = cls
    return cls


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        for module in BUILTIN_TASK_MODULES:
            importlib.import_module(module)
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS)) or '(none registered)'}")
    return TASKS[name]


def config_from_dict(data: dict) -> RunConfig:
    """Build the run config of the task named in ``data['task']``, strictly."""
    if not isinstance(data, dict) or "task" not in data:
        raise ConfigError("run config has no 'task' key")
    return from_dict(task_class(data["task"]).Config, data)


def load_run_config(path: str | Path) -> RunConfig:
    """Load ``config.json`` (or the one inside a run/checkpoint directory) strictly."""
    path = Path(path)
    return config_from_dict(read_json(path / "config.json" if path.is_dir() else path))


def build_task(config: RunConfig) -> Task:
    return task_class(config.task)(config)


def load_model(path: str | Path, *, ema: bool = True) -> tuple[Task, nn.Module]:
    """Rebuild a trained model from a checkpoint or run directory (config strictly, weights from safetensors).

    Args:
        path: a checkpoint directory (``model.safetensors`` + ``config.json``) or a run directory.
        ema: use ``ema.safetensors`` when the checkpoint has it.

    Returns:
        (task, model in eval mode).
    """
    from wavefoundry.train.checkpoint import resolve_model_dir
    from wavefoundry.train.export import checkpoint_state

    model_dir = resolve_model_dir(path)
    task = build_task(load_run_config(model_dir))
    model = task.build_model()
    model.load_state_dict(checkpoint_state(model_dir, ema=ema), strict=True)
    return task, model.eval()
