"""Audio sets of the distribution metrics: folders or manifests of files keyed by id, and their embedding loops.

An id is a file's path relative to its folder without the suffix (``sub/clip`` for ``sub/clip.wav``), or a manifest
item's ``id``, so generations named ``<id>.wav`` pair with the references of the same id. Every file that cannot be
used is rejected with its reason (JSON ``rejects``) and never stops the run; silent files are kept (a generator
that outputs silence must pay for it) and listed under ``silent``. A set must have one sample rate and one channel
count, and two compared sets the same ones, unless ``--allow-mismatch`` (recorded in the JSON).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(kw_only=True)
class AudioSet:
    """Files of one side of a comparison: id -> path, plus the manifest captions when it came from one."""

    source: Path
    files: dict[str, Path]
    captions: dict[str, str] = field(default_factory=dict)


def audio_set(path: Path, *, split: str | None = None, limit: int | None = None) -> AudioSet:
    """The files of a folder (recursive) or a manifest.jsonl (its items, optionally one split).

    Raises:
        FileNotFoundError: ``path`` is neither.
        ValueError: no audio file, or two files with the same id (``a.wav`` and ``a.flac``).
    """
    from wavefoundry.audio.io import AUDIO_SUFFIXES
    from wavefoundry.data.manifest import read_manifest

    captions: dict[str, str] = {}
    if path.is_file():
        items = [it for it in read_manifest(path) if split is None or it.split == split]
        files = {it.id: Path(it.path) for it in items}
        captions = {it.id: it.text for it in items if it.text}
    elif path.is_dir():
        files = {}
        for p in sorted(q for q in path.rglob("*") if q.suffix.lower() in AUDIO_SUFFIXES and q.is_file()):
            key = p.relative_to(path).with_suffix("").as_posix()
            if key in files:
                raise ValueError(f"{path}: two files have the id {key!r} ({files[key].name}, {p.name})")
            files[key] = p
    else:
        raise FileNotFoundError(f"not a folder or manifest: {path}")
    if limit is not None:
        files = dict(list(files.items())[:limit])
    if not files:
        raise ValueError(f"no audio files in {path}" + (f" (split {split})" if split else ""))
    return AudioSet(source=path, files=files, captions=captions)


@dataclass(kw_only=True)
class SetReport:
    """What happened to the files of a set: rejects with reasons, silent ids, sample rates and channel counts."""

    n_files: int = 0
    rejects: list[dict[str, str]] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    rates: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"n_files": self.n_files, "n_used": self.n_files - len(self.rejects), "rejects": self.rejects,
                "silent": self.silent, "sample_rates": sorted(self.rates),
                "channels": sorted(self.channels)}  # fmt: skip


def iter_audio(
    audio_files: AudioSet, report: SetReport, *, desc: str, progress: bool = True
) -> Iterator[tuple[str, np.ndarray, int]]:
    """(id, audio (C, T), sr) of every readable, finite file; unreadable ones go to ``report.rejects``."""
    from tqdm.auto import tqdm

    from wavefoundry.audio.io import AudioError, load_audio

    for key, path in tqdm(audio_files.files.items(), desc=desc, disable=not progress):
        report.n_files += 1
        try:
            audio, sr = load_audio(path)
            if not np.isfinite(audio).all():
                raise AudioError("audio contains NaN or infinite samples")
        except (AudioError, ValueError) as exc:
            report.rejects.append({"id": key, "path": str(path), "reason": str(exc)})
            continue
        report.rates[sr] += 1
        report.channels[audio.shape[0]] += 1
        if not np.any(audio):
            report.silent.append(key)
        yield key, audio, sr


def embed_each(
    audio_files: AudioSet,
    fn: Callable[[np.ndarray, int], np.ndarray],
    report: SetReport,
    *,
    desc: str,
    progress: bool = True,
) -> Iterator[tuple[str, np.ndarray]]:
    """(id, fn(audio, sr)) per usable file; a file whose result is not finite is rejected with the reason."""
    for key, audio, sr in iter_audio(audio_files, report, desc=desc, progress=progress):
        try:
            out = np.asarray(fn(audio, sr), dtype=np.float64)
        except ValueError as exc:
            report.rejects.append({"id": key, "path": str(audio_files.files[key]), "reason": str(exc)})
            continue
        if not np.isfinite(out).all():
            report.rejects.append({"id": key, "path": str(audio_files.files[key]),
                                   "reason": "the embedder returned NaN or infinite values"})  # fmt: skip
            continue
        yield key, out


def check_formats(reports: dict[str, SetReport], *, allow_mismatch: bool) -> list[str]:
    """Problems of sample rate / channel count within and between sets; raises unless ``allow_mismatch``.

    Returns:
        The problems found (empty when the sets agree), to be recorded in the JSON when they are allowed.
    """
    problems = []
    for name, rep in reports.items():
        for what, counts in (("sample rates", rep.rates), ("channel counts", rep.channels)):
            if len(counts) > 1:
                problems.append(f"{name} mixes {what} {dict(counts)}")
    formats = {name: (tuple(sorted(r.rates)), tuple(sorted(r.channels))) for name, r in reports.items() if r.rates}
    if len(set(formats.values())) > 1:
        problems.append("sets differ in format: " + "; ".join(
            f"{n}: {list(rates)} Hz, {list(ch)} channels" for n, (rates, ch) in formats.items()))  # fmt: skip
    if problems and not allow_mismatch:
        raise ValueError(problems[0] + " (resample/convert the files, or pass --allow-mismatch)")
    return problems


def require_used(name: str, report: SetReport) -> None:
    """Error when no file of a set could be used, naming the first reject's reason."""
    if report.n_files - len(report.rejects) <= 0:
        first = report.rejects[0]["reason"] if report.rejects else "no files"
        raise ValueError(f"{name}: no usable file ({len(report.rejects)} rejected; first: {first})")
