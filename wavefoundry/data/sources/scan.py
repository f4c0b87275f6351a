"""Folder of audio + metadata -> ``manifest.jsonl``, ``rejects.jsonl`` and ``ATTRIBUTION.csv``.

Each candidate (a file with an audio suffix) goes through four stages, and the first that fails puts it in
``rejects.jsonl`` with the reason: metadata (found and readable), licence (known and allowed), audio (decoded
to the last sample: not corrupt, empty, truncated, NaN or too long) and duplicate (same SHA-256 as a kept
file). A bad file never stops a run and never drops a good one: every failure is caught per file, and ``kept +
rejected == candidates`` always holds. Files with other suffixes (sidecars, covers, notes) are ignored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wavefoundry.audio.io import (
    AUDIO_SUFFIXES,
    DEFAULT_MAX_SECONDS,
    AudioDecodeError,
    AudioError,
    AudioTooLongError,
    AudioTooShortError,
    ChannelError,
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
)
from wavefoundry.config import atomic_write_bytes
from wavefoundry.data.licenses import LicensePolicy, license_url, requires_attribution
from wavefoundry.data.manifest import ManifestItem, write_manifest
from wavefoundry.data.prompts import build_prompt
from wavefoundry.data.sources.probe import DEFAULT_MIN_SECONDS, AudioFacts, TruncatedAudioError, probe_audio
from wavefoundry.data.sources.records import MetadataError, MissingMetadataError, SourceRecord
from wavefoundry.data.sources.resolve import METADATA_MODES, MetadataResolver

logger = logging.getLogger(__name__)

ATTRIBUTION_COLUMNS = ("id", "title", "creator", "source_url", "license", "license_url")
_SLUG_RE = re.compile(r"[^A-Za-z0-9_-]+")
# Audio error class -> short reason kind for the report.
_AUDIO_KINDS: tuple[tuple[type[AudioError], str], ...] = (
    (AudioDecodeError, "decode error"),
    (EmptyAudioError, "empty audio"),
    (NonFiniteAudioError, "non-finite audio"),
    (AudioTooLongError, "too long"),
    (TruncatedAudioError, "truncated"),
    (ChannelError, "bad channels"),
    (SilentAudioError, "silent"),
    (AudioTooShortError, "too short"),
)


@dataclass(frozen=True)
class Reject:
    """One item left out: the file, why, at which stage, and a short kind for counting."""

    path: str
    reason: str
    stage: str  # "metadata", "license", "audio", "duplicate" or "internal"
    kind: str

    def to_json(self) -> str:
        return json.dumps({"path": self.path, "reason": self.reason, "stage": self.stage, "kind": self.kind})


@dataclass(kw_only=True)
class ScanReport:
    """Counts of a scan and where its outputs are. ``kept + rejected == candidates``."""

    candidates: int
    kept: int
    rejected: int
    ignored: int
    by_reason: dict[str, int] = field(default_factory=dict)
    by_stage: dict[str, int] = field(default_factory=dict)
    licenses: dict[str, int] = field(default_factory=dict)
    attribution: int = 0
    total_seconds: float = 0.0
    manifest_path: Path
    rejects_path: Path
    attribution_path: Path

    def summary(self) -> str:
        """A few readable lines for a log or the command line."""
        lines = [
            f"candidates {self.candidates}: kept {self.kept} ({self.total_seconds / 3600:.2f} h), "
            f"rejected {self.rejected}; {self.ignored} non-audio files ignored",
        ]
        lines += [f"  rejected ({reason}): {n}" for reason, n in sorted(self.by_reason.items())]
        lines += [f"  licence {lic}: {n}" for lic, n in sorted(self.licenses.items())]
        lines.append(f"manifest {self.manifest_path}; rejects {self.rejects_path}; attribution {self.attribution_path}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Accepted:
    record: SourceRecord
    license: str
    facts: AudioFacts


Outcome = _Accepted | Reject


def find_audio(root: str | Path) -> tuple[list[Path], int]:
    """Audio files under ``root`` (relative paths, sorted) and the number of other files ignored."""
    root = Path(root)
    found, ignored = [], 0
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in files:
            if Path(name).suffix.lower() in AUDIO_SUFFIXES:
                found.append((Path(folder) / name).relative_to(root))
            else:
                ignored += 1
    return sorted(found, key=lambda p: p.as_posix()), ignored


def assign_ids(rel_paths: Iterable[Path]) -> list[str]:
    """Unique dot-free ids from relative paths (``a/b c.wav`` -> ``a-b_c``); clashes get suffix or hash."""
    ids: list[str] = []
    used: set[str] = set()
    for rel in rel_paths:
        base = "-".join(_SLUG_RE.sub("_", part).strip("_") or "_" for part in rel.with_suffix("").parts)
        candidate = base
        if candidate in used:
            candidate = f"{base}_{rel.suffix.lstrip('.').lower()}"
        if candidate in used:
            candidate = f"{base}_{hashlib.sha1(rel.as_posix().encode()).hexdigest()[:8]}"
        n = 1
        while candidate in used:
            candidate, n = f"{base}_{n}", n + 1
        used.add(candidate)
        ids.append(candidate)
    return ids


def _hash_unit(*parts: object) -> int:
    """A stable 64-bit integer from ``parts`` (independent of file order and worker count)."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")


