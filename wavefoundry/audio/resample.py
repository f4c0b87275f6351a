"""Sample-rate conversion of (C, T) numpy audio through soxr (band-limited, linear phase by default)."""

from __future__ import annotations

import numbers

import numpy as np
import soxr

from wavefoundry.audio.io import EmptyAudioError, check_audio

#: soxr quality recipes, fastest to best; "HQ" is soxr's default (20-bit precision, ~95% bandwidth).
QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


def _check_rate(name: str, rate: object) -> int:
    # bool is an int subclass; a fractional rate (44100.5) is almost always a caller's bug.
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral) or rate <= 0:
        raise ValueError(f"{name} must be a positive integer, got {rate!r}")
    return int(rate)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int, *, quality: str = "HQ") -> np.ndarray:
    """Resample (C, T) audio from ``orig_sr`` to ``target_sr``.

    The output has round(T * target_sr / orig_sr) samples. float32 and float64 keep their dtype; other dtypes
    become float32. Equal rates return ``audio`` itself (no copy).

    Args:
        audio: (C, T) array, finite, at least one sample.
        orig_sr: sample rate of ``audio`` in Hz (positive int).
        target_sr: wanted sample rate in Hz (positive int).
        quality: one of :data:`QUALITIES`.

    Returns:
        (C, T') C-contiguous array.

    Raises:
        ValueError: bad rate or quality. EmptyAudioError / NonFiniteAudioError / ChannelError on bad audio,
        EmptyAudioError also when the input is too short to give a single output sample.
    """
    orig_sr = _check_rate("orig_sr", orig_sr)
    target_sr = _check_rate("target_sr", target_sr)
    if quality not in QUALITIES:
        raise ValueError(f"unknown resample quality {quality!r}; valid: {', '.join(QUALITIES)}")
    check_audio(audio)
    if orig_sr == target_sr:
        return audio
    if audio.dtype not in (np.float32, np.float64):
        audio = audio.astype(np.float32)
    out = soxr.resample(audio.T, orig_sr, target_sr, quality=quality)  # (T, C) -> (T', C)
    if out.shape[0] == 0:
        raise EmptyAudioError(f"audio of {audio.shape[1]} samples is too short to resample to {target_sr} Hz")
    return np.ascontiguousarray(out.T)  # (C, T')
