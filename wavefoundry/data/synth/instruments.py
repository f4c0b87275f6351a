"""Tonal timbres: band-limited wavetables (sine, square, saw, additive organ), FM bell and a plucked string.

Every timbre is exactly harmonic with its fundamental at ``f0`` (the FM bell uses integer carrier:modulator
ratios for that reason), so a pitch tracker can measure the ground-truth pitch back. Partials stay below
``MAX_FREQ_FRACTION * sr``: no aliasing at any sample rate.
"""

from __future__ import annotations

import numpy as np

from wavefoundry.data.synth.signals import max_freq

TIMBRES = ("sine", "square", "saw", "pluck", "fm_bell", "organ")

#: Brightness word -> extra spectral tilt (partial k is scaled by k ** -tilt).
BRIGHTNESS = {"bright": 0.0, "warm": 0.6, "mellow": 1.2}

#: Organ registrations: harmonic number -> drawbar level. The fundamental is always the strongest partial,
#: which keeps the pitch unambiguous.
ORGAN_STOPS: dict[str, dict[int, float]] = {
    "full": {1: 1.0, 2: 0.8, 3: 0.6, 4: 0.6, 6: 0.4, 8: 0.4},
    "jazz": {1: 1.0, 2: 0.7, 3: 0.5},
    "flute": {1: 1.0, 2: 0.3, 4: 0.15},
    "reed": {1: 1.0, 2: 0.5, 3: 0.6, 4: 0.3, 5: 0.3, 6: 0.2},
}

#: FM carrier:modulator ratios; integers keep the spectrum harmonic.
FM_RATIOS = (2.0, 3.0, 4.0)

_TABLE_SIZE = 4096


def harmonic_weights(timbre: str, f0: float, sr: int, tilt: float, stops: str = "full") -> np.ndarray:
    """Amplitudes of partials 1..K (K: the last one below the frequency limit) for a wavetable timbre."""
    k = np.arange(1, max(1, int(max_freq(sr) // f0)) + 1, dtype=np.float64)
    if timbre == "sine":
        weights = (k == 1).astype(np.float64)
    elif timbre == "square":
        weights = np.where(k % 2 == 1, 1.0 / k, 0.0)
    elif timbre == "saw":
        weights = 1.0 / k
    elif timbre == "organ":
        levels = ORGAN_STOPS[stops]
        weights = np.array([levels.get(int(i), 0.0) for i in k])
    else:
        raise ValueError(f"{timbre!r} is not a wavetable timbre")
    return weights * k**-tilt


def harmonic_table(weights: np.ndarray, phases: np.ndarray | None = None) -> np.ndarray:
    """One period of sum_k w_k sin(2 pi k t + phi_k), k = 1..K, on a table (one inverse FFT), peak 1."""
    size = max(_TABLE_SIZE, 1 << int(np.ceil(np.log2(4 * len(weights) + 1))))
    spec = np.zeros(size // 2 + 1, dtype=np.complex128)
    rot = np.exp(1j * phases) if phases is not None else 1.0
    spec[1 : len(weights) + 1] = -0.5j * size * weights * rot  # irfft of -j N/2 at bin k is sin(2 pi k t)
    table = np.fft.irfft(spec, size)
    peak = np.abs(table).max()
    return table / peak if peak > 0 else table


def table_read(table: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """Read a one-period table at phase positions given in cycles (any real values), linear interpolation."""
    size = table.shape[0]
    pos = cycles % 1.0 * size
    i = pos.astype(np.int64)
    frac = pos - i
    return table[i] * (1.0 - frac) + table[(i + 1) % size] * frac


def wavetable_tone(weights: np.ndarray, f0: float, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """A steady periodic tone from harmonic amplitudes: (n,), peak 1; O(n) whatever the partial count."""
    return table_read(harmonic_table(weights), phase0 + f0 / sr * np.arange(n))


def fm_tone(f0: float, n: int, sr: int, ratio: float, index: float, index_decay_s: float) -> np.ndarray:
    """Two-operator FM (Chowning 1973): sin(2 pi f0 t + I(t) sin(2 pi ratio f0 t)), I(t) = index e^(-t/decay).

    ``index`` is capped so that the Carson bandwidth (I + 1) * ratio * f0 stays below the frequency limit.
    """
    index = min(index, max(0.0, max_freq(sr) / (ratio * f0) - 1.0))
    t = np.arange(n) / sr
    mod = index * np.exp(-t / index_decay_s) * np.sin(2 * np.pi * ratio * f0 * t)
    return np.sin(2 * np.pi * f0 * t + mod)


def pluck_tone(f0: float, n: int, sr: int, rng: np.random.Generator, tilt: float, t60_s: float) -> np.ndarray:
    """Karplus-Strong string (Karplus & Strong 1983; Jaffe & Smith 1983) solved in the frequency domain.

    The string loop y = x + g * delay_P(y) is linear and time-invariant, so Y = X / (1 - G(w) e^(-jwP))
    over one FFT gives the whole output at once (vectorised, no per-sample loop). P = sr / f0 may be
    fractional, which tunes the string exactly; the zero-phase loop gain G(w) sets a decay time of ``t60_s``
    at f0, shorter for higher partials. The FFT runs on the damped signal y[n] r^-n (the z-transform on a
    circle of radius r > 1), so the tail that wraps around the FFT length is 120 dB down and the FFT only
    needs to be twice the note long; multiplying by r^n afterwards undoes the damping.

    Returns:
        (n,) float64 with peak 1.
    """
    period = sr / f0
    m = 1 << int(np.ceil(np.log2(2 * n + period)))
    r = 10.0 ** (6.0 / m)  # r^-m = 1e-6
    burst = rng.standard_normal(int(np.ceil(period))) * r ** -np.arange(int(np.ceil(period)))
    freqs = np.fft.rfftfreq(m, 1.0 / sr)
    # A low-passed burst (softer pick) keeps the fundamental strong; brighter = more high partials.
    soft = 1.0 / np.sqrt(1.0 + (freqs / (f0 * (16.0 / (1.0 + 4.0 * tilt)))) ** 2)
    t60 = t60_s * (f0 / np.maximum(freqs, f0)) ** (0.4 + 0.5 * tilt)
    gain = 10.0 ** (-3.0 * period / (sr * t60)) * r**-period
    spec = np.fft.rfft(burst, m) * soft / (1.0 - gain * np.exp(-2j * np.pi * freqs / sr * period))
    y = np.fft.irfft(spec, m)[:n] * r ** np.arange(n)
    return y / np.abs(y).max()


def natural_t60(f0: float) -> float:
    """Decay time of a plucked string at ``f0``: long for low notes, short for high ones (seconds)."""
    return float(np.clip(3.0 * np.sqrt(220.0 / f0), 0.8, 6.0))
