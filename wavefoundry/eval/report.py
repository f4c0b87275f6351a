"""Self-contained HTML pages for generated audio: players, log-mel spectrogram PNGs, prompts, timing, summaries.

:func:`write_demo_page` writes ``index.html`` plus one ``spec-NNN.png`` per clip into a folder that already holds
the clips' audio files. The page needs no JavaScript and no outside asset (inline CSS only), so the folder can be
zipped, copied or opened from disk as it is.

:func:`spectrogram_png` draws the log-mel spectrogram of the mono mix with :mod:`wavefoundry.audio.features`:
power in dB relative to the loudest cell, clipped ``top_db`` below it (librosa's ``power_to_db(ref=np.max)``),
low frequencies at the bottom, coloured by a small fixed lookup table (viridis anchors interpolated in numpy).
"""

from __future__ import annotations

import dataclasses
import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import numpy as np
import torch
from PIL import Image

from wavefoundry.audio.dsp import to_mono
from wavefoundry.audio.features import MelConfig, MelSpectrogram
from wavefoundry.audio.io import AudioError
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

#: Spectrogram file of clip ``i`` in a page folder; earlier pages' files matching the pattern are removed.
SPEC_NAME = "spec-{:03d}.png"
_SPEC_RE = re.compile(r"spec-\d{3,}\.png")


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


def _png_bytes(rgb: np.ndarray) -> bytes:
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
    atomic_write_bytes(path, _png_bytes(rgb))
    return path


@dataclass(kw_only=True)
class DemoEntry:
    """One clip of a demo page.

    ``audio_path`` is relative to the page folder and must already exist there. ``audio`` (C, T) or (T,) at
    ``sr`` Hz is only used for the spectrogram. ``seconds_audio`` defaults to the length of ``audio``.
    """

    prompt: str
    audio_path: str
    audio: np.ndarray
    sr: int
    seconds_generated: float | None = None
    seconds_audio: float | None = None
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    notes: str | None = None

    def __post_init__(self) -> None:
        path = PurePosixPath(str(self.audio_path).replace("\\", "/"))
        if not str(self.audio_path) or path.is_absolute() or ".." in path.parts:
            raise ValueError(f"audio_path must be a relative path inside the page folder, got {self.audio_path!r}")
        if self.sr < 1:
            raise ValueError(f"sr must be positive, got {self.sr}")
        if self.seconds_audio is None:
            self.seconds_audio = np.shape(self.audio)[-1] / self.sr if np.size(self.audio) else None


def as_entry(entry: DemoEntry | Mapping[str, Any]) -> DemoEntry:
    """A :class:`DemoEntry` from itself or a dict; an unknown key raises ValueError naming the valid ones."""
    if isinstance(entry, DemoEntry):
        return entry
    valid = [f.name for f in dataclasses.fields(DemoEntry)]
    unknown = sorted(set(entry) - set(valid))
    if unknown:
        raise ValueError(f"unknown demo entry key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
    return DemoEntry(**entry)


def format_value(value: Any) -> str:
    """Short text for a table cell: 4 significant digits for floats, lists in brackets, dicts as k=v."""
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items())
    return str(value)


def escape_cell(value: Any) -> str:
    """HTML-escaped text of a value (strings as they are, other values through :func:`format_value`)."""
    return html.escape(value if isinstance(value, str) else format_value(value), quote=True)


def summary_html(summary: Mapping[str, Any]) -> str:
    """Summary tables: scalars as name | value rows; dict values (e.g. metric -> {accuracy, n, ci95}) as one
    row each under the union of their keys as columns."""
    flat = {k: v for k, v in summary.items() if not isinstance(v, Mapping)}
    nested = {k: v for k, v in summary.items() if isinstance(v, Mapping)}
    parts = []
    if flat:
        rows = "".join(f"<tr><th>{escape_cell(k)}</th><td>{escape_cell(v)}</td></tr>" for k, v in flat.items())
        parts.append(f'<table class="summary">{rows}</table>')
    if nested:
        columns = list(dict.fromkeys(c for row in nested.values() for c in row))
        head = "<tr><th></th>" + "".join(f"<th>{escape_cell(c)}</th>" for c in columns) + "</tr>"
        rows = "".join(
            f"<tr><th>{escape_cell(k)}</th>" + "".join(f"<td>{escape_cell(row.get(c))}</td>" for c in columns) + "</tr>"
            for k, row in nested.items()
        )
        parts.append(f'<table class="summary">{head}{rows}</table>')
    return "\n".join(parts)


def timing_text(seconds_generated: float | None, seconds_audio: float | None) -> str:
    """Timing cell: generated in G s for A s of audio, real-time factor G / A (below 1 beats real time)."""
    if seconds_generated is None:
        return "—" if seconds_audio is None else f"{seconds_audio:.2f} s of audio"
    text = f"generated in {seconds_generated:.2f} s"
    if seconds_audio:
        text += f" for {seconds_audio:.2f} s of audio, real-time factor {seconds_generated / seconds_audio:.3g}"
    return text


