"""Stable Audio Open DiT checkpoints: explicit key maps to and from stable-audio-tools and diffusers.

Our :class:`~wavefoundry.diffusion.dit.DiT` state dict converts to and from

* the stable-audio-tools layout (``DiffusionTransformer`` + ``ContinuousTransformer``), under ``model.model.`` in
  the full Stable Audio Open checkpoint: ``transformer.layers.N.self_attn.to_qkv.weight``,
  ``transformer.layers.N.cross_attn.to_kv.weight``, ``transformer.layers.N.ff.ff.0.proj.weight``,
  ``transformer.layers.N.pre_norm.gamma``, ``to_timestep_embed.0.weight``, ``timestep_features.weight`` (F/2, 1)...
  Its LayerNorms also store a ``beta`` buffer of zeros and the transformer a rotary ``inv_freq`` buffer: both
  are derived, not learned, so they may be absent on import and are checked (zeros; the standard frequencies)
  when present. On export ``beta`` is always written and ``inv_freq`` when ``cfg`` is given;
* diffusers' ``StableAudioDiTModel`` (``transformer_blocks.N.attn1.to_q.weight``...), which stores the fused
  qkv and kv projections split (``to_q``/``to_k``/``to_v``) and LayerNorm biases ``normK.bias`` that must be
  zero (ours are bias-free, as stable-audio-tools').

A key map takes one of our keys to a tuple of outside keys; several outside keys are our tensor split along dim 0.
The depth is read from the keys unless ``cfg`` is given, which also checks every shape. Every conversion is
strict: a missing or unexpected key, a wrong shape or a non-zero bias raises :class:`CheckpointMismatchError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from wavefoundry.config import ConfigError
from wavefoundry.diffusion.dit import DiT, DiTConfig
from wavefoundry.formats.errors import CheckpointMismatchError, check_state
from wavefoundry.nn.rope import rope_inv_freq

#: Where the DiT sits in the full Stable Audio Open checkpoint.
SAO_PREFIX = "model.model."
State = dict[str, Tensor]
KeyMap = dict[str, tuple[str, ...]]

#: Our parameter names outside the blocks, and inside block N (under ``blocks.N.``).
TOP_KEYS = (
    "timestep_features.weight",
    *(f"timestep_mlp.{i}.{leaf}" for i in (0, 2) for leaf in ("weight", "bias")),
    *(f"{mlp}.{i}.weight" for mlp in ("global_mlp", "cond_mlp") for i in (0, 2)),
    "preprocess_conv.weight",
    "proj_in.weight",
    "proj_out.weight",
    "postprocess_conv.weight",
)
BLOCK_KEYS = (
    "attn_norm.weight",
    "self_attn.to_qkv.weight",
    "self_attn.to_out.weight",
    "cross_norm.weight",
    "cross_attn.to_q.weight",
    "cross_attn.to_kv.weight",
    "cross_attn.to_out.weight",
    "ff_norm.weight",
    "ff.proj_in.weight",
    "ff.proj_in.bias",
    "ff.proj_out.weight",
    "ff.proj_out.bias",
)

_SAO_TOP = {
    "timestep_features": "timestep_features",
    "timestep_mlp": "to_timestep_embed",
    "global_mlp": "to_global_embed",
    "cond_mlp": "to_cond_embed",
    "preprocess_conv": "preprocess_conv",
    "proj_in": "transformer.project_in",
    "proj_out": "transformer.project_out",
    "postprocess_conv": "postprocess_conv",
}
_SAO_BLOCK = {
    "attn_norm.weight": ("pre_norm.gamma",),
    "cross_norm.weight": ("cross_attend_norm.gamma",),
    "ff_norm.weight": ("ff_norm.gamma",),
    "ff.proj_in.weight": ("ff.ff.0.proj.weight",),
    "ff.proj_in.bias": ("ff.ff.0.proj.bias",),
    "ff.proj_out.weight": ("ff.ff.2.weight",),
    "ff.proj_out.bias": ("ff.ff.2.bias",),
}  # the attention keys are the same in both
_SAO_NORMS = ("pre_norm", "cross_attend_norm", "ff_norm")  # each with a zero beta buffer
_SAO_INV_FREQ = "transformer.rotary_pos_emb.inv_freq"

_DIFFUSERS_TOP = {
    "timestep_features": "time_proj",
    "timestep_mlp": "timestep_proj",
    "global_mlp": "global_proj",
    "cond_mlp": "cross_attention_proj",
    "preprocess_conv": "preprocess_conv",
    "proj_in": "proj_in",
    "proj_out": "proj_out",
    "postprocess_conv": "postprocess_conv",
}
_DIFFUSERS_BLOCK = {
    "attn_norm.weight": ("norm1.weight",),
    "self_attn.to_qkv.weight": ("attn1.to_q.weight", "attn1.to_k.weight", "attn1.to_v.weight"),
    "self_attn.to_out.weight": ("attn1.to_out.0.weight",),
    "cross_norm.weight": ("norm2.weight",),
    "cross_attn.to_q.weight": ("attn2.to_q.weight",),
    "cross_attn.to_kv.weight": ("attn2.to_k.weight", "attn2.to_v.weight"),
    "cross_attn.to_out.weight": ("attn2.to_out.0.weight",),
    "ff_norm.weight": ("norm3.weight",),
    "ff.proj_in.weight": ("ff.net.0.proj.weight",),
    "ff.proj_in.bias": ("ff.net.0.proj.bias",),
    "ff.proj_out.weight": ("ff.net.2.weight",),
    "ff.proj_out.bias": ("ff.net.2.bias",),
}
_DIFFUSERS_NORMS = ("norm1", "norm2", "norm3")  # each with a bias that must be zero


def _map(depth: int, top: Mapping[str, str], block: Mapping[str, tuple[str, ...]], layers: str) -> KeyMap:
    out = {}
    for key in TOP_KEYS:
        module, leaf = key.split(".", 1)
        out[key] = (f"{top[module]}.{leaf}",)
    for i in range(depth):
        out |= {f"blocks.{i}.{k}": tuple(f"{layers}.{i}.{t}" for t in block.get(k, (k,))) for k in BLOCK_KEYS}
    return out


def sao_key_map(depth: int, prefix: str = SAO_PREFIX) -> KeyMap:
    """Our key -> stable-audio-tools key(s) (``{prefix}transformer.layers.N...``) for a DiT of ``depth`` blocks."""
    return {
        k: tuple(prefix + t for t in ts) for k, ts in _map(depth, _SAO_TOP, _SAO_BLOCK, "transformer.layers").items()
    }


def diffusers_key_map(depth: int) -> KeyMap:
    """Our key -> diffusers ``StableAudioDiTModel`` key(s); fused projections map to several keys."""
    return _map(depth, _DIFFUSERS_TOP, _DIFFUSERS_BLOCK, "transformer_blocks")


def expected_shapes(cfg: DiTConfig) -> dict[str, torch.Size]:
    """Our parameter names and shapes for ``cfg``, built on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = DiT(cfg)
    return {k: v.shape for k, v in model.state_dict().items()}


