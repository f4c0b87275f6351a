"""Conformer audio encoder (Gulati et al. 2020, "Conformer: Convolution-augmented Transformer for Speech Recognition").

16 kHz audio -> log-mel (25 ms window, 10 ms hop, 80 bins) -> per-utterance normalisation -> 4x convolutional
subsampling (two 3x3 stride-2 convs with ReLU, then a linear map to D; ESPnet's ``Conv2dSubsampling``) -> N blocks
-> (B, T', D) tokens at 25 Hz. A block (paper Sec. 2, eq. 1):

    x~  = x + 1/2 FFN(x)                       (macaron half-step feed-forward, pre-LayerNorm, SiLU)
    x'  = x~ + MHSA(x~)                        (pre-LayerNorm, relative positional encoding)
    x'' = x' + Conv(x')                        (LN -> pointwise -> GLU -> depthwise -> BatchNorm -> SiLU -> pointwise)
    y   = LayerNorm(x'' + 1/2 FFN(x''))

The attention is Transformer-XL's relative form (Dai et al. 2019, Sec. 3.3) as ESPnet's
``RelPositionMultiHeadedAttention`` and transformers' ``Wav2Vec2ConformerSelfAttention`` write it:
``score(i, j) = [(q_i + u) . k_j + (q_i + v) . W_p p(i - j)] / sqrt(Dh)`` with sinusoidal p over relative
positions T-1 .. -(T-1) and the "skew" shift turning the (T, 2T-1) position scores into (T, T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavefoundry.audio.features import MelConfig, MelSpectrogram

#: Fewest log-mel frames the 4x subsampling accepts (two 3-tap stride-2 convs without padding give one frame).
MIN_FRAMES = 7


@dataclass(kw_only=True)
class ConformerConfig:
    """Shape of a :class:`ConformerEncoder`; defaults are Conformer-S (paper Table 1) over 80 mel bins."""

    sample_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 400
    hop_length: int = 160
    dim: int = 144
    n_layers: int = 16
    n_heads: int = 4
    ffn_mult: int = 4
    conv_kernel: int = 31
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_mels", "n_fft", "hop_length", "dim", "n_layers", "n_heads", "ffn_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"ConformerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"ConformerConfig: dim={self.dim} must split into n_heads={self.n_heads} even heads")
        if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            raise ValueError(
                f"ConformerConfig.conv_kernel must be odd and >= 1 ('same' padding), got {self.conv_kernel}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ConformerConfig.dropout must be in [0, 1), got {self.dropout}")

    def mel_config(self) -> MelConfig:
        """The log-mel front end's settings."""
        return MelConfig(sample_rate=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length, n_mels=self.n_mels)

    def min_samples(self) -> int:
        """Shortest audio (samples) that gives at least one encoder frame."""
        return (MIN_FRAMES - 1) * self.hop_length + self.n_fft // 2


def subsampled_lengths(lengths: Tensor) -> Tensor:
    """Frames after the 4x subsampling: ``((T - 1) // 2 - 1) // 2`` (two unpadded 3-tap stride-2 convs)."""
    return torch.div(torch.div(lengths - 1, 2, rounding_mode="floor") - 1, 2, rounding_mode="floor")


