"""Original LAION-AI/CLAP checkpoints (``laion_clap.CLAP_Module`` state dicts) -> transformers ``ClapModel`` folders.

LAION-CLAP (Wu et al. 2023, "Large-scale contrastive language-audio pretraining", arXiv 2211.06687) was released as
``.pt`` training checkpoints under laion_clap's own module names (``model.py`` CLAP, ``htsat.py``, a RobertaModel).
:func:`convert_laion_clap_checkpoint` renames them by an explicit key map (:data:`KEY_RENAMES`, the Swin block
names, :data:`DROPPED_KEYS`) into a local Hugging Face folder that ``wavefoundry.eval.laion_clap.load_laion_clap``
reads. The file is read with ``torch.load(weights_only=True)``; nothing is ever loaded partially: a missing,
unexpected or mis-shaped key raises :class:`~wavefoundry.formats.errors.CheckpointMismatchError`. See
docs/laion_clap.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wavefoundry.formats.errors import CheckpointMismatchError, check_state

_ROBERTA_BASE = dict(
    vocab_size=50265,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)
_HTSAT = dict(num_attention_heads=(4, 8, 16, 32), window_size=8, spec_size=256, num_mel_bins=64)
#: laion_clap ``amodel`` (+ fusion) -> audio tower; the text tower is roberta-base (its layer_norm_eps 1e-5).
LAION_CLAP_PRESETS: dict[str, dict[str, Any]] = {
    "HTSAT-tiny": dict(_HTSAT, patch_embeds_hidden_size=96, depths=(2, 2, 6, 2), hidden_size=768),
    "HTSAT-tiny-fusion": dict(
        _HTSAT,
        patch_embeds_hidden_size=96,
        depths=(2, 2, 6, 2),
        hidden_size=768,
        enable_fusion=True,
        fusion_type="aff_2d",
    ),
    "HTSAT-base": dict(_HTSAT, patch_embeds_hidden_size=128, depths=(2, 2, 12, 2), hidden_size=1024),
}
#: Original keys dropped on conversion, with the reason.
DROPPED_KEYS: tuple[tuple[str, str], ...] = (
    (r"audio_branch\.(spectrogram_extractor|logmel_extractor)\..+", "front end, computed outside the network"),
    (r"audio_branch\.(tscam_conv|head)\..+", "AudioSet tagging head, unused by the embeddings"),
    (r"(text|audio)_transform\..+", "MLPs of the training loss only"),
    (r"audio_branch\.layers\.\d+\.blocks\.\d+\.attn_mask", "shifted-window mask, rebuilt by transformers"),
    (r"text_branch\.embeddings\.(position_ids|token_type_ids)", "index buffers, rebuilt by transformers"),
)
#: HTSAT Swin block (laion_clap htsat.py SwinTransformerBlock) -> transformers ClapAudioLayer.
_BLOCK_NAMES = {
    "norm1": "layernorm_before",
    "attn.proj": "attention.output.dense",
    "attn.relative_position_bias_table": "attention.self.relative_position_bias_table",
    "attn.relative_position_index": "attention.self.relative_position_index",
    "norm2": "layernorm_after",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_AUDIO = "audio_model.audio_encoder."
_BLOCK = re.compile(r"audio_branch\.layers\.(\d+)\.blocks\.(\d+)\.(.+?)(\.weight|\.bias)?")
#: Renames other than the Swin blocks: (original pattern, transformers template), tried in order.
KEY_RENAMES: tuple[tuple[str, str], ...] = (
    (r"text_branch\.(.+)", r"text_model.\1"),  # RobertaModel and ClapTextModel share every name
    (r"(text|audio)_projection\.0\.(weight|bias)", r"\1_projection.linear1.\2"),  # nn.Sequential(Linear, ReLU, Linear)
    (r"(text|audio)_projection\.2\.(weight|bias)", r"\1_projection.linear2.\2"),
    (r"logit_scale_(a|t)", r"logit_scale_\1"),
    (r"audio_branch\.bn0\.(.+)", _AUDIO + r"batch_norm.\1"),
    (r"audio_branch\.(patch_embed\..+|norm\.(weight|bias)|layers\.\d+\.downsample\..+)", _AUDIO + r"\1"),
)
#: ClapModel buffers that transformers builds itself (the original ones are in :data:`DROPPED_KEYS`).
_REBUILT = re.compile(r"text_model\.embeddings\.(position_ids|token_type_ids)")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:  # optional dependency: only the conversion needs it
        raise ImportError("converting LAION-CLAP checkpoints needs transformers (pip install transformers)") from exc
    return transformers


def laion_clap_config(name: str) -> Any:
    """transformers ``ClapConfig`` of a laion_clap model: one of :data:`LAION_CLAP_PRESETS`."""
    if name not in LAION_CLAP_PRESETS:
        raise ValueError(f"unknown LAION-CLAP preset {name!r}; valid: {', '.join(LAION_CLAP_PRESETS)}")
    audio = {k: list(v) if isinstance(v, tuple) else v for k, v in LAION_CLAP_PRESETS[name].items()}
    return _transformers().ClapConfig(text_config=dict(_ROBERTA_BASE), audio_config=audio, projection_dim=512)


def clap_config_file(path: str | Path) -> Any:
    """transformers ``ClapConfig`` from a config.json file (or a folder holding one) of model_type "clap"."""
    path = Path(path).expanduser()
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"CLAP config not found: {file}")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{file} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("model_type") != "clap":
        what = data.get("model_type") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{file} is not a CLAP config (model_type {what!r}, expected 'clap')")
    return _transformers().ClapConfig.from_dict(data)


def _map_block(match: re.Match[str], value: Tensor) -> dict[str, Tensor] | None:
    i, j, name, suffix = match.group(1), match.group(2), match.group(3), match.group(4) or ""
    prefix = f"{_AUDIO}layers.{i}.blocks.{j}."
    if name == "attn.qkv":  # fused (3D, D) projection, rows ordered q, k, v (htsat.py WindowAttention.forward)
        q, k, v = value.chunk(3, dim=0)
        return {f"{prefix}attention.self.{n}{suffix}": t.clone() for n, t in zip(("query", "key", "value"), (q, k, v))}
    return {f"{prefix}{_BLOCK_NAMES[name]}{suffix}": value} if name in _BLOCK_NAMES else None


def map_laion_clap_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an original laion_clap state dict (``module.`` prefix allowed) to transformers ClapModel keys.

    Keys in :data:`DROPPED_KEYS` are dropped; any other key without a rule raises
    :class:`~wavefoundry.formats.errors.CheckpointMismatchError` naming it.
    """
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        key = key.removeprefix("module.")  # DistributedDataParallel training checkpoints
        if any(re.fullmatch(p, key) for p, _ in DROPPED_KEYS):
            continue
        if (m := _BLOCK.fullmatch(key)) is not None:
            block = _map_block(m, value)
            out.update(block or {})
            unknown += [] if block else [key]
            continue
        for pattern, template in KEY_RENAMES:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, template, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointMismatchError(
            f"{len(unknown)} unexpected LAION-CLAP keys (1D fusion and PANN towers are not supported): "
            f"{', '.join(unknown[:5])}"
        )
    return out


