"""Pictures of audio: log-mel spectrograms as RGB arrays and PNG files, coloured without matplotlib.

:func:`spectrogram_png` draws the log-mel spectrogram of the mono mix with :mod:`wavefoundry.audio.features`:
power in dB relative to the loudest cell, clipped ``top_db`` below it (librosa's ``power_to_db(ref=np.max)``),
low frequencies at the bottom, coloured by a small fixed lookup table (viridis anchors interpolated in numpy).
Used by the HTML reports (``wavefoundry.eval.report``) and the web UI.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wavefoundry.audio.dsp import to_mono
from wavefoundry.audio.features import MelConfig, MelSpectrogram
from wavefoundry.config import atomic_write_bytes

#: Smallest mel power drawn (librosa's ``amin``): digital silence sits at -100 dB.
AMIN = 1e-10
#: Seconds of audio per STFT window (rounded to a power of two in samples): 2048 at 44.1 kHz, 1024 at 16 kHz.
WINDOW_SECONDS = 0.046

#: Colormap name -> anchor colours (sRGB hex), evenly spaced from the lowest to the highest value. Nine samples
#: of matplotlib's perceptually uniform maps (van der Walt & Smith 2015), linearly interpolated between anchors.
COLORMAPS: dict[str, tuple[str, ...]] = {
    "viridis": ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"),
    "magma": ("#000004", "#1d1147", "#51127c", "#822681", "#b63679", "#e65164", "#fb8861", "#fec287", "#fcfdbf"),
    "gray": ("#000000", "#ffffff"),
}


def _anchors(cmap: str) -> np.ndarray:
    if cmap not in COLORMAPS:
        raise ValueError(f"unknown colormap {cmap!r}; valid: {', '.join(COLORMAPS)}")
    return np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in COLORMAPS[cmap]], dtype=np.float64)


def apply_colormap(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """Map values in [0, 1] (clipped) to colours.

    Args:
        values: (...) array; NaN is drawn as the lowest colour.
        cmap: one of :data:`COLORMAPS`.

    Returns:
        (..., 3) uint8 RGB.
    """
    anchors = _anchors(cmap)  # (A, 3)
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0), 0.0, 1.0)
    x = np.linspace(0.0, 1.0, len(anchors))
    rgb = np.stack([np.interp(v, x, anchors[:, c]) for c in range(3)], axis=-1)  # (..., 3)
    return np.round(rgb).astype(np.uint8)


def default_n_fft(sample_rate: int) -> int:
    """STFT size for a spectrogram: about :data:`WINDOW_SECONDS`, rounded to a power of two (at least 64)."""
    return max(64, 2 ** round(math.log2(sample_rate * WINDOW_SECONDS)))


def log_mel_db(
    audio: np.ndarray, sr: int, *, n_mels: int = 80, n_fft: int | None = None, frames: int = 640
) -> np.ndarray:
    """Log-mel power of the mono mix in dB (``10 log10 max(mel, AMIN)``), Slaney mel scale, 0 Hz to sr / 2.

    The hop is ``len / frames`` samples, capped at ``n_fft // 4`` so that long clips keep every sample covered;
    clips shorter than one window are zero-padded.

    Args:
        audio: (C, T) or (T,) float audio.
        sr: sample rate in Hz.
        n_mels: mel bands.
        n_fft: STFT size (default :func:`default_n_fft`).
        frames: number of frames wanted (more come out for long clips).

    Returns:
        (n_mels, N) float32 dB, row 0 the lowest band.

    Raises:
        AudioError: empty or non-finite audio.
    """
    audio = np.asarray(audio, dtype=np.float32)
    mono = to_mono(audio[None] if audio.ndim == 1 else audio)[0]  # (T,)
    n_fft = default_n_fft(sr) if n_fft is None else n_fft
    if len(mono) < n_fft:
        mono = np.pad(mono, (0, n_fft - len(mono)))
    hop = max(1, min(n_fft // 4, len(mono) // max(1, frames)))
    mel = MelSpectrogram(MelConfig(sample_rate=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, log_floor=AMIN))
    with torch.no_grad():
        log_power = mel(torch.from_numpy(mono))  # (n_mels, N), natural log
    return (log_power * (10.0 / math.log(10.0))).numpy()


def spectrogram_image(
    audio: np.ndarray,
    sr: int,
    *,
    n_mels: int = 80,
    height: int = 160,
    width: int = 640,
    top_db: float = 80.0,
    cmap: str = "viridis",
    n_fft: int | None = None,
) -> np.ndarray:
    """Log-mel spectrogram picture: (height, width, 3) uint8 RGB, low frequencies at the bottom.

    Cells are scaled as ``(dB - (max - top_db)) / top_db`` clipped to [0, 1], resized (bilinear, antialiased)
    to the picture size, then coloured. Digital silence gives a uniform picture of the lowest colour.

    Args:
        audio: (C, T) or (T,) float audio; channels are averaged.
        sr: sample rate in Hz.
        n_mels: mel bands, 0 Hz to sr / 2 (Slaney scale).
        height, width: picture size in pixels.
        top_db: dynamic range drawn below the loudest cell.
        cmap: one of :data:`COLORMAPS`.
        n_fft: STFT size (default :func:`default_n_fft`).
    """
    if height < 1 or width < 1 or top_db <= 0:
        raise ValueError(f"need height >= 1, width >= 1 and top_db > 0; got {height}, {width}, {top_db}")
    db = log_mel_db(audio, sr, n_mels=n_mels, n_fft=n_fft, frames=width)  # (n_mels, N)
    peak = float(db.max())
    floor_db = 10.0 * math.log10(AMIN)
    # Silence would otherwise be drawn at full brightness (every cell equals the maximum); the margin absorbs
    # float32 rounding of the floor.
    level = np.zeros_like(db) if peak <= floor_db + 0.01 else np.clip((db - (peak - top_db)) / top_db, 0.0, 1.0)
    level = np.ascontiguousarray(level[::-1], dtype=np.float32)  # (n_mels, N), row 0 the highest band
    resized = Image.fromarray(level).resize((width, height), Image.BILINEAR)
    return apply_colormap(np.asarray(resized), cmap)  # (height, width, 3)


def png_bytes(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def spectrogram_png(
    audio: np.ndarray,
    sr: int,
    path: str | Path,
    *,
    n_mels: int = 80,
    height: int = 160,
    width: int = 640,
    top_db: float = 80.0,
    cmap: str = "viridis",
) -> Path:
    """Write the :func:`spectrogram_image` of (C, T) ``audio`` to ``path`` as PNG (atomically); returns the path."""
    rgb = spectrogram_image(audio, sr, n_mels=n_mels, height=height, width=width, top_db=top_db, cmap=cmap)
    path = Path(path)
    atomic_write_bytes(path, png_bytes(rgb))
    return path
