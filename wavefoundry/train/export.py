"""Exported model directories: write one from a training run, and read one back (what ``wavefoundry.pipelines``
loads). A directory holds ``config.json`` (``{"type": ..., "model": {...}}``, loaded strictly) and
``model.safetensors``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from wavefoundry.codecs.autoencoder import Autoencoder, AutoencoderConfig
from wavefoundry.config import ConfigError, atomic_write_bytes, from_dict, read_json, to_dict
from wavefoundry.train.checkpoint import ModelLoadError, load_strict, load_weights, read_metadata, resolve_model_dir
from wavefoundry.train.tasks import load_run_config


def checkpoint_state(model_dir: Path, *, ema: bool) -> dict:
    """Weights of a checkpoint: EMA floats over the raw model (integer buffers are not averaged)."""
    state = load_weights(model_dir / "model.safetensors")
    if ema and (model_dir / "ema.safetensors").is_file():
        state.update(load_weights(model_dir / "ema.safetensors"))
    return state


def _write_model_dir(out: Path, kind: str, model_cfg, state: dict, step: str, ema: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    meta = {"step": step, "ema": str(ema).lower()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"), metadata=meta)
    (out / "model.safetensors").chmod(0o644)
    config = {"type": kind, "model": to_dict(model_cfg)}
    atomic_write_bytes(out / "config.json", (json.dumps(config, indent=2) + "\n").encode())


#: Public name of the directory writer, for exporters that live next to their task (``train/masked.py``).
write_model_dir = _write_model_dir


def export_model(path: str | Path, out_dir: str | Path, *, ema: bool = True) -> Path:
    """Export the latest checkpoint of a run of any exportable task (autoencoder, diffusion, masked)."""
    from wavefoundry.train.masked import export_masked_audio

    cfg = load_run_config(resolve_model_dir(path))
    exporters = {"autoencoder": export_autoencoder, "semantic-codec": export_autoencoder,
                 "diffusion": export_text_to_audio, "masked": export_masked_audio}  # fmt: skip
    if cfg.task not in exporters:
        raise ValueError(f"a '{cfg.task}' run cannot be exported; exportable tasks: {', '.join(exporters)}")
    return exporters[cfg.task](path, out_dir, ema=ema)


def export_text_to_audio(path: str | Path, out_dir: str | Path, *, ema: bool = True) -> Path:
    """Write a text-to-audio model directory: ``config.json`` (``{"type": "text-to-audio", "model": ...}``),
    ``model.safetensors`` (DiT + conditioner), ``tokenizer.json`` (learned text encoder) and ``autoencoder/`` (a
    copy of the codec the latents came from), so the directory is self-contained."""
    from wavefoundry.train.diffusion import latent_dir

    model_dir = resolve_model_dir(path)
    cfg = load_run_config(model_dir)
    if cfg.task != "diffusion":
        raise ValueError(f"{model_dir} is a '{cfg.task}' run, not a diffusion run")
    has_ema = ema and (model_dir / "ema.safetensors").is_file()
    out = Path(out_dir)
    step = read_metadata(model_dir / "model.safetensors").get("step", "")
    _write_model_dir(out, "text-to-audio", cfg.model, checkpoint_state(model_dir, ema=ema), step, has_ema)
    data_dir = latent_dir(cfg.data)
    tokenizer = data_dir / "tokenizer.json"
    if tokenizer.is_file():
        shutil.copyfile(tokenizer, out / "tokenizer.json")
    codec = Path(json.loads((data_dir / "latents.json").read_text())["codec"] or cfg.data.codec)
    for name in ("config.json", "model.safetensors"):
        (out / "autoencoder").mkdir(exist_ok=True)
        shutil.copyfile(codec / name, out / "autoencoder" / name)
    return out


def export_autoencoder(path: str | Path, out_dir: str | Path, *, ema: bool = True) -> Path:
    """Write ``config.json`` (``{"type": "autoencoder", "model": ...}``) and ``model.safetensors`` (autoencoder
    weights only, no discriminator) of the latest checkpoint of ``path`` into ``out_dir``.

    Args:
        ema: export the EMA weights when the checkpoint has them.
    """
    model_dir = resolve_model_dir(path)
    cfg = load_run_config(model_dir)
    if cfg.task not in ("autoencoder", "semantic-codec"):  # a semantic codec exports its autoencoder (no CTC head)
        raise ValueError(f"{model_dir} is a '{cfg.task}' run, not an autoencoder")
    prefix = "autoencoder."
    state = {k[len(prefix) :]: v for k, v in checkpoint_state(model_dir, ema=ema).items() if k.startswith(prefix)}
    out = Path(out_dir)
    step = read_metadata(model_dir / "model.safetensors").get("step", "")
    _write_model_dir(out, "autoencoder", cfg.model, state, step, ema and (model_dir / "ema.safetensors").is_file())
    return out


def read_model_config(path: str | Path, expected_type: str) -> dict:
    """The ``model`` section of an exported ``config.json`` whose ``type`` is ``expected_type``."""
    file = Path(path) / "config.json"
    try:
        data = read_json(file)
    except ConfigError as exc:
        raise ModelLoadError(f"{exc} (a model directory comes from `wavefoundry export`)") from None
    if not isinstance(data, dict) or data.get("type") != expected_type or set(data) != {"type", "model"}:
        raise ModelLoadError(f"{file}: expected {{'type': '{expected_type}', 'model': {{...}}}}")
    return data["model"]


def load_autoencoder(path: str | Path) -> Autoencoder:
    """An exported autoencoder directory -> the model in eval mode with weight norm folded (ready for inference)."""
    path = Path(path)
    try:
        cfg = from_dict(AutoencoderConfig, read_model_config(path, "autoencoder"))
    except ConfigError as exc:
        raise ModelLoadError(f"{path / 'config.json'}: {exc}") from None
    model = Autoencoder(cfg)
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"{path}: no model.safetensors")
    load_strict(model, load_file(str(weights)), str(weights))
    return model.remove_weight_norm().eval()
