"""A small log-mel CNN audio tagger: the classifier of ``wavefoundry demo tagger``, and a cheap offline embedder.

Input audio (B, C, T) is averaged to mono, turned into a log-mel spectrogram, passed through ``blocks`` of
(conv 3x3, GroupNorm, GELU) x 2 + 2x2 average pooling, then mean/max pooled over time and frequency
(PANNs-style global pooling, Kong et al. 2020) into an embedding and one logit per label.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch import nn

from wavefoundry.audio.features import MelConfig, MelSpectrogram


@dataclass(kw_only=True)
class TaggerConfig:
    """Label set, front end and width of :class:`AudioTagger`."""

    labels: tuple[str, ...]
    mel: MelConfig = field(default_factory=lambda: MelConfig(sample_rate=16000, n_fft=512, hop_length=320, n_mels=64))
    width: int = 16
    depth: int = 3
    embed_dim: int = 128
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"tagger.labels must be >= 2 distinct names, got {self.labels}")
        if self.width < 1 or self.depth < 1 or self.embed_dim < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("tagger: width, depth, embed_dim >= 1 and dropout in [0, 1) are required")


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.GroupNorm(min(8, c_out), c_out),
            nn.GELU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.GroupNorm(min(8, c_out), c_out),
            nn.GELU(),
            nn.AvgPool2d(2, ceil_mode=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AudioTagger(nn.Module):
    """Log-mel CNN classifier. ``forward(audio (B, C, T)) -> logits (B, n_labels)``."""

    def __init__(self, cfg: TaggerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend = MelSpectrogram(cfg.mel)
        widths = [1] + [cfg.width * 2**i for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in itertools.pairwise(widths))
        self.proj = nn.Linear(widths[-1], cfg.embed_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.embed_dim, len(cfg.labels))

    def embed(self, audio: torch.Tensor) -> torch.Tensor:
        """Clip embedding (B, embed_dim) of audio (B, C, T)."""
        mel = self.frontend(audio.mean(dim=1))  # (B, n_mels, frames)
        h = mel.unsqueeze(1)  # (B, 1, n_mels, frames)
        for block in self.blocks:
            h = block(h)
        h = h.mean(dim=2)  # (B, D, frames)
        h = h.mean(dim=-1) + h.amax(dim=-1)  # (B, D)
        return torch.nn.functional.gelu(self.proj(h))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.embed(audio)))
