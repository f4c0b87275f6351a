"""Measure musical and level attributes of any audio: pitch, tempo, onsets, pan, loudness, active span.

All functions take float audio shaped (C, T) (a 1-D (T,) array is read as mono) and its sample rate, use
numpy only, and never return NaN. Where there is nothing to measure (silence, a clip too short for the
analysis window, noise without pitch or pulse) they return a documented neutral value instead of raising:
``estimate_f0`` and ``estimate_tempo`` give 0.0, ``active_span`` gives (0.0, 0.0), ``estimate_pan`` 0.0.
Invalid input (no samples, NaN/inf, not 1-D or 2-D) raises the typed errors of :mod:`wavefoundry.audio.io`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from wavefoundry.audio.dsp import rms_dbfs
from wavefoundry.audio.io import ChannelError, check_audio

#: Frames quieter than this (dB re. the loudest frame) are not searched for pitch.
F0_GATE_DB = -35.0
#: Default level (dB re. the loudest moment) above which audio counts as active.
ACTIVE_THRESHOLD_DB = -40.0


def _as_2d(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None]
    return check_audio(audio)


def _mono(audio: np.ndarray) -> np.ndarray:
    """(C, T) or (T,) -> (T,) float64 channel mean, validated."""
    return _as_2d(audio).mean(axis=0, dtype=np.float64)


def _check_rate(sr: int) -> None:
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")


def _frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Overlapping frames of a 1-D signal: (n_frames, length); the last partial frame is dropped."""
    n_frames = 1 + (x.shape[0] - length) // hop
    idx = np.arange(n_frames)[:, None] * hop + np.arange(length)  # (frames, length)
    return x[idx]


def loudness(audio: np.ndarray) -> float:
    """RMS level over all samples and channels in dBFS (:func:`~wavefoundry.audio.dsp.rms_dbfs`)."""
    return rms_dbfs(_as_2d(audio))


def estimate_pan(audio: np.ndarray) -> float:
    """Stereo position in [-1, 1] from the channel energies, inverting the constant-power pan law.

    With L = cos(theta) x and R = sin(theta) x, theta = (pan + 1) pi / 4, the channel RMS ratio gives
    theta = atan2(rms_R, rms_L) back. Mono audio and silence give 0.0 (centre).

    Raises:
        ChannelError: more than two channels.
    """
    audio = _as_2d(audio)
    if audio.shape[0] > 2:
        raise ChannelError(f"estimate_pan needs mono or stereo audio, got {audio.shape[0]} channels")
    if audio.shape[0] == 1:
        return 0.0
    rms = np.sqrt(np.mean(np.square(audio, dtype=np.float64), axis=1))
    if rms.max() <= 0.0:
        return 0.0
    return float(np.clip(4.0 / math.pi * math.atan2(rms[1], rms[0]) - 1.0, -1.0, 1.0))


