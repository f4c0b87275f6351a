"""Oobleck encoder and decoder: the convolutional audio autoencoder of Stable Audio Open 1.0.

Architecture as in stable-audio-tools (``stable_audio_tools/models/autoencoders.py``; Evans et al. 2024,
"Stable Audio Open"): weight-normalised 1-D convolutions, SnakeBeta activations and residual units with
dilations 1, 3, 9. The encoder maps (B, audio_channels, T) audio to (B, encoder_out_dim, T / hop) frames
(2 x latent_dim: mean and scale for the VAE bottleneck); the decoder maps (B, latent_dim, L) latents to
(B, audio_channels, L * hop) audio. The bottleneck itself lives elsewhere.

Our module names differ from stable-audio-tools' ``nn.Sequential`` indices; ``wavefoundry.formats.oobleck``
converts checkpoints both ways.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from wavefoundry.config import ConfigError
from wavefoundry.nn.conv import WNConv1d, WNConvTranspose1d, remove_weight_norm
from wavefoundry.nn.snake import SnakeBeta

#: Dilations of the three residual units in every block, and their kernel width.
DILATIONS = (1, 3, 9)
RES_KERNEL = 7


@dataclass(kw_only=True)
class OobleckConfig:
    """Shape of an Oobleck encoder/decoder pair; the defaults are Stable Audio Open 1.0's.

    ``channels * c_mults[i]`` is the width after encoder block i (the stem has ``channels``); the decoder
    mirrors it. ``encoder_out_dim`` is 2 x ``latent_dim`` for a VAE bottleneck (mean and scale) and equals
    ``latent_dim`` for quantisers. Strides must be even: an odd stride makes the transposed convolution
    drop a sample, so decoded lengths would no longer be ``frames * hop_length``.
    """

    sample_rate: int = 44100
    audio_channels: int = 2
    channels: int = 128
    c_mults: tuple[int, ...] = (1, 2, 4, 8, 16)
    strides: tuple[int, ...] = (2, 4, 4, 8, 8)
    latent_dim: int = 64
    encoder_out_dim: int = 128
    use_snake: bool = True  # False: ELU, as stable-audio-tools' use_snake=False
    final_tanh: bool = False

    def __post_init__(self) -> None:
        self.c_mults, self.strides = tuple(self.c_mults), tuple(self.strides)
        sizes = {
            "sample_rate": self.sample_rate,
            "audio_channels": self.audio_channels,
            "channels": self.channels,
            "latent_dim": self.latent_dim,
            "encoder_out_dim": self.encoder_out_dim,
        }
        for name, value in sizes.items():
            if value < 1:
                raise ConfigError(f"OobleckConfig.{name} must be >= 1, got {value}")
        if not self.strides or len(self.c_mults) != len(self.strides):
            raise ConfigError(
                f"OobleckConfig: need one c_mult per stride (at least one), got c_mults={self.c_mults}, "
                f"strides={self.strides}"
            )
        if any(m < 1 for m in self.c_mults):
            raise ConfigError(f"OobleckConfig.c_mults must be >= 1, got {self.c_mults}")
        if any(s < 2 or s % 2 for s in self.strides):
            raise ConfigError(
                f"OobleckConfig.strides must be even and >= 2 (odd strides lose a sample in the decoder), "
                f"got {self.strides}"
            )

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame: the product of the strides."""
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def widths(self) -> tuple[int, ...]:
        """Channel width at each resolution, finest first: the stem's, then after each encoder block."""
        return tuple(self.channels * m for m in (1, *self.c_mults))


def _activation(use_snake: bool, channels: int) -> nn.Module:
    return SnakeBeta(channels) if use_snake else nn.ELU()


