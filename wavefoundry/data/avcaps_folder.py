"""A folder of real audio-visual items -> ``manifest.jsonl`` + ``rejects.jsonl`` (docs/avcaps.md, "Your own data").

An item is the files that share a path stem (``clips/dog1.wav``, ``clips/dog1.jpg``, ``clips/dog1.txt``):

- audio: a file with an audio suffix; without one, the soundtrack of the video (written to ``out/audio/``);
- picture: an image file, or a video (its middle frame goes to ``out/images/{id}.png`` for image models, the video
  path to ``attrs["video"]`` for frame models, see :func:`wavefoundry.data.video.read_frames`);
- captions: ``{stem}.txt`` (one caption per non-empty line) or ``{stem}.json`` (a list of captions, or an object
  with ``captions`` and optional ``label``, ``labels``, ``license``, ``creator``, ``url``, ``title``, ``split``).

Each item passes four checks, and the first that fails puts it in ``rejects.jsonl`` with the reason: captions
(present, readable, non-empty), licence (the item's, else ``license``, against the allow-list), picture
(decodable) and audio (present, decodable, not silent or too short). A bad item never stops the scan:
``kept + rejected == candidates``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wavefoundry.audio.io import AUDIO_SUFFIXES, AudioError, save_audio
from wavefoundry.config import atomic_write_bytes
from wavefoundry.data.images import IMAGE_SUFFIXES, ImageError, load_image, save_png
from wavefoundry.data.licenses import LicensePolicy, license_url, requires_attribution
from wavefoundry.data.manifest import SPLITS, ManifestItem, write_manifest
from wavefoundry.data.sources.probe import probe_audio
from wavefoundry.data.sources.scan import Reject
from wavefoundry.data.video import VIDEO_SUFFIXES, VideoError, read_frames, read_video_audio

log = logging.getLogger(__name__)
CAPTION_SUFFIXES = frozenset({".txt", ".json"})
_SLUG_RE = re.compile(r"[^A-Za-z0-9_-]+")
_META_KEYS = ("label", "labels", "creator", "url", "title")


class ItemRejected(Exception):
    """Raised inside the checks; becomes one ``rejects.jsonl`` line."""

    def __init__(self, stage: str, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.stage, self.kind, self.reason = stage, kind, reason


@dataclass(kw_only=True)
class AVScanReport:
    """Counts of a scan and where its outputs are."""

    candidates: int
    kept: int
    rejected: int
    by_reason: dict[str, int] = field(default_factory=dict)
    manifest_path: Path
    rejects_path: Path

    def summary(self) -> str:
        lines = [f"{self.candidates} items: kept {self.kept}, rejected {self.rejected}"]
        lines += [f"  rejected ({kind}): {n}" for kind, n in sorted(self.by_reason.items())]
        return "\n".join([*lines, f"manifest {self.manifest_path}; rejects {self.rejects_path}"])


def group_files(root: Path) -> dict[str, dict[str, list[Path]]]:
    """Relative stem -> {"audio"|"image"|"video"|"captions": files} for every stem with a known suffix."""
    kinds = {
        **dict.fromkeys(AUDIO_SUFFIXES, "audio"),
        **dict.fromkeys(IMAGE_SUFFIXES, "image"),
        **dict.fromkeys(VIDEO_SUFFIXES, "video"),
        **dict.fromkeys(CAPTION_SUFFIXES, "captions"),
    }
    groups: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        kind = kinds.get(path.suffix.lower())
        if kind is not None:
            stem = path.relative_to(root).with_suffix("").as_posix()
            groups.setdefault(stem, {}).setdefault(kind, []).append(path)
    return groups


def read_captions(path: Path) -> tuple[list[str], dict[str, Any]]:
    """Captions and metadata of a ``.txt`` or ``.json`` caption file (raises ItemRejected when unusable)."""
    try:
        text = path.read_text(encoding="utf-8")
        data: Any = json.loads(text) if path.suffix.lower() == ".json" else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ItemRejected("captions", "unreadable captions", f"{path}: {type(exc).__name__}: {exc}") from None
    meta: dict[str, Any] = {}
    if data is None:
        captions = text.splitlines()
    elif isinstance(data, list):
        captions = data
    elif isinstance(data, dict) and isinstance(data.get("captions", []), list):
        captions, meta = data.get("captions", []), {k: v for k, v in data.items() if k != "captions"}
    else:
        raise ItemRejected("captions", "unreadable captions", f"{path}: expected a list or {{'captions': [...]}}")
    if not all(isinstance(c, str) for c in captions):
        raise ItemRejected("captions", "unreadable captions", f"{path}: every caption must be a string")
    captions = [c.strip() for c in captions if c.strip()]
    if not captions:
        raise ItemRejected("captions", "empty captions", f"{path}: no non-empty caption")
    return captions, meta


def split_of(item_id: str, seed: int, valid_fraction: float, test_fraction: float) -> str:
    """'train', 'valid' or 'test' from a hash of (seed, id): stable whatever the file order."""
    u = int.from_bytes(hashlib.sha256(f"{seed}/split/{item_id}".encode()).digest()[:8], "big") / 2**64
    return "test" if u < test_fraction else "valid" if u < test_fraction + valid_fraction else "train"


def item_id_of(stem: str) -> str:
    """A dot-free id from a relative stem; a short hash keeps stems that slug alike apart ('a b' vs 'a_b')."""
    slug = _SLUG_RE.sub("_", stem).strip("_") or "item"
    return slug if slug == stem else f"{slug}-{hashlib.sha256(stem.encode()).hexdigest()[:8]}"


def _one(files: dict[str, list[Path]], kind: str, stem: str) -> Path | None:
    found = files.get(kind, [])
    if len(found) > 1:
        raise ItemRejected("files", "ambiguous files", f"{stem}: several {kind} files {[p.name for p in found]}")
    return found[0] if found else None


def _picture(files: dict, stem: str, out_dir: Path, item_id: str, n_frames: int) -> tuple[str, dict[str, Any]]:
    """(image path, attrs) of the item's picture; a video's middle frame is written as a PNG."""
    image, video = _one(files, "image", stem), _one(files, "video", stem)
    if image is None and video is None:
        raise ItemRejected("picture", "missing picture", f"{stem}: no image or video file")
    try:
        if image is not None:
            pixels = load_image(image)
            return str(image.resolve()), {"image_size": list(pixels.shape[:2])}
        frames = read_frames(video, n_frames)  # (F, 3, H, W): decodes the frames a model will see
    except ImageError as exc:
        raise ItemRejected("picture", "unreadable image", str(exc)) from None
    except VideoError as exc:
        raise ItemRejected("picture", "unreadable video", str(exc)) from None
    thumb = save_png(out_dir / "images" / f"{item_id}.png", frames[len(frames) // 2].transpose(1, 2, 0).copy())
    return str(thumb.resolve()), {"video": str(video.resolve()), "n_frames": n_frames}


def _audio(files: dict, stem: str, out_dir: Path, item_id: str, min_seconds: float) -> tuple[Path, Any]:
    audio = _one(files, "audio", stem)
    try:
        if audio is None:
            video = _one(files, "video", stem)
            if video is None:
                raise ItemRejected("audio", "missing audio", f"{stem}: no audio file (and no video to take it from)")
            samples, rate = read_video_audio(video)
            audio = save_audio(out_dir / "audio" / f"{item_id}.flac", samples, rate)
        return audio, probe_audio(audio, min_seconds=min_seconds, allow_silence=False)
    except VideoError as exc:
        raise ItemRejected("audio", "missing audio", str(exc)) from None
    except AudioError as exc:
        raise ItemRejected("audio", f"bad audio ({type(exc).__name__})", str(exc)) from None


def _make_item(stem: str, files: dict, out_dir: Path, opts: dict) -> ManifestItem:
    item_id = item_id_of(stem)
    cap_file = _one(files, "captions", stem)
    if cap_file is None:
        raise ItemRejected("captions", "missing captions", f"{stem}: no .txt or .json caption file")
    captions, meta = read_captions(cap_file)
    lic, reason = opts["policy"].check(meta.get("license") or opts["license"] or None)
    if reason is not None:
        raise ItemRejected("license", "license", f"{stem}: {reason}")
    image, attrs = _picture(files, stem, out_dir, item_id, opts["n_frames"])
    audio, facts = _audio(files, stem, out_dir, item_id, opts["min_seconds"])
    attrs.update({k: meta[k] for k in _META_KEYS if k in meta}, rel_stem=stem)
    split = meta.get("split") or split_of(item_id, opts["seed"], opts["valid_fraction"], opts["test_fraction"])
    if split not in SPLITS:
        raise ItemRejected("captions", "bad metadata", f"{cap_file}: split must be one of {SPLITS}, got {split!r}")
    return ManifestItem(
        id=item_id,
        path=str(Path(audio).resolve()),
        image=image,
        duration_s=facts.duration_s,
        sample_rate=facts.sample_rate,
        channels=facts.channels,
        caption=captions[0],
        captions=captions,
        source="folder",
        source_id=stem,
        url=str(meta.get("url", "")),
        title=str(meta.get("title", stem)),
        creator=str(meta.get("creator", "")),
        license=lic,
        license_url=license_url(lic),
        attribution_required=requires_attribution(lic),
        split=split,
        sha256=facts.sha256,
        attrs=attrs,
    )


def scan_av_folder(
    root: str | Path,
    out_dir: str | Path,
    *,
    license: str = "",
    policy: LicensePolicy | None = None,
    n_frames: int = 8,
    min_seconds: float = 0.1,
    seed: int = 0,
    valid_fraction: float = 0.0,
    test_fraction: float = 0.0,
) -> AVScanReport:
    """Scan ``root`` for audio-visual items; write ``manifest.jsonl`` and ``rejects.jsonl`` to ``out_dir``.

    Args:
        license: licence of items whose caption JSON names none ("" : such items are rejected).
        policy: licence allow-list (default: CC0, CC-BY, Sampling+).
        n_frames: frames a video must yield (recorded in attrs for frame models).
        min_seconds: shorter audio is rejected.
        seed, valid_fraction, test_fraction: the hash split of items whose metadata names no split.
    """
    root, out_dir = Path(root), Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    opts = {
        "license": license,
        "policy": policy or LicensePolicy(),
        "n_frames": n_frames,
        "min_seconds": min_seconds,
        "seed": seed,
        "valid_fraction": valid_fraction,
        "test_fraction": test_fraction,
    }
    items, rejects = [], []
    for stem, files in group_files(root).items():
        try:
            items.append(_make_item(stem, files, out_dir, opts))
        except ItemRejected as exc:
            rejects.append(Reject(stem, exc.reason, exc.stage, exc.kind))
        except Exception as exc:  # one odd item must not end the scan
            log.exception("unexpected error on %s", stem)
            rejects.append(Reject(stem, f"{type(exc).__name__}: {exc}", "internal", "internal error"))
    report = AVScanReport(
        candidates=len(items) + len(rejects),
        kept=len(items),
        rejected=len(rejects),
        manifest_path=out_dir / "manifest.jsonl",
        rejects_path=out_dir / "rejects.jsonl",
    )
    for r in rejects:
        report.by_reason[r.kind] = report.by_reason.get(r.kind, 0) + 1
    write_manifest(report.manifest_path, items)
    atomic_write_bytes(report.rejects_path, "".join(r.to_json() + "\n" for r in rejects).encode("utf-8"))
    return report