def _depth(keys: Any, pattern: str) -> int:
    found = [int(m.group(1)) for k in keys if (m := re.match(pattern, k))]
    return max(found) + 1 if found else 0


def _check_keys(state: Mapping[str, Tensor], required: list[str], optional: list[str], what: str, hint: str) -> None:
    """Raise unless ``state`` holds every required key and nothing beyond required and optional ones."""
    expected = {k: state[k].shape if k in state else torch.Size() for k in required}
    expected |= {k: state[k].shape for k in optional if k in state}
    check_state(state, expected, what, hint)


def _check_zero(state: Mapping[str, Tensor], keys: list[str], what: str) -> None:
    nonzero = [k for k in keys if k in state and bool(state[k].any())]
    if nonzero:
        raise CheckpointMismatchError(
            f"{what}: LayerNorm biases must be zero (our DiT's LayerNorms are bias-free, as stable-audio-tools'); "
            f"non-zero: {', '.join(nonzero[:5])}"
        )


def _join(theirs: Mapping[str, Tensor], keys: tuple[str, ...], what: str) -> Tensor:
    if len(keys) == 1:
        return theirs[keys[0]]
    shapes = {tuple(theirs[k].shape) for k in keys}
    if len(shapes) > 1:
        raise CheckpointMismatchError(f"{what}: {', '.join(keys)} should have equal shapes, got {sorted(shapes)}")
    return torch.cat([theirs[k] for k in keys], dim=0)


