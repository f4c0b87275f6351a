"""Task "masked": the masked generative transformer over discrete codec codes (MAGNeT, Ziv et al. 2024), text
conditioned through the project's :class:`~wavefoundry.conditioning.Conditioner`.

Training step (MAGNeT Sec. 3.1): per row, a stage k (codebook) and a mask rate ``gamma = cos(pi t / 2)``,
``t ~ U(0, 1)``; codebooks < k are visible, codebook k is span-masked at rate gamma (``lm/masking.py``, the exact
expected-rate correction), codebooks > k are fully masked; cross-entropy on the masked frames of codebook k only.
Text conditioning is dropped (zero tokens) for ``masking.cond_dropout`` of the rows (classifier-free guidance).

Validation perplexity (comparable across runs): for each held-out batch, for each mask rate of ``masking.eval_rates``
and each stage k, the same spans drawn from a generator seeded with ``masking.eval_seed`` and the batch's first
index; ``nll_g{gamma}_k{k}`` is the mean cross-entropy over the masked frames of stage k, ``nll`` the mean over the
grid; the engine averages batches weighted by their size, and ``perplexity = exp(eval/nll)``. See docs/masked.md.

Data: a code set (``wavefoundry data encode MANIFEST --codec DISCRETE_CODEC``); when ``data.codes`` is empty,
SynthCaps per ``data.synth`` is generated and encoded with ``data.codec`` into the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from wavefoundry.conditioning.conditioner import TOKENIZER_FILE, Conditioner, ConditionerConfig
from wavefoundry.conditioning.text import LearnedTextEncoderConfig
from wavefoundry.conditioning.tokenizer import WordTokenizer
from wavefoundry.config import ConfigError, to_dict
from wavefoundry.data.codes import CODES_INFO_FILE, CodeDataset, CodeSet
from wavefoundry.data.latents import item_texts
from wavefoundry.data.synth import SynthConfig
from wavefoundry.lm.decoder import next_token_loss
from wavefoundry.lm.masked import MaskedConfig, MaskedTransformer
from wavefoundry.lm.masked import masked_mega as lm_masked_mega
from wavefoundry.lm.masked_decode import DecodeConfig
from wavefoundry.lm.masking import cosine_schedule, span_mask
from wavefoundry.train.datasource import DataConfig, prepare_manifest
from wavefoundry.train.engine import TrainConfig
from wavefoundry.train.optim import OptimConfig
from wavefoundry.train.schedules import ScheduleConfig
from wavefoundry.train.tasks import RunConfig, Task, register

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class MaskedAudioConfig:
    """The trainable model: transformer + conditioner, and the decoding defaults it ships with."""

    transformer: MaskedConfig = field(default_factory=MaskedConfig)
    conditioner: ConditionerConfig = field(default_factory=lambda: ConditionerConfig(cond_dim=128))
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        if self.transformer.cond_dim != self.conditioner.cond_dim:
            raise ConfigError(f"transformer.cond_dim ({self.transformer.cond_dim}) must equal conditioner.cond_dim "
                              f"({self.conditioner.cond_dim})")  # fmt: skip
        if len(self.decode.steps) != self.transformer.n_codebooks:
            raise ConfigError(f"decode.steps {self.decode.steps} needs one count per codebook "
                              f"({self.transformer.n_codebooks})")  # fmt: skip


class MaskedAudioModel(nn.Module):
    """Transformer + conditioner, saved together (``transformer.*``, ``conditioner.*``)."""

    def __init__(self, cfg: MaskedAudioConfig, *, tokenizer: WordTokenizer | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.conditioner = Conditioner(cfg.conditioner, tokenizer=tokenizer)
        self.transformer = MaskedTransformer(cfg.transformer)

    @property
    def blocks(self) -> nn.ModuleList:
        """The transformer's blocks (FSDP, activation checkpointing); a property, so weights are not saved twice."""
        return self.transformer.blocks


@dataclass(kw_only=True)
class CodeDataConfig:
    """A code set, or SynthCaps encoded on first use with the discrete codec ``codec`` (cached in ``cache_dir``)."""

    codes: str = ""
    codec: str = "models/codec-tiny-rvq"
    synth: SynthConfig = field(default_factory=lambda: SynthConfig(n_items=2000, seconds=4.0, channels=1))
    cache_dir: str = "data/cache"
    seconds: float = 4.0

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ConfigError(f"data.seconds must be > 0, got {self.seconds}")
        if not self.codes and not self.codec:
            raise ConfigError("set data.codes (a code set) or data.codec (a discrete codec to encode SynthCaps)")


