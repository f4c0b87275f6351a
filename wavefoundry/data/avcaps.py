"""AVCaps: a procedural audio-visual captioning set made from SynthCaps (docs/avcaps.md).

Item i of seed s pairs SynthCaps item (s, i) with a picture whose content is tied to the sound: the shape is
the sound class, the horizontal position the pan, the size the loudness, the number of objects the number of
notes. Some facts live in one modality only (pitch, tempo, envelope: audio; colour, background: picture), and
a share of items lose one modality on purpose (the soundtrack replaced by static, or the shapes hidden behind a
curtain), so a model that fuses both can beat either alone. Everything depends only on (seed, index).
"""

from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from wavefoundry.audio.dsp import rms_dbfs
from wavefoundry.audio.io import save_audio
from wavefoundry.config import save_json
from wavefoundry.data.avcaps_render import BACKGROUNDS, COLORS, Scene, backgrounds_for, plural, render_scene
from wavefoundry.data.images import save_png
from wavefoundry.data.manifest import ManifestItem, write_manifest
from wavefoundry.data.synth import CREATOR, LICENSE, LICENSE_URL, SynthConfig, assign_split, synth_item
from wavefoundry.data.synth.build import MAX_PEAK, default_workers
from wavefoundry.data.synth.instruments import TIMBRES
from wavefoundry.data.synth.textures import TEXTURES

log = logging.getLogger(__name__)

SOURCE = "avcaps"
#: Single-label target: the SynthCaps sound class (timbre of tonal items, "drums", texture kind).
SOUND_CLASSES: tuple[str, ...] = (*TIMBRES, "drums", *TEXTURES)
#: Sound class -> the shape that shows it.
CLASS_SHAPES = {
    "sine": "circle",
    "square": "square",
    "saw": "triangle",
    "pluck": "diamond",
    "fm_bell": "hexagon",
    "organ": "pillar",
    "drums": "ring",
    "rain": "downward triangle",
    "wind": "cross",
    "engine": "bar",
    "birds": "star",
    "clock": "pentagon",
    "siren": "half-disc",
    "noise": "hourglass",
}
LEVELS = ("very-quiet", "quiet", "moderate", "loud")
SIZE_WORDS = {"very-quiet": "tiny", "quiet": "small", "moderate": "medium-sized", "loud": "large"}
#: Multi-label vocabulary (attrs["labels"] holds a subset, in this order).
ATTRIBUTE_LABELS: tuple[str, ...] = (
    *(f"category:{c}" for c in ("tonal", "drums", "texture")),
    *(f"kind:{k}" for k in ("note", "chord", "arpeggio")),
    *(f"envelope:{e}" for e in ("adsr", "percussive", "swell", "sustained")),
    *(f"pan:{p}" for p in ("left", "center", "right")),
    *(f"level:{lv}" for lv in LEVELS),
    *(f"count:{n}" for n in range(1, 6)),
    *(f"color:{c}" for c in COLORS),
    *(f"background:{b}" for b in BACKGROUNDS),
    "masked",
    "hidden",
)
_COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}
_STATIC = ("only loud static is heard", "the soundtrack is just static", "nothing but hiss on the soundtrack")