def _import(
    theirs: Mapping[str, Tensor], key_map: KeyMap, zeros: list[str], optional: list[str], what: str, hint: str
) -> State:
    """Our state from ``theirs``; keys in ``zeros`` must hold zeros, those in ``optional`` may be absent."""
    required = [t for ts in key_map.values() for t in ts] + [z for z in zeros if z not in optional]
    _check_keys(theirs, required, optional, what, hint)
    _check_zero(theirs, zeros, what)
    ours = {k: _join(theirs, ts, what) for k, ts in key_map.items()}
    ours["timestep_features.weight"] = ours["timestep_features.weight"].reshape(-1)  # SAO keeps (F/2, 1)
    return ours


def our_keys(depth: int) -> list[str]:
    """Our parameter names for a DiT of ``depth`` blocks."""
    return [*TOP_KEYS, *(f"blocks.{i}.{k}" for i in range(depth) for k in BLOCK_KEYS)]


def _check_ours(ours: Mapping[str, Tensor], cfg: DiTConfig | None) -> int:
    """The depth of our state ``ours``, after checking its keys (and with ``cfg``, its shapes)."""
    if cfg is not None:
        check_state(ours, expected_shapes(cfg), "our DiT state")
        return cfg.depth
    depth = _depth(ours, r"blocks\.(\d+)\.")
    _check_keys(ours, our_keys(depth), [], "our DiT state", "")
    return depth


def _export(ours: Mapping[str, Tensor], key_map: KeyMap) -> State:
    theirs = {}
    for k, ts in key_map.items():
        v = ours[k]
        if len(ts) == 1:
            theirs[ts[0]] = v
            continue
        if v.shape[0] % len(ts):
            raise CheckpointMismatchError(f"our DiT state: {k} {tuple(v.shape)} does not split into {len(ts)} parts")
        # Cloned so that the parts do not share storage (safetensors refuses shared tensors).
        theirs |= {t: p.clone() for t, p in zip(ts, v.chunk(len(ts), dim=0))}
    return theirs


def _add_zero_biases(theirs: State, norms: list[str], weight: str, bias: str) -> State:
    """Zeros shaped like each norm's weight, under the norm's bias name."""
    for norm in norms:
        theirs[f"{norm}.{bias}"] = torch.zeros_like(theirs[f"{norm}.{weight}"])
    return theirs


def _finish(ours: State, cfg: DiTConfig | None, what: str) -> State:
    if cfg is not None:
        check_state(ours, expected_shapes(cfg), f"{what} (in our names)")
    return ours


def dit_from_sao(state: Mapping[str, Tensor], prefix: str = SAO_PREFIX, cfg: DiTConfig | None = None) -> State:
    """Our DiT state dict from a stable-audio-tools state dict.

    Args:
        state: the checkpoint's state dict; only keys under ``prefix`` are looked at (the rest of a full Stable
            Audio Open checkpoint is the conditioners and the autoencoder), and all of those must map.
        prefix: ``"model.model."`` for a full Stable Audio Open checkpoint, ``""`` for a bare DiT state dict.
        cfg: the architecture; checks shapes and the rotary frequencies too. None: depth from the keys.

    Raises:
        CheckpointMismatchError: missing or unexpected keys, wrong shapes, non-zero LayerNorm ``beta`` or
            rotary frequencies other than the standard ones.
    """
    scoped = {k: v for k, v in state.items() if k.startswith(prefix)}
    hint = f" (no key starts with {prefix!r}; a bare DiT state dict needs prefix='')" if not scoped else ""
    depth = cfg.depth if cfg is not None else _depth(scoped, re.escape(prefix) + r"transformer\.layers\.(\d+)\.")
    zeros = [f"{prefix}transformer.layers.{i}.{n}.beta" for i in range(depth) for n in _SAO_NORMS]
    inv_freq = prefix + _SAO_INV_FREQ
    what = "stable-audio-tools DiT checkpoint"
    ours = _import(scoped, sao_key_map(depth, prefix), zeros, [*zeros, inv_freq], what, hint)
    if inv_freq in scoped:
        freqs = scoped[inv_freq].float()
        dim = cfg.rot_dim if cfg is not None else 2 * freqs.numel()
        want = rope_inv_freq(dim, cfg.rope_base if cfg is not None else 10000.0)
        if freqs.shape != want.shape or not torch.allclose(freqs, want, rtol=1e-4):
            raise CheckpointMismatchError(f"{what}: {inv_freq} differs from the rotary frequencies of dim {dim}")
    return _finish(ours, cfg, what)


