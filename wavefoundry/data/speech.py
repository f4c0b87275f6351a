"""A speech corpus rendered offline with espeak-ng: config, one utterance, and the on-disk build with a manifest.

Item ``i`` of seed ``s`` takes its sentence from :mod:`wavefoundry.data.speech_text` (or line ``i`` of a user
text file) and its voice (language + variant, rate, pitch) from ``np.random.default_rng([s, i, 1])``. espeak-ng
renders 22,050 Hz mono; the audio is resampled with soxr, trimmed of leading/trailing silence, loudness
normalised and written as FLAC (or WAV). The split is a hash of (language, transcript), so a held-out
utterance never shares its transcript with a training one (see docs/speech_data.md).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from wavefoundry.audio.dsp import loudness_normalize, rms_dbfs
from wavefoundry.audio.io import save_audio
from wavefoundry.config import atomic_write_bytes, to_dict
from wavefoundry.data.espeak import RenderError, espeak_inventory, find_espeak, render_speech, trim_silence
from wavefoundry.data.licenses import LicensePolicy, license_url, requires_attribution
from wavefoundry.data.manifest import ManifestItem, read_manifest, write_manifest
from wavefoundry.data.sources.scan import ATTRIBUTION_COLUMNS, Reject
from wavefoundry.data.speech_text import LANGUAGES, LEXICONS, clean_text, normalize_transcript, sentence

log = logging.getLogger(__name__)

SOURCE = "espeak-ng"
SOURCE_URL = "https://github.com/espeak-ng/espeak-ng"
FORMATS = ("flac", "wav")
#: espeak-ng's own limits of -s (words per minute) and -p.
RATE_LIMITS, PITCH_LIMITS = (80, 450), (0, 99)
#: Peak ceiling after loudness normalisation, and the level under which a render counts as silence.
MAX_PEAK, SILENCE_DBFS = 0.98, -60.0
#: Speaking rates (words/min) under/over which captions say "slowly"/"quickly".
SLOW_WPM, FAST_WPM = 150, 195
_GENDERS = {"M": "man", "F": "woman"}
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_LANG_RE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]+)*$", re.I)


@dataclass(kw_only=True)
class SpeechConfig:
    """What to render. With ``text_file`` empty, item i is a built-in sentence in ``languages[i % len]``;
    otherwise line i of ``text_file`` (UTF-8, one sentence a line, ``#`` lines skipped) in ``text_language``."""

    n_items: int = 1000
    languages: tuple[str, ...] = LANGUAGES
    variants: tuple[str, ...] = ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "f4")
    rate_range: tuple[int, int] = (130, 210)
    pitch_range: tuple[int, int] = (30, 70)
    sample_rate: int = 16000
    loudness_dbfs: float = -20.0
    valid_fraction: float = 0.1
    seed: int = 0
    max_chars: int = 200
    text_file: str = ""
    text_language: str = ""
    text_license: str = "CC0-1.0"
    format: str = "flac"

    def __post_init__(self) -> None:
        if not 1 <= self.n_items <= 10_000_000:
            raise ValueError(f"n_items must be in [1, 10000000], got {self.n_items}")
        self.languages, self.variants = tuple(self.languages), tuple(self.variants)
        self.rate_range, self.pitch_range = tuple(self.rate_range), tuple(self.pitch_range)
        if not self.languages or len(set(self.languages)) != len(self.languages):
            raise ValueError(f"languages must be distinct and non-empty, got {self.languages}")
        bad = [lang for lang in self.languages if lang not in LEXICONS]
        if bad:
            raise ValueError(f"no built-in sentences for {bad}; valid languages: {', '.join(LANGUAGES)}")
        if not self.variants or any(not _NAME_RE.match(v) for v in self.variants):
            raise ValueError(f"variants must be non-empty espeak-ng variant names (e.g. m1, f2), got {self.variants}")
        _check_range("rate_range", self.rate_range, RATE_LIMITS)
        _check_range("pitch_range", self.pitch_range, PITCH_LIMITS)
        if not 8000 <= self.sample_rate <= 48000:
            raise ValueError(f"sample_rate must be in [8000, 48000], got {self.sample_rate}")
        if not -40.0 <= self.loudness_dbfs <= -6.0:
            raise ValueError(f"loudness_dbfs must be in [-40, -6], got {self.loudness_dbfs}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")
        if not 40 <= self.max_chars <= 1000:
            raise ValueError(f"max_chars must be in [40, 1000], got {self.max_chars}")
        if self.text_file and not _LANG_RE.match(self.text_language):
            raise ValueError(
                f"text_file needs text_language (an espeak-ng language such as en), got {self.text_language!r}"
            )
        if self.text_language and not self.text_file:
            raise ValueError("text_language is only used with text_file")
        decision = LicensePolicy().decide(self.text_license)
        if not decision.allowed or decision.id != self.text_license:
            raise ValueError(f"text_license must be an allowed licence id (e.g. CC0-1.0), got {self.text_license!r}")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")


