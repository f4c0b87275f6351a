"""Embedders for the distribution metrics: the interfaces the metrics take, and shared preprocessing.

The metrics in :mod:`wavefoundry.eval` take arrays and give numbers; the models that turn audio into those arrays
are built explicitly by the caller (the CLI) and handed over through three small interfaces:

* :class:`FrameEmbedder` (FD): ``embed(audio (C, T), sr) -> (N, D)`` frame or window embeddings of one file.
* :class:`AudioClassifier` (KL): ``logits(windows (N, C, T)) -> (N, n_labels)`` for fixed-length windows at the
  classifier's own rate; the windowing policy is the metric's (:mod:`wavefoundry.eval.kl`).
* :class:`TextAudioModel` (CLAP score): ``embed_audio(windows (N, C, T)) -> (N, D)`` and
  ``embed_text(texts) -> (N, D)``; the long-audio policy is the metric's (:mod:`wavefoundry.eval.clap_score`).

Each carries an :class:`EmbedderInfo` (name, weights hash, rate, window, hop, channel mode) that is written into
saved statistics, so numbers from different embedders or conventions are never compared by accident.
Weights load only from local paths; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from wavefoundry.audio.dsp import to_mono, to_stereo
from wavefoundry.audio.io import check_audio
from wavefoundry.audio.resample import resample

#: How an embedder turns a file's channels into its input: "mono" (mean of channels), "stereo" (mono is
#: duplicated, both channels go in together), "lr-concat" (left and right embedded alone and their embeddings
#: concatenated along D, as stable-audio-metrics does for stereo FD_openl3; mono is duplicated).
CHANNEL_MODES: tuple[str, ...] = ("mono", "stereo", "lr-concat")


@dataclass(frozen=True, kw_only=True)
class EmbedderInfo:
    """What produced a set of embeddings: saved with statistics and compared before any distance is taken."""

    name: str
    weights_sha256: str
    sample_rate: int
    window_s: float
    hop_s: float
    channel_mode: str

    def __post_init__(self) -> None:
        if self.channel_mode not in CHANNEL_MODES:
            raise ValueError(f"unknown channel_mode {self.channel_mode!r}; valid: {', '.join(CHANNEL_MODES)}")
        if self.sample_rate <= 0 or self.window_s <= 0 or self.hop_s <= 0:
            raise ValueError(f"{self.name}: sample_rate, window_s and hop_s must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class FrameEmbedder(Protocol):
    info: EmbedderInfo
    dim: int

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Embeddings (N, dim) float64 of one file's audio (C, T) at rate ``sr``."""
        ...


@runtime_checkable
class AudioClassifier(Protocol):
    info: EmbedderInfo
    labels: tuple[str, ...]

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """Logits (N, n_labels) float64 of windows (N, C, T) already at ``info.sample_rate`` and channel mode."""
        ...


@runtime_checkable
class TextAudioModel(Protocol):
    info: EmbedderInfo
    dim: int

    def embed_audio(self, windows: np.ndarray) -> np.ndarray:
        """Embeddings (N, dim) float64 of windows (N, C, T) at ``info.sample_rate`` and channel mode."""
        ...

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings (N, dim) float64 of N texts."""
        ...


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a weights file (or of every file of a folder, in sorted order)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def prepare(audio: np.ndarray, sr: int, info: EmbedderInfo) -> np.ndarray:
    """Resample (C, T) audio to the embedder's rate and map its channels: (C', T') float32.

    "mono" gives one channel; "stereo" and "lr-concat" give two (mono duplicated).
    """
    audio = check_audio(audio)
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    audio = to_mono(audio) if info.channel_mode == "mono" else to_stereo(audio)
    audio = resample(audio, sr, info.sample_rate) if sr != info.sample_rate else audio
    return np.ascontiguousarray(audio, dtype=np.float32)


def split_windows(audio: np.ndarray, window: int, hop: int, *, pad_last: bool = True) -> np.ndarray:
    """Cut (C, T) into windows (N, C, window) starting every ``hop`` samples.

    Audio shorter than one window gives one zero-padded window. With ``pad_last`` a final partial window is
    zero-padded and kept (so every sample is covered); without it, it is dropped.
    """
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be >= 1 samples, got {window}, {hop}")
    C, T = audio.shape
    if window >= T:
        n = 1
    else:
        n = 1 + (T - window) // hop
        if pad_last and (n - 1) * hop + window < T:
            n += 1
    padded = np.zeros((C, (n - 1) * hop + window), dtype=audio.dtype)
    padded[:, : min(T, padded.shape[1])] = audio[:, : padded.shape[1]]
    starts = np.arange(n) * hop
    return np.stack([padded[:, s : s + window] for s in starts])  # (N, C, window)
