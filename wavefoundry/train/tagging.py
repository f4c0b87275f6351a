"""Task "tagger": classify SynthCaps (or any labelled manifest) clips with :class:`AudioTagger`.

Labels come from ``attrs``: ``attrs["label"]`` when present, else the SynthCaps ground truth (the timbre of tonal
items, "drums" for drum patterns, the texture kind for textures).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from wavefoundry.data.datasets import ClipConfig, ClipDataset
from wavefoundry.data.manifest import ManifestItem
from wavefoundry.data.synth.instruments import TIMBRES
from wavefoundry.data.synth.textures import TEXTURES
from wavefoundry.train.datasource import DataConfig, eval_clip, prepare_manifest, split_items
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
        prepare_manifest(self.config.data, progress=self.config.train.progress)

    def datasets(self) -> tuple[LabelledClips, LabelledClips | None]:
        train, valid = split_items(self.config.data)
        labels, clip = self.config.model.labels, self.config.data.clip
        return LabelledClips(train, clip, labels), (LabelledClips(valid, eval_clip(clip), labels) if valid else None)

    def build_model(self) -> nn.Module:
        return AudioTagger(self.config.model)

    def loss_fn(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = model(batch["audio"]).float()  # (B, n_labels)
        loss = nn.functional.cross_entropy(logits, batch["label"])
        accuracy = (logits.argmax(-1) == batch["label"]).float().mean()
        return loss, {"accuracy": accuracy.detach()}
