"""Noise, zero-phase filters and control curves shared by the drum and texture generators (numpy, float64).

Filters work in the frequency domain on the whole clip (one rfft/irfft): a few milliseconds for seconds of
audio, and free of the state and stability issues of recursive filters.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Highest frequency any generator asks for, as a fraction of the sample rate (headroom below Nyquist).
MAX_FREQ_FRACTION = 0.45


def max_freq(sr: int) -> float:
    """The highest frequency a generator may place at sample rate ``sr``."""
    return MAX_FREQ_FRACTION * sr


def unit_rms(x: np.ndarray) -> np.ndarray:
    """Scale to an RMS of 1 (all-zero input is returned unchanged)."""
    rms = float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0
    return x / rms if rms > 0 else x


def band_gain(freqs: np.ndarray, low_hz: float | None, high_hz: float | None, order: int = 2) -> np.ndarray:
    """Butterworth-shaped magnitude response: high-pass at ``low_hz`` and/or low-pass at ``high_hz``."""
    gain = np.ones_like(freqs)
    if low_hz:
        ratio = (np.maximum(freqs, 1e-9) / low_hz) ** (2 * order)
        gain *= np.sqrt(ratio / (1.0 + ratio))
    if high_hz:
        gain /= np.sqrt(1.0 + (freqs / high_hz) ** (2 * order))
    return gain


def band_filter(
    x: np.ndarray, sr: int, low_hz: float | None = None, high_hz: float | None = None, order: int = 2
) -> np.ndarray:
    """Zero-phase band-pass of a 1-D signal (either edge may be None)."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / sr)
    return np.fft.irfft(spec * band_gain(freqs, low_hz, high_hz, order), x.shape[-1])


def colored_noise(rng: np.random.Generator, n: int, sr: int, exponent: float, low_hz: float = 20.0) -> np.ndarray:
    """Noise with power ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS, high-passed at ``low_hz``."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    shape = np.maximum(freqs, low_hz) ** (-exponent / 2.0) * band_gain(freqs, low_hz, None, order=2)
    return unit_rms(np.fft.irfft(spec * shape, n))


def smooth_curve(rng: np.random.Generator, n: int, sr: int, rate_hz: float, low: float, high: float) -> np.ndarray:
    """A slowly wandering curve in [low, high]: random points at ``rate_hz``, cosine-interpolated: (n,)."""
    n_points = int(np.ceil(n / sr * rate_hz)) + 2
    points = rng.uniform(low, high, n_points)
    pos = np.arange(n) / sr * rate_hz  # position in control-point units
    i = np.minimum(pos.astype(np.int64), n_points - 2)
    frac = 0.5 - 0.5 * np.cos(np.pi * (pos - i))
    return points[i] * (1.0 - frac) + points[i + 1] * frac


def stft_filter(
    x: np.ndarray, sr: int, gains: Callable[[np.ndarray, np.ndarray], np.ndarray], n_fft: int = 512
) -> np.ndarray:
    """Time-varying zero-phase filter: scale each STFT frame by ``gains(freqs_hz, times_s)`` (frames, bins).

    sqrt-Hann analysis and synthesis windows at 50% overlap sum to one, so a gain of 1 gives ``x`` back
    (apart from the first and last half frame).
    """
    hop = n_fft // 2
    n = x.shape[-1]
    n_frames = n // hop + 2
    padded = np.zeros((n_frames + 1) * hop)
    padded[hop : hop + n] = x
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft))
    idx = np.arange(n_frames)[:, None] * hop + np.arange(n_fft)  # (frames, n_fft)
    spec = np.fft.rfft(padded[idx] * window, axis=-1)  # (frames, bins)
    times = (np.arange(n_frames) * hop + n_fft / 2 - hop) / sr
    spec *= gains(np.fft.rfftfreq(n_fft, 1.0 / sr), times)
    frames = np.fft.irfft(spec, n_fft, axis=-1) * window
    # Overlap-add at hop = n_fft / 2: block k = first half of frame k + second half of frame k - 1.
    blocks = frames[:, :hop].copy()  # (frames, hop)
    blocks[1:] += frames[:-1, hop:]
    return blocks.reshape(-1)[hop : hop + n]


def stereo_image(make: Callable[[], np.ndarray], rng: np.random.Generator, width: float) -> np.ndarray:
    """Two channels from ``make()`` with correlation 1 - ``width`` (0: identical, 1: independent): (2, T)."""
    a = make()
    if width <= 0.0:
        return np.stack([a, a])
    rho = 1.0 - width
    b = make()
    return np.stack([a, rho * a + np.sqrt(1.0 - rho * rho) * b])


def add_at(out: np.ndarray, kernel: np.ndarray, start: int, gain: float = 1.0) -> None:
    """Add ``gain * kernel`` into the last axis of ``out`` from ``start`` on, in place, cut at the end."""
    stop = min(out.shape[-1], start + kernel.shape[-1])
    if stop > start >= 0:
        out[..., start:stop] += gain * kernel[..., : stop - start]