@dataclass(kw_only=True)
class MaskingConfig:
    """Span masking (``span`` frames), CFG dropout, stage sampling weights and the validation grid."""

    span: int = 3
    cond_dropout: float = 0.1
    stage_weights: tuple[float, ...] = ()  # empty: uniform over codebooks
    eval_rates: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    eval_seed: int = 0

    def __post_init__(self) -> None:
        if self.span < 1:
            raise ConfigError(f"masking.span must be >= 1, got {self.span}")
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise ConfigError(f"masking.cond_dropout must be in [0, 1], got {self.cond_dropout}")
        if any(w < 0 for w in self.stage_weights) or (self.stage_weights and not sum(self.stage_weights) > 0):
            raise ConfigError(f"masking.stage_weights must be >= 0 with a positive sum, got {self.stage_weights}")
        if not self.eval_rates or not all(0.0 < g <= 1.0 for g in self.eval_rates):
            raise ConfigError(f"masking.eval_rates must be values in (0, 1], got {self.eval_rates}")


@dataclass(kw_only=True)
class MaskedRunConfig(RunConfig):
    task: str = "masked"
    model: MaskedAudioConfig = field(default_factory=MaskedAudioConfig)
    data: CodeDataConfig = field(default_factory=CodeDataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)

    def __post_init__(self) -> None:
        w = self.masking.stage_weights
        if w and len(w) != self.model.transformer.n_codebooks:
            raise ConfigError(f"masking.stage_weights has {len(w)} values for "
                              f"{self.model.transformer.n_codebooks} codebooks")  # fmt: skip


def code_cache_dir(data: CodeDataConfig) -> Path:
    """Where SynthCaps codes for (synth config, codec) are cached."""
    key = json.dumps({"synth": to_dict(data.synth), "codec": str(Path(data.codec).resolve())}, sort_keys=True)
    return Path(data.cache_dir) / f"codes-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def code_dir(data: CodeDataConfig) -> Path:
    return Path(data.codes) if data.codes else code_cache_dir(data)


def stage_inputs(codes: Tensor, stage: Tensor, mask: Tensor, mask_id: int) -> Tensor:
    """Model inputs of stage k per row: codebooks < k as given, k masked where ``mask``, > k all [MASK].

    Args:
        codes: (B, K, T) int64; stage: (B,) int64; mask: (B, T) bool; mask_id: the [MASK] id.

    Returns:
        (B, K, T) int64.
    """
    kk = torch.arange(codes.shape[1], device=codes.device)[None, :, None]  # (1, K, 1)
    st = stage[:, None, None]  # (B, 1, 1)
    hidden = (kk > st) | ((kk == st) & mask[:, None, :])  # (B, K, T)
    return codes.masked_fill(hidden, mask_id)


