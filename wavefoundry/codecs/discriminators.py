"""EnCodec's multi-scale STFT discriminator (MS-STFTD; Défossez et al. 2022).

The layout follows audiocraft's ``MultiScaleSTFTDiscriminator`` (the ``encodec`` discriminator that
stable-audio-tools' ``EncodecDiscriminator`` wraps): per scale, a normalised complex STFT (``center=False``) is fed
as 2 x C real/imaginary channels, shaped (B, 2C, frames, freqs), to a 2D conv stack with dilations in time and
stride 2 in frequency, LeakyReLU(0.2) after every conv but the last, and weight norm on all convs but the first
(audiocraft's first ``NormConv2d`` keeps its default ``norm="none"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from wavefoundry.audio.features import stft


@dataclass(kw_only=True)
class DiscriminatorConfig:
    """MS-STFT discriminator settings. ``hop_lengths`` / ``win_lengths`` of None mean ``n_fft // 4`` / ``n_fft``.

    Stable Audio Open's VAE used ``channels=64`` (stable_audio_2_0_vae.json); 32 is EnCodec's and SA 1.0's.
    """

    audio_channels: int = 2
    channels: int = 32
    max_channels: int = 1024
    channel_growth: int = 1  # audiocraft filters_scale: layer i has channels * growth**i (capped)
    n_ffts: tuple[int, ...] = (2048, 1024, 512, 256, 128)
    hop_lengths: tuple[int, ...] | None = None
    win_lengths: tuple[int, ...] | None = None
    kernel_size: tuple[int, int] = (3, 9)  # (time, frequency)
    stride: tuple[int, int] = (1, 2)
    dilations: tuple[int, ...] = (1, 2, 4)  # in time
    normalized: bool = True  # divide the STFT by sqrt(sum(window^2))
    negative_slope: float = 0.2

    def __post_init__(self) -> None:
        if self.audio_channels < 1 or self.channels < 1 or self.max_channels < 1 or self.channel_growth < 1:
            raise ValueError("DiscriminatorConfig: audio_channels, channels, max_channels, channel_growth must be >= 1")
        n = len(self.n_ffts)
        if n == 0 or any(f < 2 for f in self.n_ffts):
            raise ValueError(f"DiscriminatorConfig: n_ffts must be non-empty, each >= 2, got {self.n_ffts}")
        for name in ("hop_lengths", "win_lengths"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"DiscriminatorConfig: {name} has {len(value)} entries, n_ffts has {n}")
        if any(h < 1 for h in self.hops) or any(not 1 <= w <= f for w, f in zip(self.windows, self.n_ffts)):
            raise ValueError("DiscriminatorConfig: need hop >= 1 and 1 <= win_length <= n_fft at every scale")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or not self.dilations or min(self.dilations) < 1:
            raise ValueError(
                "DiscriminatorConfig: kernel_size, stride and dilations must be >= 1 (dilations non-empty)"
            )
        if self.negative_slope < 0:
            raise ValueError(f"DiscriminatorConfig: negative_slope must be >= 0, got {self.negative_slope}")

    @property
    def hops(self) -> tuple[int, ...]:
        return self.hop_lengths if self.hop_lengths is not None else tuple(f // 4 for f in self.n_ffts)

    @property
    def windows(self) -> tuple[int, ...]:
        return self.win_lengths if self.win_lengths is not None else self.n_ffts


def _same_padding(kernel: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    return ((kernel[0] - 1) * dilation[0] // 2, (kernel[1] - 1) * dilation[1] // 2)


class STFTDiscriminator(nn.Module):
    """One scale of the MS-STFTD: complex spectrogram -> conv stack -> (B, 1, frames, freqs') logits."""

    def __init__(
        self,
        *,
        audio_channels: int,
        n_fft: int,
        hop_length: int,
        win_length: int,
        widths: list[int],
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        dilations: tuple[int, ...],
        normalized: bool,
        negative_slope: float,
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length, self.normalized = n_fft, hop_length, win_length, normalized
        square = (kernel_size[0], kernel_size[0])
        convs = [nn.Conv2d(2 * audio_channels, widths[0], kernel_size, padding=_same_padding(kernel_size))]
        for i, d in enumerate(dilations):
            pad = _same_padding(kernel_size, (d, 1))
            conv = nn.Conv2d(widths[i], widths[i + 1], kernel_size, stride=stride, dilation=(d, 1), padding=pad)
            convs.append(weight_norm(conv))
        convs.append(weight_norm(nn.Conv2d(widths[-2], widths[-1], square, padding=_same_padding(square))))
        self.convs = nn.ModuleList(convs)
        self.conv_post = weight_norm(nn.Conv2d(widths[-1], 1, square, padding=_same_padding(square)))
        self.activation = nn.LeakyReLU(negative_slope)

    def spectrogram(self, x: Tensor) -> Tensor:
        """(B, C, T) audio -> (B, 2C, frames, freqs) real and imaginary parts of the STFT."""
        spec = stft(x, self.n_fft, self.hop_length, self.win_length, "hann", center=False)  # (B, C, F, N)
        if self.normalized:
            # torchaudio Spectrogram(normalized=True): divide by the window's L2 norm.
            window = torch.hann_window(self.win_length, dtype=torch.float64)
            spec = spec / window.square().sum().sqrt().item()
        z = torch.cat([spec.real, spec.imag], dim=1)  # (B, 2C, F, N)
        return z.transpose(-1, -2)  # (B, 2C, N, F)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Map (B, C, T) audio to logits (B, 1, frames, freqs') and the activations of each conv."""
        z = self.spectrogram(x).to(self.conv_post.bias.dtype)
        features = []
        for conv in self.convs:
            z = self.activation(conv(z))
            features.append(z)
        return self.conv_post(z), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """EnCodec MS-STFTD: one :class:`STFTDiscriminator` per FFT size, exposed as ``blocks``."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = c = config
        n_layers = len(c.dilations) + 2  # first conv, dilated convs, last square conv
        widths = [min(c.channels * c.channel_growth**i, c.max_channels) for i in range(n_layers)]
        self.blocks = nn.ModuleList(
            STFTDiscriminator(
                audio_channels=c.audio_channels,
                n_fft=n_fft,
                hop_length=hop,
                win_length=win,
                widths=widths,
                kernel_size=c.kernel_size,
                stride=c.stride,
                dilations=c.dilations,
                normalized=c.normalized,
                negative_slope=c.negative_slope,
            )
            for n_fft, hop, win in zip(c.n_ffts, c.hops, c.windows)
        )

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """Per-scale logits and feature maps of (B, C, T) audio.

        Returns:
            (logits, features): ``logits[s]`` is (B, 1, frames_s, freqs_s'); ``features[s]`` lists the
            activations of every conv but the last at scale ``s``.
        """
        c = self.config
        if x.ndim != 3 or x.shape[1] != c.audio_channels:
            raise ValueError(f"expected (B, {c.audio_channels}, T) audio, got shape {tuple(x.shape)}")
        if x.shape[-1] < max(c.n_ffts):
            raise ValueError(f"need at least {max(c.n_ffts)} samples (the largest n_fft), got {x.shape[-1]}")
        logits, features = [], []
        for block in self.blocks:
            logit, feats = block(x)
            logits.append(logit)
            features.append(feats)
        return logits, features
