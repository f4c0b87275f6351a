"""Full decode of one candidate file: the facts a manifest needs, or a typed :class:`AudioError` on failure.

Every candidate is decoded to the last sample (headers lie: a file can open and still fail half-way). A WAV
file whose ``data`` chunk declares more bytes than the file holds is truncated; libsndfile reads what is there
without complaint, so the RIFF header is checked here. FLAC and AIFF headers state their length exactly and
are compared with the decoded length. Lossy formats (mp3, ogg) carry no exact length and are only checked by
decoding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from wavefoundry.audio.io import (
    DEFAULT_MAX_SECONDS,
    AudioDecodeError,
    AudioError,
    AudioInfo,
    AudioTooShortError,
    EmptyAudioError,
    SilentAudioError,
    audio_info,
    load_audio,
)

_EXACT_LENGTH_FORMATS = ("FLAC", "AIFF")
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming WAV writers leave the data size unset


class TruncatedAudioError(AudioError):
    """The file holds fewer samples than its header declares."""


@dataclass(frozen=True)
class AudioFacts:
    """What a full decode established about a file."""

    sha256: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def file_sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _wav_frames(path: Path) -> tuple[int, int] | None:
    """(frames declared by the RIFF ``data`` chunk, frames the file holds), or None when unknown."""
    size = path.stat().st_size
    block_align = None
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None  # RF64 / W64 / odd files: leave them to the decoder
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk_id, length = fh.read(4), int.from_bytes(fh.read(4), "little")
            if chunk_id == b"fmt ":
                block_align = int.from_bytes(fh.read(16)[12:14], "little")
            elif chunk_id == b"data":
                if length in _UNKNOWN_SIZES or not block_align:
                    return None
                return length // block_align, (size - pos - 8) // block_align
            pos += 8 + length + (length & 1)  # chunks are word-aligned
    return None


def _check_complete(path: Path, info: AudioInfo, frames: int) -> None:
    if info.format == "WAV":
        counts = _wav_frames(path)
        if counts and counts[1] < counts[0]:
            raise TruncatedAudioError(f"{path}: truncated (header declares {counts[0]} frames, file holds {counts[1]})")
    elif info.format in _EXACT_LENGTH_FORMATS and info.frames and frames < info.frames:
        raise TruncatedAudioError(f"{path}: truncated (header declares {info.frames} frames, decoded {frames})")


#: Shortest file a scan keeps by default: shorter ones carry no usable training crop.
DEFAULT_MIN_SECONDS = 0.1


def probe_audio(
    path: str | Path,
    *,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    min_seconds: float = 0.0,
    allow_silence: bool = True,
) -> AudioFacts:
    """Decode ``path`` completely and return its facts.

    Raises:
        AudioTooShortError: shorter than ``min_seconds``. SilentAudioError: all zeros and not ``allow_silence``.
        AudioDecodeError: unreadable or undecodable. EmptyAudioError: 0 bytes, no samples or no channels.
        NonFiniteAudioError: NaN/inf samples. AudioTooLongError: longer than ``max_seconds``.
        TruncatedAudioError: fewer samples than the header declares.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise EmptyAudioError(f"{path}: empty file (0 bytes)")
    except OSError as exc:
        raise AudioDecodeError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    info = audio_info(path)
    audio, sample_rate = load_audio(path, max_seconds=max_seconds)  # (C, T); raises on NaN, empty, too long
    channels, frames = audio.shape
    if frames < min_seconds * sample_rate:
        raise AudioTooShortError(
            f"{path}: {frames / sample_rate:.3f} s is shorter than the minimum of {min_seconds:g} s"
        )
    if not allow_silence and not audio.any():
        raise SilentAudioError(f"{path}: digital silence (every sample is zero)")
    del audio  # only the facts are kept; free the samples before hashing
    try:
        _check_complete(path, info, frames)
        sha = file_sha256(path)
    except OSError as exc:
        raise AudioDecodeError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return AudioFacts(sha, sample_rate, channels, frames, info.format, info.subtype)
