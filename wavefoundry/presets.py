"""Named run configs. A preset is a function returning a run config; a variant calls another and edits fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from wavefoundry.codecs.autoencoder import AutoencoderConfig
from wavefoundry.codecs.bottlenecks import BottleneckConfig, RVQConfig, VAEConfig
from wavefoundry.codecs.discriminators import DiscriminatorConfig
from wavefoundry.codecs.losses import LossWeights, STFTLossConfig
from wavefoundry.codecs.oobleck import oobleck_tiny_16k_mono
from wavefoundry.conditioning.conditioner import ConditionerConfig
from wavefoundry.conditioning.text import LearnedTextEncoderConfig
from wavefoundry.config import ConfigError
from wavefoundry.data.datasets import ClipConfig
from wavefoundry.data.synth import SynthConfig
from wavefoundry.diffusion.dit import dit_tiny
from wavefoundry.train.autoencoding import AutoencoderRunConfig, CodecLossConfig
from wavefoundry.train.contrastive import ContrastiveRunConfig
from wavefoundry.train.datasource import DataConfig
from wavefoundry.train.diffusion import DiffusionRunConfig, LatentDataConfig, ObjectiveConfig, TextToAudioConfig
from wavefoundry.train.engine import TrainConfig
from wavefoundry.train.lm import lm_speech_tiny
from wavefoundry.train.masked import masked_mega, masked_tiny
from wavefoundry.train.optim import OptimConfig
from wavefoundry.train.schedules import ScheduleConfig
from wavefoundry.train.semantic_codec import semantic_codec_tiny, semantic_codec_tiny_ft
from wavefoundry.train.tagging import TaggerRunConfig
from wavefoundry.train.tasks import RunConfig


def tagger_tiny() -> TaggerRunConfig:
    """SynthCaps tagger that trains in about a minute on 2 CPU cores (the ``wavefoundry demo tagger`` job)."""
    return TaggerRunConfig(
        data=DataConfig(synth=SynthConfig(n_items=480, seconds=2.0, channels=1, valid_fraction=0.15)),
        train=TrainConfig(steps=300, batch_size=32, eval_every=100, ckpt_every=100, log_every=10),
        optim=OptimConfig(lr=2e-3, weight_decay=0.05),
        schedule=ScheduleConfig(name="cosine", warmup_steps=20, min_ratio=0.05),
    )


def tagger_small() -> TaggerRunConfig:
    """A larger tagger on 2,000 four-second SynthCaps items (about 15 minutes on 2 CPU cores)."""
    cfg = tagger_tiny()
    cfg.data.synth = SynthConfig(n_items=2000, seconds=4.0, channels=1)
    cfg.model.width, cfg.model.depth = 32, 4
    cfg.train.steps = 2000
    return cfg


def codec_tiny() -> AutoencoderRunConfig:
    """Continuous (VAE) Oobleck codec for 16 kHz mono SynthCaps: hop 256, 16 latent channels (the default codec)."""
    oobleck = oobleck_tiny_16k_mono()
    return AutoencoderRunConfig(
        model=AutoencoderConfig(oobleck=oobleck, bottleneck=BottleneckConfig(kind="vae", vae=VAEConfig(latent_dim=16))),
        discriminator=DiscriminatorConfig(audio_channels=1, channels=8, n_ffts=(1024, 512, 256, 128, 64)),
        loss=CodecLossConfig(
            stft=STFTLossConfig(sample_rate=16000, fft_sizes=(1024, 512, 256, 128, 64, 32)),
            weights=LossWeights(adversarial_warmup_steps=1000),
        ),
        data=DataConfig(
            synth=SynthConfig(n_items=1000, seconds=4.0, channels=1, valid_fraction=0.05),
            clip=ClipConfig(sample_rate=16000, channels=1, seconds=0.75),
        ),
        train=TrainConfig(steps=1500, batch_size=8, eval_every=250, ckpt_every=100, log_every=25, ema_decay=0.999),
        optim=OptimConfig(lr=5e-4, betas=(0.8, 0.99), weight_decay=1e-3),
        disc_optim=OptimConfig(lr=5e-4, betas=(0.8, 0.99), weight_decay=1e-3),
        schedule=ScheduleConfig(name="cosine", warmup_steps=100, min_ratio=0.1),
    )


def codec_tiny_rvq() -> AutoencoderRunConfig:
    """Discrete variant of ``codec-tiny``: residual VQ with 4 codebooks of 256 codes (2 kbit/s at 62.5 Hz)."""
    cfg = codec_tiny()
    cfg.model = AutoencoderConfig(
        oobleck=dataclasses.replace(cfg.model.oobleck, encoder_out_dim=16),
        bottleneck=BottleneckConfig(kind="rvq", rvq=RVQConfig(dim=16, codebook_size=256, num_quantizers=4,
                                                              quantizer_dropout=0.5)),
    )  # fmt: skip
    return cfg


def codec_stereo() -> AutoencoderRunConfig:
    """Stereo 16 kHz VAE for the text-to-audio demo: hop 256 (62.5 Hz), 32 latent channels (16x compression).

    2,500 spectral steps (MR-STFT + waveform L1 weight 10 + KL) on 2,000 stereo SynthCaps items, 36 minutes on 2
    CPU cores; the posterior std starts at 0.02 (``vae.init_std``: without it this model collapses to silence).
    The GAN phase starts at step 2,500, so it is off in this recipe; raise ``train.steps`` to add one.
    """
    cfg = codec_tiny()
    cfg.model = AutoencoderConfig(
        oobleck=dataclasses.replace(cfg.model.oobleck, audio_channels=2, latent_dim=32, encoder_out_dim=64),
        bottleneck=BottleneckConfig(kind="vae", vae=VAEConfig(latent_dim=32, init_std=0.02)),
    )
    cfg.discriminator.audio_channels = 2
    cfg.loss.weights.adversarial_warmup_steps = 2500
    cfg.loss.weights.waveform = 10.0  # without it, pitch did not survive even when overfitting 4 notes (docs/recon.md)
    cfg.data = DataConfig(
        synth=SynthConfig(n_items=2000, seconds=4.0, channels=2, valid_fraction=0.05),
        clip=ClipConfig(sample_rate=16000, channels=2, seconds=0.75),
    )
    cfg.train.steps, cfg.train.ckpt_every, cfg.train.eval_every = 2500, 200, 250
    return cfg


def tagger_eval() -> TaggerRunConfig:
    """The sound-class judge of text-to-audio evaluation: ``tagger-small`` on the mono mix of 4 s clips of the
    ``codec-stereo``/``t2a-tiny`` SynthCaps set, trained on its training split only (held-out items stay unseen)."""
    cfg = tagger_small()
    cfg.data = DataConfig(synth=codec_stereo().data.synth, clip=ClipConfig(sample_rate=16000, channels=1, seconds=4.0))
    return cfg


def t2a_tiny() -> DiffusionRunConfig:
    """Text-to-audio on SynthCaps latents of ``models/codec-stereo``: DiT width 256 x 6 blocks, learned text
    encoder width 128 x 2 layers, 4,000 stereo SynthCaps items, 2,500 steps of 16 (the ``make demo`` model)."""
    dit = dataclasses.replace(dit_tiny(), io_channels=32)
    conditioner = ConditionerConfig(
        text=LearnedTextEncoderConfig(vocab_size=1024, dim=128, depth=2, heads=4, max_length=48, out_dim=128),
        cond_dim=dit.cond_token_dim,
    )
    return DiffusionRunConfig(
        model=TextToAudioConfig(dit=dit, conditioner=conditioner),
        data=LatentDataConfig(codec="models/codec-stereo",
                              synth=dataclasses.replace(codec_stereo().data.synth, n_items=4000)),
        objective=ObjectiveConfig(timestep_sampler="logit-normal"),
        train=TrainConfig(steps=2500, batch_size=16, eval_every=500, ckpt_every=250, log_every=25, ema_decay=0.999,
                          precision="bf16"),  # bf16 autocast: 1.7x faster steps than fp32 on this AVX512-BF16 CPU
        optim=OptimConfig(lr=5e-4, betas=(0.9, 0.99), weight_decay=1e-3),
        schedule=ScheduleConfig(name="cosine", warmup_steps=200, min_ratio=0.1),
    )  # fmt: skip


def clap_synthcaps() -> ContrastiveRunConfig:
    """The offline text-audio model of CLAP scores (``models/eval-clap``): log-mel CNN audio tower (width 16 x 4
    blocks) and learned text encoder (width 128 x 2 layers) in a 128-d space, symmetric InfoNCE, batch 64 of 2 s
    mono crops of the ``tagger-eval`` SynthCaps set (training split only), each with a random caption variant."""
    cfg = ContrastiveRunConfig(
        data=DataConfig(synth=codec_stereo().data.synth, clip=ClipConfig(sample_rate=16000, channels=1, seconds=2.0)),
        train=TrainConfig(steps=1200, batch_size=64, eval_every=300, ckpt_every=100, log_every=10,
                          precision="bf16"),  # bf16 autocast: faster steps than fp32 in side-by-side runs here
        optim=OptimConfig(lr=1e-3, betas=(0.9, 0.98), weight_decay=0.05),
        schedule=ScheduleConfig(name="cosine", warmup_steps=50, min_ratio=0.05),
    )  # fmt: skip
    cfg.model.audio.width, cfg.model.audio.depth = 16, 4
    return cfg


PRESETS: dict[str, Callable[[], RunConfig]] = {
    "tagger-tiny": tagger_tiny,
    "tagger-small": tagger_small,
    "codec-tiny": codec_tiny,
    "codec-tiny-rvq": codec_tiny_rvq,
    "codec-stereo": codec_stereo,
    "t2a-tiny": t2a_tiny,
    "tagger-eval": tagger_eval,
    "clap-synthcaps": clap_synthcaps,
    "semantic-codec-tiny": semantic_codec_tiny,
    "semantic-codec-tiny-ft": semantic_codec_tiny_ft,
    "lm-speech-tiny": lm_speech_tiny,
    "masked-tiny": masked_tiny,
    "masked-mega": masked_mega,
}


def get_preset(name: str) -> RunConfig:
    """The run config of preset ``name``; an unknown name raises ``ConfigError`` listing the valid ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()
