"""OpenL3 audio embedding network in pure torch (Cramer et al. 2019, "Look, Listen and Learn More").

This is the audio sub-network of L3 as the ``openl3`` package 0.4.2 runs it (marl/openl3, the version that
Stability-AI/stable-audio-metrics pins for FD_openl3, with kapre 0.3.7), front end included:

* Front end (openl3/models.py ``_construct_mel256_audio_network`` with kapre 0.3.7
  ``composed.get_melspectrogram_layer(n_fft=2048, hop_length=242, n_mels=256, sample_rate=48000, pad_end=True)``):
  one 1 s window (48,000 samples) is framed every 242 samples without centring, zero-padded at the end to
  ``ceil(48000 / 242) = 199`` frames (``tf.signal.stft(pad_end=True)``), Hann-windowed (periodic,
  ``tf.signal.hann_window``), |FFT| magnitudes (kapre ``Magnitude``: not squared), mapped through
  ``librosa.filters.mel(sr=48000, n_fft=2048, n_mels=256)`` (Slaney scale and area norm, 0 Hz to 24 kHz;
  kapre ``backend.filterbank_mel``), then converted by openl3's ``kapre_v0_1_4_magnitude_to_decibel``:
  ``10 * log10(max(x, 1e-10))`` minus its maximum over each window, floored at -80 dB. The image is
  (mel, time) = (256, 199) with one channel, lowest mel band first.
* Network (same function): BatchNormalization on the spectrogram, then four blocks of Conv2D 3x3 'same' + BN +
  ReLU, twice, with MaxPooling2D 2x2 stride 2 ('valid') after blocks 1-3; filters 64, 128, 256, 512. Block 4's
  second conv (``audio_embedding_layer``) has no BN, ReLU or pooling after it. Keras BN epsilon is 1e-3.
* Embedding (``load_audio_embedding_model``): MaxPooling2D over ``AUDIO_POOLING_SIZES`` with padding 'same',
  then Flatten in Keras channels-last (H, W, C) order: (32, 24) -> 512-d for mel256, (8, 8) -> 6144-d.

Keras 'same' for a 3x3 stride-1 conv pads one zero on every side, which is ``padding=1`` here; Keras 'same'
pooling pads ``total = max((ceil(n / s) - 1) * s + k - n, 0)`` with ``total // 2`` before (padded cells never
win the max), see :func:`max_pool2d_same`.

Framing of whole files, channel handling and weight loading live in :mod:`wavefoundry.eval.openl3`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavefoundry.audio.features import mel_filterbank, stft

#: Rate the network runs at (openl3/core.py ``TARGET_SR``).
SAMPLE_RATE = 48000
#: One analysis window: 1 s (openl3/models.py ``audio_window_dur = 1``).
WINDOW = SAMPLE_RATE
#: Front-end STFT settings shared by mel128 and mel256 (openl3/models.py ``n_dft``, ``n_hop``).
N_FFT = 2048
HOP_LENGTH = 242
#: openl3/models.py ``kapre_v0_1_4_magnitude_to_decibel`` defaults.
DB_AMIN = 1e-10
DB_DYNAMIC_RANGE = 80.0
#: Keras ``BatchNormalization`` default epsilon (tf.keras.layers.BatchNormalization(epsilon=1e-3)).
KERAS_BN_EPS = 1e-3
#: Filters of the four conv blocks (openl3/models.py ``n_filter_a_1`` .. ``n_filter_a_4``).
FILTERS = (64, 128, 256, 512)
#: Input representation -> number of mel bands.
INPUT_REPRS = {"mel128": 128, "mel256": 256}
#: (input_repr, embedding_size) -> final max-pool size (openl3/models.py ``AUDIO_POOLING_SIZES``).
POOL_SIZES = {
    ("mel128", 512): (16, 24),
    ("mel128", 6144): (4, 8),
    ("mel256", 512): (32, 24),
    ("mel256", 6144): (8, 8),
}


@dataclass(kw_only=True)
class OpenL3Config:
    """Which OpenL3 audio network: input representation and embedding size (the weights do not say)."""

    input_repr: str = "mel256"
    embedding_size: int = 512

    def __post_init__(self) -> None:
        if self.input_repr not in INPUT_REPRS:
            raise ValueError(f"unknown OpenL3 input_repr {self.input_repr!r}; valid: {', '.join(INPUT_REPRS)}")
        sizes = sorted({size for _, size in POOL_SIZES})
        if self.embedding_size not in sizes:
            raise ValueError(f"OpenL3 embedding_size must be one of {sizes}, got {self.embedding_size}")

    @property
    def n_mels(self) -> int:
        return INPUT_REPRS[self.input_repr]

    @property
    def pool_size(self) -> tuple[int, int]:
        return POOL_SIZES[(self.input_repr, self.embedding_size)]


def num_stft_frames(num_samples: int, hop_length: int = HOP_LENGTH) -> int:
    """Frames of ``tf.signal.stft(pad_end=True)``: ``ceil(T / hop)`` (199 for one 1 s window)."""
    return -(-num_samples // hop_length)


class OpenL3MelFrontend(nn.Module):
    """kapre 0.3.7 mel spectrogram + openl3's decibel scaling: (B, 48000) -> (B, 1, n_mels, 199).

    Not trainable and without state in checkpoints: the filterbank is rebuilt from ``n_mels``.
    """

    fb: Tensor

    def __init__(self, n_mels: int = 256) -> None:
        super().__init__()
        self.n_mels = n_mels
        # Slaney mel scale and area norm over 0 .. 24 kHz: librosa.filters.mel's defaults, as kapre builds it.
        fb = mel_filterbank(N_FFT // 2 + 1, n_mels, SAMPLE_RATE, 0.0, None, norm="slaney", mel_scale="slaney")
        self.register_buffer("fb", fb, persistent=False)  # (F, M)

    def magnitude_mel(self, x: Tensor) -> Tensor:
        """Mel-filtered STFT magnitudes: (B, T) -> (B, n_mels, ceil(T / 242)), float32 or float64 like ``x``."""
        T = x.shape[-1]
        n_frames = num_stft_frames(T)
        # tf.signal.frame(pad_end=True): zeros after the signal so that every frame start k * hop < T is full.
        x = F.pad(x, (0, (n_frames - 1) * HOP_LENGTH + N_FFT - T))
        spec = stft(x, N_FFT, HOP_LENGTH, window="hann", center=False)  # (B, F, N)
        return torch.matmul(spec.abs().mT, self.fb.to(spec.real.dtype)).mT  # (B, N, F) @ (F, M) -> (B, M, N)

    def forward(self, x: Tensor) -> Tensor:
        mel = self.magnitude_mel(x)  # (B, M, N)
        # 10 * log10 of a *magnitude* (kapre 0.1.4 convention kept by openl3 0.4), relative to each window's peak.
        db = 10.0 * torch.log10(torch.clamp(mel, min=DB_AMIN))
        db = db - db.amax(dim=(1, 2), keepdim=True)
        db = torch.clamp(db, min=-DB_DYNAMIC_RANGE)
        return db.unsqueeze(1)  # (B, 1, M, N)


def max_pool2d_same(x: Tensor, kernel: tuple[int, int]) -> Tensor:
    """Keras ``MaxPooling2D(pool_size=kernel, padding='same')`` with strides = kernel on (B, C, H, W).

    Output (B, C, ceil(H / kh), ceil(W / kw)); the padding goes ``total // 2`` before and the rest after, as
    TensorFlow's 'SAME' rule does, and padded cells are -inf so that they never win.
    """
    pads = []
    for size, k in zip(reversed(x.shape[-2:]), reversed(kernel), strict=True):  # F.pad wants the last dim first
        total = max((math.ceil(size / k) - 1) * k + k - size, 0)
        pads += [total // 2, total - total // 2]
    if any(pads):
        x = F.pad(x, pads, value=float("-inf"))
    return F.max_pool2d(x, kernel, stride=kernel)


class OpenL3Block(nn.Module):
    """(Conv2D 3x3 'same' + BN + ReLU) x 2 + MaxPool 2x2; the last block stops after its second conv."""

    def __init__(self, c_in: int, c_out: int, *, last: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm1 = nn.BatchNorm2d(c_out, eps=KERAS_BN_EPS)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        # Block 4's second conv is openl3's 'audio_embedding_layer': its output is pooled raw (no BN, no ReLU).
        self.norm2 = None if last else nn.BatchNorm2d(c_out, eps=KERAS_BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        x = self.conv2(x)
        if self.norm2 is None:
            return x
        return F.max_pool2d(F.relu(self.norm2(x)), 2, stride=2)  # Keras 'valid' pooling: floor(n / 2)


class OpenL3Network(nn.Module):
    """OpenL3 audio embedding network: ``forward(windows (B, 48000)) -> (B, embedding_size)``.

    Call ``eval()`` before use: BatchNorm must use the stored moving statistics, as Keras ``predict`` does.
    """

    def __init__(self, cfg: OpenL3Config | None = None) -> None:
        super().__init__()
        self.cfg = cfg or OpenL3Config()
        self.frontend = OpenL3MelFrontend(self.cfg.n_mels)
        self.input_norm = nn.BatchNorm2d(1, eps=KERAS_BN_EPS)
        widths = (1, *FILTERS)
        self.blocks = nn.ModuleList(
            OpenL3Block(widths[i], widths[i + 1], last=i == len(FILTERS) - 1) for i in range(len(FILTERS))
        )

    @property
    def dim(self) -> int:
        return self.cfg.embedding_size

    def features(self, spec: Tensor) -> Tensor:
        """Conv trunk on a front-end image: (B, 1, n_mels, 199) -> (B, 512, n_mels / 8, 24)."""
        x = self.input_norm(spec)
        for block in self.blocks:
            x = block(x)
        return x

    def pool_flatten(self, x: Tensor) -> Tensor:
        """Final 'same' max pool and Keras Flatten: (B, C, H, W) -> (B, H' * W' * C) in (H', W', C) order."""
        x = max_pool2d_same(x, self.cfg.pool_size)  # (B, C, H', W')
        return x.permute(0, 2, 3, 1).flatten(1)  # (B, H' * W' * C)

    def forward(self, windows: Tensor) -> Tensor:
        if windows.ndim == 3 and windows.shape[1] == 1:
            windows = windows[:, 0]  # (B, 1, T) -> (B, T)
        if windows.ndim != 2 or windows.shape[-1] != WINDOW:
            raise ValueError(f"OpenL3 takes (B, {WINDOW}) windows of 1 s at 48 kHz, got {tuple(windows.shape)}")
        if not windows.is_floating_point():
            raise ValueError(f"OpenL3 takes floating-point audio, got {windows.dtype}")
        spec = self.frontend(windows)  # (B, 1, M, 199)
        return self.pool_flatten(self.features(spec))  # (B, D)
