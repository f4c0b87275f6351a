"""Number (timing) conditioning: seconds_start and seconds_total as one token each, as in Stable Audio Open.

Evans et al. 2024 ("Fast Timing-Conditioned Latent Audio Diffusion", Stable Audio) condition on where a crop starts
in its file and how long the file is. Each number is clamped to [min, max] (0..512 s for Stable Audio Open),
normalised to [0, 1], expanded by learned Fourier features [x, sin(2 pi x w), cos(2 pi x w)] (Tancik et al. 2020,
with trainable frequencies w) and projected by a linear layer to one (B, 1, D) token.

The maths and parameter shapes equal stable-audio-tools' ``NumberConditioner`` (``embedder.embedding.0.weights``,
``embedder.embedding.1.weight/bias``) and diffusers' ``StableAudioNumberConditioner``
(``time_positional_embedding.0.weights``...); :mod:`wavefoundry.formats.sao_conditioning` maps the names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

#: Stable Audio Open's timing range in seconds and Fourier width.
MIN_SECONDS = 0.0
MAX_SECONDS = 512.0
FOURIER_DIM = 256


class FourierFeatures(nn.Module):
    """Learned Fourier features of a scalar: x -> [x, sin(2 pi x w), cos(2 pi x w)], w (dim / 2,) trainable.

    Args:
        dim: number of sin + cos features (even); the output has ``dim + 1`` features.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"FourierFeatures dim must be even and >= 2, got {dim}")
        self.weights = nn.Parameter(torch.randn(dim // 2))  # w ~ N(0, 1), as stable-audio-tools

    def forward(self, x: Tensor) -> Tensor:
        """(B,) -> (B, dim + 1)."""
        x = x[:, None]  # (B, 1)
        freqs = x * self.weights[None, :] * (2 * math.pi)  # (B, dim / 2)
        return torch.cat((x, freqs.sin(), freqs.cos()), dim=-1)


class NumberConditioner(nn.Module):
    """One conditioning token per number: clamp, normalise to [0, 1], Fourier features, linear.

    Args:
        out_dim: token width D.
        min_value: numbers below are clamped up to it.
        max_value: numbers above are clamped down to it.
        fourier_dim: Fourier feature count (stable-audio-tools and diffusers use 256).
    """

    def __init__(
        self,
        out_dim: int,
        *,
        min_value: float = MIN_SECONDS,
        max_value: float = MAX_SECONDS,
        fourier_dim: int = FOURIER_DIM,
    ) -> None:
        super().__init__()
        if not max_value > min_value:
            raise ValueError(f"NumberConditioner needs max_value > min_value, got {min_value}, {max_value}")
        self.min_value, self.max_value = float(min_value), float(max_value)
        self.fourier = FourierFeatures(fourier_dim)
        self.proj = nn.Linear(fourier_dim + 1, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B,) numbers -> (B, 1, D) tokens. Out-of-range values are clamped (:func:`validate_seconds` is for users)."""
        x = x.to(device=self.proj.weight.device).clamp(self.min_value, self.max_value)
        x = ((x - self.min_value) / (self.max_value - self.min_value)).to(self.proj.weight.dtype)
        return self.proj(self.fourier(x))[:, None, :]  # (B, 1, D)


def _as_tensor(value: Tensor | float | Sequence[float], name: str) -> Tensor:
    t = value.detach().float().cpu() if isinstance(value, Tensor) else torch.tensor(value, dtype=torch.float32)
    if t.dim() > 1:
        raise ValueError(f"{name} must be a number or a (B,) sequence, got shape {tuple(t.shape)}")
    return t


def validate_seconds(
    seconds_start: Tensor | float | Sequence[float],
    seconds_total: Tensor | float | Sequence[float],
    *,
    min_seconds: float = MIN_SECONDS,
    max_seconds: float = MAX_SECONDS,
) -> tuple[Tensor, Tensor]:
    """Check user-given timing and return it as float32 tensors (the model clamps; users get an error).

    Args:
        seconds_start: where the audio starts in its (virtual) file, a number or (B,).
        seconds_total: the file's total length, a number or (B,).
        min_seconds: smallest allowed value.
        max_seconds: largest allowed value (512 for Stable Audio Open).

    Returns:
        (seconds_start, seconds_total), float32, 0-dim or (B,) as given.

    Raises:
        ValueError: a non-finite value, a value outside [min_seconds, max_seconds], or start > total.
    """
    start, total = _as_tensor(seconds_start, "seconds_start"), _as_tensor(seconds_total, "seconds_total")
    for name, t in (("seconds_start", start), ("seconds_total", total)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} must be finite, got {t.tolist()}")
        if (t < min_seconds).any() or (t > max_seconds).any():
            raise ValueError(f"{name} must be within [{min_seconds:g}, {max_seconds:g}] s, got {t.tolist()}")
    try:
        bad = (start > total).any()
    except RuntimeError:
        raise ValueError(f"seconds_start {tuple(start.shape)} and seconds_total {tuple(total.shape)} differ") from None
    if bad:
        raise ValueError(f"seconds_start {start.tolist()} exceeds seconds_total {total.tolist()}")
    return start, total
