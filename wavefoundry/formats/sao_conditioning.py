"""Stable Audio Open conditioner checkpoints: explicit key maps to and from stable-audio-tools and diffusers.

Only the timing conditioners and the optional text projection have weights (Stable Audio Open's T5 is loaded
from its own directory and is not in either checkpoint). Our :class:`~wavefoundry.conditioning.Conditioner`
keys map as

* ``seconds_start.fourier.weights`` <-> ``conditioner.conditioners.seconds_start.embedder.embedding.0.weights``
  (stable-audio-tools ``model.safetensors``) <-> ``start_number_conditioner.time_positional_embedding.0.weights``
  (diffusers ``projection_model/``);
* ``seconds_start.proj.{weight,bias}`` <-> ``...seconds_start.embedder.embedding.1.*`` <->
  ``start_number_conditioner.time_positional_embedding.1.*``;
* ``seconds_total.*`` likewise, with ``seconds_total`` and ``end_number_conditioner``;
* ``text_proj.{weight,bias}`` <-> ``conditioner.conditioners.prompt.proj_out.*`` <-> ``text_projection.*``.

(``text_proj`` exists only when the text encoder's width differs from ``cond_dim``; for Stable Audio Open, t5-base
and ``cond_dim`` are both 768, so it is an identity in all three.) Leaf names and shapes are the same everywhere.
Conversions are strict: a missing or unexpected key or a wrong shape raises
:class:`~wavefoundry.formats.errors.CheckpointMismatchError`; nothing loads partially.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wavefoundry.conditioning.conditioner import Conditioner, ConditionerConfig
from wavefoundry.conditioning.numbers import FOURIER_DIM
from wavefoundry.config import ConfigError
from wavefoundry.formats.errors import check_state
from wavefoundry.formats.oobleck import read_weights

#: Where the conditioners sit in a full stable-audio-tools checkpoint.
SAO_PREFIX = "conditioner.conditioners."
DIFFUSERS_FOLDER = "projection_model"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"

State = dict[str, Tensor]

# Our module path -> theirs (leaf names are appended unchanged).
_SAO_MODULES = {
    "seconds_start.fourier": "seconds_start.embedder.embedding.0",
    "seconds_start.proj": "seconds_start.embedder.embedding.1",
    "seconds_total.fourier": "seconds_total.embedder.embedding.0",
    "seconds_total.proj": "seconds_total.embedder.embedding.1",
    "text_proj": "prompt.proj_out",
}
_DIFFUSERS_MODULES = {
    "seconds_start.fourier": "start_number_conditioner.time_positional_embedding.0",
    "seconds_start.proj": "start_number_conditioner.time_positional_embedding.1",
    "seconds_total.fourier": "end_number_conditioner.time_positional_embedding.0",
    "seconds_total.proj": "end_number_conditioner.time_positional_embedding.1",
    "text_proj": "text_projection",
}


def convertible_shapes(conditioner: Conditioner) -> dict[str, torch.Size]:
    """Our keys that outside formats hold (timing conditioners, text projection), with their shapes."""
    return {k: v.shape for k, v in conditioner.state_dict().items() if k.rsplit(".", 1)[0] in _SAO_MODULES}


def _map_key(key: str, modules: Mapping[str, str], prefix: str) -> str:
    module, leaf = key.rsplit(".", 1)
    if module not in modules:
        raise KeyError(f"{key!r} has no counterpart outside wavefoundry (convertible: {', '.join(modules)})")
    return f"{prefix}{modules[module]}.{leaf}"


def stable_audio_key_map(keys: list[str] | Mapping[str, Any], prefix: str = SAO_PREFIX) -> dict[str, str]:
    """Our key -> stable-audio-tools key (``seconds_start.proj.weight`` ->
    ``conditioner.conditioners.seconds_start.embedder.embedding.1.weight``).

    Raises:
        KeyError: a key without a stable-audio-tools counterpart (e.g. the learned text encoder's).
    """
    return {k: _map_key(k, _SAO_MODULES, prefix) for k in keys}


def diffusers_key_map(keys: list[str] | Mapping[str, Any]) -> dict[str, str]:
    """Our key -> diffusers ``StableAudioProjectionModel`` key (``seconds_total.proj.bias`` ->
    ``end_number_conditioner.time_positional_embedding.1.bias``).

    Raises:
        KeyError: a key without a diffusers counterpart.
    """
    return {k: _map_key(k, _DIFFUSERS_MODULES, "") for k in keys}


def _export(state: Mapping[str, Tensor], conditioner: Conditioner, key_map: dict[str, str]) -> State:
    shapes = convertible_shapes(conditioner)
    ours = {k: v for k, v in state.items() if k in shapes or not k.startswith("text.")}
    check_state(ours, shapes, "our conditioner state (timing conditioners and text projection)")
    return {key_map[k]: v.contiguous() for k, v in ours.items()}


def _import(theirs: Mapping[str, Tensor], conditioner: Conditioner, key_map: dict[str, str], what: str) -> State:
    shapes = convertible_shapes(conditioner)
    want = {key_map[k]: s for k, s in shapes.items()}
    hint = ""
    if any(k.endswith(("proj_out.weight", "text_projection.weight")) for k in theirs) != ("text_proj.weight" in shapes):
        hint = " (a text projection is present in one and not the other: check cond_dim against the text width)"
    check_state(theirs, want, what, hint)
    return {k: theirs[key_map[k]].contiguous() for k in shapes}


def to_stable_audio(state: Mapping[str, Tensor], conditioner: Conditioner, prefix: str = SAO_PREFIX) -> State:
    """stable-audio-tools keys for our timing conditioners and text projection.

    Args:
        state: our conditioner state dict; ``text.*`` keys (the learned text encoder) are left out.
        conditioner: the architecture ``state`` fits (gives the expected keys and shapes).
        prefix: ``conditioner.conditioners.`` for a full checkpoint.

    Raises:
        CheckpointMismatchError: ``state`` lacks a key or has a wrong shape.
    """
    return _export(state, conditioner, stable_audio_key_map(list(convertible_shapes(conditioner)), prefix))


def from_stable_audio(state: Mapping[str, Tensor], conditioner: Conditioner, prefix: str = SAO_PREFIX) -> State:
    """Our timing conditioner (and text projection) state from a stable-audio-tools state dict.

    Only keys under ``prefix`` are looked at (the rest of a full checkpoint is the DiT and the autoencoder);
    all of them must map.

    Raises:
        CheckpointMismatchError: missing or unexpected keys under ``prefix``, or wrong shapes.
    """
    scoped = {k: v for k, v in state.items() if k.startswith(prefix)}
    key_map = stable_audio_key_map(list(convertible_shapes(conditioner)), prefix)
    return _import(scoped, conditioner, key_map, "stable-audio-tools conditioner")


def to_diffusers(state: Mapping[str, Tensor], conditioner: Conditioner) -> State:
    """A diffusers ``StableAudioProjectionModel`` state dict from ours (``text.*`` keys left out).

    Raises:
        CheckpointMismatchError: ``state`` lacks a key or has a wrong shape.
    """
    return _export(state, conditioner, diffusers_key_map(list(convertible_shapes(conditioner))))


def from_diffusers(state: Mapping[str, Tensor], conditioner: Conditioner) -> State:
    """Our timing conditioner (and text projection) state from a diffusers ``StableAudioProjectionModel`` one.

    Raises:
        CheckpointMismatchError: missing or unexpected keys, or wrong shapes.
    """
    key_map = diffusers_key_map(list(convertible_shapes(conditioner)))
    return _import(state, conditioner, key_map, "diffusers StableAudioProjectionModel")


def _load_into(conditioner: Conditioner, ours: State) -> Conditioner:
    missing = sorted(set(conditioner.state_dict()) - set(ours))
    if missing:  # checked before loading anything: a learned text encoder has no Stable Audio Open weights
        raise ConfigError(
            f"the conditioner has weights the checkpoint cannot provide: {missing[:5]} "
            "(use text_encoder='t5' for Stable Audio Open weights)"
        )
    conditioner.load_state_dict(ours, strict=True)
    return conditioner


def load_stable_audio(path: str | Path, conditioner: Conditioner, prefix: str = SAO_PREFIX) -> Conditioner:
    """Load timing conditioners (and text projection) from a stable-audio-tools checkpoint file into ``conditioner``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointMismatchError: the weights do not fit.
        ConfigError: ``conditioner`` has other trainable weights (a learned text encoder).
    """
    return _load_into(conditioner, from_stable_audio(read_weights(path, prefix), conditioner, prefix))


def load_diffusers_folder(folder: str | Path, conditioner: Conditioner) -> Conditioner:
    """Load from a diffusers Stable Audio folder (its ``projection_model/``) or a ``projection_model`` folder.

    Raises:
        FileNotFoundError: no weights file.
        CheckpointMismatchError: the weights do not fit.
    """
    folder = Path(folder)
    if (folder / DIFFUSERS_FOLDER).is_dir():
        folder = folder / DIFFUSERS_FOLDER
    return _load_into(conditioner, from_diffusers(read_weights(folder / DIFFUSERS_WEIGHTS), conditioner))


def config_from_stable_audio(model_config: Mapping[str, Any], *, t5_path: str) -> ConditionerConfig:
    """A T5 :class:`ConditionerConfig` from a stable-audio-tools ``model_config.json`` dict.

    Args:
        model_config: the full model config (conditioning under ``model.conditioning``).
        t5_path: local directory of the T5 named in the config (it is not in the checkpoint).

    Raises:
        ConfigError: conditioners other than prompt (t5) + seconds_start + seconds_total (number), or timing
            conditioners with different ranges.
    """
    cond = model_config.get("model", {}).get("conditioning", {})
    configs = {c.get("id"): c for c in cond.get("configs", [])}
    want = {"prompt": "t5", "seconds_start": "number", "seconds_total": "number"}
    got = {k: c.get("type") for k, c in configs.items()}
    if got != want:
        raise ConfigError(f"stable-audio-tools conditioning: expected {want}, got {got}")
    start, total = configs["seconds_start"].get("config", {}), configs["seconds_total"].get("config", {})
    ranges = [(c.get("min_val", 0), c.get("max_val", 1)) for c in (start, total)]
    if ranges[0] != ranges[1]:
        raise ConfigError(f"seconds_start range {ranges[0]} != seconds_total range {ranges[1]}: ours share one")
    return ConditionerConfig(
        text_encoder="t5",
        t5_path=t5_path,
        t5_max_length=configs["prompt"].get("config", {}).get("max_length", 128),
        cond_dim=cond["cond_dim"],
        fourier_dim=FOURIER_DIM,
        min_seconds=float(ranges[0][0]),
        max_seconds=float(ranges[0][1]),
    )


def config_from_diffusers(folder: str | Path, *, t5_path: str | None = None) -> ConditionerConfig:
    """A T5 :class:`ConditionerConfig` from a diffusers Stable Audio folder's ``projection_model/config.json``.

    Args:
        folder: the pipeline folder (or its ``projection_model``).
        t5_path: local T5 directory; defaults to the pipeline's ``text_encoder`` folder, with the tokenizer read
            from its ``tokenizer`` folder.

    Raises:
        FileNotFoundError: no ``config.json``.
    """
    folder = Path(folder)
    proj = folder / DIFFUSERS_FOLDER if (folder / DIFFUSERS_FOLDER).is_dir() else folder
    path = proj / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"diffusers projection model config not found: {path}")
    c = json.loads(path.read_text())
    return ConditionerConfig(
        text_encoder="t5",
        t5_path=t5_path or str(proj.parent / "text_encoder"),
        t5_tokenizer_path=None if t5_path else str(proj.parent / "tokenizer"),
        cond_dim=int(c["conditioning_dim"]),
        min_seconds=float(c["min_value"]),
        max_seconds=float(c["max_value"]),
    )