def envelope_db(audio: np.ndarray, sr: int, *, window_s: float = 0.01) -> np.ndarray:
    """Moving RMS (centred ``window_s`` window, all channels) in dB re. its maximum: (T,), in [-200, 0]."""
    _check_rate(sr)
    power = np.square(_as_2d(audio), dtype=np.float64).mean(axis=0)
    w = max(1, round(window_s * sr))
    cum = np.concatenate([[0.0], np.cumsum(power)])
    lo = np.clip(np.arange(power.size) - w // 2, 0, power.size)
    hi = np.clip(lo + w, 0, power.size)
    ms = np.maximum((cum[hi] - cum[lo]) / np.maximum(hi - lo, 1), 0.0)
    top = ms.max()
    if top <= 0.0:
        return np.full(power.size, -200.0)
    return np.maximum(10.0 * np.log10(np.maximum(ms / top, 1e-20)), -200.0)


def active_span(
    audio: np.ndarray, sr: int, *, threshold_db: float = ACTIVE_THRESHOLD_DB, window_s: float = 0.01
) -> tuple[float, float]:
    """First and last time (seconds) at which the moving RMS is within ``threshold_db`` of its maximum.

    Returns:
        (onset_s, offset_s); (0.0, 0.0) for digital silence.
    """
    if threshold_db >= 0:
        raise ValueError(f"threshold_db must be negative (dB below the loudest moment), got {threshold_db}")
    env = envelope_db(audio, sr, window_s=window_s)
    active = np.flatnonzero(env >= threshold_db)
    if env.max() <= -200.0 or active.size == 0:
        return 0.0, 0.0
    return float(active[0] / sr), float((active[-1] + 1) / sr)


def active_duration(audio: np.ndarray, sr: int, *, threshold_db: float = ACTIVE_THRESHOLD_DB) -> float:
    """Seconds between the first and last active moment (:func:`active_span`); 0.0 for silence."""
    onset, offset = active_span(audio, sr, threshold_db=threshold_db)
    return offset - onset


def cents(f_est: float, f_ref: float) -> float:
    """Pitch difference in cents, 1200 log2(f_est / f_ref).

    Raises:
        ValueError: a frequency is not positive and finite (e.g. 0.0, the 'no pitch' result of estimate_f0).
    """
    for name, f in (("f_est", f_est), ("f_ref", f_ref)):
        if not (math.isfinite(f) and f > 0):
            raise ValueError(f"{name} must be a positive frequency, got {f}")
    return 1200.0 * math.log2(f_est / f_ref)


def _yin_frames(frames: np.ndarray, w: int, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """YIN difference function d(tau) and its cumulative-mean normalisation d'(tau) (de Cheveigne 2002).

    Args:
        frames: (F, w + max_lag) analysis frames.

    Returns:
        (d, d_norm), each (F, max_lag + 1).
    """
    n_fft = 1 << int(np.ceil(np.log2(frames.shape[1] + w)))
    head = np.fft.rfft(frames[:, :w], n_fft)
    full = np.fft.rfft(frames, n_fft)
    r = np.fft.irfft(np.conj(head) * full, n_fft)[:, : max_lag + 1]  # r(tau) = sum_j x_j x_(j+tau), j < w
    cum = np.concatenate([np.zeros((frames.shape[0], 1)), np.cumsum(frames**2, axis=1)], axis=1)
    lags = np.arange(max_lag + 1)
    energy = cum[:, lags + w] - cum[:, lags]  # sum_j x_(j+tau)^2
    d = np.maximum(energy[:, :1] + energy - 2.0 * r, 0.0)
    running = np.cumsum(d[:, 1:], axis=1) / lags[1:]
    d_norm = np.ones_like(d)
    d_norm[:, 1:] = d[:, 1:] / np.maximum(running, 1e-12)
    return d, d_norm


def estimate_f0(
    audio: np.ndarray,
    sr: int,
    *,
    fmin: float = 40.0,
    fmax: float = 2000.0,
    threshold: float = 0.15,
    hop_s: float = 0.01,
) -> float:
    """Fundamental frequency (Hz) by YIN: median of the per-frame estimates over voiced frames.

    A frame is voiced when its normalised difference function dips below ``threshold`` somewhere in
    [sr / fmax, sr / fmin] and its level is within 35 dB of the loudest frame; its period is the first such
    dip's local minimum, refined by parabolic interpolation of the raw difference function.

    Returns:
        f0 in Hz, or 0.0 when no frame is voiced (silence, noise, or audio shorter than two periods of
        ``fmin``).
    """
    _check_rate(sr)
    if not 0 < fmin < fmax:
        raise ValueError(f"need 0 < fmin < fmax, got fmin={fmin}, fmax={fmax}")
    x = _mono(audio)
    max_lag = math.ceil(sr / fmin)
    min_lag = max(2, int(sr / min(fmax, sr / 4)))
    w = max_lag
    if x.shape[0] < w + max_lag + 1:
        return 0.0
    frames = _frames(x, w + max_lag + 1, max(1, round(hop_s * sr)))
    level = np.sum(frames[:, :w] ** 2, axis=1)
    estimates = []
    for start in range(0, frames.shape[0], 256):  # bounded memory on long inputs
        chunk = frames[start : start + 256]
        keep = level[start : start + 256] > max(level.max(), 1e-30) * 10 ** (F0_GATE_DB / 10)
        if keep.any():
            estimates.append(_yin_periods(chunk[keep], w, max_lag, min_lag, threshold))
    periods = np.concatenate(estimates) if estimates else np.zeros(0)
    periods = periods[periods > 0]
    return float(sr / np.median(periods)) if periods.size else 0.0


def _yin_periods(frames: np.ndarray, w: int, max_lag: int, min_lag: int, threshold: float) -> np.ndarray:
    """Period (samples, fractional) of each frame; 0.0 for unvoiced frames."""
    d, dn = _yin_frames(frames, w, max_lag)
    lag = np.arange(max_lag + 1)
    inner = (lag >= min_lag) & (lag < max_lag)
    local_min = np.zeros_like(dn, dtype=bool)
    local_min[:, 1:-1] = (dn[:, 1:-1] <= dn[:, :-2]) & (dn[:, 1:-1] <= dn[:, 2:])
    candidate = (dn < threshold) & local_min & inner
    voiced = candidate.any(axis=1)
    tau = np.argmax(candidate, axis=1)
    rows = np.arange(frames.shape[0])
    a, b, c = d[rows, tau - 1], d[rows, tau], d[rows, np.minimum(tau + 1, max_lag)]
    denom = a - 2.0 * b + c
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1.0, denom), 0.0)
    return np.where(voiced, tau + np.clip(shift, -0.5, 0.5), 0.0)


