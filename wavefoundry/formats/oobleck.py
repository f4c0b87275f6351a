"""Oobleck checkpoints: explicit key maps to and from stable-audio-tools and diffusers.

Our encoder/decoder state dicts (:class:`~wavefoundry.codecs.oobleck.OobleckEncoder` /
:class:`~wavefoundry.codecs.oobleck.OobleckDecoder`) convert to and from

* the stable-audio-tools layout, where encoder and decoder are ``nn.Sequential`` named ``layers``
  (``encoder.layers.1.layers.0.layers.1.weight_v``...), under ``pretransform.model.`` in the full Stable Audio
  Open checkpoint and without a prefix in a standalone autoencoder checkpoint;
* diffusers' ``AutoencoderOobleck`` (``encoder.block.0.res_unit1.conv1.weight_v``...), whose Snake parameters
  are (1, C, 1) where ours and stable-audio-tools' are (C,).

Leaf names (``weight_g``, ``weight_v``, ``bias``, ``alpha``, ``beta``) are the same everywhere. Every conversion is
strict: a missing or unexpected key or a wrong shape raises :class:`CheckpointMismatchError` naming the first
offending keys; nothing is ever loaded partially. Weights are read from safetensors; ``.ckpt``/``.pt`` files are
read with ``torch.load(weights_only=True)``, which refuses to unpickle code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from wavefoundry.codecs.oobleck import DILATIONS, OobleckConfig, OobleckDecoder, OobleckEncoder, oobleck_sao
from wavefoundry.config import ConfigError, atomic_write_bytes
from wavefoundry.formats.errors import CheckpointMismatchError as CheckpointMismatchError  # re-exported
from wavefoundry.formats.errors import check_state

#: Where the autoencoder sits in the full Stable Audio Open checkpoint.
SAO_PREFIX = "pretransform.model."
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"

State = dict[str, Tensor]
ShapeFn = Callable[[str, torch.Size], torch.Size]  # (our key, our shape) -> the other format's shape


def _unit_map(ours: str, theirs: str, names: tuple[str, str, str, str]) -> dict[str, str]:
    """A residual unit's four sub-modules (act1, conv1, act2, conv2) under both prefixes."""
    return {f"{ours}.{a}": f"{theirs}.{b}" for a, b in zip(("act1", "conv1", "act2", "conv2"), names)}


def _sao_modules(cfg: OobleckConfig) -> dict[str, str]:
    """Our module path -> stable-audio-tools module path, both starting with ``encoder.`` / ``decoder.``."""
    n = len(cfg.strides)
    seq = ("layers.0", "layers.1", "layers.2", "layers.3")
    out = {"encoder.stem": "encoder.layers.0", "decoder.stem": "decoder.layers.0"}
    for i in range(n):
        enc, dec = f"encoder.layers.{i + 1}.layers", f"decoder.layers.{i + 1}.layers"
        for j in range(len(DILATIONS)):
            out |= _unit_map(f"encoder.blocks.{i}.units.{j}", f"{enc}.{j}", tuple(f"layers.{k}" for k in range(4)))
            out |= _unit_map(f"decoder.blocks.{i}.units.{j}", f"{dec}.{j + 2}", seq)
        out |= {f"encoder.blocks.{i}.act": f"{enc}.3", f"encoder.blocks.{i}.down": f"{enc}.4"}
        out |= {f"decoder.blocks.{i}.act": f"{dec}.0", f"decoder.blocks.{i}.up": f"{dec}.1"}
    for part in ("encoder", "decoder"):
        out |= {f"{part}.act": f"{part}.layers.{n + 1}", f"{part}.proj": f"{part}.layers.{n + 2}"}
    return out


def _diffusers_modules(cfg: OobleckConfig) -> dict[str, str]:
    """Our module path -> diffusers ``AutoencoderOobleck`` module path."""
    unit = ("snake1", "conv1", "snake2", "conv2")
    out = {}
    for part in ("encoder", "decoder"):
        out |= {f"{part}.stem": f"{part}.conv1", f"{part}.act": f"{part}.snake1", f"{part}.proj": f"{part}.conv2"}
        for i in range(len(cfg.strides)):
            for j in range(len(DILATIONS)):
                out |= _unit_map(f"{part}.blocks.{i}.units.{j}", f"{part}.block.{i}.res_unit{j + 1}", unit)
            out[f"{part}.blocks.{i}.act"] = f"{part}.block.{i}.snake1"
    for i in range(len(cfg.strides)):
        out |= {
            f"encoder.blocks.{i}.down": f"encoder.block.{i}.conv1",
            f"decoder.blocks.{i}.up": f"decoder.block.{i}.conv_t1",
        }
    return out


