"""Task "contrastive": a small CLAP-style text-audio model on SynthCaps clips and their captions.

Each training pair is a clip and one of its item's caption variants (drawn from the sample key, as the
text-to-audio task does; :func:`~wavefoundry.data.latents.item_texts`); evaluation pairs each held-out clip with
its prompt. The word-level tokenizer is built from the training split's captions on first use and cached under
``data.cache_dir`` (keyed by the manifest's content); it is copied into the run directory after each evaluation
and into exported folders.

The module also writes and reads the exported folders of the offline default embedders (``models/eval-tagger``,
``models/eval-clap``): a run config (``config.json``, so :func:`~wavefoundry.train.tasks.load_model` reads them),
``model.safetensors`` and, for this task, ``tokenizer.json``; and it loads the held-out clips their figures are
measured on (:func:`heldout_set`).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.utils.data import default_collate

from wavefoundry.conditioning.text import LearnedTextEncoder, LearnedTextEncoderConfig
from wavefoundry.conditioning.tokenizer import WordTokenizer
from wavefoundry.config import ConfigError, save_json
from wavefoundry.data.datasets import ClipConfig, ClipDataset
from wavefoundry.data.latents import item_texts
from wavefoundry.data.manifest import ManifestItem, read_manifest
from wavefoundry.train.checkpoint import read_metadata, resolve_model_dir
from wavefoundry.train.datasource import DataConfig, eval_clip, manifest_path, prepare_manifest, split_items
from wavefoundry.train.export import checkpoint_state
from wavefoundry.train.tagging import SYNTHCAPS_LABELS, synthcaps_label
from wavefoundry.train.tasks import RunConfig, Task, load_model, load_run_config, register
from wavefoundry.understanding.contrastive import (
    ContrastiveConfig,
    ContrastiveModel,
    in_batch_recall_at_1,
    info_nce,
)
from wavefoundry.understanding.tagger import AudioTagger, TaggerConfig

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
#: Tasks whose runs :func:`export_embedder` writes as model folders.
EMBEDDER_TASKS = ("tagger", "contrastive")


@dataclass(kw_only=True)
class ClapConfig:
    """The towers and the shared space of :class:`~wavefoundry.understanding.contrastive.ContrastiveModel`.

    ``audio.labels`` only sizes the tagger's (unused) head, so a tagger's weights fit the audio tower.
    """

    audio: TaggerConfig = field(default_factory=lambda: TaggerConfig(labels=SYNTHCAPS_LABELS, dropout=0.0))
    text: LearnedTextEncoderConfig = field(
        default_factory=lambda: LearnedTextEncoderConfig(vocab_size=512, dim=128, depth=2, heads=4, max_length=48,
                                                         out_dim=128)
    )  # fmt: skip
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)


def build_contrastive(cfg: ClapConfig) -> ContrastiveModel:
    """A freshly initialised contrastive model: an AudioTagger audio tower and a learned text encoder."""
    return ContrastiveModel(cfg.contrastive, audio=AudioTagger(cfg.audio), text=LearnedTextEncoder(cfg.text),
                            text_dim=cfg.text.out_dim)  # fmt: skip


@dataclass(kw_only=True)
class ContrastiveRunConfig(RunConfig):
    """``random_caption``: train on a random caption variant of each item (else always its prompt)."""

    task: str = "contrastive"
    model: ClapConfig = field(default_factory=ClapConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(clip=ClipConfig(sample_rate=16000, seconds=4.0)))
    random_caption: bool = True

    def __post_init__(self) -> None:
        if self.model.audio.mel.sample_rate != self.data.clip.sample_rate:
            raise ConfigError(
                f"model.audio.mel.sample_rate ({self.model.audio.mel.sample_rate}) must equal "
                f"data.clip.sample_rate ({self.data.clip.sample_rate})"
            )


class CaptionedClips(ClipDataset):
    """Clips with a ``text``: a caption variant drawn from the sample key, or the item's first text (its prompt)."""

    def __init__(self, items: list[ManifestItem], clip: ClipConfig, *, random_text: bool) -> None:
        self.texts = [item_texts(item) for item in items]
        empty = [item.id for item, texts in zip(items, self.texts, strict=True) if not texts]
        if empty:
            raise ValueError(f"{len(empty)} items have no prompt or caption (e.g. {empty[0]})")
        self.random_text = random_text
        super().__init__(items, clip)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        sample = super().__getitem__(key)
        texts = self.texts[key[0]]
        # A stream apart from the crop's (which uses default_rng(sample_seed)), so text and crop are independent.
        pick = int(np.random.default_rng([key[1], 1]).integers(len(texts))) if self.random_text else 0
        sample["text"] = texts[pick]
        return sample