def _band_matrix(sr: int, n_fft: int, n_bands: int = 24, fmin: float = 40.0) -> np.ndarray:
    """(bins, bands) averaging matrix over log-spaced bands from ``fmin`` to Nyquist; empty bands dropped."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = np.geomspace(fmin, sr / 2, n_bands + 1)
    cols = [(freqs >= lo) & (freqs < hi) for lo, hi in itertools.pairwise(edges)]
    mat = np.stack([c / c.sum() for c in cols if c.any()], axis=1).astype(np.float64)
    return mat


def onset_strength(audio: np.ndarray, sr: int, *, hop_s: float = 0.005) -> tuple[np.ndarray, float]:
    """Spectral-flux onset strength: mean over 24 log-spaced bands of the rise in log band magnitude.

    Log-spaced bands weigh a kick (a few low bins) like a hi-hat (hundreds of high bins), so the beat-carrying
    drums dominate the envelope. Frames are ~32 ms Hann windows centred every ``hop_s``; value i belongs
    to time i * hop_s.

    Returns:
        (envelope (frames,), frame rate in Hz). Empty envelope for audio shorter than one window.
    """
    _check_rate(sr)
    x = _mono(audio)
    hop = max(1, round(hop_s * sr))
    n_fft = 1 << round(math.log2(max(16, 0.032 * sr)))
    if x.shape[0] < n_fft:
        return np.zeros(0), sr / hop
    padded = np.pad(x, (n_fft // 2, n_fft // 2))
    frames = _frames(padded, n_fft, hop) * np.hanning(n_fft)
    bands = np.abs(np.fft.rfft(frames, axis=1)) @ _band_matrix(sr, n_fft)  # (frames, bands)
    top = bands.max()
    if top <= 0.0:
        return np.zeros(frames.shape[0]), sr / hop
    logmag = np.log1p(100.0 * bands / top)
    flux = np.maximum(np.diff(logmag, axis=0, prepend=logmag[:1]), 0.0).mean(axis=1)
    return flux, sr / hop


def onsets(
    audio: np.ndarray, sr: int, *, hop_s: float = 0.005, min_gap_s: float = 0.05, delta: float = 0.1
) -> np.ndarray:
    """Onset times (seconds): peaks of the onset strength that are the largest within ``min_gap_s`` and rise
    above the local median by ``delta`` times the largest peak.

    Returns:
        (n,) float64 array of times, empty for silence or very short audio.
    """
    env, rate = onset_strength(audio, sr, hop_s=hop_s)
    if env.size < 3 or env.max() <= 0.0:
        return np.zeros(0)
    half = max(1, round(min_gap_s * rate))
    padded = np.pad(env, (half, half), mode="edge")
    windows = _frames(padded, 2 * half + 1, 1)  # (frames, 2 * half + 1)
    is_peak = env >= windows.max(axis=1)
    floor = np.median(_frames(np.pad(env, (4 * half, 4 * half), mode="edge"), 8 * half + 1, 1), axis=1)
    picked = np.flatnonzero(is_peak & (env > floor + delta * env.max()))
    # Keep the first of equal-height neighbours (flat peaks).
    picked = picked[np.concatenate([[True], np.diff(picked) > half])] if picked.size else picked
    return picked / rate


#: An octave candidate must land on onsets at least this fraction as strong as the best candidate's.
PULSE_KEEP = 0.5
#: A beat grid's onsets must stand this many times above the background (the 90th percentile of the onset
#: strength) to count as a pulse; steady sounds, noise and single notes stay far below (about 1 to 4).
PULSE_CLARITY = 5.0


def _comb_score(acf: np.ndarray, lags: np.ndarray, max_lag: float) -> np.ndarray:
    """Mean of the (interpolated) autocorrelation at every multiple of each lag up to ``max_lag``: (lags,)."""
    k_max = max(1, int(max_lag // lags.min()))
    multiples = lags[:, None] * np.arange(1, k_max + 1)  # (lags, k_max)
    valid = multiples <= max(max_lag, float(lags.max()))
    values = np.interp(multiples, np.arange(acf.shape[0]), acf)
    return (values * valid).sum(axis=1) / valid.sum(axis=1)


def _pulse_strength(env: np.ndarray, lag: float) -> float:
    """How reliably a beat grid of period ``lag`` (frames) lands on onsets: the 20th percentile of the onset
    strength at the grid points, at the best phase (one-frame tolerance)."""
    padded = np.pad(env, 1)
    tolerant = np.maximum(np.maximum(padded[:-2], padded[1:-1]), padded[2:])
    phases = np.arange(0.0, lag, 0.5)
    n_beats = max(1, int((env.shape[0] - 1 - phases[-1]) // lag) + 1)
    points = phases[:, None] + lag * np.arange(n_beats)  # (phases, beats)
    values = np.interp(points, np.arange(env.shape[0]), tolerant)
    return float(np.quantile(values, 0.2, axis=1).max())


def _octave_choice(env: np.ndarray, lag: float, lag_range: tuple[float, float]) -> float | None:
    """Among ``lag`` times 1/4..4 (within range), the shortest period whose grid lands on strong onsets."""
    candidates = [lag * 2.0**k for k in range(-2, 3) if lag_range[0] <= lag * 2.0**k <= lag_range[1]]
    strength = {c: _pulse_strength(env, c) for c in candidates}
    best = max(strength.values())
    background = max(float(np.quantile(env, 0.9)), 0.02 * float(env.max()))
    if best < PULSE_CLARITY * background:
        return None
    return min(c for c, s in strength.items() if s >= PULSE_KEEP * best)


def estimate_tempo(audio: np.ndarray, sr: int, *, bpm_min: float = 60.0, bpm_max: float = 200.0) -> float:
    """Tempo in BPM from the periodicity of the onset strength (:func:`onset_strength`).

    1. The onset envelope's autocorrelation is scored for each beat period by its mean over all multiples of
       the period up to half the clip (a comb); the best period is a beat, up to an octave.
    2. Octave choice: of that period times 1/4..4, keep the shortest whose grid lands on a strong onset at
       almost every beat (20th percentile of the onset strength at the grid points, at least half the best
       candidate's). Half the true period fails (off-beats are weak); double it passes but is slower.
    3. The comb score is maximised again within +-4 % of the chosen period for a sub-frame estimate.

    Returns:
        Tempo in [bpm_min, bpm_max], or 0.0 when there is no pulse to measure (silence, steady sound, or a
        clip shorter than two beats at ``bpm_min``).
    """
    if not 0 < bpm_min < bpm_max:
        raise ValueError(f"need 0 < bpm_min < bpm_max, got {bpm_min}, {bpm_max}")
    env, rate = onset_strength(audio, sr)
    max_lag = env.shape[0] / 2
    lag_range = (60.0 * rate / bpm_max, 60.0 * rate / bpm_min)
    if env.shape[0] < 4 or max_lag < lag_range[1] or env.max() <= 0.0:
        return 0.0
    # Subtract a 155 ms moving average: keeps the pulses, drops slow level changes.
    env = np.maximum(env - np.convolve(env, np.ones(31) / 31, mode="same"), 0.0)
    # Widen each pulse to ~25 ms so that beat periods between two frame lags keep their full peak height.
    smooth = np.convolve(env, np.hanning(7)[1:-1] / np.hanning(7).sum(), mode="same")
    spec = np.fft.rfft(smooth, 2 * env.shape[0])
    acf = np.fft.irfft(np.abs(spec) ** 2)[: env.shape[0]]  # biased: longer lags weigh less
    if acf[0] <= 0.0:
        return 0.0
    lags = 60.0 * rate / np.geomspace(bpm_min, bpm_max, 600)
    lag = _octave_choice(env, float(lags[np.argmax(_comb_score(acf, lags, max_lag))]), lag_range)
    if lag is None:
        return 0.0
    fine = np.linspace(max(lag_range[0], 0.96 * lag), min(lag_range[1], 1.04 * lag), 161)
    return float(60.0 * rate / fine[np.argmax(_comb_score(acf, fine, max_lag))])
