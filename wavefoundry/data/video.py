"""Video files through PyAV (``pip install wavefoundry[video]``; PyAV bundles FFmpeg): frames and the soundtrack.

:func:`read_frames` decodes N evenly spaced frames: frame k of N is source frame floor((k + 0.5) F / N) of the
F frames in the first video stream (so a clip shorter than N frames repeats frames). The frame count comes from
the container when it states one, else from counting the stream's packets (no decode).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".ogv"})
#: Longest soundtrack decoded (seconds): guards memory.
MAX_AUDIO_SECONDS = 3600.0


class VideoError(ValueError):
    """A video cannot be used (unreadable, no video or audio stream, no frames); the message names the file."""


def _av():
    try:
        import av
    except ImportError:
        raise VideoError("reading video needs PyAV: pip install 'wavefoundry[video]' (or: pip install av)") from None
    return av


def _open(path: Path):
    av = _av()
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: cannot open video ({type(exc).__name__}: {exc})") from None


def frame_indices(n_source: int, n_frames: int) -> list[int]:
    """Evenly spaced source indices: floor((k + 0.5) n_source / n_frames), k = 0..n_frames - 1."""
    if n_source < 1 or n_frames < 1:
        raise ValueError(f"need n_source >= 1 and n_frames >= 1, got {n_source} and {n_frames}")
    return [min(n_source - 1, math.floor((k + 0.5) * n_source / n_frames)) for k in range(n_frames)]


def count_frames(path: str | Path) -> int:
    """Frames in the first video stream (container metadata, else counted packets)."""
    path = Path(path)
    av = _av()
    with _open(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        try:
            return sum(1 for p in container.demux(stream) if p.size > 0)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path}: cannot read video packets ({exc})") from None


def read_frames(path: str | Path, n_frames: int = 8, *, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Decode ``n_frames`` evenly spaced frames as RGB.

    Args:
        path: any container/codec FFmpeg reads.
        n_frames: frames to return (>= 1).
        size: resize every frame to ``size`` x ``size`` (or (H, W)); None keeps the video's size.

    Returns:
        (F, 3, H, W) uint8.

    Raises:
        VideoError: unreadable, no video stream, no decodable frame, or PyAV missing.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    path = Path(path)
    av = _av()
    total = count_frames(path)
    if total < 1:
        raise VideoError(f"{path}: the video stream has no frames")
    wanted = frame_indices(total, n_frames)
    kw = {} if size is None else dict(zip(("height", "width"), (size, size) if isinstance(size, int) else size))
    picked: dict[int, np.ndarray] = {}
    last = None
    with _open(path) as container:
        try:
            for i, frame in enumerate(container.decode(video=0)):
                last = frame
                if i in wanted:
                    picked[i] = frame.reformat(format="rgb24", **kw).to_ndarray()  # (H, W, 3)
                if i >= wanted[-1]:
                    break
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path}: cannot decode video ({exc})") from None
    if last is None:
        raise VideoError(f"{path}: no decodable video frame")
    # A container that over-states its frame count: the missing tail takes the last decoded frame.
    tail = last.reformat(format="rgb24", **kw).to_ndarray()
    frames = np.stack([picked.get(i, tail) for i in wanted])  # (F, H, W, 3)
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2))  # (F, 3, H, W)


def read_video_audio(path: str | Path, *, max_seconds: float = MAX_AUDIO_SECONDS) -> tuple[np.ndarray, int]:
    """The first audio stream of a video as float32 (C, T) and its sample rate.

    Raises:
        VideoError: unreadable, no audio stream, no samples, or longer than ``max_seconds``.
    """
    path = Path(path)
    av = _av()
    chunks: list[np.ndarray] = []
    with _open(path) as container:
        if not container.streams.audio:
            raise VideoError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate)
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name if stream.layout else None, rate=rate)
        try:
            for frame in container.decode(audio=0):
                chunks += [f.to_ndarray() for f in resampler.resample(frame)]  # each (C, n)
                if sum(c.shape[1] for c in chunks) > max_seconds * rate:
                    raise VideoError(f"{path}: soundtrack longer than {max_seconds:g} s")
            chunks += [f.to_ndarray() for f in resampler.resample(None)]
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path}: cannot decode audio ({exc})") from None
    if not chunks or sum(c.shape[1] for c in chunks) == 0:
        raise VideoError(f"{path}: the audio stream has no samples")
    return np.ascontiguousarray(np.concatenate(chunks, axis=1), dtype=np.float32), rate