def tokenizer_path(data: DataConfig) -> Path:
    """Where the tokenizer of a manifest's training captions is cached (keyed by the manifest's bytes)."""
    digest = hashlib.sha256(manifest_path(data).read_bytes()).hexdigest()[:12]
    return Path(data.cache_dir) / f"tokenizer-{digest}.json"


def _check_vocab(tokenizer: WordTokenizer, text: LearnedTextEncoderConfig) -> WordTokenizer:
    if tokenizer.vocab_size > text.vocab_size:
        raise ConfigError(f"the tokenizer has {tokenizer.vocab_size} tokens but model.text.vocab_size is "
                          f"{text.vocab_size}: set model.text.vocab_size >= {tokenizer.vocab_size}")  # fmt: skip
    if tokenizer.max_length > text.max_length:
        raise ConfigError(f"tokenizer max_length {tokenizer.max_length} > model.text.max_length {text.max_length}")
    return tokenizer


@register
class ContrastiveTask(Task):
    name = "contrastive"
    Config = ContrastiveRunConfig

    def __init__(self, config: ContrastiveRunConfig) -> None:
        super().__init__(config)
        self._tokenizer: WordTokenizer | None = None

    def prepare_data(self) -> None:
        """Generate SynthCaps if needed, and build the tokenizer from the training split's texts."""
        prepare_manifest(self.config.data, progress=self.config.train.progress)
        path = tokenizer_path(self.config.data)
        if not path.is_file():
            train, _ = split_items(self.config.data)
            texts = [t for item in train for t in item_texts(item)]
            WordTokenizer.build(texts, max_length=self.config.model.text.max_length).save(path)
            log.info("built a %d-token vocabulary from %d training texts into %s", len(self.tokenizer()), len(texts),
                     path)  # fmt: skip

    def tokenizer(self) -> WordTokenizer:
        if self._tokenizer is None:
            self._tokenizer = _check_vocab(WordTokenizer.load(tokenizer_path(self.config.data)), self.config.model.text)
        return self._tokenizer

    def datasets(self) -> tuple[CaptionedClips, CaptionedClips | None]:
        train, valid = split_items(self.config.data)
        clip = self.config.data.clip
        held_out = CaptionedClips(valid, eval_clip(clip), random_text=False) if valid else None
        return CaptionedClips(train, clip, random_text=self.config.random_caption), held_out

    def collate(self, samples: list[dict]) -> dict[str, Any]:
        texts = [s.pop("text") for s in samples]
        batch = default_collate(samples)
        batch["ids"], batch["mask"] = self.tokenizer().encode(texts)  # (B, L), (B, L)
        return batch

    def build_model(self) -> nn.Module:
        return build_contrastive(self.config.model)

    def loss_fn(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        logits = model(batch["audio"], batch["ids"], batch["mask"]).float()  # (B, B)
        a2t, t2a = in_batch_recall_at_1(logits.detach())
        scale = getattr(model, "module", model).scale().detach()  # the bare model under DDP
        return info_nce(logits), {"recall1_a2t": a2t, "recall1_t2a": t2a, "logit_scale": scale}

    def after_eval(self, model: nn.Module, step: int, run_dir: Path) -> None:
        """Keep the vocabulary next to the checkpoints, so a run directory is self-contained."""
        if not (run_dir / TOKENIZER_FILE).is_file():
            shutil.copyfile(tokenizer_path(self.config.data), run_dir / TOKENIZER_FILE)


# ------------------------------------------------------------------------------------- exported model folders
def export_embedder(path: str | Path, out_dir: str | Path, *, ema: bool = True, half: bool = False) -> Path:
    """Write a tagger or contrastive run's latest checkpoint as a model folder that ``load_model`` reads.

    The folder holds ``config.json`` (the run config), ``model.safetensors`` (EMA weights when present; float16
    with ``half``) and, for a contrastive run, ``tokenizer.json``.

    Raises:
        ValueError: the run is of another task.
    """
    model_dir = resolve_model_dir(path)
    cfg = load_run_config(model_dir)
    if cfg.task not in EMBEDDER_TASKS:
        raise ValueError(f"{model_dir} is a '{cfg.task}' run; export_embedder writes {', '.join(EMBEDDER_TASKS)} runs")
    tokenizer = _find_tokenizer(Path(path), model_dir, cfg) if cfg.task == "contrastive" else None
    state = checkpoint_state(model_dir, ema=ema)
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"step": read_metadata(model_dir / "model.safetensors").get("step", ""), "ema": str(ema).lower()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"), metadata=meta)
    save_json(cfg, out / "config.json")
    if tokenizer is not None:
        shutil.copyfile(tokenizer, out / TOKENIZER_FILE)
    return out


def _find_tokenizer(path: Path, model_dir: Path, cfg: RunConfig) -> Path:
    """The tokenizer of a contrastive model folder, checkpoint or run: next to it, in its run, or in the cache."""
    candidates = [path / TOKENIZER_FILE, model_dir / TOKENIZER_FILE, model_dir.parent.parent / TOKENIZER_FILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    try:
        cached = tokenizer_path(cfg.data)
    except FileNotFoundError:
        cached = None
    if cached is not None and cached.is_file():
        return cached
    raise FileNotFoundError(f"no {TOKENIZER_FILE} for {path} (looked in {', '.join(map(str, candidates))})")


def load_tagger(path: str | Path) -> AudioTagger:
    """A tagger model folder, checkpoint or run -> the :class:`AudioTagger` in eval mode.

    Raises:
        ValueError: the folder holds another task's model.
    """
    task, model = load_model(path)
    if task.name != "tagger":
        raise ValueError(f"{path} is a '{task.name}' model, not a tagger")
    return model


def load_contrastive(path: str | Path) -> tuple[ContrastiveModel, WordTokenizer]:
    """A contrastive model folder, checkpoint or run -> (model in eval mode, its tokenizer).

    Raises:
        ValueError: the folder holds another task's model.
        FileNotFoundError: no tokenizer next to it, in its run or in the data cache.
    """
    path = Path(path)
    task, model = load_model(path)
    if task.name != "contrastive":
        raise ValueError(f"{path} is a '{task.name}' model, not a contrastive text-audio model")
    tokenizer = WordTokenizer.load(_find_tokenizer(path, resolve_model_dir(path), task.config))
    return model, _check_vocab(tokenizer, task.config.model.text)


# ------------------------------------------------------------------------------------------- held-out figures
@dataclass
class HeldOutSet:
    """Held-out clips (N, C, T) float32 from their start, their prompts and their SynthCaps label ids."""

    clips: np.ndarray
    texts: list[str]
    labels: np.ndarray
    label_names: tuple[str, ...]
    ids: list[str]


def heldout_set(
    manifest: str | Path, clip: ClipConfig, *, split: str = "valid", labels: tuple[str, ...] = SYNTHCAPS_LABELS
) -> HeldOutSet:
    """The items of ``split`` cut to ``clip`` (from the start), with their prompts and labels.

    Raises:
        ValueError: no item in ``split``.
    """
    items = [item for item in read_manifest(manifest) if item.split == split]
    if not items:
        raise ValueError(f"{manifest}: no items in split {split!r}")
    data = CaptionedClips(items, eval_clip(clip), random_text=False)
    samples = [data[(i, 0)] for i in range(len(data))]
    lookup = {name: i for i, name in enumerate(labels)}
    return HeldOutSet(
        clips=torch.stack([s["audio"] for s in samples]).numpy(),  # (N, C, T)
        texts=[s["text"] for s in samples],
        labels=np.array([lookup[synthcaps_label(item.attrs)] for item in items]),
        label_names=labels,
        ids=[item.id for item in items],
    )