def stage_nll(model: MaskedAudioModel, codes: Tensor, stage: Tensor, mask: Tensor, frames: Tensor,
              cross: Tensor, cross_mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
    """Cross-entropy of stage k's codes at its masked real frames (MAGNeT's loss), and its metrics."""
    inputs = stage_inputs(codes, stage, mask, model.cfg.transformer.mask_id)
    logits = model.transformer(inputs, stage, context=cross, context_mask=cross_mask, frame_mask=frames)  # (B, T, V)
    targets = codes.gather(1, stage[:, None, None].expand(-1, 1, codes.shape[2]))[:, 0]  # (B, T)
    return next_token_loss(logits, targets, loss_mask=mask & frames, z_loss=0.0)


def _collate(samples: list[dict]) -> dict[str, Any]:
    return {
        "codes": torch.stack([s["codes"] for s in samples]),  # (B, K, T)
        "mask": torch.stack([s["mask"] for s in samples]),  # (B, T)
        "seconds_start": torch.tensor([s["seconds_start"] for s in samples], dtype=torch.float32),
        "seconds_total": torch.tensor([s["seconds_total"] for s in samples], dtype=torch.float32),
        "text": [s["text"] for s in samples],
        "index": torch.tensor([s["index"] for s in samples]),
    }


@register
class MaskedTask(Task):
    name = "masked"
    Config = MaskedRunConfig

    def __init__(self, config: MaskedRunConfig) -> None:
        super().__init__(config)
        self._data: CodeSet | None = None

    def prepare_data(self) -> None:
        """Encode SynthCaps with the discrete codec when no code set is given; build the tokenizer from captions."""
        data = self.config.data
        out = code_dir(data)
        if not (out / CODES_INFO_FILE).is_file():
            if data.codes:
                raise FileNotFoundError(f"data.codes: {out} is not a code set (run `wavefoundry data encode`)")
            from wavefoundry.train.codes import encode_manifest_codes
            from wavefoundry.train.export import load_autoencoder

            progress = self.config.train.progress
            manifest = prepare_manifest(DataConfig(synth=data.synth, cache_dir=data.cache_dir), progress=progress)
            log.info("encoding %s with %s into %s", manifest, data.codec, out)
            encode_manifest_codes(load_autoencoder(data.codec), manifest, out, codec_path=data.codec,
                                  progress=progress)  # fmt: skip
        if self.config.model.conditioner.text_encoder == "learned" and not (out / TOKENIZER_FILE).is_file():
            codes = CodeSet(out)
            WordTokenizer.build([t for i in codes.split("train") for t in item_texts(codes.items[i])]).save(
                out / TOKENIZER_FILE
            )

    def code_set(self) -> CodeSet:
        if self._data is None:
            self._data = CodeSet(code_dir(self.config.data))
        return self._data

    def frames(self) -> int:
        return max(1, math.ceil(self.config.data.seconds * self.code_set().info.frame_rate - 1e-6))

    def datasets(self) -> tuple[CodeDataset, CodeDataset | None]:
        data, frames = self.code_set(), self.frames()
        valid = data.split("valid")
        train = CodeDataset(data, data.split("train"), frames=frames)
        held_out = CodeDataset(data, valid, frames=frames, random_crop=False, random_text=False) if valid else None
        return train, held_out

    def collate(self, samples: list[dict]) -> dict[str, Any]:
        return _collate(samples)

    def build_model(self) -> nn.Module:
        """The model; the codebook count and size must be the code set's, and the crops must fit max_frames."""
        tcfg, info = self.config.model.transformer, self.code_set().info
        if (tcfg.n_codebooks, tcfg.codebook_size) != (info.n_codebooks, info.codebook_size):
            raise ConfigError(
                f"model.transformer has {tcfg.n_codebooks} codebooks x {tcfg.codebook_size}, the code set "
                f"{self.code_set().path} {info.n_codebooks} x {info.codebook_size}; --set "
                f"model.transformer.n_codebooks={info.n_codebooks} model.transformer.codebook_size={info.codebook_size}"
            )
        if self.frames() > tcfg.max_frames:
            raise ConfigError(f"data.seconds gives {self.frames()} frames > model.transformer.max_frames "
                              f"{tcfg.max_frames}")  # fmt: skip
        tokenizer = None
        if self.config.model.conditioner.text_encoder == "learned":
            tokenizer = WordTokenizer.load(code_dir(self.config.data) / TOKENIZER_FILE)
        return MaskedAudioModel(self.config.model, tokenizer=tokenizer)

    def loss_fn(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        codes, frames = batch["codes"], batch["mask"]  # (B, K, T), (B, T)
        cond = model.conditioner(batch["text"], batch["seconds_start"], batch["seconds_total"])
        if not model.training:
            return self._eval_loss(model, codes, frames, cond, int(batch["index"][0]))
        m = self.config.masking
        B, K, T = codes.shape
        if m.cond_dropout > 0:
            cond = cond.null_where(torch.rand(B) < m.cond_dropout)
        weights = torch.tensor(m.stage_weights or [1.0] * K)
        stage = torch.multinomial(weights, B, replacement=True).to(codes.device)  # (B,)
        gamma = cosine_schedule(torch.rand(B))  # (B,)
        mask = span_mask(gamma, T, m.span).to(codes.device)  # (B, T)
        loss, metrics = stage_nll(model, codes, stage, mask, frames, cond.cross, cond.cross_mask)
        rate = (mask & frames).sum() / frames.sum().clamp(min=1)
        return loss, {"nll": metrics["nll"], "tokens": metrics["tokens"], "mask_rate": rate.detach()}

    def _eval_loss(self, model, codes, frames, cond, first: int) -> tuple[Tensor, dict[str, Tensor]]:
        """The validation grid (module doc): every rate of ``masking.eval_rates`` x every stage, fixed spans."""
        m = self.config.masking
        B, K, T = codes.shape
        g = torch.Generator().manual_seed(m.eval_seed * 1_000_003 + first)
        metrics = {}
        for gamma in m.eval_rates:
            mask = span_mask(torch.full((B,), gamma), T, m.span, generator=g).to(codes.device)
            for k in range(K):
                stage = torch.full((B,), k, dtype=torch.long, device=codes.device)
                _, cell = stage_nll(model, codes, stage, mask, frames, cond.cross, cond.cross_mask)
                metrics[f"nll_g{gamma:g}_k{k}"] = cell["nll"]
        nll = torch.stack(list(metrics.values())).mean()
        return nll, {"nll": nll, **metrics}


def export_masked_audio(path: str | Path, out_dir: str | Path, *, ema: bool = True) -> Path:
    """Write a masked-audio model directory: ``config.json`` (``{"type": "masked-audio", "model": ...}``),
    ``model.safetensors`` (transformer + conditioner), ``tokenizer.json`` and ``autoencoder/`` (a copy of the codec
    the codes came from), so the directory is self-contained."""
    from wavefoundry.train.checkpoint import read_metadata, resolve_model_dir
    from wavefoundry.train.export import checkpoint_state, write_model_dir
    from wavefoundry.train.tasks import load_run_config

    model_dir = resolve_model_dir(path)
    cfg = load_run_config(model_dir)
    if cfg.task != "masked":
        raise ValueError(f"{model_dir} is a '{cfg.task}' run, not a masked run")
    out = Path(out_dir)
    step = read_metadata(model_dir / "model.safetensors").get("step", "")
    has_ema = ema and (model_dir / "ema.safetensors").is_file()
    write_model_dir(out, "masked-audio", cfg.model, checkpoint_state(model_dir, ema=ema), step, has_ema)
    data_dir = code_dir(cfg.data)
    if (data_dir / TOKENIZER_FILE).is_file():
        shutil.copyfile(data_dir / TOKENIZER_FILE, out / TOKENIZER_FILE)
    codec = Path(json.loads((data_dir / CODES_INFO_FILE).read_text())["codec"] or cfg.data.codec)
    (out / "autoencoder").mkdir(exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(codec / name, out / "autoencoder" / name)
    return out


def warmup_cosine_to(lr: float, floor_lr: float, warmup_steps: int) -> ScheduleConfig:
    """The described schedule: ``warmup_steps`` of linear warm-up to ``lr``, then cosine decay to ``floor_lr`` at
    the last step (``min_ratio = floor_lr / lr``: change both if you change ``optim.lr``)."""
    if not 0 <= floor_lr <= lr:
        raise ConfigError(f"need 0 <= floor_lr <= lr, got floor_lr={floor_lr}, lr={lr}")
    return ScheduleConfig(name="cosine", warmup_steps=warmup_steps, min_ratio=floor_lr / lr)


def masked_tiny() -> MaskedRunConfig:
    """A CPU-trainable text-to-audio masked transformer on ``models/codec-tiny-rvq`` codes of 2,000 mono 4 s
    SynthCaps items: the ``masked_tiny`` transformer (width 128 x 4 layers), learned text encoder width 128 x 2
    layers, 3,000 steps of 16 in bf16, AdamW 1e-3 with 200 warm-up steps then cosine to 1e-6."""
    conditioner = ConditionerConfig(
        text=LearnedTextEncoderConfig(vocab_size=1024, dim=128, depth=2, heads=4, max_length=48, out_dim=128),
        cond_dim=128,
    )
    return MaskedRunConfig(
        model=MaskedAudioConfig(transformer=MaskedConfig(), conditioner=conditioner),
        train=TrainConfig(
            steps=3000, batch_size=16, eval_every=500, ckpt_every=250, log_every=25, ema_decay=0.999, precision="bf16"
        ),
        optim=OptimConfig(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1),
        schedule=warmup_cosine_to(1e-3, 1e-6, 200),
    )


def masked_mega() -> MaskedRunConfig:
    """The described "AudioGen-Mega" recipe, for accounting and clusters: 72 layers, width 2048, 32 heads, learned
    positions, T5-base text tokens (``model.conditioner.t5_path``: a local T5 directory), FSDP, bf16, AdamW with
    50k steps of linear warm-up then cosine decay to 1e-6."""
    conditioner = ConditionerConfig(text_encoder="t5", t5_path="models/t5-base", cond_dim=768)
    return MaskedRunConfig(
        model=MaskedAudioConfig(transformer=lm_masked_mega(), conditioner=conditioner),
        train=TrainConfig(
            steps=500_000,
            batch_size=192,
            precision="bf16",
            strategy="fsdp",
            activation_checkpointing=True,
            eval_every=5000,
            ckpt_every=5000,
            log_every=100,
        ),
        optim=OptimConfig(lr=5e-4, betas=(0.9, 0.95), weight_decay=0.1),
        schedule=warmup_cosine_to(5e-4, 1e-6, 50_000),
    )