def _split(item_id: str, seed: int, valid_fraction: float) -> str:
    return "valid" if _hash_unit(seed, "split", item_id) / 2**64 < valid_fraction else "train"


def _audio_kind(exc: AudioError) -> str:
    return next((kind for cls, kind in _AUDIO_KINDS if isinstance(exc, cls)), "audio error")


@dataclass(frozen=True)
class _Limits:
    min_seconds: float
    max_seconds: float
    allow_silence: bool


def _evaluate(path: Path, resolver: MetadataResolver, policy: LicensePolicy, limits: _Limits) -> Outcome:
    """Run the metadata, licence and audio stages on one file: an :class:`_Accepted` or a :class:`Reject`."""
    try:
        record = resolver.resolve(path)
    except MetadataError as exc:
        kind = "no metadata" if isinstance(exc, MissingMetadataError) else "invalid metadata"
        return Reject(str(path), str(exc), "metadata", kind)
    decision = policy.decide(record.license, url=record.license_url)
    if not decision.allowed:
        return Reject(str(path), decision.reason or "", "license", decision.kind)
    try:
        facts = probe_audio(
            path, max_seconds=limits.max_seconds, min_seconds=limits.min_seconds, allow_silence=limits.allow_silence
        )
    except AudioError as exc:
        return Reject(str(path), str(exc), "audio", _audio_kind(exc))
    return _Accepted(record, decision.id or "", facts)


def _evaluate_safely(path: Path, resolver: MetadataResolver, policy: LicensePolicy, limits: _Limits) -> Outcome:
    try:
        return _evaluate(path, resolver, policy, limits)
    except Exception as exc:  # a library bug on one odd file must not end a scan of a million
        logger.exception("unexpected error on %s", path)
        return Reject(str(path), f"{type(exc).__name__}: {exc}", "internal", "internal error")


def _make_item(item_id: str, path: Path, rel: Path, acc: _Accepted, seed: int, split: str) -> ManifestItem:
    rec, facts = acc.record, acc.facts
    rng = np.random.default_rng(_hash_unit(seed, "prompt", item_id))
    prompt = rec.prompt or build_prompt(rec.prompt_meta, rng, style=rec.prompt_style)
    attrs = {**rec.attrs, "rel_path": rel.as_posix(), "format": facts.format, "subtype": facts.subtype}
    attrs.update(prompt_meta=rec.prompt_meta, prompt_style=rec.prompt_style)
    return ManifestItem(
        id=item_id,
        path=os.path.abspath(path),
        duration_s=facts.duration_s,
        sample_rate=facts.sample_rate,
        channels=facts.channels,
        prompt=prompt,
        caption=rec.caption,
        source=rec.source,
        source_id=rec.source_id,
        url=rec.url,
        title=rec.title,
        creator=rec.creator,
        license=acc.license,
        license_url=license_url(acc.license) or rec.license_url,
        attribution_required=requires_attribution(acc.license),
        tags=rec.tags,
        split=split,
        sha256=facts.sha256,
        attrs=attrs,
    )


def _attribution_csv(items: list[ManifestItem]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ATTRIBUTION_COLUMNS)
    for item in sorted(items, key=lambda i: i.id):
        if item.attribution_required:
            title = item.title or Path(item.path).name
            writer.writerow([item.id, title, item.creator, item.url, item.license, item.license_url])
    return buf.getvalue().encode("utf-8")


def _check_args(root: Path, metadata: str, valid_fraction: float, workers: int | None, max_seconds: float) -> None:
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder not found: {root}")
    if metadata not in METADATA_MODES:
        raise ValueError(f"unknown metadata mode {metadata!r}; valid: {', '.join(METADATA_MODES)}")
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")


