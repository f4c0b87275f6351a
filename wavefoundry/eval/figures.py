"""Figures of the evaluation report, drawn with matplotlib (Agg backend, no display needed), saved as PNG.

* :func:`spectrogram_figure`: the log-mel spectrogram of one clip with labelled axes (seconds, Hz) and a dB
  colour bar, from :func:`wavefoundry.audio.spectrogram.log_mel_db`.
* :func:`histogram_figure`: the distribution of a per-item score (e.g. nearest-neighbour distances), with
  optional marked values (e.g. the copy threshold).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from wavefoundry.audio.spectrogram import log_mel_db


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only: never open a window, work without a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=100)
    tmp.replace(path)
    return path


def spectrogram_figure(
    audio: np.ndarray, sr: int, path: str | Path, *, title: str = "", top_db: float = 80.0, n_mels: int = 80
) -> Path:
    """Write the log-mel spectrogram of (C, T) ``audio`` (mono mix) as a PNG with time/frequency axes.

    Args:
        audio: (C, T) or (T,) float audio.
        sr: sample rate in Hz.
        path: PNG to write (atomically).
        title: figure title.
        top_db: dynamic range shown below the loudest cell.
        n_mels: mel bands from 0 Hz to sr / 2.

    Raises:
        AudioError: empty or non-finite audio.
    """
    plt = _pyplot()
    db = log_mel_db(audio, sr, n_mels=n_mels, frames=400)  # (n_mels, N)
    seconds = np.shape(audio)[-1] / sr
    peak = float(db.max())
    fig, ax = plt.subplots(figsize=(6.4, 2.4), layout="constrained")
    try:
        image = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=peak - top_db, vmax=peak,
                          extent=(0.0, seconds, 0, n_mels))  # fmt: skip
        ticks = np.linspace(0, n_mels, 5)
        ax.set_yticks(ticks, [f"{hz:.0f}" for hz in _mel_tick_hz(ticks, n_mels, sr)])
        ax.set_xlabel("time (s)")
        ax.set_ylabel("Hz (mel scale)")
        if title:
            ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, label="dB")
        return _save(fig, path)
    finally:
        plt.close(fig)


def _mel_tick_hz(ticks: np.ndarray, n_mels: int, sr: int) -> np.ndarray:
    """Frequencies (Hz) at mel-band positions ``ticks`` of an ``n_mels`` Slaney filterbank from 0 to sr / 2."""
    import torch

    from wavefoundry.audio.features import hz_to_mel, mel_to_hz

    top = float(hz_to_mel(sr / 2))
    return mel_to_hz(torch.as_tensor(ticks / n_mels * top, dtype=torch.float64)).numpy()


def histogram_figure(
    values: Sequence[float],
    path: str | Path,
    *,
    xlabel: str,
    title: str = "",
    marks: Mapping[str, float] | None = None,
    bins: int = 30,
) -> Path:
    """Write a histogram of ``values`` (non-finite values are left out) with vertical lines at ``marks``.

    Raises:
        ValueError: no finite value.
    """
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        raise ValueError(f"histogram {title or xlabel!r}: no finite value to draw")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 2.6), layout="constrained")
    try:
        ax.hist(finite, bins=min(bins, max(1, finite.size)), color="#3b528b")
        for (label, x), color in zip((marks or {}).items(), ("#e65164", "#28ae80", "#fde725")):
            ax.axvline(x, color=color, linestyle="--", label=f"{label} = {x:.4g}")
        if marks:
            ax.legend(fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
        if title:
            ax.set_title(title, fontsize=9)
        return _save(fig, path)
    finally:
        plt.close(fig)