def dit_to_sao(state: Mapping[str, Tensor], prefix: str = SAO_PREFIX, cfg: DiTConfig | None = None) -> State:
    """A stable-audio-tools state dict (``{prefix}transformer.layers...``) from our DiT state dict.

    Writes the LayerNorms' zero ``beta`` buffers, and with ``cfg`` the rotary ``inv_freq`` buffer, so that
    stable-audio-tools loads the result strictly. ``prefix=""`` gives a bare ``DiffusionTransformer`` state dict.

    Raises:
        CheckpointMismatchError: our state does not fit ``cfg`` (or has missing/unexpected keys).
    """
    depth = _check_ours(state, cfg)
    theirs = _export(state, sao_key_map(depth, prefix))
    theirs[prefix + "timestep_features.weight"] = state["timestep_features.weight"].reshape(-1, 1)
    norms = [f"{prefix}transformer.layers.{i}.{n}" for i in range(depth) for n in _SAO_NORMS]
    _add_zero_biases(theirs, norms, "gamma", "beta")
    if cfg is not None:
        theirs[prefix + _SAO_INV_FREQ] = rope_inv_freq(cfg.rot_dim, cfg.rope_base)
    return theirs


def dit_from_diffusers(state: Mapping[str, Tensor], cfg: DiTConfig | None = None) -> State:
    """Our DiT state dict from a diffusers ``StableAudioDiTModel`` state dict (q, k, v and k, v concatenated).

    Raises:
        CheckpointMismatchError: missing or unexpected keys, wrong shapes or non-zero LayerNorm biases.
    """
    depth = cfg.depth if cfg is not None else _depth(state, r"transformer_blocks\.(\d+)\.")
    zeros = [f"transformer_blocks.{i}.{n}.bias" for i in range(depth) for n in _DIFFUSERS_NORMS]
    what = "diffusers StableAudioDiTModel state"
    return _finish(_import(state, diffusers_key_map(depth), zeros, [], what, ""), cfg, what)


def dit_to_diffusers(state: Mapping[str, Tensor], cfg: DiTConfig | None = None) -> State:
    """A diffusers ``StableAudioDiTModel`` state dict from ours: fused projections split, zero norm biases added.

    Raises:
        CheckpointMismatchError: our state does not fit ``cfg`` (or has missing/unexpected keys).
    """
    depth = _check_ours(state, cfg)
    norms = [f"transformer_blocks.{i}.{n}" for i in range(depth) for n in _DIFFUSERS_NORMS]
    return _add_zero_biases(_export(state, diffusers_key_map(depth)), norms, "weight", "bias")


