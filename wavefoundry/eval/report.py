"""Self-contained HTML pages for generated audio: players, log-mel spectrogram PNGs, prompts, timing, summaries.

:func:`write_demo_page` writes ``index.html`` plus one ``spec-NNN.png`` per clip into a folder that already holds
the clips' audio files. The page needs no JavaScript and no outside asset (inline CSS only), so the folder can be
zipped, copied or opened from disk as it is.

The spectrograms are drawn by :func:`wavefoundry.audio.spectrogram.spectrogram_png`.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import numpy as np

from wavefoundry.audio.io import AudioError
from wavefoundry.audio.spectrogram import spectrogram_png
from wavefoundry.config import atomic_write_bytes

#: Spectrogram file of clip ``i`` in a page folder; earlier pages' files matching the pattern are removed.
SPEC_NAME = "spec-{:03d}.png"
_SPEC_RE = re.compile(r"spec-\d{3,}\.png")


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