def _check_range(name: str, value: tuple[int, ...], limits: tuple[int, int]) -> None:
    if len(value) != 2 or not limits[0] <= value[0] <= value[1] <= limits[1]:
        raise ValueError(f"{name} must be (low, high) with {limits[0]} <= low <= high <= {limits[1]}, got {value}")


@dataclass(frozen=True, kw_only=True)
class Utterance:
    """What one item says and how: ``text`` is spoken, ``transcript`` is its normalised label."""

    index: int
    text: str
    transcript: str
    language: str
    variant: str
    rate: int
    pitch: int
    kind: str  # "statement", "question" or "line" (user text)
    source_id: str

    @property
    def voice(self) -> str:
        return f"{self.language}+{self.variant}"


def item_id(seed: int, index: int) -> str:
    """The dot-free id of item ``index``: 'speech-s0-000042'."""
    return f"speech-s{seed}-{index:06d}"


def assign_split(language: str, transcript: str, valid_fraction: float) -> str:
    """'train' or 'valid' from a hash of the transcript: equal transcripts always share a split."""
    digest = hashlib.sha256(f"speech-split:{language}:{transcript}".encode()).digest()
    return "valid" if int.from_bytes(digest[:8], "big") / 2.0**64 < valid_fraction else "train"


def _voice_draw(cfg: SpeechConfig, index: int) -> tuple[str, int, int]:
    # A stream of its own, so that changing the sentence generator never changes the voices.
    rng = np.random.default_rng([cfg.seed, index, 1])
    variant = cfg.variants[int(rng.integers(len(cfg.variants)))]
    rate = int(rng.integers(cfg.rate_range[0], cfg.rate_range[1] + 1))
    pitch = int(rng.integers(cfg.pitch_range[0], cfg.pitch_range[1] + 1))
    return variant, rate, pitch


def generated_utterance(cfg: SpeechConfig, index: int) -> Utterance:
    """Item ``index`` of the built-in corpus; depends only on (``cfg.seed``, ``index``) and the voice settings."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    language = cfg.languages[index % len(cfg.languages)]
    sent = sentence(cfg.seed, index, language, max_chars=cfg.max_chars)
    variant, rate, pitch = _voice_draw(cfg, index)
    return Utterance(
        index=index,
        text=sent.text,
        transcript=sent.transcript,
        language=language,
        variant=variant,
        rate=rate,
        pitch=pitch,
        kind=sent.kind,
        source_id=f"{cfg.seed}:{index}",
    )


def read_text_lines(path: str | Path) -> list[tuple[int, str]]:
    """(line number, cleaned text) of each non-empty, non-``#`` line of a UTF-8 text file."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"text file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = [(n, clean_text(line)) for n, line in enumerate(raw.splitlines(), 1)]
    return [(n, text) for n, text in lines if text and not text.startswith("#")]


