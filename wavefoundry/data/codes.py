"""Pre-encoded code sets: discrete codec codes of a manifest, the training data of the masked transformer
(``wavefoundry data encode`` writes one when ``--codec`` is a discrete (RVQ/FSQ) codec).

A code set is a folder, the discrete sibling of a latent set (``data/latents.py``):

- ``codes.safetensors``: one (K, L) int32 tensor per item id;
- ``items.jsonl``: the manifest items encoded (prompts, captions, splits, ``attrs``);
- ``codes.json``: what encoded them (codec path, sample rate, channels, hop, K, codebook size).

:class:`CodeDataset` serves fixed windows of codes with Stable Audio timing and one text per sample, drawn from the
item's captions by the sample seed, so a batch is a pure function of its keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from wavefoundry.config import atomic_write_bytes
from wavefoundry.data.latents import item_texts
from wavefoundry.data.manifest import ManifestItem, read_manifest, write_manifest

CODES_FILE = "codes.safetensors"
ITEMS_FILE = "items.jsonl"
CODES_INFO_FILE = "codes.json"


@dataclass(kw_only=True)
class CodeInfo:
    """How a code set was made."""

    codec: str
    sample_rate: int
    channels: int
    hop_length: int
    n_codebooks: int
    codebook_size: int

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length


def write_code_set(out_dir: str | Path, items: Sequence[ManifestItem], codes: Iterable[np.ndarray],
                   info: CodeInfo) -> Path:  # fmt: skip
    """Write a code set; ``codes`` yields one (K, L) integer array per item, in order. Returns ``out_dir``.

    Raises:
        ValueError: an array of the wrong shape, or ids outside [0, codebook_size).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for item, c in zip(items, codes, strict=True):
        if c.ndim != 2 or c.shape[0] != info.n_codebooks:
            raise ValueError(f"{item.id}: codes shaped {c.shape}, expected ({info.n_codebooks}, L)")
        if c.size and (c.min() < 0 or c.max() >= info.codebook_size):
            raise ValueError(f"{item.id}: code ids outside [0, {info.codebook_size})")
        tensors[item.id] = torch.from_numpy(np.ascontiguousarray(c, dtype=np.int32))
    tmp = out / (CODES_FILE + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(out / CODES_FILE)
    write_manifest(out / ITEMS_FILE, items)
    atomic_write_bytes(out / CODES_INFO_FILE, json.dumps(asdict(info), indent=2).encode())
    return out


class CodeSet:
    """A code set read into memory: ``items``, ``codes`` (list of (K, L) int64 tensors), ``info``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        missing = [n for n in (CODES_FILE, ITEMS_FILE, CODES_INFO_FILE) if not (self.path / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.path} is not a code set (missing {', '.join(missing)}); write one with "
                                    "`wavefoundry data encode MANIFEST --codec DISCRETE_CODEC --out DIR`")  # fmt: skip
        self.info = CodeInfo(**json.loads((self.path / CODES_INFO_FILE).read_text()))
        self.items = read_manifest(self.path / ITEMS_FILE)
        tensors = load_file(str(self.path / CODES_FILE))
        absent = [it.id for it in self.items if it.id not in tensors]
        if absent:
            raise ValueError(f"{self.path / CODES_FILE} lacks codes for {len(absent)} items (e.g. {absent[0]})")
        self.codes = [tensors[it.id].long() for it in self.items]

    def split(self, name: str) -> list[int]:
        """Indices of the items in split ``name`` ("train", or anything else for the held-out items)."""
        if name == "train":
            return [i for i, it in enumerate(self.items) if it.split == "train"]
        return [i for i, it in enumerate(self.items) if it.split != "train"]


class CodeDataset(Dataset):
    """Windows of ``frames`` code frames from a :class:`CodeSet`.

    Each sample: ``codes`` (K, frames) int64 (padded with 0), ``mask`` (frames,) bool (True on real frames),
    ``seconds_start``/``seconds_total`` (crop offset and item duration in seconds), ``text``, ``index``.
    """

    def __init__(self, data: CodeSet, indices: Sequence[int], *, frames: int, random_crop: bool = True,
                 random_text: bool = True) -> None:  # fmt: skip
        if not indices:
            raise ValueError("CodeDataset: no items")
        self.data, self.indices, self.frames = data, list(indices), frames
        self.random_crop, self.random_text = random_crop, random_text

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, sample_seed = key
        item = self.data.items[self.indices[index]]
        c = self.data.codes[self.indices[index]]  # (K, L)
        rng = np.random.default_rng(sample_seed)
        total = c.shape[1]
        start = int(rng.integers(0, total - self.frames + 1)) if self.random_crop and total > self.frames else 0
        window = c[:, start : start + self.frames]
        real = window.shape[1]
        mask = torch.zeros(self.frames, dtype=torch.bool)
        mask[:real] = True
        if real < self.frames:
            window = torch.nn.functional.pad(window, (0, self.frames - real))
        texts = item_texts(item)
        text = texts[int(rng.integers(len(texts)))] if self.random_text else texts[0]
        rate = self.data.info.frame_rate
        return {
            "codes": window,
            "mask": mask,
            "seconds_start": start / rate,
            "seconds_total": min(item.duration_s, total / rate),
            "text": text,
            "index": index,
        }
