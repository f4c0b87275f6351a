"""The training loop: one code path for a single CPU process, DDP and FSDP2 under torchrun.

Determinism is by construction: the batch of step ``s`` is a function of (seed, s) (``train/batches.py``) and the
global torch RNG is reseeded from (seed, s, micro-step, rank) before every micro-step, so a run stopped after step
``k`` and resumed from its checkpoint produces the same weights as one that never stopped.
"""

from __future__ import annotations

import logging
import math
import random
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from wavefoundry.config import save_json
from wavefoundry.train import checkpoint as ckpt
from wavefoundry.train import dist as D
from wavefoundry.train.batches import StepBatchSampler, eval_keys
from wavefoundry.train.ema import EMA
from wavefoundry.train.logging import MetricsLog
from wavefoundry.train.optim import build_optimizer
from wavefoundry.train.schedules import lr_factor_fn

if TYPE_CHECKING:
    from wavefoundry.train.tasks import Task

log = logging.getLogger("wavefoundry.train")


@dataclass(kw_only=True)
class TrainConfig:
    """Loop settings. ``batch_size`` is the global batch of one optimizer step (all ranks, all micro-steps).

    ``init_from``: weights to start from (fine-tuning): an exported model directory (``wavefoundry export``) or a
    ``.safetensors`` file whose keys match the task's :meth:`~wavefoundry.train.tasks.Task.init_module`. Read when
    a run starts, not on ``--resume`` (the checkpoint holds the weights then).
    """

    steps: int = 1000
    batch_size: int = 16
    grad_accum: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0
    eval_batch_size: int = 0
    ckpt_every: int = 0
    keep_checkpoints: int = 2
    ema_decay: float = 0.0
    strategy: Literal["none", "ddp", "fsdp"] = "none"
    activation_checkpointing: bool = False
    max_bad_steps: int = 5
    num_workers: int = 0
    progress: bool = True
    tensorboard: bool = True
    init_from: str = ""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("train.steps, train.batch_size and train.grad_accum must be >= 1")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"train.batch_size ({self.batch_size}) must be divisible by train.grad_accum")
        if min(self.log_every, self.eval_every, self.ckpt_every, self.eval_batch_size, self.num_workers) < 0:
            raise ValueError("train.log_every/eval_every/ckpt_every/eval_batch_size/num_workers must be >= 0")
        if not (self.ema_decay == 0.0 or 0.0 < self.ema_decay < 1.0):
            raise ValueError(f"train.ema_decay must be 0 (off) or in (0, 1), got {self.ema_decay}")
        if self.max_bad_steps < 0:
            raise ValueError("train.max_bad_steps must be >= 0")


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    train_metrics: dict[str, float]
    eval_metrics: dict[str, float]
    skipped_steps: int


def micro_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """The torch seed of one micro-step: distinct per (step, micro-step, rank), fixed given the run seed."""
    return int(np.random.SeedSequence([seed, 0, step, micro, rank]).generate_state(1)[0])