def plan(cfg: SpeechConfig) -> list[Utterance | Reject]:
    """The utterances of a build, in item order; a text line that is too long or has no words is a Reject."""
    if not cfg.text_file:
        return [generated_utterance(cfg, i) for i in range(cfg.n_items)]
    out: list[Utterance | Reject] = []
    name = Path(cfg.text_file).name
    for index, (lineno, text) in enumerate(read_text_lines(cfg.text_file)[: cfg.n_items]):
        where = f"{cfg.text_file}:{lineno}"
        transcript = normalize_transcript(text)
        if len(text) > cfg.max_chars or not transcript:
            reason = (
                f"{where}: {len(text)} characters (max_chars {cfg.max_chars})" if transcript else f"{where}: no words"
            )
            out.append(Reject(where, reason, "text", "text too long" if transcript else "no words"))
            continue
        variant, rate, pitch = _voice_draw(cfg, index)
        out.append(
            Utterance(
                index=index,
                text=text,
                transcript=transcript,
                language=cfg.text_language,
                variant=variant,
                rate=rate,
                pitch=pitch,
                kind="line",
                source_id=f"{name}:{lineno}",
            )
        )
    return out


def check_voices(cfg: SpeechConfig, binary: str) -> None:
    """Raise ValueError naming what this espeak-ng lacks (it silently falls back for an unknown variant)."""
    _, languages, variants = espeak_inventory(binary)
    wanted = [cfg.text_language] if cfg.text_file else list(cfg.languages)
    missing = [lang for lang in wanted if lang.lower() not in languages]
    if missing:
        raise ValueError(f"espeak-ng has no voice for {missing}; see `espeak-ng --voices`")
    missing = [v for v in cfg.variants if v not in variants]
    if missing:
        raise ValueError(f"espeak-ng has no variants {missing}; valid: {', '.join(sorted(variants))}")


# --- items and the build --------------------------------------------------------------------------------------


def language_name(language: str, binary: str | None = None) -> str:
    """English name of a language for captions: the lexicon's, else espeak-ng's voice name, else the code."""
    if language in LEXICONS:
        return LEXICONS[language].name
    names = espeak_inventory(binary)[1] if binary else {}
    return names.get(language.lower(), language)


def caption(utt: Utterance, gender: str, language: str) -> str:
    """'a woman speaking French quickly: <text>' (pace from the rate, gender from the variant)."""
    pace = " slowly" if utt.rate < SLOW_WPM else " quickly" if utt.rate > FAST_WPM else ""
    return f"a {gender} speaking {language}{pace}: {utt.text}"


def write_utterance(cfg: SpeechConfig, utt: Utterance, out_dir: str | Path, binary: str) -> ManifestItem:
    """Render ``utt``, write ``out_dir/audio/{id}.{format}`` and return its manifest entry.

    Raises:
        RenderError: espeak-ng failed or rendered silence.
    """
    sr = cfg.sample_rate
    audio, ipa = render_speech(utt.text, voice=utt.voice, rate=utt.rate, pitch=utt.pitch, sample_rate=sr, binary=binary)
    audio = trim_silence(audio, sr)
    if rms_dbfs(audio) <= SILENCE_DBFS:
        raise RenderError(f"espeak-ng rendered silence ({rms_dbfs(audio):.0f} dBFS)")
    audio = loudness_normalize(audio, cfg.loudness_dbfs, max_peak=MAX_PEAK).astype(np.float32)
    uid = item_id(cfg.seed, utt.index)
    rel = f"audio/{uid}.{cfg.format}"
    path = save_audio(Path(out_dir) / rel, audio, sr)
    _, _, variants = espeak_inventory(binary)
    gender = _GENDERS.get(variants.get(utt.variant, "-"), "person")
    language = language_name(utt.language, binary)
    lic = cfg.text_license if cfg.text_file else "CC0-1.0"
    attrs: dict[str, Any] = {
        "transcript": utt.transcript,
        "text": utt.text,
        "phonemes": ipa,
        "language": utt.language,
        "voice": utt.voice,
        "variant": utt.variant,
        "gender": gender,
        "rate": utt.rate,
        "pitch": utt.pitch,
        "kind": utt.kind,
        "loudness_dbfs": round(rms_dbfs(audio), 2),
        "seed": cfg.seed,
        "index": utt.index,
        "espeak": espeak_inventory(binary)[0],
    }
    return ManifestItem(
        id=uid,
        path=rel,
        duration_s=audio.shape[-1] / sr,
        sample_rate=sr,
        channels=1,
        caption=caption(utt, gender, language),
        source=SOURCE,
        source_id=utt.source_id,
        url=SOURCE_URL,
        title=f"{language} utterance #{utt.index} ({utt.voice})",
        creator=f"espeak-ng voice {utt.voice}",
        license=lic,
        license_url=license_url(lic),
        attribution_required=requires_attribution(lic),
        tags=["speech", utt.language, gender],
        split=assign_split(utt.language, utt.transcript, cfg.valid_fraction),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        attrs=attrs,
    )


