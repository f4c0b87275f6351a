"""Channel layout and level operations on (C, T) float arrays (numpy)."""

from __future__ import annotations

import numpy as np

from wavefoundry.audio.io import ChannelError, check_audio

#: Level assigned to digital silence by :func:`rms_dbfs`.
SILENCE_DBFS = -120.0


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average all channels: (C, T) -> (1, T)."""
    check_audio(audio)
    return audio.mean(axis=0, keepdims=True)


def to_stereo(audio: np.ndarray) -> np.ndarray:
    """Mono is duplicated, stereo is kept: (1|2, T) -> (2, T). More channels are an error (no silent downmix)."""
    check_audio(audio)
    if audio.shape[0] == 1:
        return np.repeat(audio, 2, axis=0)
    if audio.shape[0] == 2:
        return audio
    raise ChannelError(f"cannot map {audio.shape[0]} channels to stereo; downmix with to_mono first")


def set_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Convert (C, T) to ``channels`` (1 or 2) channels."""
    if channels == 1:
        return audio if audio.shape[0] == 1 else to_mono(audio)
    if channels == 2:
        return to_stereo(audio if audio.shape[0] <= 2 else to_mono(audio))
    raise ChannelError(f"channels must be 1 or 2, got {channels}")


def peak(audio: np.ndarray) -> float:
    """Largest absolute sample value."""
    return float(np.abs(audio).max()) if audio.size else 0.0


def peak_normalize(audio: np.ndarray, target: float = 0.99) -> np.ndarray:
    """Scale so that the largest absolute sample equals ``target``; silence is returned unchanged."""
    p = peak(check_audio(audio))
    return audio if p == 0.0 else audio * np.float32(target / p)


def rms_dbfs(audio: np.ndarray) -> float:
    """Loudness as RMS over all samples in dB relative to full scale (a full-scale sine is -3.01 dBFS)."""
    ms = float(np.mean(np.square(audio, dtype=np.float64))) if audio.size else 0.0
    return SILENCE_DBFS if ms <= 10 ** (SILENCE_DBFS / 10) else 10.0 * np.log10(ms)


def loudness_normalize(audio: np.ndarray, target_dbfs: float = -20.0, *, max_peak: float = 1.0) -> np.ndarray:
    """Scale to an RMS level of ``target_dbfs``, then limit the peak to ``max_peak`` by scaling down.

    Silence is returned unchanged (there is no gain that makes it loud).
    """
    level = rms_dbfs(check_audio(audio))
    if level <= SILENCE_DBFS:
        return audio
    out = audio * np.float32(10 ** ((target_dbfs - level) / 20))
    p = peak(out)
    return out * np.float32(max_peak / p) if p > max_peak else out
