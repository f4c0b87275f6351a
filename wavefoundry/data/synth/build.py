"""SynthCaps items and dataset: config, one item from (seed, index), and the on-disk build with a manifest."""

from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing as mp
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from wavefoundry.audio.dsp import SILENCE_DBFS, peak, rms_dbfs
from wavefoundry.audio.io import save_audio
from wavefoundry.config import save_json
from wavefoundry.data.manifest import ManifestItem, write_manifest
from wavefoundry.data.synth.captions import make_captions
from wavefoundry.data.synth.drums import render_drums
from wavefoundry.data.synth.sampling import Chooser, Rendered
from wavefoundry.data.synth.textures import render_texture
from wavefoundry.data.synth.tonal import render_tonal

log = logging.getLogger(__name__)

RENDERERS = {"tonal": render_tonal, "drums": render_drums, "texture": render_texture}
CATEGORIES = tuple(RENDERERS)
FORMATS = ("flac", "wav")

SOURCE = "synthcaps"
CREATOR = "wavefoundry SynthCaps"
LICENSE = "CC0-1.0"
LICENSE_URL = "https://creativecommons.org/publicdomain/zero/1.0/"

#: Range the loudness target is drawn from (RMS dBFS over all channels, see wavefoundry.audio.dsp.rms_dbfs).
LOUDNESS_RANGE = (-35.0, -12.0)
#: Largest absolute sample of any item: the level target is lowered when a loud target would exceed it.
MAX_PEAK = 0.98
#: Probability that an item is dead centre (pan 0.0) rather than drawn uniformly in [-1, 1].
CENTER_PROBABILITY = 0.3

#: Keys every item's ``attrs`` holds (None where they do not apply), in this order.
COMMON_KEYS = (
    "category",
    "kind",
    "timbre",
    "envelope",
    "midi",
    "notes",
    "f0_hz",
    "chord",
    "tempo_bpm",
    "pan",
    "stereo_width",
    "loudness_dbfs",
    "peak",
    "duration_s",
    "active_onset_s",
    "active_offset_s",
)


