"""Hugging Face Qwen3 checkpoints (``Qwen3ForCausalLM`` folders, as SODA releases them) to and from our Decoder.

A folder holds ``config.json`` (a ``Qwen3Config``) and ``model.safetensors``, or shards listed in
``model.safetensors.index.json``. The key map is explicit; our fused projections are Hugging Face's split ones:

    embed.weight                     model.embed_tokens.weight
    blocks.N.attn_norm.weight        model.layers.N.input_layernorm.weight
    blocks.N.attn.qkv.weight         model.layers.N.self_attn.{q,k,v}_proj.weight   (rows [q | k | v])
    blocks.N.attn.q_norm.weight      model.layers.N.self_attn.q_norm.weight          (k_norm alike)
    blocks.N.attn.out.weight         model.layers.N.self_attn.o_proj.weight
    blocks.N.ffn_norm.weight         model.layers.N.post_attention_layernorm.weight
    blocks.N.ffn.gate_up.weight      model.layers.N.mlp.{gate,up}_proj.weight        (rows [gate | up])
    blocks.N.ffn.down.weight         model.layers.N.mlp.down_proj.weight
    norm.weight                      model.norm.weight
    lm_head.weight                   lm_head.weight   (absent from tied checkpoints)

Reading is strict: a config field that changes the computation and that our decoder does not implement (attention
biases, sliding windows, rope scaling, another activation, ...) or weights with missing, unexpected or misshapen
keys raise :class:`~wavefoundry.formats.errors.FormatError` naming the field or keys.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from wavefoundry.config import ConfigError, atomic_write_bytes, read_json
from wavefoundry.formats.errors import FormatError, check_state
from wavefoundry.lm.decoder import Decoder, DecoderConfig

CONFIG, WEIGHTS, INDEX = "config.json", "model.safetensors", "model.safetensors.index.json"
ARCHITECTURE = "Qwen3ForCausalLM"
State = dict[str, Tensor]

#: Hugging Face Qwen3Config field -> DecoderConfig field, for the fields both have.
_FIELDS = {
    "vocab_size": "vocab_size",
    "hidden_size": "dim",
    "intermediate_size": "ffn_dim",
    "num_hidden_layers": "n_layers",
    "num_attention_heads": "n_heads",
    "num_key_value_heads": "n_kv_heads",
    "head_dim": "head_dim",
    "rms_norm_eps": "norm_eps",
    "max_position_embeddings": "max_seq_len",
    "tie_word_embeddings": "tie_embeddings",
}
_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
#: Fields that change the computation: the value we implement (absent counts as this value).
_FIXED = {"attention_bias": False, "use_sliding_window": False, "hidden_act": "silu", "attention_dropout": 0.0}
_FORBIDDEN = ("quantization_config",)
_HF_DEFAULT_THETA = 10_000.0  # transformers' default_theta when a config names none

_BLOCK = {
    "attn_norm.weight": ("input_layernorm.weight",),
    "attn.qkv.weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "attn.q_norm.weight": ("self_attn.q_norm.weight",),
    "attn.k_norm.weight": ("self_attn.k_norm.weight",),
    "attn.out.weight": ("self_attn.o_proj.weight",),
    "ffn_norm.weight": ("post_attention_layernorm.weight",),
    "ffn.gate_up.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
    "ffn.down.weight": ("mlp.down_proj.weight",),
}


def hf_key_map(cfg: DecoderConfig) -> dict[str, tuple[str, ...]]:
    """Our key -> Hugging Face key(s); several keys are our tensor split along dim 0. Tied: no ``lm_head``."""
    out = {"embed.weight": ("model.embed_tokens.weight",)}
    for i in range(cfg.n_layers):
        out |= {f"blocks.{i}.{k}": tuple(f"model.layers.{i}.{t}" for t in ts) for k, ts in _BLOCK.items()}
    out["norm.weight"] = ("model.norm.weight",)
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = ("lm_head.weight",)
    return out


def _split_rows(cfg: DecoderConfig, key: str) -> list[int]:
    """Row counts of the Hugging Face tensors that make our fused ``key``."""
    if key.endswith("attn.qkv.weight"):
        return [cfg.n_heads * cfg.dh, cfg.n_kv_heads * cfg.dh, cfg.n_kv_heads * cfg.dh]
    return [cfg.ffn_dim, cfg.ffn_dim]


def hf_shapes(cfg: DecoderConfig) -> dict[str, torch.Size]:
    """Every Hugging Face key and its shape for ``cfg`` (built on the meta device: nothing allocated)."""
    with torch.device("meta"):
        ours = {k: v.shape for k, v in Decoder(cfg).state_dict().items()}
    shapes = {}
    for key, theirs in hf_key_map(cfg).items():
        rows = [ours[key][0]] if len(theirs) == 1 else _split_rows(cfg, key)
        shapes |= {t: torch.Size([r, *ours[key][1:]]) for t, r in zip(theirs, rows, strict=True)}
    return shapes


def _hf_value(hf: Mapping[str, Any], field: str, default: Any) -> Any:
    value = hf.get(field, default)
    return default if value is None and default is not None else value


def _rope_base(hf: Mapping[str, Any]) -> float:
    """rope_theta from ``rope_scaling``/``rope_parameters`` (transformers 5) or the top level (4.x)."""
    params = hf.get("rope_scaling") or hf.get("rope_parameters") or {}
    if not isinstance(params, Mapping):
        raise FormatError(f"{CONFIG}: rope_parameters must be a mapping, got {params!r}")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise FormatError(f"{CONFIG}: rope type {rope_type!r} (rope_scaling/rope_parameters) is not supported")
    extra = sorted(set(params) - {"rope_type", "type", "rope_theta"})
    if extra:
        raise FormatError(f"{CONFIG}: unsupported rope_parameters fields {extra}")
    return float(params.get("rope_theta", _hf_value(hf, "rope_theta", _HF_DEFAULT_THETA)))


def _check_supported(hf: Mapping[str, Any]) -> None:
    if hf.get("model_type") != "qwen3":
        raise FormatError(f"{CONFIG}: model_type must be 'qwen3', got {hf.get('model_type')!r}")
    arch = hf.get("architectures") or [ARCHITECTURE]
    if ARCHITECTURE not in arch:
        raise FormatError(f"{CONFIG}: architectures {arch} do not include {ARCHITECTURE}")
    missing = [f for f in _REQUIRED if hf.get(f) is None]
    if missing:
        raise FormatError(f"{CONFIG}: missing fields {missing}")
    for field, value in _FIXED.items():
        if _hf_value(hf, field, value) != value:
            raise FormatError(f"{CONFIG}: {field}={hf[field]!r} is not supported (our decoder implements {value!r})")
    present = [f for f in _FORBIDDEN if hf.get(f) is not None]
    if present:
        raise FormatError(f"{CONFIG}: {', '.join(present)} is not supported")
    layer_types = set(hf.get("layer_types") or ["full_attention"])
    if layer_types != {"full_attention"}:
        raise FormatError(f"{CONFIG}: layer_types {sorted(layer_types)} are not supported (only full_attention)")


def _check_type(field: str, value: Any, kind: type) -> None:
    """Raise unless ``value`` is a ``kind`` (an int counts as a float; a bool is no number)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    ok = isinstance(value, bool) if kind is bool else number and (kind is float or isinstance(value, int))
    if not ok:
        raise FormatError(f"{CONFIG}: {field} must be {kind.__name__}, got {value!r}")


