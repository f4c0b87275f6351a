"""Task "tagger": classify SynthCaps (or any labelled manifest) clips with :class:`AudioTagger`.

Labels come from ``attrs``: ``attrs["label"]`` when present, else the SynthCaps ground truth (the timbre of tonal
items, "drums" for drum patterns, the texture kind for textures).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wavefoundry.config import to_dict
from wavefoundry.data.datasets import ClipConfig, ClipDataset
from wavefoundry.data.manifest import ManifestItem, read_manifest
from wavefoundry.data.synth import SynthConfig, generate_synthcaps
from wavefoundry.data.synth.instruments import TIMBRES
from wavefoundry.data.synth.textures import TEXTURES
from wavefoundry.train.tasks import RunConfig, Task, register
from wavefoundry.understanding.tagger import AudioTagger, TaggerConfig

log = logging.getLogger(__name__)

SYNTHCAPS_LABELS: tuple[str, ...] = (*TIMBRES, "drums", *TEXTURES)


def synthcaps_label(attrs: dict[str, Any]) -> str:
    """The class of an item: ``attrs["label"]`` if given, else derived from SynthCaps ground truth."""
    if "label" in attrs:
        return str(attrs["label"])
    category = attrs.get("category")
    if category == "tonal":
        return str(attrs["timbre"])
    if category == "drums":
        return "drums"
    if category == "texture":
        return str(attrs["kind"])
    raise ValueError(f"item has no label and no SynthCaps category (attrs keys: {sorted(attrs)[:8]})")


@dataclass(kw_only=True)
class DataConfig:
    """Where clips come from. An empty ``manifest`` means: SynthCaps per ``synth``, generated once into
    ``cache_dir`` (keyed by a hash of the synth config)."""

    manifest: str = ""
    cache_dir: str = "data/cache"
    synth: SynthConfig = field(default_factory=lambda: SynthConfig(n_items=400, seconds=2.0, channels=1))
    clip: ClipConfig = field(default_factory=ClipConfig)


@dataclass(kw_only=True)
class TaggerRunConfig(RunConfig):
    task: str = "tagger"
    model: TaggerConfig = field(default_factory=lambda: TaggerConfig(labels=SYNTHCAPS_LABELS))
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if self.model.mel.sample_rate != self.data.clip.sample_rate:
            raise ValueError(
                f"model.mel.sample_rate ({self.model.mel.sample_rate}) must equal data.clip.sample_rate "
                f"({self.data.clip.sample_rate})"
            )


def synth_cache_dir(data: DataConfig) -> Path:
    digest = hashlib.sha256(json.dumps(to_dict(data.synth), sort_keys=True).encode()).hexdigest()[:12]
    return Path(data.cache_dir) / f"synthcaps-{digest}"


def manifest_path(data: DataConfig) -> Path:
    return Path(data.manifest) if data.manifest else synth_cache_dir(data) / "manifest.jsonl"


class LabelledClips(ClipDataset):
    """Clips with an integer ``label``."""

    def __init__(self, items: list[ManifestItem], clip: ClipConfig, labels: tuple[str, ...]) -> None:
        lookup = {name: i for i, name in enumerate(labels)}
        self.labels = []
        for item in items:
            name = synthcaps_label(item.attrs)
            if name not in lookup:
                raise ValueError(f"{item.id}: label {name!r} is not in model.labels {labels}")
            self.labels.append(lookup[name])
        super().__init__(items, clip)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        sample = super().__getitem__(key)
        sample["label"] = self.labels[key[0]]
        return sample


@register
class TaggerTask(Task):
    name = "tagger"
    Config = TaggerRunConfig

    def prepare_data(self) -> None:
        data = self.config.data
        path = manifest_path(data)
        if path.is_file():
            return
        if data.manifest:
            raise FileNotFoundError(f"data.manifest not found: {path}")
        log.info("generating SynthCaps (%d items) into %s", data.synth.n_items, path.parent)
        generate_synthcaps(path.parent, data.synth, progress=self.config.train.progress)

    def datasets(self) -> tuple[LabelledClips, LabelledClips | None]:
        items = read_manifest(manifest_path(self.config.data))
        train = [it for it in items if it.split == "train"]
        valid = [it for it in items if it.split != "train"]
        labels, clip = self.config.model.labels, self.config.data.clip
        eval_clip = ClipConfig(**{**to_dict(clip), "random_crop": False})
        return LabelledClips(train, clip, labels), (LabelledClips(valid, eval_clip, labels) if valid else None)

    def build_model(self) -> nn.Module:
        return AudioTagger(self.config.model)

    def loss_fn(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = model(batch["audio"]).float()  # (B, n_labels)
        loss = nn.functional.cross_entropy(logits, batch["label"])
        accuracy = (logits.argmax(-1) == batch["label"]).float().mean()
        return loss, {"accuracy": accuracy.detach()}