def _job(cfg: SpeechConfig, job: Utterance | Reject, out_dir: Path, binary: str) -> ManifestItem | Reject:
    """One item or the reason it is left out: a failed render never stops the build."""
    if isinstance(job, Reject):
        return job
    where = f"{item_id(cfg.seed, job.index)} ({job.source_id})"
    try:
        return write_utterance(cfg, job, out_dir, binary)
    except (RenderError, ValueError) as exc:
        return Reject(job.source_id, f"{where}: {exc}", "render", "render failed")
    except Exception as exc:  # one bad item goes to rejects.jsonl, the rest go on
        return Reject(job.source_id, f"{where}: {type(exc).__name__}: {exc}", "internal", "internal error")


def config_hash(cfg: SpeechConfig) -> str:
    """12 hex digits of the config (and of the text file's bytes, when there is one)."""
    h = hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode())
    if cfg.text_file:
        h.update(Path(cfg.text_file).read_bytes() if Path(cfg.text_file).is_file() else b"missing")
    return h.hexdigest()[:12]


def speech_cache_dir(cfg: SpeechConfig, cache_dir: str | Path = "data/cache") -> Path:
    """Where :func:`prepare_speech` builds ``cfg``: ``cache_dir/speech-<config hash>``."""
    return Path(cache_dir) / f"speech-{config_hash(cfg)}"


@dataclass(kw_only=True)
class SpeechReport:
    """Counts of a build and where it is; ``cached`` when an identical earlier build was reused."""

    manifest_path: Path
    rejects_path: Path
    kept: int
    rejected: int
    total_seconds: float
    elapsed_s: float
    cached: bool = False

    def summary(self) -> str:
        how = "reused cached build" if self.cached else f"rendered in {self.elapsed_s:.1f} s"
        return (
            f"{self.kept} utterances ({self.total_seconds / 60:.1f} min), {self.rejected} rejected, {how}; "
            f"manifest {self.manifest_path}; rejects {self.rejects_path}"
        )


