"""Pre-encoded latent sets: the training data of latent diffusion (``wavefoundry data encode`` writes them).

A latent set is a folder:

- ``latents.safetensors``: one (D, L) float16 tensor per item id (the codec's posterior mean);
- ``items.jsonl``: the manifest items encoded (their prompts, captions, splits and ``attrs``);
- ``latents.json``: what encoded them (codec path, sample rate, channels, hop, frame rate, latent dim) and the
  per-channel mean/std of the training split.

:class:`LatentDataset` serves fixed windows with Stable Audio timing (``seconds_start``, ``seconds_total``) and one
text per sample, drawn from the item's captions by the sample seed, so a batch is a pure function of its keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from wavefoundry.config import atomic_write_bytes
from wavefoundry.data.manifest import ManifestItem, read_manifest, write_manifest

LATENTS_FILE = "latents.safetensors"
ITEMS_FILE = "items.jsonl"
INFO_FILE = "latents.json"


@dataclass(kw_only=True)
class LatentInfo:
    """How a latent set was made. ``mean``/``std`` are per latent channel over the training split."""

    codec: str
    sample_rate: int
    channels: int
    hop_length: int
    latent_dim: int
    mean: list[float]
    std: list[float]

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length


def item_texts(item: ManifestItem) -> list[str]:
    """Every text an item may be trained with: its prompt, caption and ``attrs["captions"]``, without repeats."""
    texts = [item.prompt, item.caption, *item.attrs.get("captions", [])]
    return list(dict.fromkeys(t for t in texts if t))


def write_latent_set(
    out_dir: str | Path, items: Sequence[ManifestItem], latents: Iterable[np.ndarray], info: LatentInfo
) -> Path:
    """Write a latent set; ``latents`` yields one (D, L) array per item, in order. Returns ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for item, z in zip(items, latents, strict=True):
        if z.ndim != 2 or z.shape[0] != info.latent_dim:
            raise ValueError(f"{item.id}: latents shaped {z.shape}, expected ({info.latent_dim}, L)")
        tensors[item.id] = torch.from_numpy(np.ascontiguousarray(z)).to(torch.float16)
    train = [tensors[it.id].float() for it in items if it.split == "train"] or [t.float() for t in tensors.values()]
    stacked = torch.cat(train, dim=1)  # (D, sum L)
    info.mean = stacked.mean(1).tolist()
    info.std = stacked.std(1).clamp_min(1e-6).tolist()
    tmp = out / (LATENTS_FILE + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(out / LATENTS_FILE)
    write_manifest(out / ITEMS_FILE, items)
    atomic_write_bytes(out / INFO_FILE, json.dumps(info.__dict__, indent=2).encode())
    return out


class LatentSet:
    """A latent set read into memory: ``items``, ``latents`` (list of (D, L) float32 tensors), ``info``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        missing = [n for n in (LATENTS_FILE, ITEMS_FILE, INFO_FILE) if not (self.path / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.path} is not a latent set (missing {', '.join(missing)}); "
                                    "write one with `wavefoundry data encode`")  # fmt: skip
        self.info = LatentInfo(**json.loads((self.path / INFO_FILE).read_text()))
        self.items = read_manifest(self.path / ITEMS_FILE)
        tensors = load_file(str(self.path / LATENTS_FILE))
        absent = [it.id for it in self.items if it.id not in tensors]
        if absent:
            raise ValueError(f"{self.path / LATENTS_FILE} lacks latents for {len(absent)} items (e.g. {absent[0]})")
        self.latents = [tensors[it.id].float() for it in self.items]

    def split(self, name: str) -> list[int]:
        """Indices of the items in split ``name`` ("train", or anything else for the held-out items)."""
        if name == "train":
            return [i for i, it in enumerate(self.items) if it.split == "train"]
        return [i for i, it in enumerate(self.items) if it.split != "train"]


class LatentDataset(Dataset):
    """Windows of ``frames`` latent frames from a :class:`LatentSet`, normalised per channel.

    Each sample: ``latents`` (D, frames) float32 (zero-padded), ``mask`` (frames,) bool (True on real frames),
    ``seconds_start``/``seconds_total`` (crop offset and item duration in seconds), ``text``, ``index``.
    """

    def __init__(
        self,
        data: LatentSet,
        indices: Sequence[int],
        *,
        frames: int,
        random_crop: bool = True,
        random_text: bool = True,
    ) -> None:
        if not indices:
            raise ValueError("LatentDataset: no items")
        self.data, self.indices, self.frames = data, list(indices), frames
        self.random_crop, self.random_text = random_crop, random_text
        self.mean = torch.tensor(data.info.mean)[:, None]  # (D, 1)
        self.std = torch.tensor(data.info.std)[:, None]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, sample_seed = key
        item = self.data.items[self.indices[index]]
        z = self.data.latents[self.indices[index]]  # (D, L)
        rng = np.random.default_rng(sample_seed)
        total = z.shape[1]
        start = int(rng.integers(0, total - self.frames + 1)) if self.random_crop and total > self.frames else 0
        window = (z[:, start : start + self.frames] - self.mean) / self.std
        real = window.shape[1]
        mask = torch.zeros(self.frames, dtype=torch.bool)
        mask[:real] = True
        if real < self.frames:
            window = torch.nn.functional.pad(window, (0, self.frames - real))
        texts = item_texts(item)
        text = texts[int(rng.integers(len(texts)))] if self.random_text else texts[0]
        rate = self.data.info.frame_rate
        return {
            "latents": window,
            "mask": mask,
            "seconds_start": start / rate,
            "seconds_total": min(item.duration_s, total / rate),
            "text": text,
            "index": index,
        }
