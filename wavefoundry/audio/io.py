"""Audio file I/O through soundfile (libsndfile: wav, flac, ogg/vorbis, opus, mp3).

Arrays are float32 shaped (C, T): channels first, like torch audio tensors. Every loader checks what it read, so
a corrupt, empty, zero-channel, non-finite or absurdly long file raises a typed :class:`AudioError` subclass
with one clear line, never a half-read array.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

#: Longest audio a loader accepts unless told otherwise (1 hour); guards memory against absurd inputs.
DEFAULT_MAX_SECONDS = 3600.0

#: File suffix -> (soundfile format, default subtype).
FORMATS: dict[str, tuple[str, str | None]] = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".opus": ("OGG", "OPUS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}
AUDIO_SUFFIXES = frozenset(FORMATS) | {".aif", ".aiff"}


class AudioError(ValueError):
    """Base class of audio input errors; the message is one line that names the file."""


class AudioDecodeError(AudioError):
    """The file is missing, unreadable or not decodable audio."""


class EmptyAudioError(AudioError):
    """The audio has no samples or no channels."""


class NonFiniteAudioError(AudioError):
    """The audio contains NaN or infinite samples."""


class AudioTooLongError(AudioError):
    """The audio is longer than the allowed maximum."""


class SilentAudioError(AudioError):
    """The audio is digital silence (every sample is zero)."""


class AudioTooShortError(AudioError):
    """The audio is shorter than the required minimum."""


class ChannelError(AudioError):
    """The channel layout is not supported for the requested operation."""


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file."""

    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | Path) -> AudioInfo:
    """Read the header of ``path`` without decoding it.

    Raises:
        AudioDecodeError: the file is missing or not audio that libsndfile can read.
        EmptyAudioError: the file declares no channels or no sample rate.
    """
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioDecodeError(f"{path}: cannot read audio header ({_reason(exc)})") from None
    if info.channels < 1 or info.samplerate < 1:
        raise EmptyAudioError(f"{path}: no channels or no sample rate in header")
    return AudioInfo(info.samplerate, info.channels, info.frames, info.format, info.subtype)


def check_audio(audio: np.ndarray, *, name: str = "audio") -> np.ndarray:
    """Validate a (C, T) array: at least one channel and one sample, all finite. Returns it unchanged.

    Raises:
        EmptyAudioError, NonFiniteAudioError, ChannelError.
    """
    if audio.ndim != 2:
        raise ChannelError(f"{name}: expected a (channels, samples) array, got shape {tuple(audio.shape)}")
    if audio.shape[0] == 0:
        raise EmptyAudioError(f"{name}: zero channels")
    if audio.shape[1] == 0:
        raise EmptyAudioError(f"{name}: no samples")
    if not np.isfinite(audio).all():
        bad = int((~np.isfinite(audio)).sum())
        raise NonFiniteAudioError(f"{name}: {bad} NaN/inf samples")
    return audio


def load_audio(
    path: str | Path,
    *,
    offset_s: float = 0.0,
    duration_s: float | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> tuple[np.ndarray, int]:
    """Decode an audio file to float32 (C, T) in [-1, 1] (floating-point files may exceed it).

    Args:
        path: a file soundfile can read (wav, flac, ogg, opus, mp3, aiff).
        offset_s: start reading here.
        duration_s: read at most this long (default: to the end).
        max_seconds: refuse files whose decoded part would be longer (guards memory).

    Returns:
        (audio, sample_rate) with audio shaped (C, T).

    Raises:
        AudioDecodeError, EmptyAudioError, NonFiniteAudioError, AudioTooLongError.
    """
    info = audio_info(path)
    start = round(offset_s * info.sample_rate)
    if start < 0:
        raise ValueError(f"offset_s must be >= 0, got {offset_s}")
    stop = None if duration_s is None else start + round(duration_s * info.sample_rate)
    # frames may be unknown/approximate for mp3; guard both the header and the decoded length.
    wanted = (info.frames - start) if stop is None else min(stop, info.frames) - start
    if wanted > max_seconds * info.sample_rate:
        raise AudioTooLongError(
            f"{path}: {wanted / info.sample_rate:.1f} s is longer than the limit of {max_seconds:g} s"
        )
    try:
        data, sr = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise AudioDecodeError(f"{path}: cannot decode audio ({_reason(exc)})") from None
    audio = np.ascontiguousarray(data.T)  # (T, C) -> (C, T)
    if audio.shape[1] > max_seconds * sr:
        raise AudioTooLongError(f"{path}: {audio.shape[1] / sr:.1f} s is longer than the limit of {max_seconds:g} s")
    return check_audio(audio, name=str(path)), int(sr)


def save_audio(
    path: str | Path,
    audio: np.ndarray,
    sample_rate: int,
    *,
    subtype: str | None = None,
) -> Path:
    """Write (C, T) or (T,) float audio; the format follows the suffix (.wav .flac .ogg .opus .mp3).

    Samples are clipped to [-1, 1] for integer and lossy formats.

    Raises:
        ValueError: unknown suffix or bad sample rate. EmptyAudioError / NonFiniteAudioError on bad audio.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown audio suffix '{suffix}'; use one of {', '.join(sorted(FORMATS))}")
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    check_audio(audio, name=str(path))
    fmt, default_subtype = FORMATS[suffix]
    subtype = subtype or default_subtype
    if subtype not in ("FLOAT", "DOUBLE"):
        audio = np.clip(audio, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        sf.write(str(path), audio.T, sample_rate, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        path.unlink(missing_ok=True)  # libsndfile may leave an empty file behind
        raise ValueError(
            f"{path}: cannot write {audio.shape[0]}-channel {fmt}/{subtype} audio at {sample_rate} Hz ({_reason(exc)})"
        ) from None
    return path


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