PAGE_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;
vertical-align:top}th{background:#f4f4f4;font-weight:600}table.entry{width:100%}table.entry th{width:9em}
img{display:block;max-width:100%;height:auto}audio{width:100%}
.note{color:#666;font-size:.85em}td.prompt{font-size:1.1em}"""


def _entry_html(i: int, entry: DemoEntry, spec: str | None, spec_error: str | None, size: tuple[int, int]) -> str:
    src = escape_cell(quote(PurePosixPath(str(entry.audio_path).replace("\\", "/")).as_posix()))
    nyquist = entry.sr / 2
    if spec is not None:
        picture = (
            f'<img src="{escape_cell(spec)}" width="{size[0]}" height="{size[1]}" '
            f'alt="log-mel spectrogram of clip {i + 1}">'
            f'<div class="note">log-mel, 0 to {nyquist:g} Hz (low at the bottom), time left to right</div>'
        )
    else:
        picture = f'<div class="note">no spectrogram: {escape_cell(spec_error)}</div>'
    rows = [
        ("prompt", f'<td class="prompt">{escape_cell(entry.prompt)}</td>'),
        ("audio", f'<td><audio controls preload="none" src="{src}"></audio></td>'),
        ("spectrogram", f"<td>{picture}</td>"),
        ("timing", f"<td>{escape_cell(timing_text(entry.seconds_generated, entry.seconds_audio))}</td>"),
    ]
    if entry.seed is not None:
        rows.append(("seed", f"<td>{escape_cell(entry.seed)}</td>"))
    if entry.settings:
        rows.append(("settings", f"<td>{escape_cell(entry.settings)}</td>"))
    if entry.notes:
        rows.append(("notes", f"<td>{escape_cell(entry.notes)}</td>"))
    body = "".join(f"<tr><th>{name}</th>{cell}</tr>" for name, cell in rows)
    return f'<h2 id="clip-{i:03d}">Clip {i + 1}</h2>\n<table class="entry">{body}</table>'


def write_demo_page(
    out_dir: str | Path,
    entries: Sequence[DemoEntry | Mapping[str, Any]],
    *,
    title: str,
    summary: Mapping[str, Any] | None = None,
    spec_size: tuple[int, int] = (640, 160),
) -> Path:
    """Write ``index.html`` and one spectrogram PNG per clip (``spec-000.png``, ...) into ``out_dir``.

    Each entry gets a table: prompt, audio player, spectrogram, timing (generation seconds and the real-time
    factor, generation time / audio duration), seed, settings and notes. Every text is HTML-escaped. Spectrogram
    files of an earlier page in the folder are removed first, so writing again leaves no stale picture. A clip
    whose audio is empty or non-finite gets the reason in place of its spectrogram.

    Args:
        out_dir: page folder, holding the entries' audio files.
        entries: :class:`DemoEntry` objects or dicts with its fields.
        title: page title and heading.
        summary: optional name -> value, or name -> {column: value} (e.g. metric -> {accuracy, n, ci95}).
        spec_size: spectrogram (width, height) in pixels.

    Returns:
        Path of ``index.html``.

    Raises:
        ValueError: a bad entry (unknown key, absolute or escaping audio_path).
        FileNotFoundError: an entry's audio file is not in ``out_dir``.
    """
    out_dir = Path(out_dir)
    items = [as_entry(e) for e in entries]
    for entry in items:
        if not (out_dir / entry.audio_path).is_file():
            raise FileNotFoundError(f"{out_dir / entry.audio_path}: audio file of prompt {entry.prompt!r} not found")
    for old in out_dir.glob("spec-*.png"):
        if _SPEC_RE.fullmatch(old.name):
            old.unlink()
    width, height = spec_size
    sections = []
    for i, entry in enumerate(items):
        spec, error = SPEC_NAME.format(i), None
        try:
            spectrogram_png(entry.audio, entry.sr, out_dir / spec, width=width, height=height)
        except AudioError as exc:
            spec, error = None, str(exc)
        sections.append(_entry_html(i, entry, spec, error, (width, height)))
    count = f"{len(items)} clip{'s' if len(items) != 1 else ''}"
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape_cell(title)}</title>\n<style>{PAGE_CSS}</style>\n</head>\n<body>\n<h1>{escape_cell(title)}</h1>\n"
        f'<p class="note">{count}; written by wavefoundry</p>\n'
        + (f"<h2>Summary</h2>\n{summary_html(summary)}\n" if summary else "")
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )
    index = out_dir / "index.html"
    atomic_write_bytes(index, page.encode("utf-8"))
    return index
