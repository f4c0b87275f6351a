"""The tokenised corpus of the "lm" task: a speech manifest encoded once into codec codes and text ids, and the
packed training rows built from it.

``prepare_corpus`` encodes every utterance of the manifest (``attrs["transcript"]``) with an
:class:`~wavefoundry.codecs.tokenizer.AudioTokenizer` (an exported discrete autoencoder / semantic codec, or a local
Mimi folder) and its transcript with a :class:`~wavefoundry.lm.text_tokenizer.TextTokenizer` (a given
``tokenizer.json``, or a byte-level BPE trained on the training transcripts), into
``cache_dir/lm-<hash>/`` (``corpus.safetensors`` + ``index.json`` + ``tokenizer.json``). The hash covers the
manifest, the codec files, the tokenizer and the layout choices, so any change rebuilds the folder.

Documents follow SODA (Manakul et al. 2026, arXiv 2602.16687): one utterance per document, text-first
(``<|text_start|> T <|text_end|> <|audio_start|> A <|audio_end|>``, teaches TTS) and audio-first (teaches ASR), and
optionally text-only documents of the transcripts, mixed by token share and packed into rows (``lm/packing.py``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from wavefoundry.codecs.tokenizer import AudioTokenizer, CodecTokenizer
from wavefoundry.config import ConfigError, read_json
from wavefoundry.data.datasets import ClipConfig, load_clip_source
from wavefoundry.data.manifest import ManifestItem, read_manifest
from wavefoundry.lm.packing import Document, PackedRows, mix_documents, next_token_targets, pack_documents
from wavefoundry.lm.sequences import TokenLayout, Utterance, text_document, utterance_document
from wavefoundry.lm.text_tokenizer import TextTokenizer, train_bpe
from wavefoundry.train.export import ModelLoadError, load_autoencoder

log = logging.getLogger(__name__)

#: The ``attrs`` key that holds an item's transcript.
TRANSCRIPT_KEY = "transcript"
CORPUS_FILE, INDEX_FILE, TOKENIZER_FILE = "corpus.safetensors", "index.json", "tokenizer.json"
CORPUS_VERSION = 1


@dataclass(kw_only=True)
class MixConfig:
    """Token shares of the document kinds in the training stream (normalised; 0 turns a kind off)."""

    text_first: float = 0.5
    audio_first: float = 0.5
    text_only: float = 0.0

    def __post_init__(self) -> None:
        weights = self.weights()
        if any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
            raise ConfigError(f"data.mix weights must be >= 0 with a positive sum, got {weights}")

    def weights(self) -> dict[str, float]:
        return {"text_first": self.text_first, "audio_first": self.audio_first, "text_only": self.text_only}


@dataclass(kw_only=True)
class LMDataConfig:
    """Where the LM's tokens come from.

    Args:
        manifest: a speech manifest with ``attrs["transcript"]`` (split "train" and held-out splits).
        codec: an exported discrete autoencoder / semantic codec directory, or a local Mimi directory.
        codec_codebooks: K, codebooks the codec emits (an RVQ prefix, Mimi's ``num_quantizers``); None: all (Mimi 8).
        codebooks: the layout's selection of those K (None: all; ``[0]``: semantic only).
        text_tokenizer: a ``tokenizer.json``; empty: train a byte-level BPE of ``bpe_vocab_size`` on the
            training transcripts.
        text_vocab_size: the text ids of the layout; 0 until the corpus is built, then written into the run config.
        seq_len: tokens per training row (the model sees rows of this length).
        epochs: the training rows hold about this many passes over the training utterances.
        max_seconds: longer utterances are left out (with a warning).
    """

    manifest: str = ""
    codec: str = ""
    codec_codebooks: int | None = None
    codebooks: tuple[int, ...] | None = None
    text_tokenizer: str = ""
    bpe_vocab_size: int = 512
    text_vocab_size: int = 0
    seq_len: int = 256
    epochs: float = 4.0
    mix: MixConfig = field(default_factory=MixConfig)
    max_seconds: float = 30.0
    cache_dir: str = "data/cache"

    def __post_init__(self) -> None:
        if self.seq_len < 2:
            raise ConfigError(f"data.seq_len must be >= 2, got {self.seq_len}")
        if self.epochs <= 0 or self.max_seconds <= 0:
            raise ConfigError(f"data.epochs and data.max_seconds must be > 0, got {self.epochs}, {self.max_seconds}")
        if self.bpe_vocab_size < 256 or self.text_vocab_size < 0:
            raise ConfigError("data.bpe_vocab_size must be >= 256 and data.text_vocab_size >= 0")
        if self.codec_codebooks is not None and self.codec_codebooks < 1:
            raise ConfigError(f"data.codec_codebooks must be >= 1, got {self.codec_codebooks}")


# --- codecs -----------------------------------------------------------------------------------------------------


def codec_kind(path: str | Path) -> str:
    """ "autoencoder" (an exported wavefoundry codec) or "mimi" (a Hugging Face Mimi folder), from its config.json."""
    config = Path(path) / "config.json"
    if not config.is_file():
        raise ModelLoadError(f"codec directory {path} has no config.json (export a codec or save Mimi there)")
    data = read_json(config)
    if isinstance(data, dict) and data.get("type") == "autoencoder":
        return "autoencoder"
    if isinstance(data, dict) and data.get("model_type") == "mimi":
        return "mimi"
    raise ModelLoadError(f"{config}: neither an exported autoencoder nor a Mimi config")


def load_audio_tokenizer(path: str | Path, n_codebooks: int | None = None) -> AudioTokenizer:
    """The :class:`AudioTokenizer` of a codec directory, emitting ``n_codebooks`` codebooks (None: all; Mimi 8)."""
    if codec_kind(path) == "mimi":
        from wavefoundry.codecs.mimi import DEFAULT_CODEBOOKS, MimiTokenizer

        return MimiTokenizer(path, num_quantizers=n_codebooks or DEFAULT_CODEBOOKS)
    model = load_autoencoder(path)
    if not model.is_discrete:
        raise ModelLoadError(f"{path}: the LM needs a discrete (rvq/fsq) codec; this one is continuous")
    return CodecTokenizer(model, n_codebooks=n_codebooks)


def _hash_files(h: hashlib._Hash, files: list[Path]) -> None:
    for file in sorted(files):
        h.update(file.name.encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)


def corpus_dir(data: LMDataConfig) -> Path:
    """``cache_dir/lm-<hash of manifest, codec files, tokenizer and layout choices>``."""
    for name in ("manifest", "codec"):
        if not getattr(data, name):
            raise ConfigError(f"task lm needs data.{name}: --set data.{name}=PATH")
    manifest, codec = Path(data.manifest), Path(data.codec)
    if not manifest.is_file():
        raise FileNotFoundError(f"data.manifest not found: {manifest}")
    if not codec.is_dir():
        raise FileNotFoundError(f"data.codec not found: {codec}")
    h = hashlib.sha256(f"v{CORPUS_VERSION}".encode())
    _hash_files(h, [manifest, *codec.glob("*.json"), *codec.glob("*.safetensors")])
    if data.text_tokenizer:
        _hash_files(h, [Path(data.text_tokenizer)])
    choices = [data.codec_codebooks, data.codebooks, data.text_tokenizer or data.bpe_vocab_size, data.max_seconds]
    h.update(json.dumps(choices, default=list).encode())
    return Path(data.cache_dir) / f"lm-{h.hexdigest()[:12]}"


# --- building the corpus ----------------------------------------------------------------------------------------


def _usable(items: list[ManifestItem], max_seconds: float) -> list[ManifestItem]:
    missing = [it.id for it in items if not isinstance(it.attrs.get(TRANSCRIPT_KEY), str)]
    if missing:
        raise ValueError(f"{len(missing)} items have no attrs['{TRANSCRIPT_KEY}'] (e.g. {missing[0]}): "
                         "task lm needs a speech manifest with transcripts")  # fmt: skip
    keep = [it for it in items if it.duration_s <= max_seconds and it.attrs[TRANSCRIPT_KEY].strip()]
    if len(keep) < len(items):
        log.warning("left out %d of %d utterances (empty transcript or longer than data.max_seconds=%g)",
                    len(items) - len(keep), len(items), max_seconds)  # fmt: skip
    if not any(it.split == "train" for it in keep):
        raise ValueError("the manifest has no usable utterance in split 'train'")
    return keep


def _text_tokenizer(data: LMDataConfig, items: list[ManifestItem]) -> TextTokenizer:
    if data.text_tokenizer:
        return TextTokenizer.from_file(data.text_tokenizer)
    texts = [it.attrs[TRANSCRIPT_KEY] for it in items if it.split == "train"]
    return train_bpe(texts, data.bpe_vocab_size)


def codec_channels(codec: AudioTokenizer) -> int:
    """Audio channels the codec takes (Mimi: 1; our autoencoders: their config's)."""
    return codec.audio_channels if hasattr(codec, "audio_channels") else codec.autoencoder.audio_channels


@torch.inference_mode()
def _encode(codec: AudioTokenizer, item: ManifestItem) -> Tensor:
    channels = codec_channels(codec)
    audio = load_clip_source(item, ClipConfig(sample_rate=codec.sample_rate, channels=channels, seconds=1.0))
    return codec.encode(torch.from_numpy(audio)[None])[0].to(torch.int32)  # (K, T)


def prepare_corpus(data: LMDataConfig, *, progress: bool = True) -> Path:
    """Build the tokenised corpus folder of ``data`` unless it exists (then it is only returned).

    Returns:
        The folder: ``corpus.safetensors`` (``codes.i`` (K, T) and ``text.i`` (L,) int32 per utterance i),
        ``index.json`` (codec facts, text vocabulary size, per-utterance id/split/transcript) and ``tokenizer.json``.
    """
    root = corpus_dir(data)
    if (root / INDEX_FILE).is_file():
        log.info("tokenised corpus found: %s", root)
        return root
    items = _usable(read_manifest(data.manifest), data.max_seconds)
    tokenizer = _text_tokenizer(data, items)
    codec = load_audio_tokenizer(data.codec, data.codec_codebooks)
    tensors, index = {}, []
    for i, item in enumerate(tqdm(items, desc="tokenise", unit="utt", disable=not progress)):
        tensors[f"codes.{i}"] = _encode(codec, item)
        tensors[f"text.{i}"] = torch.tensor(tokenizer.encode(item.attrs[TRANSCRIPT_KEY]), dtype=torch.int32)
        index.append({"id": item.id, "split": item.split, "transcript": item.attrs[TRANSCRIPT_KEY]})
    info = {
        "version": CORPUS_VERSION,
        "codec": str(Path(data.codec).resolve()),
        "n_codebooks": codec.n_codebooks,
        "codebook_size": codec.codebook_size,
        "frame_rate": codec.frame_rate,
        "sample_rate": codec.sample_rate,
        "text_vocab_size": tokenizer.vocab_size,
        "items": index,
    }
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
    try:
        save_file(tensors, str(tmp / CORPUS_FILE))
        tokenizer.save(tmp / TOKENIZER_FILE)
        (tmp / INDEX_FILE).write_text(json.dumps(info, indent=1) + "\n")
        os.replace(tmp, root)  # a half-written corpus is never seen under the final name
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("tokenised %d utterances into %s", len(items), root)
    return root


@dataclass
class Corpus:
    """A loaded corpus folder: ``info`` (index.json), per-utterance codes (K, T) and text ids (L,) int64."""

    root: Path
    info: dict
    codes: list[Tensor]
    text: list[Tensor]

    @classmethod
    def load(cls, root: str | Path) -> Corpus:
        root = Path(root)
        if not (root / INDEX_FILE).is_file():
            raise FileNotFoundError(f"tokenised corpus not found: {root} (the lm task's prepare_data builds it from "
                                    "data.manifest, data.codec and the tokenizer; they must be unchanged)")  # fmt: skip
        info = read_json(root / INDEX_FILE)
        tensors = load_file(str(root / CORPUS_FILE))
        n = len(info["items"])
        codes = [tensors[f"codes.{i}"].long() for i in range(n)]
        return cls(root=root, info=info, codes=codes, text=[tensors[f"text.{i}"].long() for i in range(n)])

    def layout(self, codebooks: tuple[int, ...] | None) -> TokenLayout:
        info = self.info
        return TokenLayout(text_vocab_size=info["text_vocab_size"], n_codebooks=info["n_codebooks"],
                           codebook_size=info["codebook_size"], codebooks=codebooks)  # fmt: skip

    def utterances(self, split: str) -> list[Utterance]:
        """The utterances of ``split`` ("train"; any other name selects every non-train split)."""
        keep = [i for i, it in enumerate(self.info["items"]) if (it["split"] == "train") == (split == "train")]
        return [Utterance(text=self.text[i], codes=self.codes[i]) for i in keep]


# --- documents and rows -----------------------------------------------------------------------------------------

_KINDS = {
    "text_first": lambda layout, u: utterance_document(layout, [u], "text_first"),
    "audio_first": lambda layout, u: utterance_document(layout, [u], "audio_first"),
    "text_only": lambda layout, u: text_document(layout, u.text),
}


def _repeat(layout: TokenLayout, utts: list[Utterance], kind: str, seed: int) -> Iterator[Document]:
    """Documents of ``kind``, one per utterance, over seeded permutations epoch after epoch (never ends)."""
    for epoch in itertools.count():
        for i in np.random.default_rng([seed, epoch]).permutation(len(utts)):
            yield Document(ids=_KINDS[kind](layout, utts[int(i)]), kind=kind)


def train_rows(layout: TokenLayout, utts: list[Utterance], data: LMDataConfig, *, seed: int) -> PackedRows:
    """Rows of ``seq_len + 1`` tokens (inputs and shifted targets) from the mixed document stream; deterministic."""
    weights = {k: w for k, w in data.mix.weights().items() if w > 0}
    sources = {kind: _repeat(layout, utts, kind, seed + j) for j, kind in enumerate(weights)}
    mean = sum(w * np.mean([len(_KINDS[k](layout, u)) for u in utts[:64]]) for k, w in weights.items())
    n_rows = max(1, math.ceil(data.epochs * len(utts) * mean / sum(weights.values()) / (data.seq_len + 1)))
    stream = mix_documents(sources, weights, seed=seed)
    return pack_documents(stream, seq_len=data.seq_len + 1, n_rows=n_rows)


def eval_rows(layout: TokenLayout, utts: list[Utterance], data: LMDataConfig) -> PackedRows:
    """Every held-out utterance once per document kind in use, in order, the last row padded (masked out)."""
    kinds = [k for k, w in data.mix.weights().items() if w > 0]
    docs = [Document(ids=_KINDS[k](layout, u), kind=k) for u in utts for k in kinds]
    return pack_documents(docs, seq_len=data.seq_len + 1, pad_id=0)


class PackedRowDataset(Dataset):
    """Packed rows as samples ``{"inputs", "labels", "mask"}`` of (seq_len,) each (next-token targets)."""

    def __init__(self, rows: PackedRows) -> None:
        self.inputs, self.labels, self.mask = next_token_targets(rows)  # (N, L) each
        self.rows = rows

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Tensor]:
        i = key[0]
        return {"inputs": self.inputs[i], "labels": self.labels[i], "mask": self.mask[i]}