def _numpy_safe_globals() -> list[Callable[..., Any] | tuple[Callable[..., Any], str]]:
    # Training checkpoints keep numpy scalars (epoch, metrics) beside the state dict; these rebuild plain data only.
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    numeric = re.compile(r"(Bool|U?Int\d*|Float\d+|Complex\d+|C?LongDouble|U?(Byte|Short|Long|LongLong))DType")
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if numeric.fullmatch(n)]  # no object / str / void
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype, *dtypes]


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    marker = "WeightsUnpickler error:"  # torch puts the actual cause after this line
    reason = (text.split(marker, 1)[1] if marker in text else text).strip().splitlines()[0]
    reason = reason.split(". Please", 1)[0][:200]  # drop torch's allowlisting advice: not for untrusted files
    # torch's weights-only unpickler reads pickle protocol 2 only; opcode 149 is protocol 4's FRAME.
    return f"{reason} (pickle protocol 4/5)" if "operand 149" in reason else reason


def load_laion_clap_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of an original LAION-CLAP ``.pt`` (``torch.load(weights_only=True)``) or ``.safetensors`` file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"LAION-CLAP checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler raises several types; all mean "not a plain tensor file"
        raise ValueError(
            f"{path} cannot be read with torch.load(weights_only=True): {_reason(exc)}. "
            "Extract its state dict once, where you trust the file: "
            "sd = torch.load(path, weights_only=False)['state_dict']; "
            "safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, 'state_dict.safetensors'); "
            "then convert the .safetensors file"
        ) from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        what = f"keys {list(ckpt)[:8]}" if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ValueError(f"{path} holds no state dict of tensors ({what})")
    return dict(state)