def default_workers(n_items: int) -> int:
    """Threads worth running: one per core (espeak-ng runs in its own process), at most 4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 4, n_items))


def _cached(out_dir: Path, record: dict[str, Any]) -> SpeechReport | None:
    """The report of an earlier complete build of the same config and espeak-ng with all its audio, else None."""
    try:
        old = json.loads((out_dir / "speech.json").read_text())
        same = isinstance(old, dict) and all(old.get(k) == record[k] for k in ("config_hash", "espeak"))
        items = read_manifest(out_dir / "manifest.jsonl") if same else None
        rejected = len((out_dir / "rejects.jsonl").read_text().splitlines()) if same else 0
    except (OSError, ValueError):
        return None
    if items is None or not all(Path(i.path).is_file() for i in items):
        return None
    return SpeechReport(
        manifest_path=out_dir / "manifest.jsonl",
        rejects_path=out_dir / "rejects.jsonl",
        kept=len(items),
        rejected=rejected,
        total_seconds=sum(i.duration_s for i in items),
        elapsed_s=0.0,
        cached=True,
    )


def _render_all(cfg: SpeechConfig, out_dir: Path, binary: str, workers: int, progress: bool) -> Iterator:
    jobs = plan(cfg)
    bar = dict(total=len(jobs), desc="speech", unit="item", disable=not progress)
    if workers <= 1:
        yield from tqdm((_job(cfg, j, out_dir, binary) for j in jobs), **bar)
        return
    with ThreadPoolExecutor(workers) as pool:
        yield from tqdm(pool.map(lambda j: _job(cfg, j, out_dir, binary), jobs), **bar)


def build_speech(
    out_dir: str | Path,
    cfg: SpeechConfig,
    *,
    espeak: str = "espeak-ng",
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> SpeechReport:
    """Write ``audio/``, ``manifest.jsonl``, ``rejects.jsonl``, ``ATTRIBUTION.csv`` and ``speech.json`` to ``out_dir``.

    An earlier build in ``out_dir`` with the same config hash and espeak-ng version is reused unless ``force``.
    Items are identical whatever the worker count.

    Raises:
        EspeakNotFoundError: espeak-ng is not installed. ValueError: a language or variant it lacks.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    binary = find_espeak(espeak)
    check_voices(cfg, binary)
    out_dir = Path(out_dir)
    record = {"config": to_dict(cfg), "config_hash": config_hash(cfg), "espeak": espeak_inventory(binary)[0]}
    if not force and (hit := _cached(out_dir, record)) is not None:
        log.info("speech corpus %s is up to date (config %s)", out_dir, record["config_hash"])
        return hit
    (out_dir / "speech.json").unlink(missing_ok=True)  # no stale cache marker while the build runs
    start = time.perf_counter()
    workers = default_workers(cfg.n_items) if workers is None else workers
    results = list(_render_all(cfg, out_dir, binary, workers, progress))
    items = [r for r in results if isinstance(r, ManifestItem)]
    rejects = [r for r in results if isinstance(r, Reject)]
    manifest = write_manifest(out_dir / "manifest.jsonl", items)
    atomic_write_bytes(out_dir / "rejects.jsonl", "".join(r.to_json() + "\n" for r in rejects).encode())
    atomic_write_bytes(out_dir / "ATTRIBUTION.csv", _attribution_csv(items))
    _remove_stale_audio(out_dir, items)
    total = sum(i.duration_s for i in items)
    record["counts"] = {"kept": len(items), "rejected": len(rejects), "seconds": total}
    atomic_write_bytes(out_dir / "speech.json", (json.dumps(record, indent=2) + "\n").encode())
    elapsed = time.perf_counter() - start
    for reject in rejects:
        log.warning("rejected %s", reject.reason)
    log.info("wrote %d utterances to %s in %.1f s (%d workers)", len(items), out_dir, elapsed, workers)
    return SpeechReport(
        manifest_path=manifest,
        rejects_path=out_dir / "rejects.jsonl",
        kept=len(items),
        rejected=len(rejects),
        total_seconds=total,
        elapsed_s=elapsed,
    )


def prepare_speech(
    cfg: SpeechConfig, *, cache_dir: str | Path = "data/cache", espeak: str = "espeak-ng", progress: bool = True
) -> Path:
    """The manifest of ``cfg`` built once into :func:`speech_cache_dir` (reused while the config is unchanged)."""
    return build_speech(speech_cache_dir(cfg, cache_dir), cfg, espeak=espeak, progress=progress).manifest_path


def _attribution_csv(items: Iterable[ManifestItem]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ATTRIBUTION_COLUMNS)
    for item in items:
        if item.attribution_required:
            writer.writerow([item.id, item.title, item.creator, item.url, item.license, item.license_url])
    return buf.getvalue().encode("utf-8")


def _remove_stale_audio(out_dir: Path, items: list[ManifestItem]) -> None:
    """Delete audio of an earlier build that this one did not write (only files named like our items)."""
    keep = {Path(i.path).name for i in items}
    for path in (out_dir / "audio").glob("speech-s*-*.*"):
        if path.suffix[1:] in FORMATS and path.name not in keep:
            path.unlink()