def expected_shapes(cfg: OobleckConfig) -> dict[str, torch.Size]:
    """Our parameter names (``encoder.`` / ``decoder.`` prefixed) and shapes for ``cfg``, built on the meta device."""
    with torch.device("meta"):
        parts = {"encoder": OobleckEncoder(cfg), "decoder": OobleckDecoder(cfg)}
    return {f"{p}.{k}": v.shape for p, m in parts.items() for k, v in m.state_dict().items()}


def _key_map(modules: Mapping[str, str], shapes: Mapping[str, torch.Size], prefix: str) -> dict[str, str]:
    out = {}
    for key in shapes:
        module, leaf = key.rsplit(".", 1)
        out[key] = f"{prefix}{modules[module]}.{leaf}"
    return out


def stable_audio_key_map(cfg: OobleckConfig, prefix: str = "") -> dict[str, str]:
    """Our key (``encoder.stem.weight_g``...) -> stable-audio-tools key (``{prefix}encoder.layers.0.weight_g``...)."""
    return _key_map(_sao_modules(cfg), expected_shapes(cfg), prefix)


def diffusers_key_map(cfg: OobleckConfig) -> dict[str, str]:
    """Our key (``encoder.stem.weight_g``...) -> diffusers key (``encoder.conv1.weight_g``...)."""
    return _key_map(_diffusers_modules(cfg), expected_shapes(cfg), "")


def _is_snake(key: str) -> bool:
    return key.endswith((".alpha", ".beta"))


def _diffusers_shape(key: str, shape: torch.Size) -> torch.Size:
    """diffusers keeps Snake parameters as (1, C, 1); ours are (C,)."""
    return torch.Size((1, *shape, 1)) if _is_snake(key) else shape


def _same_shape(key: str, shape: torch.Size) -> torch.Size:
    return shape


def _split(ours: State) -> tuple[State, State]:
    enc = {k.removeprefix("encoder."): v for k, v in ours.items() if k.startswith("encoder.")}
    dec = {k.removeprefix("decoder."): v for k, v in ours.items() if k.startswith("decoder.")}
    return enc, dec


def _join(encoder_state: Mapping[str, Tensor], decoder_state: Mapping[str, Tensor], shapes: Mapping) -> State:
    """Our two state dicts as one ``encoder.`` / ``decoder.`` prefixed dict, checked against ``shapes``."""
    ours = {f"encoder.{k}": v for k, v in encoder_state.items()} | {f"decoder.{k}": v for k, v in decoder_state.items()}
    fused = any(k.endswith(".weight") for k in ours)
    hint = " (weight norm was removed: convert the state dicts before remove_weight_norm())" if fused else ""
    check_state(ours, shapes, "our Oobleck state", hint)
    return ours


def _import(
    theirs: Mapping[str, Tensor],
    cfg: OobleckConfig,
    *,
    modules: dict[str, str],
    prefix: str,
    shape_of: ShapeFn,
    what: str,
    hint: str = "",
) -> tuple[State, State]:
    shapes = expected_shapes(cfg)
    key_map = _key_map(modules, shapes, prefix)
    want = {key_map[k]: shape_of(k, s) for k, s in shapes.items()}
    check_state(theirs, want, what, hint)
    return _split({k: theirs[key_map[k]].reshape(s).contiguous() for k, s in shapes.items()})


def _export(
    encoder_state: Mapping[str, Tensor],
    decoder_state: Mapping[str, Tensor],
    cfg: OobleckConfig,
    *,
    modules: dict[str, str],
    prefix: str,
    shape_of: ShapeFn,
) -> State:
    shapes = expected_shapes(cfg)
    ours = _join(encoder_state, decoder_state, shapes)
    key_map = _key_map(modules, shapes, prefix)
    return {key_map[k]: v.reshape(shape_of(k, v.shape)).contiguous() for k, v in ours.items()}


