"""Atomic checkpoints: one directory per saved step, complete or absent.

Layout of a run directory::

    RUN/config.json                     resolved run config (loaded strictly)
    RUN/metrics.jsonl                   one JSON line per logged step / eval
    RUN/checkpoints/step-00000100/      config.json, model.safetensors, ema.safetensors, train_state.pt

A checkpoint is written into a hidden temporary directory (each file fsynced) that is renamed into place, so a
run killed at any instant leaves every visible checkpoint complete. Weights are safetensors only; the train state
(optimizer, step, counters, RNG) is a torch file of tensors and plain containers read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from wavefoundry.config import read_json, save_json, to_dict

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"^step-(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match the model."""


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step-{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint directories of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name) and (p / "train_state.pt").is_file()]
    return sorted(found, key=lambda p: p.name)


def remove_partial(run_dir: str | Path) -> int:
    """Delete temporary folders left by a run killed while writing a checkpoint; returns how many."""
    root = Path(run_dir) / CHECKPOINTS
    partial = [p for p in root.glob(".tmp-step-*") if p.is_dir()] if root.is_dir() else []
    for p in partial:
        shutil.rmtree(p, ignore_errors=True)
    return len(partial)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_model_dir(path: str | Path) -> Path:
    """A directory holding ``model.safetensors``: the path itself, or the latest checkpoint of a run."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(f"{path}: no model.safetensors and no checkpoints/step-* directory")
    return latest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    config: Any,
    model_state: dict[str, torch.Tensor],
    train_state: dict[str, Any],
    ema_state: dict[str, torch.Tensor] | None = None,
    keep_last: int = 2,
) -> Path:
    """Write ``checkpoints/step-{step}`` atomically and prune older checkpoints beyond ``keep_last``."""
    final = step_dir(Path(run_dir), step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
    try:
        meta = {"step": str(step)}
        save_file(_contiguous(model_state), tmp / "model.safetensors", metadata=meta)
        if ema_state is not None:
            save_file(_contiguous(ema_state), tmp / "ema.safetensors", metadata=meta)
        torch.save({**train_state, "step": step}, tmp / "train_state.pt")
        save_json(config, tmp / "config.json")
        for f in tmp.iterdir():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[: -keep_last if keep_last > 0 else None]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file (never pickle)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights not found: {path}")
    return load_file(str(path))


def load_train_state(ckpt: str | Path) -> dict[str, Any]:
    """Load ``train_state.pt`` with ``weights_only=True`` (tensors and plain containers only)."""
    path = Path(ckpt) / "train_state.pt"
    if not path.is_file():
        raise CheckpointError(f"train state not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata header of a safetensors file (e.g. the step it was saved at)."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    return header.get("__metadata__", {})


class ModelLoadError(ValueError):
    """A model directory is missing, of the wrong type, or its weights do not match its config."""


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load weights with every key and shape matching; the error lists the first offending keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = [f"{name}: {', '.join(keys[:5])}" for name, keys in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if keys]  # fmt: skip
        raise ModelLoadError(f"{where}: weights do not match the model ({'; '.join(parts)})")
    module.load_state_dict(state, strict=True)


def init_weights(module: torch.nn.Module, source: str | Path, run_config: object) -> None:
    """Fine-tuning start: load an exported model directory's (or a ``.safetensors`` file's) weights into ``module``.

    Keys and shapes must match exactly (:func:`load_strict`). Where the directory's ``config.json`` describes the
    model differently from ``run_config.model`` (e.g. another quantizer dropout), the differing fields are logged:
    same shapes, other settings is a legitimate fine-tune, but it should not go unnoticed.
    """
    path = Path(source)
    file = path / "model.safetensors" if path.is_dir() else path
    if file.suffix != ".safetensors" or not file.is_file():
        raise ModelLoadError(f"train.init_from={source}: expected an exported model directory or a .safetensors file")
    load_strict(module, load_file(str(file)), str(file))
    config = path / "config.json"
    ours = getattr(run_config, "model", None)
    if path.is_dir() and config.is_file() and ours is not None:
        theirs = read_json(config).get("model", {})
        mine = to_dict(ours)
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if differ:
            log.warning("train.init_from=%s: model settings differ from the run's in %s", source, ", ".join(differ))
    log.info("initialised %d tensors from %s", len(module.state_dict()), file)