def scan_folder(
    root: str | Path,
    out_dir: str | Path,
    *,
    metadata: str = "auto",
    freesound_json: str | Path | None = None,
    fma_tracks: str | Path | None = None,
    policy: LicensePolicy | None = None,
    seed: int = 0,
    valid_fraction: float = 0.0,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    allow_silence: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> ScanReport:
    """Scan ``root`` and write ``manifest.jsonl``, ``rejects.jsonl`` and ``ATTRIBUTION.csv`` to ``out_dir``.

    Args:
        root: folder searched recursively for audio files (suffixes in ``AUDIO_SUFFIXES``).
        out_dir: where the three outputs go (created).
        metadata: "sidecar" (``foo.json`` next to ``foo.wav``), "freesound" (Freesound sound objects:
            sidecars or ``freesound_json``), "fma" (``fma_tracks``) or "auto" (sidecar, else Freesound id,
            else FMA id).
        freesound_json: one JSON/JSONL file of Freesound sound objects, matched by the id in the file name.
        fma_tracks: FMA ``tracks.csv`` (``genres.csv`` next to it adds genre names), matched by track id.
        policy: licence allow-list (default: CC0, CC BY 3.0/4.0, Sampling+).
        seed: seeds the drawn prompts and the split; the same inputs give byte-identical outputs.
        valid_fraction: share of items put in the "valid" split (by a hash of the id: stable as files are
            added).
        max_seconds: longer files are rejected.
        min_seconds: shorter files are rejected (default 0.1 s).
        allow_silence: keep files that are digital silence (rejected by default: nothing to learn from them).
        workers: decoding threads (default: up to 4).
        progress: show a progress bar.

    Raises:
        FileNotFoundError: ``root`` is not a folder. ValueError: a bad argument. MetadataError: the
        ``freesound_json`` or ``fma_tracks`` file itself is unreadable. Per-file problems never raise.
    """
    root, out_dir = Path(root), Path(out_dir)
    _check_args(root, metadata, valid_fraction, workers, max_seconds)
    if not 0.0 <= min_seconds < max_seconds:
        raise ValueError(f"min_seconds must be in [0, max_seconds), got {min_seconds}")
    limits = _Limits(min_seconds, max_seconds, allow_silence)
    policy = policy or LicensePolicy()
    resolver = MetadataResolver(metadata, freesound_json=freesound_json, fma_tracks=fma_tracks)
    rel_paths, ignored = find_audio(root)
    ids = assign_ids(rel_paths)
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = pool.map(lambda rel: _evaluate_safely(root / rel, resolver, policy, limits), rel_paths)
        outcomes = list(tqdm(outcomes, total=len(rel_paths), desc="scan", unit="file", disable=not progress))
    items, rejects = _collect(root, rel_paths, ids, outcomes, seed, valid_fraction)
    return _write_outputs(out_dir, items, rejects, ignored)


def _collect(
    root: Path,
    rel_paths: list[Path],
    ids: list[str],
    outcomes: list[Outcome],
    seed: int,
    valid_fraction: float,
) -> tuple[list[ManifestItem], list[Reject]]:
    """Items and rejects in file order; the first file of a content duplicate is kept."""
    items: list[ManifestItem] = []
    rejects: list[Reject] = []
    first_by_sha: dict[str, str] = {}
    for rel, item_id, outcome in zip(rel_paths, ids, outcomes, strict=True):
        path = root / rel
        if isinstance(outcome, Reject):
            rejects.append(outcome)
            continue
        original = first_by_sha.get(outcome.facts.sha256)
        if original is not None:
            rejects.append(Reject(str(path), f"{path}: duplicate content of item {original}", "duplicate", "duplicate"))
            continue
        try:
            item = _make_item(item_id, path, rel, outcome, seed, _split(item_id, seed, valid_fraction))
        except Exception as exc:  # odd metadata values must not end the scan either
            logger.exception("cannot build the manifest item of %s", path)
            rejects.append(Reject(str(path), f"{path}: {type(exc).__name__}: {exc}", "internal", "internal error"))
            continue
        first_by_sha[outcome.facts.sha256] = item_id
        items.append(item)
    return items, rejects


def _write_outputs(out_dir: Path, items: list[ManifestItem], rejects: list[Reject], ignored: int) -> ScanReport:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ScanReport(
        candidates=len(items) + len(rejects),
        kept=len(items),
        rejected=len(rejects),
        ignored=ignored,
        by_reason=dict(sorted(Counter(r.kind for r in rejects).items())),
        by_stage=dict(sorted(Counter(r.stage for r in rejects).items())),
        licenses=dict(sorted(Counter(i.license for i in items).items())),
        attribution=sum(i.attribution_required for i in items),
        total_seconds=sum(i.duration_s for i in items),
        manifest_path=write_manifest(out_dir / "manifest.jsonl", items),
        rejects_path=out_dir / "rejects.jsonl",
        attribution_path=out_dir / "ATTRIBUTION.csv",
    )
    atomic_write_bytes(report.rejects_path, "".join(r.to_json() + "\n" for r in rejects).encode("utf-8"))
    atomic_write_bytes(report.attribution_path, _attribution_csv(items))
    for reject in rejects:
        logger.debug("rejected %s", reject.reason)
    logger.debug("%s", report.summary())
    return report