def from_stable_audio(state: Mapping[str, Tensor], cfg: OobleckConfig, prefix: str = SAO_PREFIX) -> tuple[State, State]:
    """Our (encoder_state, decoder_state) from a stable-audio-tools state dict.

    Args:
        state: the checkpoint's state dict; with a non-empty ``prefix`` only keys under it are looked at (the
            rest of a full Stable Audio Open checkpoint is the diffusion model), and all of those must map.
        cfg: the architecture the weights must fit.
        prefix: ``"pretransform.model."`` for a full Stable Audio Open checkpoint, ``""`` for a standalone
            autoencoder checkpoint.

    Raises:
        CheckpointMismatchError: missing or unexpected keys (under ``prefix``) or wrong shapes.
    """
    scoped = {k: v for k, v in state.items() if k.startswith(prefix)}
    hint = ""
    if not prefix and any(k.startswith(SAO_PREFIX) for k in state):
        hint = f" (a full Stable Audio Open checkpoint: pass prefix={SAO_PREFIX!r})"
    elif prefix and not scoped:
        hint = f" (no key starts with {prefix!r}; a standalone autoencoder checkpoint needs prefix='')"
    return _import(
        scoped,
        cfg,
        modules=_sao_modules(cfg),
        prefix=prefix,
        shape_of=_same_shape,
        what="stable-audio-tools checkpoint",
        hint=hint,
    )


def to_stable_audio(
    encoder_state: Mapping[str, Tensor], decoder_state: Mapping[str, Tensor], cfg: OobleckConfig, prefix: str = ""
) -> State:
    """A stable-audio-tools state dict (keys ``{prefix}encoder.layers...``) from our two state dicts.

    Raises:
        CheckpointMismatchError: our states do not fit ``cfg`` (also after ``remove_weight_norm()``).
    """
    return _export(encoder_state, decoder_state, cfg, modules=_sao_modules(cfg), prefix=prefix, shape_of=_same_shape)


def from_diffusers(state: Mapping[str, Tensor], cfg: OobleckConfig) -> tuple[State, State]:
    """Our (encoder_state, decoder_state) from a diffusers ``AutoencoderOobleck`` state dict.

    Raises:
        CheckpointMismatchError: missing or unexpected keys or wrong shapes.
    """
    return _import(
        state,
        cfg,
        modules=_diffusers_modules(cfg),
        prefix="",
        shape_of=_diffusers_shape,
        what="diffusers AutoencoderOobleck state",
    )


def to_diffusers(encoder_state: Mapping[str, Tensor], decoder_state: Mapping[str, Tensor], cfg: OobleckConfig) -> State:
    """A diffusers ``AutoencoderOobleck`` state dict from our two state dicts.

    Raises:
        ConfigError: diffusers cannot represent ``cfg`` (see :func:`config_to_diffusers`).
        CheckpointMismatchError: our states do not fit ``cfg``.
    """
    config_to_diffusers(cfg)
    return _export(
        encoder_state, decoder_state, cfg, modules=_diffusers_modules(cfg), prefix="", shape_of=_diffusers_shape
    )


#: diffusers ``AutoencoderOobleck.__init__`` arguments and their defaults (Stable Audio Open's).
DIFFUSERS_DEFAULTS: dict[str, Any] = {
    "encoder_hidden_size": 128,
    "downsampling_ratios": [2, 4, 4, 8, 8],
    "channel_multiples": [1, 2, 4, 8, 16],
    "decoder_channels": 128,
    "decoder_input_channels": 64,
    "audio_channels": 2,
    "sampling_rate": 44100,
}


def config_from_diffusers(config: Mapping[str, Any]) -> OobleckConfig:
    """An :class:`OobleckConfig` from a diffusers ``AutoencoderOobleck`` ``config.json`` dict.

    Raises:
        ConfigError: another class, unknown keys, or encoder and decoder widths that differ (ours share one).
    """
    cls = config.get("_class_name", "AutoencoderOobleck")
    if cls != "AutoencoderOobleck":
        raise ConfigError(f"diffusers config is for {cls!r}, not AutoencoderOobleck")
    unknown = sorted(k for k in config if not k.startswith("_") and k not in DIFFUSERS_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"diffusers AutoencoderOobleck config: unknown keys {unknown}; valid: {sorted(DIFFUSERS_DEFAULTS)}"
        )
    c = DIFFUSERS_DEFAULTS | dict(config)
    if c["encoder_hidden_size"] != c["decoder_channels"]:
        raise ConfigError(
            f"encoder_hidden_size={c['encoder_hidden_size']} != decoder_channels={c['decoder_channels']}: "
            "OobleckConfig has one width for both"
        )
    return OobleckConfig(
        sample_rate=c["sampling_rate"],
        audio_channels=c["audio_channels"],
        channels=c["encoder_hidden_size"],
        c_mults=tuple(c["channel_multiples"]),
        strides=tuple(c["downsampling_ratios"]),
        latent_dim=c["decoder_input_channels"],
        encoder_out_dim=c["encoder_hidden_size"],  # diffusers ties the encoder's output width to its hidden size
    )


