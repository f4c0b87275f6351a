"""Turn a training run into an exported model directory (what ``wavefoundry.pipelines`` loads)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from wavefoundry.config import atomic_write_bytes, to_dict
from wavefoundry.train.checkpoint import load_weights, read_metadata, resolve_model_dir
from wavefoundry.train.tasks import load_run_config


def checkpoint_state(model_dir: Path, *, ema: bool) -> dict:
    """Weights of a checkpoint: EMA floats over the raw model (integer buffers are not averaged)."""
    state = load_weights(model_dir / "model.safetensors")
    if ema and (model_dir / "ema.safetensors").is_file():
        state.update(load_weights(model_dir / "ema.safetensors"))
    return state


def export_autoencoder(path: str | Path, out_dir: str | Path, *, ema: bool = True) -> Path:
    """Write ``config.json`` (``{"type": "autoencoder", "model": ...}``) and ``model.safetensors`` (autoencoder
    weights only, no discriminator) of the latest checkpoint of ``path`` into ``out_dir``.

    Args:
        ema: export the EMA weights when the checkpoint has them.
    """
    model_dir = resolve_model_dir(path)
    cfg = load_run_config(model_dir)
    if cfg.task != "autoencoder":
        raise ValueError(f"{model_dir} is a '{cfg.task}' run, not an autoencoder")
    prefix = "autoencoder."
    state = {k[len(prefix) :]: v for k, v in checkpoint_state(model_dir, ema=ema).items() if k.startswith(prefix)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    step = read_metadata(model_dir / "model.safetensors").get("step", "")
    meta = {"step": step, "ema": str(ema and (model_dir / "ema.safetensors").is_file()).lower()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"), metadata=meta)
    (out / "model.safetensors").chmod(0o644)
    config = {"type": "autoencoder", "model": to_dict(cfg.model)}
    atomic_write_bytes(out / "config.json", (json.dumps(config, indent=2) + "\n").encode())
    return out