def eval_seed(seed: int, first_index: int) -> int:
    """The torch seed of the eval batch starting at ``first_index`` (eval randomness is fixed across evals)."""
    return int(np.random.SeedSequence([seed, 1, first_index]).generate_state(1)[0])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Runs ``task`` into ``run_dir``. Use :meth:`fit`; ``resume=True`` continues from the latest checkpoint."""

    def __init__(self, task: Task, run_dir: str | Path, *, resume: bool = False) -> None:
        self.task, self.cfg, self.tc = task, task.config, task.config.train
        self.run_dir = Path(run_dir)
        self.info = D.init_distributed()
        self._check_run_dir(resume)
        if self.info.is_main:  # before the model: a model may depend on the data (e.g. a vocabulary)
            task.prepare_data()
        D.barrier(self.info)
        _seed_everything(self.tc.seed)  # identical initial weights on every rank
        model = task.build_model()
        if self.tc.init_from and not (resume and ckpt.latest_checkpoint(self.run_dir) is not None):
            ckpt.init_weights(task.init_module(model), self.tc.init_from, self.cfg)
        if self.tc.activation_checkpointing:
            D.apply_activation_checkpointing(model)
        self.model = D.wrap_model(model, self.tc.strategy, self.info)
        self.groups = task.optimizer_groups(D.unwrap(self.model))
        if len(self.groups) > 1 and self.tc.strategy != "none" and self.info.enabled:
            raise ValueError(
                f"task '{task.name}' uses several optimizers, which train.strategy=ddp/fsdp does not support yet"
            )
        self.optimizers = {name: build_optimizer(module, cfg) for name, (module, cfg) in self.groups.items()}
        self.lr_factor = lr_factor_fn(self.cfg.schedule, self.tc.steps)
        self.ema = EMA(D.unwrap(self.model).state_dict(), self.tc.ema_decay) if self.tc.ema_decay else None
        self.step, self.bad_in_row, self.skipped = 0, 0, 0
        if resume and self.info.is_main and ckpt.remove_partial(self.run_dir):
            log.info("removed an incomplete checkpoint left by the previous run")
        self.resume_from = ckpt.latest_checkpoint(self.run_dir) if resume else None
        if self.resume_from is not None:
            self._load(self.resume_from)
        self.autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.tc.precision == "bf16" else nullcontext()

    def _check_run_dir(self, resume: bool) -> None:
        existing = ckpt.latest_checkpoint(self.run_dir)
        if existing is not None and not resume:
            raise FileExistsError(
                f"{self.run_dir} already holds checkpoints (latest {existing.name}); "
                "pass --resume to continue it or choose another --out"
            )

    # ----------------------------------------------------------------------------------------------- state
    def _load(self, path: Path) -> None:
        state = ckpt.load_train_state(path)
        model_state = ckpt.load_weights(path / "model.safetensors")
        D.load_full_state(self.model, None, model_state, None)
        if set(state["optimizers"]) != set(self.optimizers):
            raise ckpt.CheckpointError(f"{path}: optimizers {sorted(state['optimizers'])} != {sorted(self.optimizers)}")
        for name, opt in self.optimizers.items():
            # An optimizer that never stepped (e.g. a discriminator in warm-up) has no state to restore; loading
            # its empty state would make torch initialise one with a step count, and resume would drift.
            if state["optimizers"][name].get("state"):
                D.load_full_state(self.model, opt, None, state["optimizers"][name])
        if self.ema is not None:
            if not (path / "ema.safetensors").is_file():
                raise ckpt.CheckpointError(f"{path}: run has EMA enabled but the checkpoint has no ema.safetensors")
            self.ema.load_state_dict(
                D.shard_like(ckpt.load_weights(path / "ema.safetensors"), self.ema.shadow),
                state["ema_updates"],
            )
        self.step, self.bad_in_row, self.skipped = state["step"], state["bad_in_row"], state["skipped"]
        log.info("resumed %s at step %d", path, self.step)

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (collective; rank 0 writes)."""
        model_state = D.full_model_state(self.model)
        # torch's state-dict API initialises an optimizer that never stepped (a fake step), which would change
        # what the run does next; such an optimizer is saved as empty instead.
        optim_states = {
            name: D.full_optimizer_state(self.model, opt) if opt.state else {} for name, opt in self.optimizers.items()
        }
        ema_state = D.to_full(self.ema.state_dict()) if self.ema is not None else None
        path = None
        if self.info.is_main:
            train_state = {
                "optimizers": optim_states,
                "bad_in_row": self.bad_in_row,
                "skipped": self.skipped,
                "ema_updates": self.ema.updates if self.ema is not None else 0,
                "torch_rng": torch.get_rng_state(),
            }
            path = ckpt.save_checkpoint(
                self.run_dir,
                self.step,
                config=self.cfg,
                model_state=model_state,
                train_state=train_state,
                ema_state=ema_state,
                keep_last=self.tc.keep_checkpoints,
            )
        D.barrier(self.info)
        return path

    # ------------------------------------------------------------------------------------------------ data
    def _train_loader(self, dataset) -> DataLoader:
        sampler = StepBatchSampler(
            len(dataset),
            global_batch=self.tc.batch_size,
            seed=self.tc.seed,
            start_step=self.step,
            total_steps=self.tc.steps,
            rank=self.info.rank,
            world_size=self.info.world_size,
            grad_accum=self.tc.grad_accum,
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.task.collate,
            num_workers=self.tc.num_workers,
            persistent_workers=False,
        )

    # ------------------------------------------------------------------------------------------------ loop
    def fit(self, until: int | None = None) -> TrainResult:
        """Train to ``train.steps``; evaluate and checkpoint as configured; return the final metrics.

        Args:
            until: stop early after this step with a checkpoint (a time-sliced job; resume continues exactly).
        """
        stop = min(self.tc.steps, until) if until is not None else self.tc.steps
        train_set, eval_set = self.task.datasets()
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_json(self.cfg, self.run_dir / "config.json")
        metrics_log = MetricsLog(
            self.run_dir,
            enabled=self.info.is_main,
            resume_step=self.step if self.resume_from is not None else None,
            tensorboard=self.tc.tensorboard,
        )
        batches = iter(self._train_loader(train_set))
        bar = tqdm(
            total=self.tc.steps,
            initial=self.step,
            desc="train",
            disable=not (self.info.is_main and self.tc.progress),
            dynamic_ncols=True,
        )
        window: list[dict[str, float]] = []
        train_metrics: dict[str, float] = {}
        eval_metrics: dict[str, float] = {}
        last_ckpt = self.resume_from
        try:
            while self.step < stop:
                window.append(self._train_step(batches))
                self.step += 1
                bar.update(1)
                if self.tc.log_every and (self.step % self.tc.log_every == 0 or self.step == self.tc.steps):
                    train_metrics = self._reduce(window)
                    window = []
                    metrics_log.write(self.step, train_metrics)
                    bar.set_postfix(loss=f"{train_metrics.get('loss', float('nan')):.4f}")
                if eval_set is not None and self._due(self.tc.eval_every):
                    eval_metrics = self.evaluate(eval_set)
                    metrics_log.write(self.step, eval_metrics, prefix="eval")
                    if self.info.is_main:
                        self.task.after_eval(D.unwrap(self.model), self.step, self.run_dir)
                if self._due(self.tc.ckpt_every) or self.step == stop:
                    last_ckpt = self.save()
        finally:
            bar.close()
            metrics_log.close()
        return TrainResult(self.run_dir, self.step, last_ckpt, train_metrics, eval_metrics, self.skipped)

    def _due(self, every: int) -> bool:
        return self.step == self.tc.steps or bool(every and self.step % every == 0)

    def _train_step(self, batches) -> dict[str, float]:
        self.model.train()
        self.task.step = self.step
        factor = self.lr_factor(self.step)
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = self.groups[name][1].lr * factor
        finite, sums = True, {}
        accum = self.tc.grad_accum
        for micro in range(accum):
            batch = next(batches)
            torch.manual_seed(micro_seed(self.tc.seed, self.step, micro, self.info.rank))
            with D.no_grad_sync(self.model, sync=micro == accum - 1), self.autocast:
                loss, metrics = self.task.loss_fn(self.model, batch)
            losses = loss if isinstance(loss, dict) else {"main": loss}
            finite = finite and all(bool(torch.isfinite(v.detach())) for v in losses.values())
            self._backward(losses, accum)
            named = {"loss": sum(losses.values())} if len(losses) == 1 else {f"loss_{k}": v for k, v in losses.items()}
            for k, v in {**named, **metrics}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / accum
        norms = {name: self._clip_gradients(name) for name in self.optimizers}
        if D.all_true(finite and all(map(math.isfinite, norms.values())), self.info):
            for opt in self.optimizers.values():
                opt.step()
            if self.ema is not None:
                self.ema.update(D.unwrap(self.model).state_dict())
            self.bad_in_row = 0
        else:
            self._skip_step(sums.get("loss", float("nan")), norms)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        grad_metrics = (
            {"grad_norm": norms["main"]} if "main" in norms else {f"grad_norm_{k}": v for k, v in norms.items()}
        )
        return {**sums, **grad_metrics, "lr": self.cfg.optim.lr * factor}

    def _backward(self, losses: dict[str, torch.Tensor], accum: int) -> None:
        """Backpropagate each loss into its own optimizer's parameters only (one loss: plain backward)."""
        if set(losses) - set(self.optimizers):
            raise KeyError(f"loss_fn returned losses {sorted(losses)}; the optimizers are {sorted(self.optimizers)}")
        if len(self.optimizers) == 1:
            (next(iter(losses.values())) / accum).backward()
            return
        names = list(losses)
        for i, name in enumerate(names):  # a loss missing this step (e.g. adversarial warm-up) updates nothing
            params = [p for p in self.groups[name][0].parameters() if p.requires_grad]
            torch.autograd.backward(losses[name] / accum, inputs=params, retain_graph=i < len(names) - 1)

    def _clip_gradients(self, name: str) -> float:
        module, cfg = self.groups[name]
        params = [p for p in module.parameters() if p.grad is not None]
        if not params:
            return 0.0
        max_norm = cfg.grad_clip or float("inf")  # 0 disables clipping, the norm is still logged
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm, error_if_nonfinite=False)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    def _skip_step(self, loss: float, grad_norm: dict[str, float]) -> None:
        self.bad_in_row += 1
        self.skipped += 1
        log.warning(
            "step %d skipped: non-finite loss %s or grad norm %s (%d in a row)",
            self.step, loss, grad_norm, self.bad_in_row,
        )  # fmt: skip
        if self.bad_in_row > self.tc.max_bad_steps:
            raise TrainingDiverged(
                f"{self.bad_in_row} consecutive steps with non-finite loss/gradients at step {self.step} "
                f"(train.max_bad_steps={self.tc.max_bad_steps}); the last good checkpoint in "
                f"{self.run_dir / ckpt.CHECKPOINTS} is intact - lower optim.lr or check the data"
            )

    def _reduce(self, window: list[dict[str, float]]) -> dict[str, float]:
        keys = sorted(window[0])
        local = torch.tensor([[w[k] for k in keys] for w in window], dtype=torch.float64).mean(0)
        return dict(zip(keys, D.all_reduce_mean(local, self.info).tolist()))

    @torch.no_grad()
    def evaluate(self, dataset) -> dict[str, float]:
        """Metrics averaged over the whole eval set, weighted by batch size.

        Every rank evaluates the full set in the same order: forward passes under FSDP are collective, and eval
        sets are small, so this is both safe and simple; the results are identical on all ranks.
        """
        self.model.eval()
        micro = self.tc.eval_batch_size or self.tc.batch_size // (self.tc.grad_accum * self.info.world_size)
        totals: dict[str, float] = {}
        count = 0
        for keys in eval_keys(len(dataset), micro, self.tc.seed, rank=0, world_size=1):
            batch = self.task.collate([dataset[k] for k in keys])
            torch.manual_seed(eval_seed(self.tc.seed, keys[0][0]))
            with self.autocast:
                loss, metrics = self.task.loss_fn(self.model, batch)
            named = {f"loss_{k}": v for k, v in loss.items()} if isinstance(loss, dict) else {"loss": loss}
            for k, v in {**named, **metrics}.items():
                totals[k] = totals.get(k, 0.0) + float(v) * len(keys)
            count += len(keys)
        self.model.train()
        return {k: v / max(1, count) for k, v in totals.items()}


def train(task: Task, run_dir: str | Path, *, resume: bool = False, until: int | None = None) -> TrainResult:
    """Train ``task`` into ``run_dir`` (see :class:`Trainer`)."""
    return Trainer(task, run_dir, resume=resume).fit(until=until)


def describe(result: TrainResult) -> dict[str, Any]:
    """A JSON-ready summary of a finished run."""
    return {
        "run_dir": str(result.run_dir),
        "step": result.step,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "train": result.train_metrics,
        "eval": result.eval_metrics,
        "skipped_steps": result.skipped_steps,
    }