def config_to_diffusers(cfg: OobleckConfig) -> dict[str, Any]:
    """The diffusers ``AutoencoderOobleck`` config dict for ``cfg``.

    Raises:
        ConfigError: ``cfg`` uses what diffusers lacks: ELU, a final tanh, or encoder_out_dim != channels.
    """
    if not cfg.use_snake or cfg.final_tanh or cfg.encoder_out_dim != cfg.channels:
        raise ConfigError(
            "diffusers' AutoencoderOobleck needs use_snake=True, final_tanh=False and encoder_out_dim == channels; "
            f"got use_snake={cfg.use_snake}, final_tanh={cfg.final_tanh}, encoder_out_dim={cfg.encoder_out_dim}, "
            f"channels={cfg.channels}"
        )
    return {
        "_class_name": "AutoencoderOobleck",
        "encoder_hidden_size": cfg.channels,
        "downsampling_ratios": list(cfg.strides),
        "channel_multiples": list(cfg.c_mults),
        "decoder_channels": cfg.channels,
        "decoder_input_channels": cfg.latent_dim,
        "audio_channels": cfg.audio_channels,
        "sampling_rate": cfg.sample_rate,
    }


# stable-audio-tools' constructor defaults, used where a model config leaves a key out.
_SAT_ENCODER = {
    "in_channels": 2,
    "channels": 128,
    "c_mults": [1, 2, 4, 8],
    "strides": [2, 4, 8, 8],
    "latent_dim": 32,
    "use_snake": False,
    "antialias_activation": False,
}
_SAT_DECODER = {
    "out_channels": 2,
    "channels": 128,
    "c_mults": [1, 2, 4, 8],
    "strides": [2, 4, 8, 8],
    "latent_dim": 32,
    "use_snake": False,
    "antialias_activation": False,
    "use_nearest_upsample": False,
    "final_tanh": True,
}


def _sat_part(ae: Mapping[str, Any], part: str, defaults: dict[str, Any]) -> dict[str, Any]:
    spec = ae.get(part)
    if not isinstance(spec, Mapping) or spec.get("type") != "oobleck":
        raise ConfigError(f"stable-audio-tools config: {part} must be of type 'oobleck', got {spec!r:.80}")
    conf = dict(spec.get("config", {}))
    unknown = sorted(set(conf) - set(defaults))
    if unknown:
        raise ConfigError(f"stable-audio-tools {part} config: unknown keys {unknown}; valid: {sorted(defaults)}")
    return defaults | conf


