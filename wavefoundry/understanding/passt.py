"""PaSST, the Patchout audio spectrogram transformer (Koutini et al. 2022, arXiv 2110.05069), in pure torch.

The network and its log-mel front end follow ``kkoutini/passt_hear21`` (``hear21passt``), the package that
stable-audio-metrics (``src/passt_kld.py``) and audiocraft (``metrics/kld.py``, ``PasstKLDivergenceMetric``) call
for KL_passt, at inference:

* Front end (``hear21passt/models/preprocess.py``, ``AugmentMelSTFT.forward`` as built by ``base.get_basic_model``):
  pre-emphasis ``y[n] = x[n+1] - 0.97 x[n]`` (a valid conv1d, so T-1 samples), ``torch.stft`` with n_fft 1024,
  hop 320, a *symmetric* Hann window of 800 samples (``hann_window(800, periodic=False)``) centred in the frame,
  ``center=True`` reflect padding; power ``re^2 + im^2``; 128 Kaldi mel banks from 0 Hz to
  ``fmax = sr // 2 - fmax_aug_range // 2 = 15000`` Hz (``torchaudio.compliance.kaldi.get_mel_banks``, no VTLN
  warp, a zero column appended for the Nyquist bin); ``log(mel + 1e-5)``; ``(x + 4.5) / 5``. Its training-only
  augmentations (random fmin/fmax, frequency/time masking) are not implemented: this is always the eval path.
* Network (``hear21passt/models/passt.py``, ``PaSST`` built by ``get_model(arch="passt_s_swa_p16_128_ap476")``):
  a 16x16 conv patch embedding with stride 10x10 over the (1, 128, frames) spectrogram; separate frequency
  ``(1, D, 12, 1)`` and time ``(1, D, 1, 99)`` positional embeddings added to the patch grid (time cut to the
  first ``t`` columns for inputs shorter than 10 s); patches flattened frequency-major; a cls and a distillation
  token, each with its own positional embedding (``new_pos_embed``); 12 pre-norm ViT blocks (LayerNorm eps 1e-6,
  qkv with bias, GELU MLP x4); a final LayerNorm; ``features = (cls + dist) / 2``; ``logits = head(features)``
  with ``head = LayerNorm(D) (eps 1e-5) + Linear(D, 527)``. ``head_dist`` is in the checkpoint but unused at
  inference, as in ``PaSST.forward``. Structured patchout (``s_patchout_t/f``) only acts in training.

The logits are AudioSet's 527 multi-label logits (the model was trained with a sigmoid/BCE objective); KL_passt
takes ``softmax`` over them (stable-audio-metrics ``return_probabilities``, audiocraft ``_get_model_preds``).
State-dict names match the released checkpoint ``passt-s-f128-p16-s10-ap.476-swa.pt`` key for key.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from wavefoundry.audio.features import stft
from wavefoundry.nn.attention import attention

logger = logging.getLogger(__name__)


def kaldi_mel_scale(f: Tensor) -> Tensor:
    """Kaldi's mel scale ``1127 ln(1 + f / 700)`` (kaldi ``MelBanks::MelScale``)."""
    return 1127.0 * torch.log1p(f / 700.0)