class ResidualUnit(nn.Module):
    """``x + conv1x1(act(conv7_dilated(act(x))))`` at constant width and length."""

    def __init__(self, channels: int, dilation: int, use_snake: bool = True) -> None:
        super().__init__()
        self.act1 = _activation(use_snake, channels)
        pad = (RES_KERNEL - 1) * dilation // 2
        self.conv1 = WNConv1d(channels, channels, RES_KERNEL, dilation=dilation, padding=pad)
        self.act2 = _activation(use_snake, channels)
        self.conv2 = WNConv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T) -> (B, C, T)."""
        y = self.conv2(self.act2(self.conv1(self.act1(x))))
        # In place is safe with autograd too: conv backward needs its input and weight, not its output.
        return y.add_(x)


class EncoderBlock(nn.Module):
    """Three residual units, then an activation and a strided conv (kernel 2 * stride) that downsamples."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, use_snake: bool = True) -> None:
        super().__init__()
        self.units = nn.ModuleList(ResidualUnit(in_channels, d, use_snake) for d in DILATIONS)
        self.act = _activation(use_snake, in_channels)
        self.down = WNConv1d(in_channels, out_channels, 2 * stride, stride=stride, padding=math.ceil(stride / 2))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, T) -> (B, C_out, T / stride)."""
        for unit in self.units:
            x = unit(x)
        return self.down(self.act(x))


class DecoderBlock(nn.Module):
    """An activation and a transposed conv (kernel 2 * stride) that upsamples, then three residual units."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, use_snake: bool = True) -> None:
        super().__init__()
        self.act = _activation(use_snake, in_channels)
        self.up = WNConvTranspose1d(in_channels, out_channels, 2 * stride, stride=stride, padding=math.ceil(stride / 2))
        self.units = nn.ModuleList(ResidualUnit(out_channels, d, use_snake) for d in DILATIONS)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, T) -> (B, C_out, T * stride)."""
        x = self.up(self.act(x))
        for unit in self.units:
            x = unit(x)
        return x


def _check_input(x: Tensor, channels: int, what: str) -> None:
    if x.dim() != 3 or x.shape[1] != channels:
        raise ValueError(
            f"{what}: expected (B, {channels}, T) input with {channels} channels, got shape {tuple(x.shape)}"
        )


class OobleckEncoder(nn.Module):
    """Audio (B, audio_channels, T) -> pre-bottleneck frames (B, encoder_out_dim, T / hop_length).

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: OobleckConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.stem = WNConv1d(cfg.audio_channels, w[0], 7, padding=3)
        self.blocks = nn.ModuleList(EncoderBlock(w[i], w[i + 1], s, cfg.use_snake) for i, s in enumerate(cfg.strides))
        self.act = _activation(cfg.use_snake, w[-1])
        self.proj = WNConv1d(w[-1], cfg.encoder_out_dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Encode.

        Args:
            x: (B, audio_channels, T) audio, T a multiple of ``cfg.hop_length`` (pad first).

        Returns:
            (B, encoder_out_dim, T / hop_length) frames.
        """
        _check_input(x, self.cfg.audio_channels, "OobleckEncoder")
        hop = self.cfg.hop_length
        if x.shape[-1] == 0 or x.shape[-1] % hop:
            raise ValueError(
                f"OobleckEncoder: length must be a positive multiple of hop_length={hop} (pad first), got {x.shape[-1]}"
            )
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.proj(self.act(x)).contiguous()  # a copy only after remove_weight_norm(channels_last=True)

    def remove_weight_norm(self, channels_last: bool = True) -> OobleckEncoder:
        """Fold weight normalisation into plain convs for inference (outputs unchanged); returns self.

        Args:
            channels_last: run the convs on time-major memory (1.2-1.3x faster on CPU; see ``nn/conv.py``).
        """
        remove_weight_norm(self, channels_last)
        return self


class OobleckDecoder(nn.Module):
    """Latents (B, latent_dim, L) -> audio (B, audio_channels, L * hop_length).

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: OobleckConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        n = len(cfg.strides)
        self.stem = WNConv1d(cfg.latent_dim, w[-1], 7, padding=3)
        self.blocks = nn.ModuleList(
            DecoderBlock(w[i + 1], w[i], cfg.strides[i], cfg.use_snake) for i in reversed(range(n))
        )
        self.act = _activation(cfg.use_snake, w[0])
        self.proj = WNConv1d(w[0], cfg.audio_channels, 7, padding=3, bias=False)
        self.out_act = nn.Tanh() if cfg.final_tanh else nn.Identity()

    def forward(self, z: Tensor) -> Tensor:
        """Decode.

        Args:
            z: (B, latent_dim, L) latents, L >= 1.

        Returns:
            (B, audio_channels, L * hop_length) audio.
        """
        _check_input(z, self.cfg.latent_dim, "OobleckDecoder")
        if z.shape[-1] == 0:
            raise ValueError("OobleckDecoder: got zero latent frames")
        x = self.stem(z)
        for block in self.blocks:
            x = block(x)
        return self.out_act(self.proj(self.act(x))).contiguous()  # see OobleckEncoder.forward

    def remove_weight_norm(self, channels_last: bool = True) -> OobleckDecoder:
        """Fold weight normalisation into plain convs for inference (outputs unchanged); returns self.

        Args:
            channels_last: run the convs on time-major memory (1.2-1.3x faster on CPU; see ``nn/conv.py``).
        """
        remove_weight_norm(self, channels_last)
        return self


def oobleck_sao() -> OobleckConfig:
    """Stable Audio Open 1.0: 44.1 kHz stereo, hop 2048 (21.5 Hz), 64 latent channels; 156.1M parameters."""
    return OobleckConfig()


def oobleck_tiny_16k_mono() -> OobleckConfig:
    """A CPU-sized mono codec for 16 kHz: hop 256 (62.5 Hz), 16 latent channels."""
    return OobleckConfig(
        sample_rate=16000,
        audio_channels=1,
        channels=16,
        c_mults=(1, 2, 4, 8),
        strides=(2, 4, 4, 8),
        latent_dim=16,
        encoder_out_dim=32,
    )


def oobleck_small_16k_stereo() -> OobleckConfig:
    """A CPU-sized stereo codec for 16 kHz (SynthCaps' format): hop 256 (62.5 Hz), 32 latent channels."""
    return OobleckConfig(
        sample_rate=16000,
        audio_channels=2,
        channels=20,
        c_mults=(1, 2, 4, 8),
        strides=(2, 4, 4, 8),
        latent_dim=32,
        encoder_out_dim=64,
    )