def config_from_stable_audio(model_config: Mapping[str, Any]) -> OobleckConfig:
    """An :class:`OobleckConfig` from a stable-audio-tools ``model_config.json`` dict.

    Accepts a full model config (the autoencoder is ``model.pretransform.config``) or an autoencoder one.

    Raises:
        ConfigError: not an Oobleck autoencoder, features we do not implement (anti-aliased activations,
            nearest-neighbour upsampling), or encoder and decoder shapes that disagree.
    """
    model = model_config.get("model", {})
    ae = model["pretransform"].get("config", {}) if "pretransform" in model else model
    enc, dec = _sat_part(ae, "encoder", _SAT_ENCODER), _sat_part(ae, "decoder", _SAT_DECODER)
    if enc["antialias_activation"] or dec["antialias_activation"] or dec["use_nearest_upsample"]:
        raise ConfigError("stable-audio-tools config: antialias_activation and use_nearest_upsample are not supported")
    for key in ("channels", "c_mults", "strides", "use_snake"):
        if _as_list(enc[key]) != _as_list(dec[key]):
            raise ConfigError(f"stable-audio-tools config: encoder {key}={enc[key]} != decoder {key}={dec[key]}")
    if enc["in_channels"] != dec["out_channels"]:
        raise ConfigError(f"encoder in_channels={enc['in_channels']} != decoder out_channels={dec['out_channels']}")
    return OobleckConfig(
        sample_rate=model_config.get("sample_rate", 44100),
        audio_channels=enc["in_channels"],
        channels=enc["channels"],
        c_mults=tuple(enc["c_mults"]),
        strides=tuple(enc["strides"]),
        latent_dim=dec["latent_dim"],
        encoder_out_dim=enc["latent_dim"],
        use_snake=enc["use_snake"],
        final_tanh=dec["final_tanh"],
    )


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def read_weights(path: str | Path, prefix: str = "") -> State:
    """Tensors whose keys start with ``prefix`` from a ``.safetensors`` file (read lazily: only those keys load)
    or a ``.ckpt``/``.pt``/``.pth`` file (``torch.load(weights_only=True)``; a Lightning ``state_dict`` entry is used).

    Raises:
        FileNotFoundError: no such file.
        ValueError: another file type.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}  # noqa: SIM118
    if path.suffix in (".ckpt", ".pt", ".pth"):
        obj = torch.load(path, map_location="cpu", weights_only=True)
        state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
        return {k: v for k, v in state.items() if k.startswith(prefix) and isinstance(v, Tensor)}
    raise ValueError(f"{path}: unsupported checkpoint type {path.suffix!r} (use .safetensors, .ckpt, .pt or .pth)")


def _safetensors_keys(path: Path) -> list[str]:
    if path.suffix != ".safetensors":
        return list(read_weights(path))
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return list(f.keys())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg})") from None


def load_stable_audio(
    path: str | Path, cfg: OobleckConfig | None = None, prefix: str | None = None
) -> tuple[OobleckConfig, State, State]:
    """Load the autoencoder of a stable-audio-tools checkpoint, e.g. Stable Audio Open 1.0's ``model.safetensors``.

    Args:
        path: the weights file, or a folder holding ``model.safetensors`` (or ``model.ckpt``).
        cfg: the architecture; default: from ``model_config.json`` next to the weights if present, else
            :func:`~wavefoundry.codecs.oobleck.oobleck_sao`.
        prefix: key prefix of the autoencoder; default: ``"pretransform.model."`` if the file has such keys
            (a full Stable Audio Open checkpoint), else ``""``.

    Returns:
        (cfg, encoder_state, decoder_state) for ``OobleckEncoder(cfg).load_state_dict(...)`` and the decoder's.
    """
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in ("model.safetensors", "model.ckpt") if (path / n).is_file()]
        if not found:
            raise FileNotFoundError(f"{path}: no model.safetensors or model.ckpt in this folder")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if cfg is None:
        config_path = path.parent / "model_config.json"
        cfg = config_from_stable_audio(_read_json(config_path)) if config_path.is_file() else oobleck_sao()
    if prefix is None:
        prefix = SAO_PREFIX if any(k.startswith(SAO_PREFIX) for k in _safetensors_keys(path)) else ""
    encoder_state, decoder_state = from_stable_audio(read_weights(path, prefix), cfg, prefix)
    return cfg, encoder_state, decoder_state


def load_diffusers_folder(path: str | Path) -> tuple[OobleckConfig, State, State]:
    """Load a diffusers ``AutoencoderOobleck`` folder (``config.json`` + ``diffusion_pytorch_model.safetensors``).

    Args:
        path: the VAE folder, or a pipeline folder with a ``vae/`` subfolder.

    Returns:
        (cfg, encoder_state, decoder_state).

    Raises:
        FileNotFoundError: no config or no safetensors weights (``.bin`` pickles are not read).
        ConfigError: a config we cannot represent.
        CheckpointMismatchError: weights that do not fit the config.
    """
    path = Path(path)
    if not (path / "config.json").is_file() and (path / "vae" / "config.json").is_file():
        path = path / "vae"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json (not a diffusers model folder)")
    weights = path / DIFFUSERS_WEIGHTS
    if not weights.is_file():
        found = sorted(p.name for p in path.iterdir())
        raise FileNotFoundError(
            f"{path}: no {DIFFUSERS_WEIGHTS} (found: {', '.join(found)}); only safetensors are read"
        )
    cfg = config_from_diffusers(_read_json(path / "config.json"))
    encoder_state, decoder_state = from_diffusers(read_weights(weights), cfg)
    return cfg, encoder_state, decoder_state


def save_diffusers_folder(
    path: str | Path, encoder_state: Mapping[str, Tensor], decoder_state: Mapping[str, Tensor], cfg: OobleckConfig
) -> None:
    """Write a folder that diffusers' ``AutoencoderOobleck.from_pretrained`` loads (files written atomically)."""
    path = Path(path)
    state = to_diffusers(encoder_state, decoder_state, cfg)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu() for k, v in state.items()}
    atomic_write_bytes(path / DIFFUSERS_WEIGHTS, safetensors_bytes(tensors))
    atomic_write_bytes(path / "config.json", (json.dumps(config_to_diffusers(cfg), indent=2) + "\n").encode())
