"""Training datasets over a manifest: fixed-length crops with Stable Audio style timing, indexed by sample keys.

A dataset is indexed by ``(index, sample_seed)`` keys (see ``wavefoundry/train/batches.py``): the crop offset is
drawn from ``sample_seed`` so that a batch is a pure function of the key, which makes resume exact.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from wavefoundry.audio.dsp import set_channels
from wavefoundry.audio.io import load_audio
from wavefoundry.audio.resample import resample
from wavefoundry.data.manifest import ManifestItem

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class ClipConfig:
    """How items become training clips: rate, channels, crop length and whether to crop at random."""

    sample_rate: int = 16000
    channels: int = 1
    seconds: float = 2.0
    random_crop: bool = True

    def __post_init__(self) -> None:
        if self.sample_rate < 1000 or self.channels not in (1, 2) or self.seconds <= 0:
            raise ValueError("clip: sample_rate >= 1000, channels 1 or 2 and seconds > 0 are required")


def load_clip_source(item: ManifestItem, cfg: ClipConfig) -> np.ndarray:
    """Decode an item and convert it to the clip rate and channels: (C, T) float32."""
    audio, sr = load_audio(item.path)
    audio = set_channels(audio, cfg.channels)
    return resample(audio, sr, cfg.sample_rate).astype(np.float32, copy=False)


class ClipDataset(Dataset):
    """Fixed-length clips of manifest items, held in memory (for small sets such as SynthCaps).

    Each sample is a dict: ``audio`` (C, T) float32, ``padding_mask`` (T,) bool (True on real audio),
    ``seconds_start`` and ``seconds_total`` (Stable Audio Open timing conditioning), ``index``.
    """

    def __init__(self, items: Sequence[ManifestItem], cfg: ClipConfig, *, progress: bool = False) -> None:
        if not items:
            raise ValueError("ClipDataset: no items")
        self.items, self.cfg = list(items), cfg
        self.length = round(cfg.seconds * cfg.sample_rate)
        bar = tqdm(self.items, desc="load audio", unit="item", disable=not progress)
        self.audio = [load_clip_source(item, cfg) for item in bar]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, sample_seed = key
        audio = self.audio[index]
        total = audio.shape[-1]
        start = 0
        if self.cfg.random_crop and total > self.length:
            start = int(np.random.default_rng(sample_seed).integers(0, total - self.length + 1))
        clip = audio[:, start : start + self.length]
        real = clip.shape[-1]
        mask = np.zeros(self.length, dtype=bool)
        mask[:real] = True
        if real < self.length:
            clip = np.pad(clip, ((0, 0), (0, self.length - real)))
        return {
            "audio": torch.from_numpy(np.ascontiguousarray(clip)),
            "padding_mask": torch.from_numpy(mask),
            "seconds_start": start / self.cfg.sample_rate,
            "seconds_total": total / self.cfg.sample_rate,
            "index": index,
        }
