"""Task "autoencoder": train an Oobleck autoencoder (VAE, RVQ or FSQ bottleneck) with the Stable Audio Open recipe.

Generator loss: multi-resolution STFT (SAO stereo scheme) + KL (VAE) or commitment (RVQ), then, after the
adversarial warm-up, hinge (or least-squares) adversarial loss and feature matching against an EnCodec-style
multi-scale STFT discriminator, which is trained with its own optimizer (``disc_optim``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor, nn

from wavefoundry.codecs.autoencoder import Autoencoder, AutoencoderConfig
from wavefoundry.codecs.bottlenecks import BottleneckOutput
from wavefoundry.codecs.discriminators import DiscriminatorConfig, MultiScaleSTFTDiscriminator
from wavefoundry.codecs.losses import (
    LossWeights,
    StereoSTFTLoss,
    STFTLossConfig,
    adversarial_loss,
    feature_matching_loss,
)
from wavefoundry.data.datasets import ClipDataset
from wavefoundry.train.datasource import DataConfig, eval_clip, prepare_manifest, split_items
from wavefoundry.train.optim import OptimConfig
from wavefoundry.train.tasks import RunConfig, Task, register


@dataclass(kw_only=True)
class CodecLossConfig:
    """Spectral loss, term weights and the adversarial objective."""

    stft: STFTLossConfig = field(default_factory=STFTLossConfig)
    weights: LossWeights = field(default_factory=LossWeights)
    adversarial: Literal["hinge", "lsgan"] = "hinge"
    normalize_feature_matching: bool = False


@dataclass(kw_only=True)
class AutoencoderRunConfig(RunConfig):
    task: str = "autoencoder"
    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: CodecLossConfig = field(default_factory=CodecLossConfig)
    disc_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-4, betas=(0.8, 0.99)))
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        ob, clip = self.model.oobleck, self.data.clip
        rates = {"model.oobleck.sample_rate": ob.sample_rate, "data.clip.sample_rate": clip.sample_rate,
                 "loss.stft.sample_rate": self.loss.stft.sample_rate}  # fmt: skip
        if len(set(rates.values())) != 1:
            raise ValueError(f"sample rates must agree: {rates}")
        channels = {"model.oobleck.audio_channels": ob.audio_channels, "data.clip.channels": clip.channels,
                    "discriminator.audio_channels": self.discriminator.audio_channels}  # fmt: skip
        if len(set(channels.values())) != 1:
            raise ValueError(f"channel counts must agree: {channels}")


class CodecTrainer(nn.Module):
    """What the engine trains: the autoencoder and its discriminator (saved together; use ``.autoencoder``)."""

    def __init__(self, cfg: AutoencoderRunConfig) -> None:
        super().__init__()
        self.autoencoder = Autoencoder(cfg.model)
        self.discriminator = MultiScaleSTFTDiscriminator(cfg.discriminator)


def _scalar_metrics(values: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().float().mean() for k, v in values.items()}


@register
class AutoencoderTask(Task):
    name = "autoencoder"
    Config = AutoencoderRunConfig

    def __init__(self, config: AutoencoderRunConfig) -> None:
        super().__init__(config)
        self.stft_loss = StereoSTFTLoss(config.loss.stft)
        self.adv = adversarial_loss(config.loss.adversarial)

    def prepare_data(self) -> None:
        prepare_manifest(self.config.data, progress=self.config.train.progress)

    def datasets(self) -> tuple[ClipDataset, ClipDataset | None]:
        train, valid = split_items(self.config.data)
        clip = self.config.data.clip
        return ClipDataset(train, clip), (ClipDataset(valid, eval_clip(clip)) if valid else None)

    def build_model(self) -> nn.Module:
        return CodecTrainer(self.config)

    def init_module(self, model: nn.Module) -> nn.Module:
        return model.autoencoder  # the exported codec; the discriminator starts fresh

    def optimizer_groups(self, model: nn.Module) -> dict:
        return {
            "generator": (model.autoencoder, self.config.optim),
            "discriminator": (model.discriminator, self.config.disc_optim),
        }

    def auxiliary_loss(self, model: nn.Module, batch: dict, out: BottleneckOutput) -> tuple[Tensor | float, dict]:
        """A weighted extra generator loss from the bottleneck output, and its metrics (none here; subclasses add
        e.g. CTC on codebook 0, ``train/semantic_codec.py``)."""
        return 0.0, {}

    def loss_fn(self, model: nn.Module, batch: dict) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        w = self.config.loss.weights
        real = batch["audio"]  # (B, C, T)
        fake, out = model.autoencoder(real)
        stft = self.stft_loss(fake, real)
        waveform = (fake - real).abs().mean()
        generator = w.stft * stft + w.waveform * waveform + w.kl * out.losses.get("kl", 0.0)
        generator = generator + sum(v for k, v in out.losses.items() if k != "kl")  # commitment/codebook: weighted
        metrics = {"stft": stft, "waveform_l1": waveform.detach(), **_scalar_metrics(out.losses),
                   **_scalar_metrics(out.metrics)}  # fmt: skip
        extra, extra_metrics = self.auxiliary_loss(model, batch, out)
        generator = generator + extra
        metrics.update(extra_metrics)
        if not (model.training and w.adversarial_active(self.step)):
            return {"generator": generator}, metrics
        real_logits, real_feats = model.discriminator(real)
        fake_logits, fake_feats = model.discriminator(fake)
        adv = self.adv.generator(fake_logits)
        fm = feature_matching_loss(real_feats, fake_feats, normalize=self.config.loss.normalize_feature_matching)
        generator = generator + w.adversarial * adv + w.feature_matching * fm
        detached_logits, _ = model.discriminator(fake.detach())
        discriminator = self.adv.discriminator(real_logits, detached_logits)
        metrics.update(adversarial=adv.detach(), feature_matching=fm.detach())
        return {"generator": generator, "discriminator": discriminator}, metrics