def rel_positions(length: int, dim: int, device=None) -> Tensor:
    """Sinusoidal encodings of relative positions ``T-1, T-2, ..., -(T-1)`` (Transformer-XL order).

    Returns:
        (2T - 1, dim) float32; row k encodes position ``T - 1 - k``, even features sin, odd features cos
        (Vaswani et al. 2017), as ESPnet and transformers' ``Wav2Vec2ConformerRelPositionalEmbedding``.
    """
    pos = torch.arange(length - 1, -length, -1, dtype=torch.float32, device=device)[:, None]  # (2T-1, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * -(math.log(10000.0) / dim))
    pe = torch.zeros(2 * length - 1, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


def rel_shift(scores: Tensor) -> Tensor:
    """Skew (B, H, T, 2T-1) scores over positions T-1..-(T-1) into (B, H, T, T) with entry (i, j) at ``i - j``.

    The pad-and-reshape trick of Dai et al. 2019 (appendix B): column k of row i holds position ``T - 1 - k``,
    and ``i - j`` sits at ``k = T - 1 - i + j``.
    """
    B, H, T, P = scores.shape
    padded = F.pad(scores, (1, 0)).view(B, H, P + 1, T)  # (B, H, 2T, T)
    return padded[:, :, 1:].reshape(B, H, T, P)[..., :T]  # (B, H, T, T)


class Subsampling(nn.Module):
    """4x time (and frequency) subsampling: (B, T, n_mels) -> (B, T', dim), ESPnet ``Conv2dSubsampling``."""

    def __init__(self, n_mels: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, dim, 3, 2), nn.ReLU(), nn.Conv2d(dim, dim, 3, 2), nn.ReLU())
        self.out = nn.Linear(dim * (((n_mels - 1) // 2 - 1) // 2), dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, n_mels) -> (B, T', dim)."""
        h = self.conv(x.unsqueeze(1))  # (B, dim, T', F')
        B, C, T, Fr = h.shape
        return self.out(h.transpose(1, 2).reshape(B, T, C * Fr))  # (B, T', dim * F')


class RelPositionAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions (u, v biases, W_p projection)."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.dropout = n_heads, dim // n_heads, dropout
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(n_heads, self.head_dim))
        self.pos_bias_v = nn.Parameter(torch.zeros(n_heads, self.head_dim))

    def forward(self, x: Tensor, pos: Tensor, key_mask: Tensor | None) -> Tensor:
        """(B, T, D) tokens, (2T - 1, D) :func:`rel_positions`, (B, T) bool mask (True = valid) -> (B, T, D)."""
        B, T, D = x.shape
        H, Dh = self.n_heads, self.head_dim
        q = self.linear_q(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        k = self.linear_k(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        v = self.linear_v(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        p = self.linear_pos(pos.to(x.dtype)).view(-1, H, Dh).permute(1, 2, 0)  # (H, Dh, 2T - 1)
        # Terms (b) + (d): position scores, skewed to (i, j) -> i - j and pre-scaled, passed to SDPA as a bias.
        bias = rel_shift((q + self.pos_bias_v[:, None]) @ p) / math.sqrt(Dh)  # (B, H, T, T)
        if key_mask is not None:
            bias = bias.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        drop = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q + self.pos_bias_u[:, None], k, v, attn_mask=bias, dropout_p=drop)
        return self.linear_out(o.transpose(1, 2).reshape(B, T, D))  # (B, T, D)


class FeedForward(nn.Module):
    """Pre-LayerNorm ``W2 dropout(silu(W1 LN(x)))`` (paper Fig. 4, Swish activation)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.intermediate_dense = nn.Linear(dim, hidden)
        self.output_dense = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.dropout(self.output_dense(self.dropout(F.silu(self.intermediate_dense(self.norm(x))))))


class ConvModule(nn.Module):
    """LN -> pointwise (2D) -> GLU -> depthwise (k) -> BatchNorm -> SiLU -> pointwise (paper Fig. 2).

    Padded frames are zeroed before the depthwise conv (as ESPnet does), so they never reach valid frames.
    BatchNorm's training statistics do include those zeros; in eval mode its running statistics are used.
    """

    def __init__(self, dim: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim)
        self.pointwise_conv1 = nn.Conv1d(dim, 2 * dim, 1, bias=False)
        self.depthwise_conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim, bias=False)
        self.batch_norm = nn.BatchNorm1d(dim)
        self.pointwise_conv2 = nn.Conv1d(dim, dim, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, key_mask: Tensor | None) -> Tensor:
        """(B, T, D) -> (B, T, D)."""
        h = F.glu(self.pointwise_conv1(self.layer_norm(x).transpose(1, 2)), dim=1)  # (B, D, T)
        if key_mask is not None:
            h = h.masked_fill(~key_mask[:, None, :], 0.0)
        h = F.silu(self.batch_norm(self.depthwise_conv(h)))  # (B, D, T)
        return self.dropout(self.pointwise_conv2(h).transpose(1, 2))  # (B, T, D)


class ConformerBlock(nn.Module):
    """One Conformer block (module docstring, eq. 1)."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        hidden = cfg.ffn_mult * cfg.dim
        self.ffn1 = FeedForward(cfg.dim, hidden, cfg.dropout)
        self.attn_norm = nn.LayerNorm(cfg.dim)
        self.attn = RelPositionAttention(cfg.dim, cfg.n_heads, cfg.dropout)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.conv = ConvModule(cfg.dim, cfg.conv_kernel, cfg.dropout)
        self.ffn2 = FeedForward(cfg.dim, hidden, cfg.dropout)
        self.final_norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: Tensor, pos: Tensor, key_mask: Tensor | None) -> Tensor:
        """(B, T, D) -> (B, T, D)."""
        x = x + 0.5 * self.ffn1(x)
        x = x + self.attn_dropout(self.attn(self.attn_norm(x), pos, key_mask))
        x = x + self.conv(x, key_mask)
        return self.final_norm(x + 0.5 * self.ffn2(x))


class ConformerEncoder(nn.Module):
    """Audio (B, S) at ``sample_rate`` -> tokens (B, T', D) and their mask (B, T') (True = valid).

    Args:
        cfg: the architecture and its log-mel front end.
    """

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # The filterbank is a non-persistent buffer computed with .item() calls: build it on the CPU even under a
        # meta-device context (parameter accounting); .to(device) moves it with the rest.
        with torch.device("cpu"):
            self.mel = MelSpectrogram(cfg.mel_config())
        self.subsample = Subsampling(cfg.n_mels, cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.n_layers))

    def features(self, audio: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Normalised log-mel (B, T, n_mels) and frame lengths (B,) of audio (B, S) with sample ``lengths``.

        A frame is valid when its centred window ends inside the row's samples (the last ``n_fft / 2`` samples
        start no frame of their own), so padding never changes a valid frame. Each utterance is normalised to zero
        mean and unit variance over its valid frames (all bins together), so gain does not matter; silent audio
        gives all-zero features (its variance is clamped), not NaN. Padded frames are zero.

        Raises:
            ValueError: audio not (B, S) float, or a row shorter than :meth:`ConformerConfig.min_samples`.
        """
        if audio.ndim != 2 or not audio.is_floating_point():
            raise ValueError(f"audio must be (B, samples) float mono at {self.cfg.sample_rate} Hz, got {audio.shape}")
        lengths = torch.full_like(audio[:, 0], audio.shape[1], dtype=torch.long) if lengths is None else lengths
        short = int(lengths.min())
        if short < self.cfg.min_samples():
            raise ValueError(
                f"audio of {short} samples is too short: the Conformer needs >= {self.cfg.min_samples()} samples "
                f"({self.cfg.min_samples() / self.cfg.sample_rate * 1000:.0f} ms at {self.cfg.sample_rate} Hz)"
            )
        logmel = self.mel(audio).transpose(1, 2)  # (B, T, n_mels)
        # Valid frames: centred windows that end inside the valid samples, so padding never enters a valid one.
        frames = torch.clamp((lengths - self.cfg.n_fft // 2) // self.cfg.hop_length + 1, max=logmel.shape[1])
        valid = (torch.arange(logmel.shape[1], device=audio.device) < frames[:, None]).unsqueeze(-1)  # (B, T, 1)
        count = frames[:, None, None].to(logmel.dtype) * self.cfg.n_mels
        mean = (logmel * valid).sum((1, 2), keepdim=True) / count
        var = ((logmel - mean).square() * valid).sum((1, 2), keepdim=True) / count
        return ((logmel - mean) * torch.rsqrt(var.clamp(min=1e-5))) * valid, frames

    def forward(self, audio: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Encode audio (B, S) with optional sample lengths (B,) -> (tokens (B, T', D), mask (B, T') bool)."""
        feats, frames = self.features(audio, lengths)
        return self.encode_features(feats, frames)

    def encode_features(self, feats: Tensor, frames: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Log-mel features (B, T, n_mels) with frame lengths (B,) -> (tokens (B, T', D), mask (B, T'))."""
        if feats.ndim != 3 or feats.shape[-1] != self.cfg.n_mels or feats.shape[1] < MIN_FRAMES:
            raise ValueError(
                f"features must be (B, T >= {MIN_FRAMES}, n_mels={self.cfg.n_mels}), got {tuple(feats.shape)}"
            )
        x = self.dropout(self.subsample(feats))  # (B, T', D)
        T = x.shape[1]
        frames = torch.full_like(feats[:, 0, 0], feats.shape[1], dtype=torch.long) if frames is None else frames
        mask = torch.arange(T, device=x.device) < subsampled_lengths(frames)[:, None]  # (B, T')
        key_mask = None if bool(mask.all()) else mask
        pos = rel_positions(T, self.cfg.dim, device=x.device)  # (2T' - 1, D)
        for block in self.blocks:
            x = block(x, pos, key_mask)
        return x, mask


def conformer_s() -> ConformerConfig:
    """Conformer-S (paper Table 1): 16 layers, width 144, 4 heads, kernel 31 (8.7M; the paper's 10.3M has a decoder)."""
    return ConformerConfig()


def conformer_m() -> ConformerConfig:
    """Conformer-M (paper Table 1): 16 layers, width 256, 4 heads (27.2M)."""
    return ConformerConfig(dim=256)


def conformer_l() -> ConformerConfig:
    """Conformer-L (paper Table 1): 17 layers, width 512, 8 heads (114.8M)."""
    return ConformerConfig(dim=512, n_layers=17, n_heads=8)


def conformer_tiny() -> ConformerConfig:
    """A CPU-trainable encoder: 4 layers, width 96, 4 heads, kernel 15, 64 mel bins."""
    return ConformerConfig(n_mels=64, dim=96, n_layers=4, n_heads=4, conv_kernel=15)


#: Preset name -> function returning its config.
CONFORMER_PRESETS = {"s": conformer_s, "m": conformer_m, "l": conformer_l, "tiny": conformer_tiny}
