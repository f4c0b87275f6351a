"""Task "diffusion": text-to-audio latent diffusion (Stable Audio Open recipe) on pre-encoded latents.

The model is a :class:`~wavefoundry.diffusion.dit.DiT` plus a :class:`~wavefoundry.conditioning.Conditioner`
(prompt, seconds_start, seconds_total), trained with the v-objective on the cosine schedule and 10% dropout of the
text conditioning (for classifier-free guidance). Data is a latent set (``wavefoundry data encode``); when
``data.latents`` is empty, SynthCaps per ``data.synth`` is generated and encoded with ``data.codec`` into the cache.
Latents are normalised per channel with the training split's statistics, which the model config keeps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from wavefoundry.conditioning.conditioner import TOKENIZER_FILE, Conditioner, ConditionerConfig
from wavefoundry.conditioning.tokenizer import WordTokenizer
from wavefoundry.config import ConfigError, to_dict
from wavefoundry.data.latents import INFO_FILE, LatentDataset, LatentSet, item_texts
from wavefoundry.data.synth import SynthConfig
from wavefoundry.diffusion.dit import DiT, DiTConfig
from wavefoundry.diffusion.generate import SamplingConfig, sample_latents
from wavefoundry.diffusion.objectives import diffuse, get_timestep_sampler, v_loss, v_target
from wavefoundry.train.datasource import DataConfig, prepare_manifest
from wavefoundry.train.export import load_autoencoder
from wavefoundry.train.tasks import RunConfig, Task, register

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class TextToAudioConfig:
    """The trainable text-to-audio model: DiT + conditioner, and the latent normalisation it was trained with."""

    dit: DiTConfig = field(default_factory=DiTConfig)
    conditioner: ConditionerConfig = field(default_factory=ConditionerConfig)
    latent_mean: list[float] = field(default_factory=list)
    latent_std: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.dit.cond_token_dim != self.conditioner.cond_dim:
            raise ConfigError(f"dit.cond_token_dim ({self.dit.cond_token_dim}) must equal conditioner.cond_dim "
                              f"({self.conditioner.cond_dim})")  # fmt: skip
        if self.dit.global_cond_dim != self.conditioner.global_dim:
            raise ConfigError(f"dit.global_cond_dim ({self.dit.global_cond_dim}) must equal 2 * conditioner.cond_dim "
                              f"({self.conditioner.global_dim})")  # fmt: skip
        for name in ("latent_mean", "latent_std"):
            values = getattr(self, name)
            if values and len(values) != self.dit.io_channels:
                raise ConfigError(f"{name} has {len(values)} values; dit.io_channels is {self.dit.io_channels}")
        if any(s <= 0 for s in self.latent_std):
            raise ConfigError("latent_std values must be > 0")


class TextToAudioModel(nn.Module):
    """DiT + conditioner, saved together (``dit.*``, ``conditioner.*``). ``blocks`` are the DiT's."""

    def __init__(self, cfg: TextToAudioConfig, *, tokenizer: WordTokenizer | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.conditioner = Conditioner(cfg.conditioner, tokenizer=tokenizer)
        self.dit = DiT(cfg.dit)
        C = cfg.dit.io_channels
        mean = torch.tensor(cfg.latent_mean or [0.0] * C).view(1, C, 1)  # (1, C, 1)
        std = torch.tensor(cfg.latent_std or [1.0] * C).view(1, C, 1)
        self.register_buffer("latent_mean", mean, persistent=False)
        self.register_buffer("latent_std", std, persistent=False)

    @property
    def blocks(self) -> nn.ModuleList:
        """The DiT's blocks (for FSDP and activation checkpointing); a property, so weights are not saved twice."""
        return self.dit.blocks

    def normalize(self, latents: Tensor) -> Tensor:
        """Codec latents (B, C, T) -> the diffusion model's space."""
        return (latents - self.latent_mean) / self.latent_std

    def denormalize(self, x: Tensor) -> Tensor:
        """The diffusion model's space (B, C, T) -> codec latents."""
        return x * self.latent_std + self.latent_mean


@dataclass(kw_only=True)
class LatentDataConfig:
    """A latent set, or SynthCaps encoded on first use with ``codec`` (cached under ``cache_dir``)."""

    latents: str = ""
    codec: str = "models/codec-stereo"
    synth: SynthConfig = field(default_factory=lambda: SynthConfig(n_items=2000, seconds=4.0, channels=2))
    cache_dir: str = "data/cache"
    seconds: float = 4.0

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ConfigError(f"data.seconds must be > 0, got {self.seconds}")
        if not self.latents and not self.codec:
            raise ConfigError("set data.latents (a latent set) or data.codec (to encode SynthCaps)")


@dataclass(kw_only=True)
class ObjectiveConfig:
    """v-objective settings: timestep sampler, CFG condition dropout and the fixed t of validation losses."""

    timestep_sampler: str = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    cond_dropout: float = 0.1
    eval_t: tuple[float, ...] = (0.2, 0.5, 0.8)

    def __post_init__(self) -> None:
        get_timestep_sampler(self.timestep_sampler)
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise ConfigError(f"objective.cond_dropout must be in [0, 1], got {self.cond_dropout}")
        if not self.eval_t or not all(0.0 < t < 1.0 for t in self.eval_t):
            raise ConfigError(f"objective.eval_t must be values in (0, 1), got {self.eval_t}")


@dataclass(kw_only=True)
class DemoConfig:
    """Generations written to ``RUN/demos/step-XXXXXXXX/`` after each evaluation (0 prompts: off)."""

    n_prompts: int = 4
    sampling: SamplingConfig = field(
        default_factory=lambda: SamplingConfig(sampler="dpmpp-2m", steps=25, cfg_scale=5.0)
    )
    seed: int = 0


@dataclass(kw_only=True)
class DiffusionRunConfig(RunConfig):
    task: str = "diffusion"
    model: TextToAudioConfig = field(default_factory=TextToAudioConfig)
    data: LatentDataConfig = field(default_factory=LatentDataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)


def latent_cache_dir(data: LatentDataConfig) -> Path:
    """Where SynthCaps latents for (synth config, codec) are cached."""
    key = json.dumps({"synth": to_dict(data.synth), "codec": str(Path(data.codec).resolve())}, sort_keys=True)
    return Path(data.cache_dir) / f"latents-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def latent_dir(data: LatentDataConfig) -> Path:
    return Path(data.latents) if data.latents else latent_cache_dir(data)


def _collate(samples: list[dict]) -> dict[str, Any]:
    return {
        "latents": torch.stack([s["latents"] for s in samples]),  # (B, C, T)
        "mask": torch.stack([s["mask"] for s in samples]),  # (B, T)
        "seconds_start": torch.tensor([s["seconds_start"] for s in samples], dtype=torch.float32),
        "seconds_total": torch.tensor([s["seconds_total"] for s in samples], dtype=torch.float32),
        "text": [s["text"] for s in samples],
        "index": torch.tensor([s["index"] for s in samples]),
    }


@register
class DiffusionTask(Task):
    name = "diffusion"
    Config = DiffusionRunConfig

    def __init__(self, config: DiffusionRunConfig) -> None:
        super().__init__(config)
        self._data: LatentSet | None = None
        self._codec = None

    # ------------------------------------------------------------------------------------------------ data
    def prepare_data(self) -> None:
        """Encode SynthCaps with the codec when no latent set is given; build the tokenizer from its captions."""
        data = self.config.data
        out = latent_dir(data)
        if not (out / INFO_FILE).is_file():
            if data.latents:
                raise FileNotFoundError(f"data.latents: {out} is not a latent set (run `wavefoundry data encode`)")
            from wavefoundry.train.latents import encode_manifest

            manifest = prepare_manifest(DataConfig(synth=data.synth, cache_dir=data.cache_dir),
                                        progress=self.config.train.progress)  # fmt: skip
            log.info("encoding %s with %s into %s", manifest, data.codec, out)
            encode_manifest(self._load_codec(), manifest, out, codec_path=data.codec,
                            progress=self.config.train.progress)  # fmt: skip
        if self.config.model.conditioner.text_encoder == "learned" and not (out / TOKENIZER_FILE).is_file():
            latents = LatentSet(out)
            texts = [t for i in latents.split("train") for t in item_texts(latents.items[i])]
            WordTokenizer.build(texts).save(out / TOKENIZER_FILE)

    def latent_set(self) -> LatentSet:
        if self._data is None:
            self._data = LatentSet(latent_dir(self.config.data))
        return self._data

    def _frames(self) -> int:
        return max(1, math.ceil(self.config.data.seconds * self.latent_set().info.frame_rate - 1e-6))

    def datasets(self) -> tuple[LatentDataset, LatentDataset | None]:
        data, frames = self.latent_set(), self._frames()
        valid = data.split("valid")
        train = LatentDataset(data, data.split("train"), frames=frames)
        held_out = LatentDataset(data, valid, frames=frames, random_crop=False, random_text=False) if valid else None
        return train, held_out

    def collate(self, samples: list[dict]) -> dict[str, Any]:
        return _collate(samples)

    # ----------------------------------------------------------------------------------------------- model
    def build_model(self) -> nn.Module:
        """The model, with the latent statistics and vocabulary of the data recorded in the config."""
        model_cfg = self.config.model
        data = self.latent_set()
        if model_cfg.dit.io_channels != data.info.latent_dim:
            raise ConfigError(f"model.dit.io_channels ({model_cfg.dit.io_channels}) must equal the latent dim of "
                              f"{data.path} ({data.info.latent_dim})")  # fmt: skip
        if not model_cfg.latent_mean:
            model_cfg.latent_mean, model_cfg.latent_std = list(data.info.mean), list(data.info.std)
        if model_cfg.conditioner.text_encoder == "learned":
            return TextToAudioModel(model_cfg, tokenizer=WordTokenizer.load(data.path / TOKENIZER_FILE))
        return TextToAudioModel(model_cfg)

    def loss_fn(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        x0 = batch["latents"]  # (B, C, T), already normalised by the dataset
        obj = self.config.objective
        cond = model.conditioner(batch["text"], batch["seconds_start"], batch["seconds_total"])
        if not model.training:
            return self._eval_loss(model, x0, batch["mask"], cond)
        if obj.cond_dropout > 0:
            cond = cond.null_where(torch.rand(len(cond)) < obj.cond_dropout)
        sampler = get_timestep_sampler(obj.timestep_sampler)
        kw = {"mean": obj.logit_mean, "std": obj.logit_std} if obj.timestep_sampler == "logit-normal" else {}
        t = sampler(x0.shape[0], **kw)  # (B,)
        noise = torch.randn_like(x0)
        v = model.dit(diffuse(x0, noise, t), t, **cond.as_kwargs())  # (B, C, T)
        loss = v_loss(v.float(), v_target(x0, noise, t), batch["mask"])
        return loss, {}

    def _eval_loss(self, model: nn.Module, x0: Tensor, mask: Tensor, cond) -> tuple[Tensor, dict[str, Tensor]]:
        """Validation loss at fixed t (less noisy than a random t): one value per ``objective.eval_t``."""
        metrics = {}
        for t_value in self.config.objective.eval_t:
            t = torch.full((x0.shape[0],), t_value)
            noise = torch.randn_like(x0)
            v = model.dit(diffuse(x0, noise, t), t, **cond.as_kwargs())
            metrics[f"loss_t{t_value:g}"] = v_loss(v.float(), v_target(x0, noise, t), mask).detach()
        return torch.stack(list(metrics.values())).mean(), metrics

    # ------------------------------------------------------------------------------------------------ demo
    def _load_codec(self, path: str | None = None):
        """The codec that encoded the latents (``latents.json``), else ``data.codec``; loaded once."""
        if self._codec is None:
            self._codec = load_autoencoder(path or self.config.data.codec)
        return self._codec

    @torch.no_grad()
    def after_eval(self, model: nn.Module, step: int, run_dir: Path) -> None:
        """Write demo generations of the first held-out prompts (``demo.n_prompts``) as WAV files."""
        demo = self.config.demo
        data = self.latent_set()
        held_out = data.split("valid") or data.split("train")
        picks = held_out[: demo.n_prompts]
        if not picks:
            return
        from wavefoundry.audio.io import save_audio

        items = [data.items[i] for i in picks]
        codec = self._load_codec(data.info.codec)
        audio = generate_audio(model, codec, [it.text for it in items], self._frames(),
                               demo.sampling, seed=demo.seed, seconds_total=self.config.data.seconds)  # fmt: skip
        out = run_dir / "demos" / f"step-{step:08d}"
        out.mkdir(parents=True, exist_ok=True)
        lines = []
        for item, clip in zip(items, audio):
            save_audio(out / f"{item.id}.wav", clip, data.info.sample_rate)
            lines.append(f"{item.id}.wav\t{item.text}")
        (out / "prompts.tsv").write_text("\n".join(lines) + "\n")
        model.train()


def generate_audio(
    model: TextToAudioModel,
    codec,
    prompts: list[str],
    frames: int,
    sampling: SamplingConfig,
    *,
    seed: int = 0,
    seconds_total: float | None = None,
) -> list[np.ndarray]:
    """Sample latents for ``prompts`` and decode them: a list of (C, T) float32 arrays (demo helper)."""
    model.eval()
    rate = codec.sample_rate / codec.hop_length
    total = seconds_total if seconds_total is not None else frames / rate
    cond = model.conditioner(prompts, 0.0, total)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(prompts), model.cfg.dit.io_channels, frames, generator=g)  # (B, C, T)
    x0 = sample_latents(model.dit, noise, cond.as_kwargs(), cond.null().as_kwargs(), sampling, generator=g)
    audio = codec.decode(model.denormalize(x0))[..., : round(total * codec.sample_rate)]  # (B, C, T)
    return [a.numpy() for a in audio]
