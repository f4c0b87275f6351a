"""Whole Stable Audio Open checkpoints: the stable-audio-tools single file and the diffusers pipeline folder.

Stable Audio Open 1.0 (Evans et al. 2024) ships in two layouts, both read and written here:

* stable-audio-tools: ``model_config.json`` + one ``model.safetensors`` whose keys are ``model.model.*`` (the DiT),
  ``conditioner.conditioners.*`` (the timing conditioners, and a text projection when the T5 width differs from
  ``cond_dim``) and ``pretransform.model.*`` (the Oobleck VAE). The T5 is not in the file: it is loaded from a local
  directory (``t5_path``). ``model.ckpt`` is a pickle and is refused.
* diffusers ``StableAudioPipeline``: ``model_index.json`` and the folders ``transformer/``, ``projection_model/``,
  ``vae/`` (config + ``diffusion_pytorch_model.safetensors`` each), ``text_encoder/`` + ``tokenizer/`` (the T5)
  and ``scheduler/``.

Either becomes a :class:`StableAudioParts` (reading builds the conditioner, loading the T5, to learn whether the
checkpoint must hold a text projection): configs and state dicts in our names, converted by the key maps of
``sao_dit``, ``sao_conditioning`` and ``oobleck``, every one strict. Latent scaling: stable-audio-tools'
``AutoencoderPretransform`` divides the VAE latents by the pretransform's ``scale`` (default 1; Stable Audio Open
sets none) before diffusion and multiplies them back before decoding, which is our normalisation with mean 0 and
std ``scale`` (:attr:`StableAudioParts.latent_scale`). diffusers' ``AutoencoderOobleck`` has no scaling factor and
its pipeline decodes the sampled latents as they are, so a diffusers folder has scale 1.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

from wavefoundry.codecs.autoencoder import AutoencoderConfig
from wavefoundry.codecs.bottlenecks import BottleneckConfig, VAEConfig
from wavefoundry.conditioning.conditioner import Conditioner, ConditionerConfig
from wavefoundry.conditioning.numbers import FOURIER_DIM
from wavefoundry.conditioning.t5 import T5_MAX_LENGTH
from wavefoundry.config import ConfigError, atomic_write_bytes, read_json
from wavefoundry.diffusion.dit import DiTConfig
from wavefoundry.formats import oobleck, sao_conditioning, sao_dit
from wavefoundry.formats.errors import CheckpointMismatchError
from wavefoundry.formats.oobleck import read_weights

SAO_CONFIG = "model_config.json"
SAO_WEIGHTS = "model.safetensors"
DIFFUSERS_INDEX = "model_index.json"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
#: diffusers folder of each part, with the class written to ``model_index.json``.
DIFFUSERS_PARTS = {
    "transformer": ("diffusers", "StableAudioDiTModel"),
    "projection_model": ("stable_audio", "StableAudioProjectionModel"),
    "vae": ("diffusers", "AutoencoderOobleck"),
    "scheduler": ("diffusers", "EDMDPMSolverMultistepScheduler"),
    "text_encoder": ("transformers", "T5EncoderModel"),
    "tokenizer": ("transformers", "T5TokenizerFast"),
}
#: Latent frames of a training crop recorded in written configs (Stable Audio Open: 1024 frames, 47.6 s).
SAMPLE_FRAMES = 1024
#: T5 named in written stable-audio-tools configs (a label: our reader takes the T5 from ``t5_path``).
T5_NAME = "t5-base"

_PREFIXES = (sao_dit.SAO_PREFIX, sao_conditioning.SAO_PREFIX, oobleck.SAO_PREFIX)
_CROSS_IDS = ["prompt", "seconds_start", "seconds_total"]
_GLOBAL_IDS = ["seconds_start", "seconds_total"]
# Stable Audio Open's conditioning wiring, the only one our pipeline builds.
_WIRING = {"cross_attention_cond_ids": _CROSS_IDS, "global_cond_ids": _GLOBAL_IDS, "input_concat_ids": [],
           "prepend_cond_ids": []}  # fmt: skip
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model")
# Stable Audio Open's sampler as diffusers' conversion script (scripts/convert_stable_audio.py) configures it.
_SCHEDULER = {
    "_class_name": DIFFUSERS_PARTS["scheduler"][1],
    "sigma_min": 0.3,
    "sigma_max": 500.0,
    "sigma_data": 1.0,
    "sigma_schedule": "exponential",
    "prediction_type": "v_prediction",
    "solver_order": 2,
    "algorithm_type": "sde-dpmsolver++",
}
_DIFFUSERS_VERSION = "0.30.0"  # the first diffusers release with StableAudioPipeline

State = dict[str, Tensor]


@dataclass(kw_only=True)
class StableAudioParts:
    """A Stable Audio Open model in our names: what ``TextToAudio`` is built from.

    Attributes:
        dit, dit_state: the DiT config and its state dict (``blocks.0.self_attn.to_qkv.weight``...).
        conditioner, conditioner_state: a T5 conditioner config (``t5_path`` is a local directory) and the state of
            its timing conditioners and optional text projection.
        autoencoder, autoencoder_state: a VAE autoencoder config and its state dict (``encoder.*``, ``decoder.*``,
            weight norm not folded).
        latent_scale: VAE latents are divided by it before diffusion (stable-audio-tools' pretransform ``scale``).
    """

    dit: DiTConfig
    dit_state: State
    conditioner: ConditionerConfig
    conditioner_state: State
    autoencoder: AutoencoderConfig
    autoencoder_state: State
    latent_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.conditioner.text_encoder != "t5":
            kind = self.conditioner.text_encoder
            raise ConfigError(f"Stable Audio Open conditions on T5; the conditioner's text_encoder is {kind!r}")
        if self.autoencoder.bottleneck.kind != "vae":
            raise ConfigError(f"Stable Audio Open's autoencoder is a VAE, not {self.autoencoder.bottleneck.kind!r}")
        sizes = {
            "dit.io_channels vs autoencoder latent_dim": (self.dit.io_channels, self.autoencoder.oobleck.latent_dim),
            "dit.cond_token_dim vs conditioner.cond_dim": (self.dit.cond_token_dim, self.conditioner.cond_dim),
            "dit.global_cond_dim vs 2 * conditioner.cond_dim": (self.dit.global_cond_dim, self.conditioner.global_dim),
        }
        bad = {name: pair for name, pair in sizes.items() if pair[0] != pair[1]}
        if bad:
            raise ConfigError(f"Stable Audio parts do not fit together: {bad}")
        if not (math.isfinite(self.latent_scale) and self.latent_scale > 0):
            raise ConfigError(f"latent_scale must be finite and > 0, got {self.latent_scale}")


# --------------------------------------------------------------------------------------------------- shared pieces


def _explicit_rotary(cfg: DiTConfig) -> DiTConfig:
    """``cfg`` with its rotary dim written out: configs read from either layout compare equal."""
    return dataclasses.replace(cfg, rotary_dim=cfg.rot_dim)


def _same_dit(cfg: DiTConfig) -> DiTConfig:
    """A canonical form: equal for DiT configs that build the same network."""
    project = cfg.project_cond_tokens and cfg.cond_token_dim != cfg.embed_dim
    return dataclasses.replace(cfg, rotary_dim=cfg.rot_dim, project_cond_tokens=project)


def _vae(cfg: oobleck.OobleckConfig) -> AutoencoderConfig:
    return AutoencoderConfig(
        oobleck=cfg, bottleneck=BottleneckConfig(kind="vae", vae=VAEConfig(latent_dim=cfg.latent_dim))
    )


def _join_autoencoder(encoder_state: State, decoder_state: State) -> State:
    return {f"encoder.{k}": v for k, v in encoder_state.items()} | {f"decoder.{k}": v for k, v in decoder_state.items()}


def _split_autoencoder(state: Mapping[str, Tensor]) -> tuple[State, State]:
    """Our autoencoder state -> (encoder state, decoder state); any other key is an error."""
    other = sorted(k for k in state if not k.startswith(("encoder.", "decoder.")))
    if other:
        raise CheckpointMismatchError(f"autoencoder state: keys outside encoder./decoder.: {other[:5]}")
    enc = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    dec = {k.removeprefix("decoder."): v for k, v in state.items() if k.startswith("decoder.")}
    return enc, dec


def _differences(ours: Any, kept: Any) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ between two configs of one class: name -> (ours, what the format keeps)."""
    return {
        f.name: (getattr(ours, f.name), getattr(kept, f.name))
        for f in dataclasses.fields(ours)
        if getattr(ours, f.name) != getattr(kept, f.name)
    }


def _check_expressible(parts: StableAudioParts, kept: StableAudioParts, layout: str) -> None:
    """Raise unless the configs ``kept`` (what a reader gets back from the written configs) are those of ``parts``."""
    t5_fields = ("t5_path", "t5_tokenizer_path", "text", "max_prompt_chars")  # runtime settings, in neither layout
    cond = dataclasses.replace(kept.conditioner, **{k: getattr(parts.conditioner, k) for k in t5_fields})
    scale = {"latent_scale": (parts.latent_scale, kept.latent_scale)} if parts.latent_scale != kept.latent_scale else {}
    diffs = {
        "dit": _differences(_same_dit(parts.dit), _same_dit(kept.dit)),
        "conditioner": _differences(parts.conditioner, cond),
        "autoencoder": _differences(parts.autoencoder.oobleck, kept.autoencoder.oobleck),
        "latent_scale": scale,
    }
    diffs = {k: v for k, v in diffs.items() if v}
    if diffs:
        raise ConfigError(f"{layout} cannot express this model; (ours, kept) per field: {diffs}")


def _rename(state: State, key_map_of: Callable[[list[str]], dict[str, str]]) -> State:
    """``state`` under the names ``key_map_of(keys)`` gives; a key without a counterpart is a mismatch."""
    try:
        key_map = key_map_of(list(state))
    except KeyError as exc:
        raise CheckpointMismatchError(f"conditioner state: {exc.args[0]}") from None
    return {key_map[k]: v for k, v in state.items()}


def resolve_t5(t5_path: str | Path) -> tuple[Path, Path | None]:
    """(T5 directory, tokenizer directory or None) for a T5 directory or a folder with ``text_encoder/`` and
    ``tokenizer/`` (a diffusers Stable Audio Open download)."""
    t5_path = Path(t5_path).expanduser()
    if (t5_path / "text_encoder" / "config.json").is_file():
        return t5_path / "text_encoder", t5_path / "tokenizer"
    return t5_path, None


def _save_safetensors(path: Path, tensors: Mapping[str, Tensor]) -> None:
    """Write ``tensors`` to ``path`` through a temporary file in the same folder (never a partial file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def _require(files: list[Path], what: str) -> None:
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"{what}: missing {', '.join(missing)}")


# ------------------------------------------------------------------------------------------ stable-audio-tools


def _sao_weights_file(path: Path) -> Path:
    weights = path / SAO_WEIGHTS
    if weights.is_file():
        return weights
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in (".ckpt", ".pt", ".pth"))
    if pickles:
        raise ValueError(
            f"{path}: found {', '.join(pickles)} but no {SAO_WEIGHTS}; pickled checkpoints are not read (they can run "
            "code): convert them to safetensors, or download model.safetensors"
        )
    raise FileNotFoundError(f"{path}: no {SAO_WEIGHTS} (the stable-audio-tools weights next to {SAO_CONFIG})")


def _sao_scale(model_config: Mapping[str, Any]) -> float:
    """The pretransform's latent scale, after checking the parts of the config the per-part readers do not."""
    if model_config.get("model_type") != "diffusion_cond":
        raise ConfigError(f"{SAO_CONFIG}: model_type must be 'diffusion_cond', got {model_config.get('model_type')!r}")
    model = model_config.get("model", {})
    pre = model.get("pretransform", {})
    if pre.get("type") != "autoencoder" or pre.get("config", {}).get("bottleneck", {}).get("type") != "vae":
        raise ConfigError(f"{SAO_CONFIG}: the pretransform must be an autoencoder with a 'vae' bottleneck")
    diffusion = model.get("diffusion", {})
    wiring = {k: diffusion.get(k, []) for k in _WIRING}
    if wiring != _WIRING or diffusion.get("diffusion_objective", "v") != "v":
        got = wiring | {"diffusion_objective": diffusion.get("diffusion_objective", "v")}
        raise ConfigError(f"{SAO_CONFIG}: unsupported diffusion wiring {got}; supported: {_WIRING}, objective 'v'")
    return float(pre.get("scale", 1.0))


def configs_from_stable_audio(model_config: Mapping[str, Any], *, t5_path: str | Path) -> StableAudioParts:
    """The configs of a stable-audio-tools ``model_config.json`` dict, as parts with empty state dicts (the T5 at
    ``t5_path`` is not loaded).

    Raises:
        ConfigError: a config we cannot build.
    """
    t5, tokenizer = resolve_t5(t5_path)
    cond = sao_conditioning.config_from_stable_audio(model_config, t5_path=str(t5))
    cond = dataclasses.replace(cond, t5_tokenizer_path=str(tokenizer) if tokenizer else None)
    return StableAudioParts(
        dit=_explicit_rotary(sao_dit.config_from_stable_audio(model_config)),
        dit_state={},
        conditioner=cond,
        conditioner_state={},
        autoencoder=_vae(oobleck.config_from_stable_audio(model_config)),
        autoencoder_state={},
        latent_scale=_sao_scale(model_config),
    )


def read_stable_audio(path: str | Path, *, t5_path: str | Path) -> StableAudioParts:
    """Read a stable-audio-tools model folder (``model_config.json`` + ``model.safetensors``), e.g. Stable Audio
    Open 1.0's.

    Args:
        path: the folder.
        t5_path: local T5 directory (the checkpoint names the T5 but does not hold it), or a folder with
            ``text_encoder/`` and ``tokenizer/``.

    Raises:
        FileNotFoundError: no config, no weights, or no usable T5 directory.
        ValueError: only a pickled ``model.ckpt`` is there.
        ConfigError: a config we cannot build (another model type, conditioning wiring, autoencoder or DiT options).
        CheckpointMismatchError: weights that do not fit the config, or keys outside the three parts.
    """
    path = Path(path)
    if t5_path is None:
        raise ValueError("t5_path is needed: a stable-audio-tools checkpoint names its T5 but does not hold it")
    if not (path / SAO_CONFIG).is_file():
        raise FileNotFoundError(f"{path}: no {SAO_CONFIG} (a stable-audio-tools model folder holds it)")
    weights = _sao_weights_file(path)
    parts = configs_from_stable_audio(read_json(path / SAO_CONFIG), t5_path=t5_path)
    state = read_weights(weights)
    stray = sorted(k for k in state if not k.startswith(_PREFIXES))
    if stray:
        raise CheckpointMismatchError(f"{weights}: keys outside {', '.join(_PREFIXES)}: {stray[:5]}")
    encoder_state, decoder_state = oobleck.from_stable_audio(state, parts.autoencoder.oobleck, oobleck.SAO_PREFIX)
    parts.dit_state = sao_dit.dit_from_sao(state, sao_dit.SAO_PREFIX, parts.dit)
    parts.conditioner_state = sao_conditioning.from_stable_audio(state, Conditioner(parts.conditioner))  # loads the T5
    parts.autoencoder_state = _join_autoencoder(encoder_state, decoder_state)
    return parts


def config_to_stable_audio(parts: StableAudioParts) -> dict[str, Any]:
    """The stable-audio-tools ``model_config.json`` dict of ``parts`` (no training section); for Stable Audio Open
    1.0's configs, its ``model`` section is the released one."""
    o, d, c = parts.autoencoder.oobleck, parts.dit, parts.conditioner
    shape = {"channels": o.channels, "c_mults": list(o.c_mults), "strides": list(o.strides), "use_snake": o.use_snake}
    numbers = {"min_val": c.min_seconds, "max_val": c.max_seconds}
    pretransform: dict[str, Any] = {
        "type": "autoencoder",
        "iterate_batch": True,
        "config": {
            "encoder": {"type": "oobleck", "requires_grad": False,
                        "config": {"in_channels": o.audio_channels, **shape, "latent_dim": o.encoder_out_dim}},
            "decoder": {"type": "oobleck", "config": {"out_channels": o.audio_channels, **shape,
                                                      "latent_dim": o.latent_dim, "final_tanh": o.final_tanh}},
            "bottleneck": {"type": "vae"},
            "latent_dim": o.latent_dim,
            "downsampling_ratio": o.hop_length,
            "io_channels": o.audio_channels,
        },
    }  # fmt: skip
    if parts.latent_scale != 1.0:
        pretransform["scale"] = parts.latent_scale
    dit = {k: getattr(d, k) for k in ("io_channels", "embed_dim", "depth", "num_heads", "cond_token_dim")}
    dit |= {"global_cond_dim": d.global_cond_dim, "project_cond_tokens": d.project_cond_tokens}
    return {
        "model_type": "diffusion_cond",
        "sample_size": SAMPLE_FRAMES * o.hop_length,
        "sample_rate": o.sample_rate,
        "audio_channels": o.audio_channels,
        "model": {
            "pretransform": pretransform,
            "conditioning": {
                "configs": [
                    {"id": "prompt", "type": "t5", "config": {"t5_model_name": T5_NAME, "max_length": c.t5_max_length}},
                    {"id": "seconds_start", "type": "number", "config": numbers},
                    {"id": "seconds_total", "type": "number", "config": numbers},
                ],
                "cond_dim": c.cond_dim,
            },
            "diffusion": {
                "cross_attention_cond_ids": _CROSS_IDS,
                "global_cond_ids": _GLOBAL_IDS,
                "type": "dit",
                "config": {**dit, "transformer_type": "continuous_transformer"},
            },
            "io_channels": d.io_channels,
        },
    }


def write_stable_audio(parts: StableAudioParts, path: str | Path) -> Path:
    """Write ``parts`` as a stable-audio-tools folder: ``model_config.json`` + ``model.safetensors``.

    Raises:
        ConfigError: the format cannot express a config (e.g. a rotary dim other than ``max(head_dim // 2, 32)``,
            a Fourier width other than 256).
        CheckpointMismatchError: a state that does not fit its config.
    """
    path = Path(path)
    config = config_to_stable_audio(parts)
    kept = configs_from_stable_audio(config, t5_path=parts.conditioner.t5_path)
    _check_expressible(parts, kept, "stable-audio-tools")
    encoder_state, decoder_state = _split_autoencoder(parts.autoencoder_state)
    state = sao_dit.dit_to_sao(parts.dit_state, sao_dit.SAO_PREFIX, parts.dit)
    state |= _rename(parts.conditioner_state, sao_conditioning.stable_audio_key_map)
    state |= oobleck.to_stable_audio(encoder_state, decoder_state, parts.autoencoder.oobleck, oobleck.SAO_PREFIX)
    path.mkdir(parents=True, exist_ok=True)
    _save_safetensors(path / SAO_WEIGHTS, state)
    _write_json(path / SAO_CONFIG, config)
    return path


# ------------------------------------------------------------------------------------------------------ diffusers


def _tokenizer_max_length(tokenizer_dir: Path) -> int | None:
    """``model_max_length`` of a saved tokenizer when it is a real bound (diffusers' pipeline pads to it)."""
    file = tokenizer_dir / "tokenizer_config.json"
    if not file.is_file():
        return None
    value = read_json(file).get("model_max_length")
    return value if isinstance(value, int) and 0 < value <= 1_000_000 else None


def _diffusers_configs(path: Path, t5_path: str | Path | None) -> StableAudioParts:
    """Configs only (empty states) from a diffusers pipeline folder."""
    index = read_json(path / DIFFUSERS_INDEX)
    if index.get("_class_name", "StableAudioPipeline") != "StableAudioPipeline":
        raise ConfigError(f"{path / DIFFUSERS_INDEX}: a {index['_class_name']!r}, not a StableAudioPipeline")
    if t5_path is None:
        cond = sao_conditioning.config_from_diffusers(path)
    else:
        t5, tokenizer = resolve_t5(t5_path)
        cond = sao_conditioning.config_from_diffusers(path, t5_path=str(t5))
        cond = dataclasses.replace(cond, t5_tokenizer_path=str(tokenizer) if tokenizer else None)
    length = _tokenizer_max_length(path / "tokenizer")  # the pipeline's tokenizer sets the prompt length
    cond = dataclasses.replace(cond, t5_max_length=length) if length else cond
    projection = read_json(path / "projection_model" / "config.json")
    if projection.get("_class_name", "StableAudioProjectionModel") != "StableAudioProjectionModel":
        raise ConfigError(f"{path}/projection_model: a {projection['_class_name']!r}, not a StableAudioProjectionModel")
    return StableAudioParts(
        dit=_explicit_rotary(sao_dit.config_from_diffusers(read_json(path / "transformer" / "config.json"))),
        dit_state={},
        conditioner=cond,
        conditioner_state={},
        autoencoder=_vae(oobleck.config_from_diffusers(read_json(path / "vae" / "config.json"))),
        autoencoder_state={},
    )


def _diffusers_weights(folder: Path) -> Path:
    weights = folder / DIFFUSERS_WEIGHTS
    if not weights.is_file() and any(folder.glob("*.bin")):
        raise ValueError(f"{folder}: only pickled .bin weights; {DIFFUSERS_WEIGHTS} is needed (pickles are not read)")
    return weights


def read_diffusers(path: str | Path, *, t5_path: str | Path | None = None) -> StableAudioParts:
    """Read a diffusers ``StableAudioPipeline`` folder.

    Args:
        path: the folder (``model_index.json``, ``transformer/``, ``projection_model/``, ``vae/``).
        t5_path: a local T5 directory to use instead of the folder's ``text_encoder/`` + ``tokenizer/``. With the
            folder's own tokenizer, prompts are padded to its ``model_max_length`` as diffusers does (else 128).

    Raises:
        FileNotFoundError: missing files (all are named).
        ValueError: pickled weights only.
        ConfigError: configs we cannot build.
        CheckpointMismatchError: weights that do not fit their configs.
    """
    path = Path(path)
    if not (path / DIFFUSERS_INDEX).is_file():
        raise FileNotFoundError(f"{path}: no {DIFFUSERS_INDEX} (a diffusers pipeline folder holds it)")
    folders = [path / name for name in ("transformer", "projection_model", "vae")]
    weights = [_diffusers_weights(f) for f in folders]
    needed = [f / "config.json" for f in folders] + weights
    if t5_path is None:
        needed += [path / "text_encoder" / "config.json", path / "tokenizer"]
    _require(needed, f"{path} (diffusers StableAudioPipeline)" + (" (or pass t5_path)" if t5_path is None else ""))
    parts = _diffusers_configs(path, t5_path)
    parts.dit_state = sao_dit.dit_from_diffusers(read_weights(weights[0]), parts.dit)
    parts.conditioner_state = sao_conditioning.from_diffusers(read_weights(weights[1]), Conditioner(parts.conditioner))
    parts.autoencoder_state = _join_autoencoder(
        *oobleck.from_diffusers(read_weights(weights[2]), parts.autoencoder.oobleck)
    )
    return parts


def _projection_config(parts: StableAudioParts) -> dict[str, Any]:
    c = parts.conditioner
    proj = parts.conditioner_state.get("text_proj.weight")
    text_dim = c.cond_dim if proj is None else proj.shape[1]  # (cond_dim, T5 width)
    return {
        "_class_name": DIFFUSERS_PARTS["projection_model"][1],
        "text_encoder_dim": int(text_dim),
        "conditioning_dim": c.cond_dim,
        "min_value": c.min_seconds,
        "max_value": c.max_seconds,
    }


def _t5_files(cfg: ConditionerConfig) -> dict[str, list[Path]]:
    """The files of the conditioner's T5 (config + safetensors) and of its tokenizer, by diffusers folder."""
    t5 = Path(cfg.t5_path).expanduser()
    tokenizer = Path(cfg.t5_tokenizer_path).expanduser() if cfg.t5_tokenizer_path else t5
    weights = [*sorted(t5.glob("*.safetensors")), *sorted(t5.glob("*.safetensors.index.json"))]
    tokenizer_files = [tokenizer / n for n in _TOKENIZER_FILES if (tokenizer / n).is_file()]
    if not (t5 / "config.json").is_file() or not weights or not tokenizer_files:
        raise FileNotFoundError(f"T5 to copy: need config.json and safetensors in {t5}, tokenizer files in {tokenizer}")
    return {"text_encoder": [t5 / "config.json", *weights], "tokenizer": tokenizer_files}


def _copy_t5(files: Mapping[str, list[Path]], path: Path, max_length: int) -> None:
    """Copy the T5 files into ``path`` and set the tokenizer's ``model_max_length`` (diffusers pads prompts to it)."""
    for folder, names in files.items():
        (path / folder).mkdir(exist_ok=True)
        for f in names:
            if f.resolve() != (path / folder / f.name).resolve():
                shutil.copyfile(f, path / folder / f.name)
    config_file = path / "tokenizer" / "tokenizer_config.json"
    if "tokenizer" in files and config_file.is_file():
        _write_json(config_file, read_json(config_file) | {"model_max_length": max_length})


def write_diffusers(parts: StableAudioParts, path: str | Path, *, copy_t5: bool = True) -> Path:
    """Write ``parts`` as a diffusers ``StableAudioPipeline`` folder.

    Args:
        parts: the model; its latent scale must be 1 (diffusers has none).
        path: the folder to write.
        copy_t5: copy the conditioner's T5 into ``text_encoder/`` and ``tokenizer/`` (the folder is then
            self-contained); without it, ``model_index.json`` lists no text encoder.

    Raises:
        ConfigError: what diffusers cannot express (a latent scale, ELU or tanh in the autoencoder, a rotary dim
            other than head_dim // 2...).
        CheckpointMismatchError: a state that does not fit its config.
    """
    path = Path(path)
    transformer = sao_dit.config_to_diffusers(parts.dit) | {"sample_size": SAMPLE_FRAMES}
    projection = _projection_config(parts)
    vae = oobleck.config_to_diffusers(parts.autoencoder.oobleck)
    # What a reader gets back: diffusers fixes the Fourier width, and only a copied tokenizer records the length.
    length = parts.conditioner.t5_max_length if copy_t5 else T5_MAX_LENGTH
    cond = dataclasses.replace(parts.conditioner, cond_dim=projection["conditioning_dim"], fourier_dim=FOURIER_DIM,
                               t5_max_length=length)  # fmt: skip
    kept = StableAudioParts(dit=sao_dit.config_from_diffusers(transformer), dit_state={}, conditioner=cond,
                            conditioner_state={}, autoencoder=_vae(oobleck.config_from_diffusers(vae)),
                            autoencoder_state={})  # fmt: skip
    _check_expressible(parts, kept, "diffusers' StableAudioPipeline")
    t5_files = _t5_files(parts.conditioner) if copy_t5 else {}
    encoder_state, decoder_state = _split_autoencoder(parts.autoencoder_state)
    states = {
        "transformer": sao_dit.dit_to_diffusers(parts.dit_state, parts.dit),
        "projection_model": _rename(parts.conditioner_state, sao_conditioning.diffusers_key_map),
        "vae": oobleck.to_diffusers(encoder_state, decoder_state, parts.autoencoder.oobleck),
    }
    for name, config in (("transformer", transformer), ("projection_model", projection), ("vae", vae)):
        (path / name).mkdir(parents=True, exist_ok=True)
        _save_safetensors(path / name / DIFFUSERS_WEIGHTS, states[name])
        _write_json(path / name / "config.json", config)
    (path / "scheduler").mkdir(exist_ok=True)
    _write_json(path / "scheduler" / "scheduler_config.json", _SCHEDULER)
    _copy_t5(t5_files, path, parts.conditioner.t5_max_length)
    names = ["transformer", "projection_model", "vae", "scheduler", *t5_files]
    index = {"_class_name": "StableAudioPipeline", "_diffusers_version": _DIFFUSERS_VERSION}
    _write_json(path / DIFFUSERS_INDEX, index | {n: list(DIFFUSERS_PARTS[n]) for n in names})
    return path