def config_to_diffusers(cfg: DiTConfig) -> dict[str, Any]:
    """The diffusers ``StableAudioDiTModel`` config dict for ``cfg``.

    Raises:
        ConfigError: what diffusers cannot express: its pipeline rotates ``head_dim // 2`` features with base
            10000, and its blocks use a 4x feed-forward and LayerNorm eps 1e-5.
    """
    fixed = {"rot_dim": cfg.head_dim // 2, "rope_base": 10000.0, "ff_mult": 4, "norm_eps": 1e-5}
    actual = {"rot_dim": cfg.rot_dim, "rope_base": cfg.rope_base, "ff_mult": cfg.ff_mult, "norm_eps": cfg.norm_eps}
    if actual != fixed:
        raise ConfigError(f"diffusers' StableAudioDiTModel needs {fixed}; got {actual}")
    return {
        "_class_name": "StableAudioDiTModel",
        "in_channels": cfg.io_channels,
        "out_channels": cfg.io_channels,
        "num_layers": cfg.depth,
        "attention_head_dim": cfg.head_dim,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_attention_heads": cfg.kv_heads,
        "cross_attention_dim": cfg.cond_embed_dim,
        "cross_attention_input_dim": cfg.cond_token_dim,
        "global_states_input_dim": cfg.global_cond_dim,
        "time_proj_dim": cfg.timestep_features_dim,
    }


def config_from_diffusers(config: Mapping[str, Any]) -> DiTConfig:
    """A :class:`DiTConfig` from a diffusers ``StableAudioDiTModel`` ``config.json`` dict (rotary dim head_dim // 2).

    Raises:
        ConfigError: another class, in/out channels that differ, kv heads other than
            ``cross_attention_dim // head_dim``, or a cross-attention width that is neither the input width nor
            the model width.
    """
    if config.get("_class_name", "StableAudioDiTModel") != "StableAudioDiTModel":
        raise ConfigError(f"diffusers config is for {config['_class_name']!r}, not StableAudioDiTModel")
    c = {k: v for k, v in config.items() if not k.startswith("_")}
    hd, heads = c.get("attention_head_dim", 64), c.get("num_attention_heads", 24)
    io, out = c.get("in_channels", 64), c.get("out_channels", 64)
    cross, cross_in = c.get("cross_attention_dim", 768), c.get("cross_attention_input_dim", 768)
    kv = c.get("num_key_value_attention_heads", 12)
    if io != out or kv * hd != cross or cross not in (cross_in, hd * heads):
        raise ConfigError(
            f"StableAudioDiTModel config not expressible: in_channels={io}, out_channels={out}, "
            f"num_key_value_attention_heads={kv} x attention_head_dim={hd} vs cross_attention_dim={cross}, "
            f"cross_attention_input_dim={cross_in}"
        )
    return DiTConfig(
        io_channels=io,
        embed_dim=hd * heads,
        depth=c.get("num_layers", 24),
        num_heads=heads,
        cond_token_dim=cross_in,
        global_cond_dim=c.get("global_states_input_dim", 1536),
        project_cond_tokens=cross != cross_in,
        timestep_features_dim=c.get("time_proj_dim", 256),
        rotary_dim=hd // 2,
    )


#: stable-audio-tools ``DiffusionTransformer`` arguments we implement, with the values we support.
_SAT_FIXED = {
    "transformer_type": "continuous_transformer",
    "patch_size": 1,
    "input_concat_dim": 0,
    "prepend_cond_dim": 0,
    "global_cond_type": "prepend",
    "project_global_cond": True,
    "timestep_cond_type": "global",
    "diffusion_objective": "v",
}
_SAT_SIZES = ("io_channels", "embed_dim", "depth", "num_heads", "cond_token_dim", "global_cond_dim")


def config_from_stable_audio(model_config: Mapping[str, Any]) -> DiTConfig:
    """A :class:`DiTConfig` from a stable-audio-tools ``model_config.json`` dict (full model or diffusion part).

    Raises:
        ConfigError: not a ``dit`` diffusion model, or options we do not implement (other transformer types,
            patching, prepend/input-concat conditioning, adaLN, unknown keys).
    """
    diffusion = model_config.get("model", {}).get("diffusion", model_config)
    if diffusion.get("type") != "dit":
        raise ConfigError(f"stable-audio-tools config: diffusion type must be 'dit', got {diffusion.get('type')!r}")
    conf = dict(diffusion.get("config", {}))
    unknown = sorted(set(conf) - set(_SAT_FIXED) - set(_SAT_SIZES) - {"project_cond_tokens"})
    if unknown:
        raise ConfigError(f"stable-audio-tools DiT config: unsupported keys {unknown}")
    bad = {k: conf[k] for k, v in _SAT_FIXED.items() if k in conf and conf[k] != v}
    if bad:
        raise ConfigError(f"stable-audio-tools DiT config: unsupported values {bad}; supported: {_SAT_FIXED}")
    missing = [k for k in _SAT_SIZES if k not in conf]
    if missing:
        raise ConfigError(f"stable-audio-tools DiT config: missing {missing}")
    # stable-audio-tools' default is project_cond_tokens=True; Stable Audio Open 1.0 sets it False.
    return DiTConfig(**{k: conf[k] for k in _SAT_SIZES}, project_cond_tokens=conf.get("project_cond_tokens", True))