@dataclass(kw_only=True)
class SynthConfig:
    """What to generate. Empty ``category_weights`` means equal weights. Item i depends only on (seed, i)."""

    n_items: int = 1000
    seconds: float = 4.0
    sample_rate: int = 16000
    channels: int = 2
    seed: int = 0
    categories: tuple[str, ...] = CATEGORIES
    category_weights: tuple[float, ...] = ()
    valid_fraction: float = 0.1
    test_fraction: float = 0.0
    format: str = "flac"

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {self.n_items}")
        if not 0.5 <= self.seconds <= 600.0:
            raise ValueError(f"seconds must be in [0.5, 600], got {self.seconds}")
        if not 8000 <= self.sample_rate <= 192000:
            raise ValueError(f"sample_rate must be in [8000, 192000], got {self.sample_rate}")
        if self.channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {self.channels}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")
        self.categories = tuple(self.categories)
        self.category_weights = tuple(float(w) for w in self.category_weights)
        bad = [c for c in self.categories if c not in CATEGORIES]
        if not self.categories or bad or len(set(self.categories)) != len(self.categories):
            raise ValueError(f"categories must be distinct names from {CATEGORIES}, got {self.categories}")
        weights = self.category_weights
        if weights and (len(weights) != len(self.categories) or min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(
                f"category_weights must be empty or {len(self.categories)} non-negative numbers with a "
                f"positive sum (one per category), got {weights}"
            )
        for name in ("valid_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError("valid_fraction + test_fraction must be < 1 (leave some training data)")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")

    def probabilities(self) -> np.ndarray:
        """Normalised category weights, aligned with ``categories``."""
        w = np.asarray(self.category_weights or [1.0] * len(self.categories), dtype=np.float64)
        return w / w.sum()


@dataclass
class SynthItem:
    """One generated item: ``audio`` is (C, T) float32 with peak <= ``MAX_PEAK``."""

    id: str
    index: int
    audio: np.ndarray
    sample_rate: int
    attrs: dict[str, Any]
    captions: list[str] = field(default_factory=list)
    prompt: str = ""

    @property
    def duration_s(self) -> float:
        return self.audio.shape[-1] / self.sample_rate


def item_id(seed: int, index: int) -> str:
    """The dot-free id of item ``index``: 'synthcaps-s0-000042'."""
    return f"synthcaps-s{seed}-{index:06d}"


def assign_split(index: int, valid_fraction: float, test_fraction: float) -> str:
    """'train', 'valid' or 'test' from a hash of the index: stable across seeds, runs and worker counts."""
    digest = hashlib.sha256(f"synthcaps-split:{index}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    if u < test_fraction:
        return "test"
    return "valid" if u < test_fraction + valid_fraction else "train"


def spatialize(image: np.ndarray, pan: float, channels: int) -> np.ndarray:
    """Place a (1|2, T) source: constant-power pan, theta = (pan + 1) pi / 4, L = cos theta, R = sin theta.

    A stereo image is first balanced (equal channel RMS), so the channel energies of the result follow the
    pan law exactly whatever its width. ``channels`` = 1 gives the mono sum of the image.
    """
    if channels == 1:
        return image.mean(axis=0, keepdims=True)
    if image.shape[0] == 1:
        image = np.repeat(image, 2, axis=0)
    rms = np.sqrt(np.mean(np.square(image), axis=1, keepdims=True))  # (2, 1)
    image = image * (np.sqrt(np.mean(np.square(rms))) / np.maximum(rms, 1e-12))
    theta = (pan + 1.0) * math.pi / 4
    return image * np.array([[math.cos(theta)], [math.sin(theta)]])


def _edge_guard(n: int, sr: int) -> np.ndarray:
    """5 ms fade-in and 10 ms fade-out so a sound cut by the clip edge never clicks."""
    gain = np.ones(n)
    a, b = min(n // 4, int(0.005 * sr)), min(n // 4, int(0.01 * sr))
    gain[:a] = np.linspace(0.0, 1.0, a, endpoint=False)
    gain[n - b :] = np.linspace(1.0, 0.0, b)
    return gain


def _set_loudness(audio: np.ndarray, ch: Chooser) -> np.ndarray:
    """Scale to a drawn RMS level, lowered where needed so that the peak stays <= ``MAX_PEAK``."""
    level = rms_dbfs(audio)
    if level <= SILENCE_DBFS:
        return audio
    crest_db = 20 * math.log10(peak(audio)) - level
    ceiling = 20 * math.log10(MAX_PEAK) - crest_db  # loudest level without exceeding MAX_PEAK
    lo, hi = LOUDNESS_RANGE
    drawn = float(ch.rng.uniform(lo, min(hi, ceiling))) if ceiling > lo else ceiling
    target = min(ch.number("loudness_dbfs", drawn, -60.0, 0.0), ceiling)
    return audio * 10 ** ((target - level) / 20)


def _draw_pan(ch: Chooser) -> float:
    drawn = round(float(ch.rng.uniform(-1.0, 1.0)), 2)
    if ch.rng.random() < CENTER_PROBABILITY:
        drawn = 0.0
    return ch.number("pan", drawn, -1.0, 1.0)


def _attrs(
    cfg: SynthConfig, index: int, category: str, rendered: Rendered, pan: float, audio: np.ndarray
) -> dict[str, Any]:
    attrs: dict[str, Any] = dict.fromkeys(COMMON_KEYS)
    attrs.update(rendered.attrs)
    attrs.update(
        category=category,
        pan=pan if cfg.channels == 2 else None,
        stereo_width=rendered.attrs.get("stereo_width", 0.0) if cfg.channels == 2 else None,
        loudness_dbfs=round(rms_dbfs(audio), 2),
        peak=round(peak(audio), 4),
        duration_s=audio.shape[-1] / cfg.sample_rate,
        seed=cfg.seed,
        index=index,
    )
    return attrs


def synth_item(cfg: SynthConfig, index: int, *, overrides: Mapping[str, Any] | None = None) -> SynthItem:
    """Generate item ``index``; it depends only on (``cfg.seed``, ``index``) and the settings of ``cfg``.

    Args:
        cfg: seed, duration, sample rate, channels and the category mix.
        index: item number (>= 0; may exceed ``cfg.n_items``).
        overrides: pin drawn attributes by name, e.g. ``{"category": "tonal", "kind": "note",
            "timbre": "saw", "midi": 57, "pan": -0.5}``; the other draws are unchanged. A key this item
            does not draw is an error.

    Returns:
        A :class:`SynthItem` with (C, T) float32 audio, ``attrs`` (ground truth, incl. ``captions``), captions
        and the prompt (one of the captions).

    Raises:
        ValueError: negative index, or an override that is out of range or not drawn by this item.
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    sr = cfg.sample_rate
    n = round(cfg.seconds * sr)
    ch = Chooser(np.random.default_rng([cfg.seed, index]), overrides)
    category = ch.choice("category", cfg.categories, p=cfg.probabilities())
    rendered = RENDERERS[category](ch, n, sr)
    pan = _draw_pan(ch)
    audio = spatialize(rendered.image, pan, cfg.channels) * _edge_guard(n, sr)
    audio = _set_loudness(audio, ch).astype(np.float32)
    ch.check_used()
    attrs = _attrs(cfg, index, category, rendered, pan, audio)
    # Captions draw from their own stream, so rewording them never changes the audio.
    caption_rng = np.random.default_rng([cfg.seed, index, 1])
    captions = make_captions(attrs, caption_rng)
    attrs["captions"] = captions
    prompt = captions[int(caption_rng.integers(len(captions)))]
    return SynthItem(
        id=item_id(cfg.seed, index),
        index=index,
        audio=audio,
        sample_rate=sr,
        attrs=attrs,
        captions=captions,
        prompt=prompt,
    )


def _tags(attrs: dict[str, Any]) -> list[str]:
    keys = ("category", "kind", "timbre", "pattern", "envelope")
    return [str(attrs[k]) for k in keys if attrs.get(k)]


def write_item(cfg: SynthConfig, index: int, out_dir: str | Path) -> ManifestItem:
    """Generate item ``index``, write ``out_dir/audio/{id}.{format}`` and return its manifest entry."""
    item = synth_item(cfg, index)
    rel = f"audio/{item.id}.{cfg.format}"
    path = save_audio(Path(out_dir) / rel, item.audio, cfg.sample_rate)
    return ManifestItem(
        id=item.id,
        path=rel,
        duration_s=item.duration_s,
        sample_rate=cfg.sample_rate,
        channels=cfg.channels,
        prompt=item.prompt,
        caption=item.captions[0],
        source=SOURCE,
        source_id=f"{cfg.seed}:{index}",
        title=f"SynthCaps {item.attrs['category']} {item.attrs['kind']} #{index}",
        creator=CREATOR,
        license=LICENSE,
        license_url=LICENSE_URL,
        attribution_required=False,
        tags=_tags(item.attrs),
        split=assign_split(index, cfg.valid_fraction, cfg.test_fraction),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        attrs=item.attrs,
    )


def _write_job(job: tuple[SynthConfig, int, str]) -> ManifestItem:
    return write_item(*job)


def default_workers(n_items: int) -> int:
    """Processes worth starting: one per core, but only with >= 32 items each (start-up costs ~0.5 s)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, n_items // 32))


def _run(jobs: list, workers: int) -> Iterable[ManifestItem]:
    if workers <= 1:
        yield from map(_write_job, jobs)
        return
    # spawn: workers import only numpy/soundfile, whatever threads (torch, tqdm) the parent has.
    with mp.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_write_job, jobs, chunksize=max(1, min(16, len(jobs) // (8 * workers))))


def generate_synthcaps(
    out_dir: str | Path, cfg: SynthConfig, *, workers: int | None = None, progress: bool = True
) -> Path:
    """Write ``out_dir/audio/{id}.flac``, ``out_dir/manifest.jsonl`` and ``out_dir/synthcaps.json``.

    Items are generated in parallel (``workers`` processes; None: :func:`default_workers`) and are
    identical whatever the worker count. Existing files of the same ids are overwritten.

    Returns:
        The manifest path.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    workers = default_workers(cfg.n_items) if workers is None else workers
    jobs = [(cfg, i, str(out_dir)) for i in range(cfg.n_items)]
    start = time.perf_counter()
    bar = tqdm(_run(jobs, workers), total=cfg.n_items, desc="SynthCaps", unit="item", disable=not progress)
    items = list(bar)
    manifest = write_manifest(out_dir / "manifest.jsonl", items)
    save_json(cfg, out_dir / "synthcaps.json")
    elapsed = time.perf_counter() - start
    log.info("wrote %d SynthCaps items to %s in %.1f s (%d workers)", len(items), out_dir, elapsed, workers)
    return manifest
