"""Where a task's clips come from: a manifest, or SynthCaps generated once into a cache (never a download)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from wavefoundry.config import to_dict
from wavefoundry.data.datasets import ClipConfig
from wavefoundry.data.manifest import ManifestItem, read_manifest
from wavefoundry.data.synth import SynthConfig, generate_synthcaps

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class DataConfig:
    """Where clips come from. An empty ``manifest`` means: SynthCaps per ``synth``, generated once into
    ``cache_dir`` (keyed by a hash of the synth config)."""

    manifest: str = ""
    cache_dir: str = "data/cache"
    synth: SynthConfig = field(default_factory=lambda: SynthConfig(n_items=400, seconds=2.0, channels=1))
    clip: ClipConfig = field(default_factory=ClipConfig)


def synth_cache_dir(data: DataConfig) -> Path:
    digest = hashlib.sha256(json.dumps(to_dict(data.synth), sort_keys=True).encode()).hexdigest()[:12]
    return Path(data.cache_dir) / f"synthcaps-{digest}"


def manifest_path(data: DataConfig) -> Path:
    return Path(data.manifest) if data.manifest else synth_cache_dir(data) / "manifest.jsonl"


def prepare_manifest(data: DataConfig, *, progress: bool = True) -> Path:
    """Return the manifest path, generating SynthCaps first when ``data.manifest`` is empty and not cached."""
    path = manifest_path(data)
    if path.is_file():
        return path
    if data.manifest:
        raise FileNotFoundError(f"data.manifest not found: {path}")
    log.info("generating SynthCaps (%d items) into %s", data.synth.n_items, path.parent)
    generate_synthcaps(path.parent, data.synth, progress=progress)
    return path


def split_items(data: DataConfig) -> tuple[list[ManifestItem], list[ManifestItem]]:
    """(training items, held-out items): the "train" split, and every other split."""
    items = read_manifest(manifest_path(data))
    return [it for it in items if it.split == "train"], [it for it in items if it.split != "train"]


def eval_clip(clip: ClipConfig) -> ClipConfig:
    """The clip config for evaluation: the same, but always cropped from the start."""
    return ClipConfig(**{**to_dict(clip), "random_crop": False})
