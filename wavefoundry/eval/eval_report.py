"""``wavefoundry eval report``: one self-contained HTML page per evaluation.

The page gathers the JSON results written by ``wavefoundry eval fd|kl|clap|adherence|memorization|recon`` (each
has ``metric``, ``summary`` and optionally ``per_item`` / ``closest``): a metric table, a sample of generations
(audio player, prompt, matplotlib spectrogram, the item's own scores), the nearest-neighbour list of the
memorization study (with players for the generation and its nearest training clip) and histograms of per-item
scores. Audio and figures are copied into the page folder, so it can be zipped or opened from disk as it is.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from wavefoundry.audio.io import AudioError, load_audio
from wavefoundry.config import atomic_write_bytes
from wavefoundry.eval.figures import histogram_figure, spectrogram_figure
from wavefoundry.eval.report import PAGE_CSS, escape_cell, summary_html

#: Result keys every metric file carries.
REQUIRED_KEYS = ("metric", "summary")
#: Neighbour rows of the memorization list that get audio players (the rest are listed without).
MAX_NEIGHBOUR_PLAYERS = 10


@dataclass(kw_only=True)
class ReportClip:
    """A generation shown on the page: ``path`` is its audio file, ``scores`` its per-item results by metric."""

    id: str
    path: Path
    prompt: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)


def load_result(path: str | Path) -> dict[str, Any]:
    """A metric JSON file written by ``wavefoundry eval ...``; raises ValueError if it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON result ({exc})") from exc
    missing = [k for k in REQUIRED_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(f"{path}: not a wavefoundry metric result (missing {', '.join(missing)})")
    return data


def metric_rows(results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Result label -> the scalar entries of its summary (nested summaries flattened as ``outer.inner``)."""
    rows: dict[str, dict[str, Any]] = {}
    for label, result in results.items():
        row: dict[str, Any] = {}
        for key, value in result["summary"].items():
            if isinstance(value, Mapping):
                for inner, v in value.items():
                    if not isinstance(v, (Mapping, list)):
                        row[f"{key}.{inner}"] = v
            elif not isinstance(value, list):
                row[key] = value
        rows[label] = row
    return rows


def _copy_audio(src: Path, out_dir: Path, sub: str, name: str) -> str:
    dest = out_dir / sub / f"{name}{src.suffix.lower()}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return f"{sub}/{quote(dest.name)}"


def _player(rel: str) -> str:
    return f'<audio controls preload="none" src="{escape_cell(rel)}"></audio>'


def _clip_html(i: int, clip: ReportClip, out_dir: Path) -> str:
    rel = _copy_audio(clip.path, out_dir, "audio", f"{i:03d}")
    try:
        audio, sr = load_audio(clip.path)
        spectrogram_figure(audio, sr, out_dir / "img" / f"spec-{i:03d}.png", title=clip.id)
        picture = f'<img src="img/spec-{i:03d}.png" alt="log-mel spectrogram of {escape_cell(clip.id)}">'
    except (AudioError, ValueError) as exc:
        picture = f'<div class="note">no spectrogram: {escape_cell(str(exc))}</div>'
    rows = [("id", escape_cell(clip.id)), ("prompt", escape_cell(clip.prompt or "—")), ("audio", _player(rel)),
            ("spectrogram", picture)]  # fmt: skip
    rows += [(escape_cell(metric), escape_cell(value)) for metric, value in clip.scores.items()]
    body = "".join(f"<tr><th>{name}</th><td>{cell}</td></tr>" for name, cell in rows)
    return f'<table class="entry">{body}</table>'


def _neighbours_html(closest: Sequence[Mapping[str, Any]], out_dir: Path) -> str:
    head = "<tr><th>generation</th><th>flag</th><th>nearest training clips (distance)</th><th>listen</th></tr>"
    rows = []
    for i, row in enumerate(closest):
        neighbours = row.get("neighbours", [])
        names = "<br>".join(f"{escape_cell(n['id'])} ({escape_cell(n['distance'])})" for n in neighbours)
        listen = ""
        paths = [row.get("path"), neighbours[0].get("path") if neighbours else None]
        if i < MAX_NEIGHBOUR_PLAYERS and all(p and Path(p).is_file() for p in paths):
            gen = _copy_audio(Path(paths[0]), out_dir, "neighbours", f"{i:03d}-generated")
            train = _copy_audio(Path(paths[1]), out_dir, "neighbours", f"{i:03d}-training")
            listen = f"generated {_player(gen)}nearest training clip {_player(train)}"
        rows.append(f"<tr><td>{escape_cell(row['id'])}</td><td>{escape_cell(row.get('flag') or '—')}</td>"
                    f"<td>{names}</td><td>{listen}</td></tr>")  # fmt: skip
    return f'<table class="summary">{head}{"".join(rows)}</table>'


def _histograms(results: Mapping[str, Mapping[str, Any]], out_dir: Path) -> list[str]:
    parts = []
    for label, result in results.items():
        if result["metric"] == "memorization" and result.get("distances"):
            threshold = result.get("threshold")
            threshold = threshold.get("value") if isinstance(threshold, Mapping) else threshold
            marks = {"copy threshold": threshold} if threshold is not None else None
            xlabel, values = "distance to the nearest training clip", result["distances"]
        elif result["metric"] in ("clap", "kl") and result.get("per_item"):
            key = "cosine" if result["metric"] == "clap" else "kl"
            values = [v.get(key) if isinstance(v, Mapping) else v for v in result["per_item"].values()]
            marks, xlabel = None, f"per-item {key}"
        else:
            continue
        name = f"img/hist-{len(parts):02d}.png"
        try:
            histogram_figure(values, out_dir / name, xlabel=xlabel, title=label, marks=marks)
        except ValueError:
            continue
        parts.append(f'<img src="{name}" alt="histogram of {escape_cell(xlabel)}">')
    return parts


def write_evaluation_report(
    out_dir: str | Path,
    *,
    title: str,
    results: Mapping[str, Mapping[str, Any]],
    clips: Sequence[ReportClip] = (),
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``index.html`` (+ audio/, img/, neighbours/) into ``out_dir``; returns the page path.

    Args:
        out_dir: page folder (created; earlier audio/img/neighbours sub-folders are replaced).
        title: page title.
        results: label -> metric result (see :func:`load_result`).
        clips: the generations to show, in order.
        settings: extra name -> value rows (e.g. the generated folder, the command).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for sub in ("audio", "img", "neighbours"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    (out_dir / "img").mkdir()
    sections = [f"<h1>{escape_cell(title)}</h1>"]
    if settings:
        sections.append(summary_html(dict(settings)))
    sections += ["<h2>Metrics</h2>", summary_html(metric_rows(results)) if results else "<p>no results</p>"]
    histograms = _histograms(results, out_dir)
    if histograms:
        sections += ["<h2>Distributions</h2>", *histograms]
    closest = [row for r in results.values() if r["metric"] == "memorization" for row in r.get("closest", [])]
    if closest:
        sections += ["<h2>Generations closest to the training set</h2>", _neighbours_html(closest, out_dir)]
    if clips:
        sections.append(f"<h2>Generations ({len(clips)} shown)</h2>")
        sections += [_clip_html(i, clip, out_dir) for i, clip in enumerate(clips)]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape_cell(title)}</title>\n<style>{PAGE_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + '\n<p class="note">written by wavefoundry eval report</p>\n</body>\n</html>\n'
    )
    index = out_dir / "index.html"
    atomic_write_bytes(index, page.encode("utf-8"))
    return index