def _load_tokenizer(path: str | Path, config: Any) -> Any:
    """A local tokenizer checked against the text tower: same pad id, no id beyond the vocabulary."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {path}")
    tok = _transformers().AutoTokenizer.from_pretrained(path, local_files_only=True)
    text = config.text_config
    if tok.pad_token_id != text.pad_token_id:
        raise ValueError(f"tokenizer {path} has pad id {tok.pad_token_id}, the text tower {text.pad_token_id}")
    if len(tok) > text.vocab_size:
        raise ValueError(f"tokenizer {path} has {len(tok)} tokens, the text tower only {text.vocab_size}")
    return tok


def _empty_target(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"output {out_dir} exists and is not an empty folder; choose a new one")


def convert_laion_clap_checkpoint(
    pt: str | Path,
    out_dir: str | Path,
    *,
    config: str | Any,
    tokenizer: str | Path | None = None,
    feature_extractor: Mapping[str, Any] | None = None,
) -> Path:
    """Convert an original LAION-CLAP checkpoint into a local Hugging Face ClapModel folder.

    Args:
        pt: e.g. 630k-audioset-best.pt or music_audioset_epoch_15_esc_90.14.pt (or its state dict as .safetensors).
        out_dir: a new (or empty) folder; written: config.json, model.safetensors, and the files below. The folder
            is built beside it and renamed into place, so a failed conversion leaves nothing.
        config: a :data:`LAION_CLAP_PRESETS` name ("HTSAT-tiny", "HTSAT-tiny-fusion", "HTSAT-base") or a ClapConfig.
        tokenizer: a local roberta-base tokenizer directory to copy into ``out_dir`` (laion_clap uses roberta-base).
        feature_extractor: ``ClapFeatureExtractor`` keyword arguments, written as preprocessor_config.json (e.g.
            ``ClapFrontendConfig.feature_extractor_kwargs()`` of ``wavefoundry.eval.laion_clap``); None writes none.

    Returns:
        ``out_dir``. Raises :class:`CheckpointMismatchError` on unexpected, missing or mis-shaped keys (a wrong
        preset shows here), ``FileExistsError`` if ``out_dir`` holds files.
    """
    tf = _transformers()
    config = laion_clap_config(config) if isinstance(config, str) else config
    out_dir = Path(out_dir).expanduser()
    _empty_target(out_dir)
    tok = None if tokenizer is None else _load_tokenizer(tokenizer, config)
    fe = None if feature_extractor is None else tf.ClapFeatureExtractor(**feature_extractor)
    mapped = map_laion_clap_state_dict(load_laion_clap_state_dict(pt))
    model = tf.ClapModel(config).eval()
    target = model.state_dict()
    rebuilt = {k for k in target if _REBUILT.fullmatch(k)}
    expected = {k: v.shape for k, v in target.items() if k not in rebuilt}
    check_state(mapped, expected, "LAION-CLAP checkpoint vs ClapModel config", " (wrong preset?)")
    model.load_state_dict({**{k: target[k] for k in rebuilt}, **mapped}, strict=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        for part in (fe, tok):
            if part is not None:
                part.save_pretrained(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        _empty_target(out_dir)  # still free: nothing appeared while converting
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
