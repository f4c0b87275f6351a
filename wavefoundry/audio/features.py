"""Spectral features in torch (no torchaudio): STFT, mel filterbanks and a log-mel spectrogram module.

Conventions follow librosa / torchaudio: periodic windows, ``center=True`` reflect padding, a one-sided
spectrum of ``n_fft // 2 + 1`` bins, and the Slaney mel scale with Slaney area normalisation by default
(the ``librosa.filters.mel`` defaults; torchaudio's ``melscale_fbanks(norm="slaney", mel_scale="slaney")``).
Everything is computed in float32 (or float64 for float64 input), also under ``torch.autocast``.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

#: Window name -> periodic window builder (periodic, like librosa's ``fftbins=True``).
WINDOWS: dict[str, Callable[[int], Tensor]] = {
    "hann": functools.partial(torch.hann_window, periodic=True),
    "hamming": functools.partial(torch.hamming_window, periodic=True),
    "blackman": functools.partial(torch.blackman_window, periodic=True),
    "rectangular": torch.ones,
}


@functools.lru_cache(maxsize=32)
def _window(name: str, length: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    # A window first built under inference_mode would be an inference tensor and break autograd later.
    with torch.inference_mode(False):
        return WINDOWS[name](length, device=device, dtype=dtype)


def stft(
    x: Tensor,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
) -> Tensor:
    """Short-time Fourier transform of real signals (``torch.stft`` with a cached window).

    Args:
        x: (..., T) real signal; half precision is computed in float32.
        n_fft: FFT size; the spectrum has ``n_fft // 2 + 1`` bins.
        hop_length: samples between frames.
        win_length: window length (default ``n_fft``), zero-padded to ``n_fft`` on both sides.
        window: one of :data:`WINDOWS`.
        center: reflect-pad ``n_fft // 2`` on both sides so that frame ``t`` is centred on sample
            ``t * hop_length``.

    Returns:
        (..., n_fft // 2 + 1, frames) complex tensor; frames is ``1 + T // hop_length`` when centred,
        else ``1 + (T - n_fft) // hop_length``.
    """
    win_length = n_fft if win_length is None else win_length
    _check_stft_args(x, n_fft, hop_length, win_length, window, center)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    batch_shape, T = x.shape[:-1], x.shape[-1]
    w = _window(window, win_length, x.device, x.dtype)
    with torch.autocast(device_type=x.device.type, enabled=False):
        spec = torch.stft(
            x.reshape(-1, T),  # (B, T)
            n_fft,
            hop_length=hop_length,
            win_length=win_length,
            window=w,
            center=center,
            pad_mode="reflect",
            return_complex=True,
        )  # (B, F, frames)
    return spec.reshape(*batch_shape, *spec.shape[-2:])  # (..., F, frames)


def _check_stft_args(x: Tensor, n_fft: int, hop_length: int, win_length: int, window: str, center: bool) -> None:
    if x.ndim < 1 or not x.is_floating_point():
        raise ValueError(f"stft expects a real floating (..., T) tensor, got {x.dtype} of shape {tuple(x.shape)}")
    if n_fft < 1 or hop_length < 1 or not 1 <= win_length <= n_fft:
        raise ValueError(
            f"need n_fft >= 1, hop_length >= 1, 1 <= win_length <= n_fft; got {n_fft}, {hop_length}, {win_length}"
        )
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; valid: {', '.join(WINDOWS)}")
    # Reflect padding needs more samples than the pad; an uncentred STFT needs one full frame.
    need = n_fft // 2 + 1 if center else n_fft
    if x.shape[-1] < need:
        raise ValueError(f"signal of {x.shape[-1]} samples is too short for n_fft={n_fft} (need >= {need})")


def _hz_to_mel_htk(f: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz_htk(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


# Slaney (Auditory Toolbox): linear below 1 kHz at 200/3 Hz per mel, logarithmic above it
# (27 mels per factor 6.4).
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15.0
_LOGSTEP = math.log(6.4) / 27.0


def _hz_to_mel_slaney(f: Tensor) -> Tensor:
    log_part = _MIN_LOG_MEL + torch.log(torch.clamp(f, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(f >= _MIN_LOG_HZ, log_part, f / _F_SP)


def _mel_to_hz_slaney(m: Tensor) -> Tensor:
    log_part = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (m - _MIN_LOG_MEL))
    return torch.where(m >= _MIN_LOG_MEL, log_part, _F_SP * m)


#: Mel scale name -> (hz_to_mel, mel_to_hz).
MEL_SCALES: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "slaney": (_hz_to_mel_slaney, _mel_to_hz_slaney),
    "htk": (_hz_to_mel_htk, _mel_to_hz_htk),
}
#: Filter normalisations: "slaney" scales each triangle to unit area in Hz; None keeps unit peaks.
MEL_NORMS = ("slaney", None)


def _scale(mel_scale: str) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    if mel_scale not in MEL_SCALES:
        raise ValueError(f"unknown mel_scale {mel_scale!r}; valid: {', '.join(MEL_SCALES)}")
    return MEL_SCALES[mel_scale]


def hz_to_mel(f: Tensor | float, mel_scale: str = "slaney") -> Tensor:
    """Frequency in Hz to mels (float64 for python floats)."""
    return _scale(mel_scale)[0](torch.as_tensor(f, dtype=torch.float64))


def mel_to_hz(m: Tensor | float, mel_scale: str = "slaney") -> Tensor:
    """Mels to frequency in Hz (float64 for python floats)."""
    return _scale(mel_scale)[1](torch.as_tensor(m, dtype=torch.float64))


def mel_filterbank(
    n_freqs: int,
    n_mels: int,
    sample_rate: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    norm: str | None = "slaney",
    mel_scale: str = "slaney",
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Triangular mel filters over the bins of a one-sided spectrum (``librosa.filters.mel`` transposed).

    Filter ``m`` rises linearly in Hz from centre ``m - 1`` to centre ``m`` and falls to centre ``m + 1``,
    with ``n_mels + 2`` edges equally spaced on the mel scale from ``f_min`` to ``f_max``.

    Args:
        n_freqs: spectrum bins, ``n_fft // 2 + 1``, spanning 0 .. sample_rate / 2.
        n_mels: number of filters.
        sample_rate: in Hz.
        f_min, f_max: band edges in Hz (``f_max`` defaults to sample_rate / 2).
        norm: "slaney" (unit area in Hz) or None (unit peak).
        mel_scale: one of :data:`MEL_SCALES`.
        dtype: of the result; built in float64.

    Returns:
        (n_freqs, n_mels) weights; ``power_spec.mT @ fb`` gives mel energies.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if n_freqs < 2 or n_mels < 1 or sample_rate < 1:
        raise ValueError(f"need n_freqs >= 2, n_mels >= 1, sample_rate >= 1; got {n_freqs}, {n_mels}, {sample_rate}")
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max}")
    if norm not in MEL_NORMS:
        raise ValueError(f"unknown mel norm {norm!r}; valid: {MEL_NORMS}")
    to_mel, to_hz = _scale(mel_scale)
    f64 = torch.float64
    fft_freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=f64)
    edges = to_mel(torch.tensor([f_min, f_max], dtype=f64))
    centres = to_hz(torch.linspace(edges[0].item(), edges[1].item(), n_mels + 2, dtype=f64))  # (n_mels + 2,)
    widths = centres.diff()  # (n_mels + 1,)
    ramps = centres[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_freqs)
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)  # (n_mels, n_freqs)
    if norm == "slaney":
        fb = fb * (2.0 / (centres[2:] - centres[:-2]))[:, None]
    empty = int((fb.max(dim=1).values == 0).sum())
    if empty:
        logger.warning("%d of %d mel filters are empty; lower n_mels or raise n_fft", empty, n_mels)
    return fb.T.contiguous().to(dtype)  # (n_freqs, n_mels)


@dataclass(kw_only=True)
class MelConfig:
    """Settings of :class:`MelSpectrogram`; frequencies in Hz, lengths in samples."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int | None = None
    window: str = "hann"
    center: bool = True
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None
    power: float = 2.0  # 1.0 magnitude, 2.0 power
    log: bool = True
    log_floor: float = 1e-5
    norm: str | None = "slaney"
    mel_scale: str = "slaney"

    def __post_init__(self) -> None:
        if self.sample_rate < 1 or self.n_fft < 2 or self.hop_length < 1 or self.n_mels < 1:
            raise ValueError("MelConfig: need sample_rate >= 1, n_fft >= 2, hop_length >= 1 and n_mels >= 1")
        if self.win_length is not None and not 1 <= self.win_length <= self.n_fft:
            raise ValueError(f"MelConfig: win_length must be in [1, n_fft={self.n_fft}], got {self.win_length}")
        nyquist = self.sample_rate / 2
        f_max = nyquist if self.f_max is None else self.f_max
        if not 0 <= self.f_min < f_max <= nyquist:
            raise ValueError(
                f"MelConfig: need 0 <= f_min < f_max <= sample_rate / 2 = {nyquist:g}, "
                f"got f_min={self.f_min}, f_max={self.f_max}"
            )
        if self.power <= 0 or self.log_floor <= 0:
            raise ValueError(f"MelConfig: power and log_floor must be positive, got {self.power}, {self.log_floor}")
        if self.window not in WINDOWS:
            raise ValueError(f"MelConfig: unknown window {self.window!r}; valid: {', '.join(WINDOWS)}")
        if self.norm not in MEL_NORMS:
            raise ValueError(f"MelConfig: unknown norm {self.norm!r}; valid: {MEL_NORMS}")
        if self.mel_scale not in MEL_SCALES:
            raise ValueError(f"MelConfig: unknown mel_scale {self.mel_scale!r}; valid: {', '.join(MEL_SCALES)}")

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a signal of ``num_samples`` samples."""
        if self.center:
            return 1 + num_samples // self.hop_length
        return 1 + (num_samples - self.n_fft) // self.hop_length


class MelSpectrogram(torch.nn.Module):
    """(Log-)mel spectrogram: STFT power -> mel filterbank -> optional ``log(clamp(x, log_floor))``.

    Differentiable, so it also serves spectral losses. Runs in float32 even under ``torch.autocast``.
    """

    fb: Tensor

    def __init__(self, config: MelConfig) -> None:
        super().__init__()
        self.config = config
        fb = mel_filterbank(
            config.n_freqs,
            config.n_mels,
            config.sample_rate,
            config.f_min,
            config.f_max,
            norm=config.norm,
            mel_scale=config.mel_scale,
        )
        # Not persistent: it is rebuilt from the config, so checkpoints stay independent of it.
        self.register_buffer("fb", fb, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Map (..., T) audio, e.g. (B, T) or (B, C, T), to (..., n_mels, frames)."""
        c = self.config
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = stft(x, c.n_fft, c.hop_length, c.win_length, c.window, c.center)  # (..., F, N)
            # |X|^2 without the sqrt of abs(): cheaper, and its gradient is finite at zero.
            power = spec.real.square() + spec.imag.square() if c.power == 2.0 else spec.abs().pow(c.power)
            mel = torch.matmul(power.mT, self.fb.to(power.dtype)).mT  # (..., N, F) @ (F, M) -> (..., M, N)
            return torch.log(torch.clamp(mel, min=c.log_floor)) if c.log else mel