@dataclass(kw_only=True)
class AVCapsConfig:
    """What to generate. Audio settings are SynthCaps's; ``masked_fraction`` of the items get static instead of
    their sound, ``hidden_fraction`` a curtain over their shapes (never both)."""

    n_items: int = 1000
    seconds: float = 4.0
    sample_rate: int = 16000
    channels: int = 2
    seed: int = 0
    image_size: int = 224
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    masked_fraction: float = 0.15
    hidden_fraction: float = 0.15

    def __post_init__(self) -> None:
        self.synth()  # validates the audio settings and the split fractions
        if not 16 <= self.image_size <= 4096:
            raise ValueError(f"image_size must be in [16, 4096], got {self.image_size}")
        for name in ("masked_fraction", "hidden_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.masked_fraction + self.hidden_fraction > 1.0:
            raise ValueError("masked_fraction + hidden_fraction must be <= 1 (an item loses at most one modality)")

    def synth(self) -> SynthConfig:
        """The SynthCaps config whose items give the sounds."""
        return SynthConfig(
            n_items=self.n_items,
            seconds=self.seconds,
            sample_rate=self.sample_rate,
            channels=self.channels,
            seed=self.seed,
            valid_fraction=self.valid_fraction,
            test_fraction=self.test_fraction,
        )


@dataclass
class AVItem:
    """One item: ``audio`` (C, T) float32, ``pixels`` (H, W, 3) uint8, captions and ground truth."""

    id: str
    index: int
    audio: np.ndarray
    sample_rate: int
    pixels: np.ndarray
    scene: Scene
    captions: list[str]
    attrs: dict[str, Any]


def item_id(seed: int, index: int) -> str:
    """'avcaps-s0-000042'."""
    return f"avcaps-s{seed}-{index:06d}"


def sound_class(attrs: dict[str, Any]) -> str:
    """The SynthCaps sound class of an item's attrs (one of :data:`SOUND_CLASSES`)."""
    category = attrs.get("category")
    label = {"tonal": attrs.get("timbre"), "drums": "drums", "texture": attrs.get("kind")}.get(category)
    if label not in CLASS_SHAPES:
        raise ValueError(f"not a SynthCaps item: category {category!r}, class {label!r}")
    return str(label)


def level_of(dbfs: float) -> str:
    """Loudness bucket of an RMS level, SynthCaps's caption thresholds: -32, -25, -18 dBFS."""
    return LEVELS[int(np.searchsorted([-32.0, -25.0, -18.0], dbfs, side="right"))]


def pan_side(pan: float | None) -> str:
    """'left', 'center' or 'right' (|pan| < 0.15 is centre; mono is centre)."""
    return "center" if pan is None or abs(pan) < 0.15 else ("left" if pan < 0 else "right")


def object_count(attrs: dict[str, Any]) -> int:
    """Objects in the picture: the number of distinct notes (tonal, at most 5), 3 drums (kick, snare, hat), 1."""
    if attrs["category"] == "tonal":
        return min(5, len(attrs["notes"]))
    return 3 if attrs["category"] == "drums" else 1


def make_scene(attrs: dict[str, Any], rng: np.random.Generator, *, hidden: bool) -> Scene:
    """The picture of an item: shape from the class, x from the pan, radius from the loudness, colours drawn."""
    color = str(rng.choice(tuple(COLORS)))
    background = str(rng.choice(backgrounds_for(color)))
    loud = float(np.clip((attrs["loudness_dbfs"] + 35.0) / 23.0, 0.0, 1.0))
    radius = round(0.035 + 0.045 * loud, 4)  # -35 dBFS -> 0.035 of the width, -12 dBFS -> 0.08
    count = object_count(attrs)
    probe = Scene(shape="circle", color=color, background=background, count=count, x=0.5, y=0.5, radius=radius)
    lo, hi = probe.extent() + 0.01, 0.99 - probe.extent()
    x = float(np.clip(0.5 + 0.3 * (attrs.get("pan") or 0.0), lo, hi))
    y = float(np.clip(rng.uniform(0.3, 0.7), lo, hi))
    return Scene(
        shape=CLASS_SHAPES[sound_class(attrs)],
        color=color,
        background=background,
        count=count,
        x=round(x, 4),
        y=round(y, 4),
        radius=radius,
        phase=round(float(rng.uniform(0, 2 * math.pi)), 4),
        hidden=hidden,
    )


def _position_words(pan: float | None) -> str:
    mag = abs(pan or 0.0)
    side = "left" if (pan or 0.0) < 0 else "right"
    if mag < 0.15:
        return "in the middle"
    return f"slightly {side} of centre" if mag < 0.5 else f"on the {side}" if mag < 0.85 else f"at the far {side}"


def image_phrase(scene: Scene, attrs: dict[str, Any], rng: np.random.Generator) -> str:
    """One description of the picture (shape, count, size, colour, position, background)."""
    size, pos, bg = SIZE_WORDS[level_of(attrs["loudness_dbfs"])], _position_words(attrs.get("pan")), scene.background
    if scene.hidden:
        obj = f"a {size} grey curtain"
    elif scene.count == 1:
        obj = f"{'an' if scene.color == 'orange' else 'a'} {size} {scene.color} {scene.shape}"
    else:
        obj = f"{_COUNT_WORDS[scene.count]} {size} {scene.color} {plural(scene.shape)}"
    forms = (
        f"the picture shows {obj} {pos} on a {bg} background",
        f"{obj} {pos}, on {bg}",
        f"an image of {obj} on a {bg} background, {pos}",
    )
    return forms[int(rng.integers(len(forms)))]


def av_captions(audio_captions: list[str], scene: Scene, attrs: dict, masked: bool, rng: np.random.Generator) -> list:
    """One caption per SynthCaps caption: the sound (or static when masked) and the picture, in varied orders."""
    out = []
    for audio in audio_captions:
        sound = _STATIC[int(rng.integers(len(_STATIC)))] if masked else audio
        picture = image_phrase(scene, attrs, rng)
        form = int(rng.integers(3))
        out.append((f"{sound}; {picture}", f"{picture}; {sound}", f"sound: {sound}. picture: {picture}")[form])
    return list(dict.fromkeys(out))


def attribute_labels(attrs: dict[str, Any], scene: Scene, *, masked: bool) -> list[str]:
    """The multi-label attributes of an item (a subset of :data:`ATTRIBUTE_LABELS`, in its order)."""
    found = {
        f"category:{attrs['category']}",
        f"pan:{pan_side(attrs.get('pan'))}",
        f"level:{level_of(attrs['loudness_dbfs'])}",
        f"count:{scene.count}",
        f"background:{scene.background}",
    }
    if not scene.hidden:  # the curtain hides the colour: no modality shows it
        found.add(f"color:{scene.color}")
    if attrs["category"] == "tonal":
        found |= {f"kind:{attrs['kind']}", f"envelope:{attrs['envelope']}"}
    found |= {"masked"} if masked else set()
    found |= {"hidden"} if scene.hidden else set()
    return [label for label in ATTRIBUTE_LABELS if label in found]


def static_like(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """White noise with the RMS level of ``audio`` (C, T) (peak kept <= the SynthCaps limit)."""
    noise = rng.standard_normal(audio.shape)
    noise *= 10 ** (rms_dbfs(audio) / 20) / max(float(np.sqrt(np.mean(noise**2))), 1e-12)
    return (noise * min(1.0, MAX_PEAK / max(float(np.abs(noise).max()), 1e-12))).astype(np.float32)


def av_item(cfg: AVCapsConfig, index: int) -> AVItem:
    """Generate item ``index``; it depends only on (``cfg.seed``, ``index``) and the settings of ``cfg``."""
    synth = synth_item(cfg.synth(), index)
    u = float(np.random.default_rng([cfg.seed, index, 8]).random())
    masked, hidden = u < cfg.masked_fraction, cfg.masked_fraction <= u < cfg.masked_fraction + cfg.hidden_fraction
    rng = np.random.default_rng([cfg.seed, index, 7])
    attrs = {k: v for k, v in synth.attrs.items() if k != "captions"}
    scene = make_scene(attrs, rng, hidden=hidden)
    audio = static_like(synth.audio, rng) if masked else synth.audio
    captions = av_captions(synth.captions, scene, attrs, masked, rng)
    attrs.update(
        label=sound_class(attrs),
        labels=attribute_labels(attrs, scene, masked=masked),
        audio_captions=synth.captions,
        masked=masked,
        hidden=hidden,
        scene=vars(scene).copy(),
    )
    return AVItem(
        id=item_id(cfg.seed, index),
        index=index,
        audio=audio,
        sample_rate=cfg.sample_rate,
        pixels=render_scene(scene, cfg.image_size),
        scene=scene,
        captions=captions,
        attrs=attrs,
    )


def write_av_item(cfg: AVCapsConfig, index: int, out_dir: str | Path) -> ManifestItem:
    """Write ``audio/{id}.flac`` and ``images/{id}.png`` under ``out_dir``; return the manifest entry."""
    item = av_item(cfg, index)
    audio_rel, image_rel = f"audio/{item.id}.flac", f"images/{item.id}.png"
    audio_path = save_audio(Path(out_dir) / audio_rel, item.audio, cfg.sample_rate)
    save_png(Path(out_dir) / image_rel, item.pixels)
    return ManifestItem(
        id=item.id,
        path=audio_rel,
        image=image_rel,
        duration_s=item.audio.shape[-1] / cfg.sample_rate,
        sample_rate=cfg.sample_rate,
        channels=cfg.channels,
        caption=item.captions[0],
        captions=item.captions,
        source=SOURCE,
        source_id=f"{cfg.seed}:{index}",
        title=f"AVCaps {item.attrs['label']} #{index}",
        creator=CREATOR,
        license=LICENSE,
        license_url=LICENSE_URL,
        tags=[item.attrs["label"], item.scene.shape],
        split=assign_split(index, cfg.valid_fraction, cfg.test_fraction),
        sha256=hashlib.sha256(audio_path.read_bytes()).hexdigest(),
        attrs=item.attrs,
    )


def _write_job(job: tuple[AVCapsConfig, int, str]) -> ManifestItem:
    return write_av_item(*job)


def generate_avcaps(
    out_dir: str | Path, cfg: AVCapsConfig, *, workers: int | None = None, progress: bool = True
) -> Path:
    """Write ``audio/``, ``images/``, ``manifest.jsonl`` and ``avcaps.json`` to ``out_dir``; return the manifest.

    Items are identical whatever the worker count (None: one per core with >= 32 items each).
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    workers = default_workers(cfg.n_items) if workers is None else workers
    jobs = [(cfg, i, str(out_dir)) for i in range(cfg.n_items)]
    start = time.perf_counter()
    if workers <= 1:
        items = [_write_job(j) for j in tqdm(jobs, desc="AVCaps", unit="item", disable=not progress)]
    else:
        with mp.get_context("spawn").Pool(workers) as pool:  # spawn: workers need only numpy/PIL/soundfile
            it = pool.imap(_write_job, jobs, chunksize=max(1, min(16, len(jobs) // (8 * workers))))
            items = list(tqdm(it, total=len(jobs), desc="AVCaps", unit="item", disable=not progress))
    manifest = write_manifest(out_dir / "manifest.jsonl", items)
    save_json(cfg, out_dir / "avcaps.json")
    log.info("wrote %d AVCaps items to %s in %.1f s", len(items), out_dir, time.perf_counter() - start)
    return manifest