def kaldi_mel_banks(
    n_mels: int, n_fft: int, sample_rate: float, f_min: float, f_max: float, *, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Kaldi's triangular mel filters (kaldi ``MelBanks``; torchaudio ``compliance.kaldi.get_mel_banks``, no VTLN).

    With ``m(f) = 1127 ln(1 + f/700)`` and ``delta = (m(f_max) - m(f_min)) / (n_mels + 1)``, filter ``j`` has mel
    edges ``l = m(f_min) + j delta``, ``c = l + delta``, ``r = l + 2 delta`` and weights
    ``max(0, min((m_k - l) / (c - l), (r - m_k) / (r - c)))`` at the FFT bins ``f_k = k sr / n_fft``,
    ``k = 0 .. n_fft/2 - 1``: triangles linear in mel (not in Hz), unit peak, no area normalisation, and no weight
    for the Nyquist bin (Kaldi drops it).

    Args:
        n_mels: number of filters (> 3, as Kaldi asserts).
        n_fft: even FFT size (Kaldi's padded window length).
        sample_rate: in Hz.
        f_min: low edge in Hz, ``0 <= f_min < sr/2``.
        f_max: high edge in Hz; ``<= 0`` is an offset from the Nyquist frequency (Kaldi's convention).
        dtype: of the result; computed in float64.

    Returns:
        (n_mels, n_fft // 2) weights.
    """
    nyquist = 0.5 * sample_rate
    f_max = f_max + nyquist if f_max <= 0.0 else f_max
    if n_mels <= 3 or n_fft < 2 or n_fft % 2:
        raise ValueError(f"kaldi mel banks need n_mels > 3 and an even n_fft, got n_mels={n_mels}, n_fft={n_fft}")
    if not (0.0 <= f_min < nyquist and 0.0 < f_max <= nyquist and f_min < f_max):
        raise ValueError(f"kaldi mel banks need 0 <= f_min < f_max <= {nyquist:g} Hz, got {f_min}, {f_max}")
    f64 = torch.float64
    mel_lo, mel_hi = (1127.0 * math.log1p(f / 700.0) for f in (f_min, f_max))
    delta = (mel_hi - mel_lo) / (n_mels + 1)
    left = mel_lo + delta * torch.arange(n_mels, dtype=f64)[:, None]  # (n_mels, 1)
    centre, right = left + delta, left + 2.0 * delta
    mel = kaldi_mel_scale(torch.arange(n_fft // 2, dtype=f64) * (sample_rate / n_fft))[None, :]  # (1, n_fft / 2)
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    return torch.clamp(torch.minimum(up, down), min=0.0).to(dtype)  # (n_mels, n_fft / 2)


@dataclass(kw_only=True)
class PaSSTMelConfig:
    """hear21passt's ``AugmentMelSTFT`` at eval, as ``get_basic_model`` builds it; lengths in samples."""

    sample_rate: int = 32000
    n_fft: int = 1024
    win_length: int = 800
    hop_length: int = 320
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = 15000.0  # sr // 2 - fmax_aug_range // 2 with fmax_aug_range=2000
    preemphasis: float = 0.97
    log_offset: float = 1e-5
    shift: float = 4.5  # "fast normalization": (log_mel + shift) / scale
    scale: float = 5.0

    def __post_init__(self) -> None:
        if self.sample_rate < 1 or self.hop_length < 1 or not 2 <= self.win_length <= self.n_fft:
            raise ValueError("PaSSTMelConfig: need sample_rate >= 1, hop_length >= 1 and 2 <= win_length <= n_fft")
        kaldi_mel_banks(self.n_mels, self.n_fft, self.sample_rate, self.f_min, self.f_max)  # validates the bands
        if self.log_offset <= 0 or self.scale <= 0:
            raise ValueError("PaSSTMelConfig: log_offset and scale must be > 0")

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` samples: pre-emphasis drops one, then a centred STFT."""
        return 1 + (num_samples - 1) // self.hop_length


class PaSSTMel(nn.Module):
    """Log-mel front end of PaSST: ``forward(audio (B, T)) -> (B, n_mels, 1 + (T - 1) // hop)``, float32."""

    fb: Tensor

    def __init__(self, config: PaSSTMelConfig) -> None:
        super().__init__()
        self.config = c = config
        fb = kaldi_mel_banks(c.n_mels, c.n_fft, c.sample_rate, c.f_min, c.f_max)  # (M, n_fft / 2)
        fb = nn.functional.pad(fb, (0, 1))  # (M, n_fft / 2 + 1): the Nyquist bin gets no weight
        # Not persistent, as in hear21passt: rebuilt from the config, so the checkpoint has no mel keys.
        self.register_buffer("fb", fb, persistent=False)

    def forward(self, audio: Tensor) -> Tensor:
        c = self.config
        x = audio.float()
        x = x[..., 1:] - c.preemphasis * x[..., :-1]  # (B, T - 1): conv1d with kernel [-0.97, 1]
        # A symmetric Hann of N samples is a periodic Hann of N - 1 followed by a zero, and torch.stft centres
        # both at the same offset, so win_length - 1 with the periodic window is bit-identical to the reference.
        spec = stft(x, c.n_fft, c.hop_length, c.win_length - 1, "hann", center=True)  # (B, F, frames)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(self.fb, power)  # (M, F) @ (B, F, frames) -> (B, M, frames)
        return (torch.log(mel + c.log_offset) + c.shift) / c.scale


@dataclass(kw_only=True)
class PaSSTConfig:
    """Shape of :class:`PaSST`; the defaults are PaSST-S ``passt_s_swa_p16_128_ap476`` (about 86M parameters)."""

    mel: PaSSTMelConfig = field(default_factory=PaSSTMelConfig)
    n_classes: int = 527
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    stride: int = 10
    input_frames: int = 998  # the reference's input_tdim: sizes the time positional embedding
    s_patchout_t: int = 0  # structured patchout: time columns dropped in training
    s_patchout_f: int = 0  # frequency rows dropped in training

    def __post_init__(self) -> None:
        if self.n_classes < 1 or self.depth < 1 or self.num_heads < 1 or self.embed_dim % self.num_heads:
            raise ValueError(
                f"PaSSTConfig: need n_classes, depth, num_heads >= 1 and embed_dim % num_heads == 0, got "
                f"n_classes={self.n_classes}, depth={self.depth}, embed_dim={self.embed_dim}, heads={self.num_heads}"
            )
        if self.patch_size < 1 or self.stride < 1 or self.mlp_ratio <= 0 or self.input_frames < self.patch_size:
            raise ValueError("PaSSTConfig: need patch_size, stride >= 1, mlp_ratio > 0, input_frames >= patch_size")
        f_conv = (self.mel.n_mels - self.patch_size) // self.stride + 1
        if self.mel.n_mels < self.patch_size or f_conv != self.grid[0]:
            raise ValueError(
                f"PaSSTConfig: n_mels={self.mel.n_mels} gives {f_conv} frequency patches but a frequency "
                f"embedding of n_mels // stride = {self.grid[0]}"
            )
        if not (0 <= self.s_patchout_f < self.grid[0] and 0 <= self.s_patchout_t < self.grid[1]):
            raise ValueError(f"PaSSTConfig: patchout must leave patches in the grid {self.grid}")

    @property
    def grid(self) -> tuple[int, int]:
        """(frequency, time) sizes of the positional embeddings: ``img_size // stride`` as in ``PatchEmbed``."""
        return self.mel.n_mels // self.stride, self.input_frames // self.stride

    @property
    def min_samples(self) -> int:
        """Shortest input: one patch of ``patch_size`` frames (4801 samples, just over 0.15 s, for PaSST-S)."""
        return (self.patch_size - 1) * self.mel.hop_length + 1  # + 1: pre-emphasis drops a sample


class PatchEmbed(nn.Module):
    """Overlapping patches: (B, 1, F, T) -> (B, D, F', T') by a conv of ``patch`` x ``patch`` at ``stride``."""

    def __init__(self, dim: int, patch: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=patch, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Attention(nn.Module):
    """Multi-head self-attention with a biased fused qkv (timm ``Attention`` layout: rows [q | k | v])."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, L, D = x.shape
        H = self.num_heads
        qkv = self.qkv(x).view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)  # (3, B, H, L, Dh)
        q, k, v = qkv.unbind(0)
        out = attention(q, k, v)  # (B, H, L, Dh): softmax(q k^T / sqrt(Dh)) v
        return self.proj(out.transpose(1, 2).reshape(B, L, D))  # (B, L, D)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PaSST(nn.Module):
    """PaSST classifier: ``forward(audio (B, T) at 32 kHz) -> (logits (B, n_classes), embedding (B, D))``.

    ``forward_spec`` takes the (B, 1, n_mels, frames) spectrogram the reference network takes.
    """

    def __init__(self, config: PaSSTConfig) -> None:
        super().__init__()
        self.config = c = config
        D = c.embed_dim
        F_grid, T_grid = c.grid
        self.mel = PaSSTMel(c.mel)
        self.patch_embed = PatchEmbed(D, c.patch_size, c.stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, D))  # for the cls and dist tokens
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, D, F_grid, 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, D, 1, T_grid))
        self.blocks = nn.ModuleList(Block(D, c.num_heads, c.mlp_ratio) for _ in range(c.depth))
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, c.n_classes))  # LayerNorm eps 1e-5 here
        self.head_dist = nn.Linear(D, c.n_classes)  # in the checkpoint; unused at inference (PaSST.forward)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm ViT init: truncated normal (std 0.02) tokens, embeddings and linear weights, zero biases."""
        embeddings = (self.cls_token, self.dist_token, self.new_pos_embed, self.freq_new_pos_embed)
        for p in (*embeddings, self.time_new_pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def _add_positions(self, x: Tensor) -> Tensor:
        """Add the time and frequency embeddings to the (B, D, F', T') patch grid (``forward_features``)."""
        pos_t = self.time_new_pos_embed  # (1, D, 1, T_grid)
        t, t_grid = x.shape[-1], pos_t.shape[-1]
        if t < t_grid:
            # Shorter inputs use the first t time embeddings at eval, a random window of them in training.
            offset = int(torch.randint(1 + t_grid - t, (1,))) if self.training else 0
            pos_t = pos_t[..., offset : offset + t]
        elif t > t_grid:
            logger.warning("PaSST: %d time patches exceed the %d time embeddings; the input is cut", t, t_grid)
            x = x[..., :t_grid]
        return x + pos_t + self.freq_new_pos_embed

    def _patchout(self, x: Tensor) -> Tensor:
        """Structured patchout (paper Section 2.2): drop random whole time columns / frequency rows in training."""
        c = self.config
        if not self.training:
            return x
        if c.s_patchout_t:
            T = x.shape[-1]
            x = x[..., torch.randperm(T)[: T - c.s_patchout_t].sort().values]
        if c.s_patchout_f:
            F = x.shape[-2]
            x = x[..., torch.randperm(F)[: F - c.s_patchout_f].sort().values, :]
        return x

    def forward_features(self, spec: Tensor) -> tuple[Tensor, Tensor]:
        """Final-norm cls and dist tokens, each (B, D), of a (B, 1, n_mels, frames) spectrogram."""
        c = self.config
        if spec.ndim != 4 or spec.shape[1] != 1 or spec.shape[2] != c.mel.n_mels:
            raise ValueError(f"PaSST expects a (B, 1, {c.mel.n_mels}, frames) spectrogram, got {tuple(spec.shape)}")
        if spec.shape[-1] < c.patch_size:
            raise ValueError(f"PaSST needs >= {c.patch_size} frames ({c.min_samples} samples), got {spec.shape[-1]}")
        x = self.patch_embed(spec)  # (B, D, F', T')
        x = self._patchout(self._add_positions(x))
        B = x.shape[0]
        x = x.flatten(2).transpose(1, 2)  # (B, F' * T', D), frequency-major
        tokens = torch.cat([self.cls_token, self.dist_token], dim=1) + self.new_pos_embed  # (1, 2, D)
        x = torch.cat([tokens.expand(B, -1, -1), x], dim=1)  # (B, 2 + F' * T', D)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, 0], x[:, 1]

    def forward_spec(self, spec: Tensor) -> tuple[Tensor, Tensor]:
        """(logits (B, n_classes), embedding (B, D)) of a (B, 1, n_mels, frames) spectrogram."""
        cls, dist = self.forward_features(spec)
        features = (cls + dist) / 2
        return self.head(features), features

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """(logits (B, n_classes), embedding (B, D)) of mono audio (B, T) at ``config.mel.sample_rate``."""
        if audio.ndim != 2:
            raise ValueError(f"PaSST expects mono audio (B, T), got shape {tuple(audio.shape)}")
        if audio.shape[-1] < self.config.min_samples:
            raise ValueError(f"PaSST needs >= {self.config.min_samples} samples, got {audio.shape[-1]}")
        return self.forward_spec(self.mel(audio).unsqueeze(1))  # (B, 1, n_mels, frames)