def decoder_config_from_hf(hf: Mapping[str, Any]) -> DecoderConfig:
    """Our config for a Hugging Face ``Qwen3Config`` dict (``config.json``); Hugging Face's defaults fill gaps.

    Raises:
        FormatError: not a Qwen3 causal LM, a missing size, or a field we do not implement, named.
    """
    _check_supported(hf)
    for field in _REQUIRED:
        _check_type(field, hf[field], int)
    heads = hf["num_attention_heads"]
    defaults = {
        "num_key_value_heads": heads,
        "head_dim": hf["hidden_size"] // heads if heads > 0 else 0,
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": False,
    }
    values = {ours: _hf_value(hf, field, defaults.get(field)) for field, ours in _FIELDS.items()}
    for field, ours in _FIELDS.items():
        _check_type(field, values[ours], bool if ours == "tie_embeddings" else float if ours == "norm_eps" else int)
    try:
        return DecoderConfig(**values, rope_base=_rope_base(hf))
    except ConfigError as exc:
        raise FormatError(f"{CONFIG}: {exc}") from None


def decoder_config_to_hf(cfg: DecoderConfig, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The ``config.json`` of ``cfg`` as a ``Qwen3ForCausalLM``; readable by transformers 4.x and 5.x."""
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "qwen3",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.dh,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_base,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "sliding_window": None,
        "tie_word_embeddings": cfg.tie_embeddings,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def state_from_hf(theirs: Mapping[str, Tensor], cfg: DecoderConfig) -> State:
    """Our state dict from Hugging Face weights, strictly (keys and shapes of ``cfg``).

    A tied checkpoint may also carry ``lm_head.weight``; it must then equal the embedding. Our state of a tied
    model holds ``lm_head.weight`` too (the same tensor as ``embed.weight``).

    Raises:
        FormatError: missing, unexpected or misshapen keys (named), or a tied head that differs.
    """
    theirs = dict(theirs)
    if cfg.tie_embeddings and "lm_head.weight" in theirs:
        head = theirs.pop("lm_head.weight")
        embed = theirs.get("model.embed_tokens.weight")
        if embed is not None and not torch.equal(head, embed):
            raise FormatError("tie_word_embeddings is true but lm_head.weight differs from model.embed_tokens.weight")
    check_state(theirs, hf_shapes(cfg), "Qwen3 weights")
    ours = {
        k: theirs[ts[0]] if len(ts) == 1 else torch.cat([theirs[t] for t in ts]) for k, ts in hf_key_map(cfg).items()
    }
    if cfg.tie_embeddings:
        ours["lm_head.weight"] = ours["embed.weight"]
    return ours


def state_to_hf(ours: Mapping[str, Tensor], cfg: DecoderConfig) -> State:
    """Hugging Face weights from our state dict (checked against ``cfg``); tied models leave out ``lm_head``."""
    with torch.device("meta"):
        expected = {k: v.shape for k, v in Decoder(cfg).state_dict().items()}
    check_state(ours, expected, "our Decoder state")
    theirs = {}
    for key, ts in hf_key_map(cfg).items():
        parts = (ours[key],) if len(ts) == 1 else ours[key].split(_split_rows(cfg, key), dim=0)
        theirs |= {t: p.contiguous() for t, p in zip(ts, parts, strict=True)}
    return theirs


def read_hf_weights(path: str | Path) -> State:
    """Every tensor of a folder's ``model.safetensors``, or of the shards its index lists.

    Raises:
        FileNotFoundError: neither file, or a listed shard missing (named).
        FormatError: pickled weights only (``pytorch_model.bin``: never unpickled), or a malformed index.
    """
    path = Path(path)
    if (path / WEIGHTS).is_file():
        return load_file(path / WEIGHTS)
    if not (path / INDEX).is_file():
        if any(path.glob("*.bin")):
            raise FormatError(f"{path}: only pickled .bin weights; {WEIGHTS} is needed (pickles are not read)")
        raise FileNotFoundError(f"{path}: no {WEIGHTS} nor {INDEX}")
    weight_map = read_json(path / INDEX).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise FormatError(f"{path / INDEX}: no weight_map")
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if not (path / s).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: shards listed in {INDEX} are missing: {missing}")
    state: State = {}
    for shard in shards:
        tensors = load_file(path / shard)
        stray = sorted(k for k in tensors if weight_map.get(k) != shard)
        if stray:
            raise FormatError(f"{path / shard}: keys the index does not place in this shard: {stray[:5]}")
        state |= tensors
    unlisted = sorted(set(weight_map) - set(state))
    if unlisted:
        raise FormatError(f"{path}: keys listed in {INDEX} but in no shard: {unlisted[:5]}")
    return state


def load_qwen3(path: str | Path, *, dtype: torch.dtype = torch.float32) -> Decoder:
    """A :class:`Decoder` from a Hugging Face Qwen3ForCausalLM folder, built without a random init.

    Args:
        path: the folder (``config.json`` + ``model.safetensors`` or a sharded index).
        dtype: parameter dtype (the checkpoint's tensors are cast).

    Raises:
        FileNotFoundError: missing config or weights.
        FormatError: a config we do not implement, or weights that do not fit it.
    """
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise FileNotFoundError(f"{path}: no {CONFIG} (a Hugging Face model folder holds it)")
    cfg = decoder_config_from_hf(read_json(path / CONFIG))
    state = state_from_hf(read_hf_weights(path), cfg)
    with torch.device("meta"):
        model = Decoder(cfg)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    model.tie_weights()  # assign gives the head and the embedding separate Parameters
    return model.eval()


def _save_safetensors(path: Path, tensors: Mapping[str, Tensor]) -> None:
    """Write ``tensors`` to ``path`` through a temporary file in the same folder (never a partial file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(dict(tensors), tmp, metadata={"format": "pt"})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _shards(state: Mapping[str, Tensor], max_bytes: int) -> list[list[str]]:
    """Keys grouped in order into shards of at most ``max_bytes`` (a bigger tensor gets a shard of its own)."""
    shards: list[list[str]] = [[]]
    size = 0
    for key, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    return shards


def save_qwen3(
    model: Decoder, path: str | Path, *, dtype: torch.dtype | None = None, max_shard_bytes: int | None = None
) -> Path:
    """Write ``model`` as a Hugging Face Qwen3ForCausalLM folder (``from_pretrained`` loads it).

    Args:
        model: the decoder.
        path: the folder (created; files in it are replaced atomically one by one).
        dtype: dtype of the written tensors; None keeps the model's.
        max_shard_bytes: above this total, write ``model-0000i-of-0000n.safetensors`` shards and an index.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    theirs = state_to_hf(model.state_dict(), model.cfg)
    theirs = {k: v.detach().to("cpu", dtype or v.dtype).contiguous() for k, v in theirs.items()}
    written_dtype = next(iter(theirs.values())).dtype
    atomic_write_bytes(
        path / CONFIG, (json.dumps(decoder_config_to_hf(model.cfg, written_dtype), indent=2) + "\n").encode()
    )
    total = sum(t.numel() * t.element_size() for t in theirs.values())
    if max_shard_bytes is None or total <= max_shard_bytes:
        _save_safetensors(path / WEIGHTS, theirs)
        (path / INDEX).unlink(missing_ok=True)
        return path
    groups = _shards(theirs, max_shard_bytes)
    weight_map = {}
    for i, keys in enumerate(groups, start=1):
        name = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        _save_safetensors(path / name, {k: theirs[k] for k in keys})
        weight_map |= dict.fromkeys(keys, name)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    atomic_write_bytes(path / INDEX, (json.dumps(index, indent=2) + "\n").encode())
    (path / WEIGHTS).unlink(missing_ok=True)  # the index wins only without a single file next to it
    return path
