"""The offline default embedders: adapters from the project's SynthCaps-trained models to the metric interfaces.

* :class:`TaggerEmbedder` (:class:`~wavefoundry.eval.embedders.FrameEmbedder`): the
  :class:`~wavefoundry.understanding.tagger.AudioTagger` clip embedding of every ``window_s`` window (hop
  ``hop_s``) of a file, float64.
* :class:`TaggerClassifier` (:class:`~wavefoundry.eval.embedders.AudioClassifier`): the tagger's logits of
  windows.
* :class:`ContrastiveTextAudio` (:class:`~wavefoundry.eval.embedders.TextAudioModel`): the L2-normalised audio and
  text embeddings of a :class:`~wavefoundry.understanding.contrastive.ContrastiveModel`.

Each takes an already built module (the CLI loads runs and model folders: ``wavefoundry.train.contrastive``'s
``load_tagger`` / ``load_contrastive``) and the SHA-256 of its weights. They put the module in eval mode and run it
without gradients in batches of ``batch_size`` windows or texts. :func:`classification_accuracy` and
:func:`text_audio_retrieval` give the held-out figures of the model cards. See docs/default_embedders.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from wavefoundry.eval.embedders import EmbedderInfo, TextAudioModel, prepare, split_windows
from wavefoundry.eval.retrieval import retrieval_recall
from wavefoundry.understanding.contrastive import ContrastiveModel
from wavefoundry.understanding.tagger import AudioTagger

#: Windows of the classifier and the text-audio model: the 4 s clips both were trained on.
TRAINED_WINDOW_S = 4.0


class Tokenizer(Protocol):
    """What :class:`ContrastiveTextAudio` needs of a tokenizer (``wavefoundry.conditioning.WordTokenizer``)."""

    max_length: int

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]: ...


def _check_windows(windows: np.ndarray, info: EmbedderInfo) -> torch.Tensor:
    """Windows (N, C, T) as a float32 tensor, after checking the shape, length and values."""
    windows = np.asarray(windows)
    if windows.ndim != 3 or 0 in windows.shape:
        raise ValueError(f"windows must be a non-empty (N, C, T) array, got shape {windows.shape}")
    if windows.shape[1] != 1:
        raise ValueError(f"{info.name} takes mono windows (N, 1, T), got {windows.shape[1]} channels")
    if not np.isfinite(windows).all():
        raise ValueError("windows contain NaN or infinite samples")
    return torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))


def _batched(fn, x: torch.Tensor, batch_size: int) -> np.ndarray:
    with torch.no_grad():
        parts = [fn(x[i : i + batch_size]).double() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(parts).numpy()


def _check_batch_size(batch_size: int) -> int:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return batch_size


class TaggerEmbedder:
    """Frame embeddings (N, embed_dim) float64: ``model.embed`` of each ``window_s`` window every ``hop_s``.

    Audio is resampled to the tagger's rate and mixed to mono (:func:`~wavefoundry.eval.embedders.prepare`); the
    windows are :func:`~wavefoundry.eval.embedders.split_windows` with the last one zero-padded.
    """

    def __init__(
        self,
        model: AudioTagger,
        *,
        weights_sha256: str,
        window_s: float = 1.0,
        hop_s: float = 0.5,
        batch_size: int = 32,
        name: str = "synthcaps-tagger",
    ) -> None:
        self.model = model.eval()
        sr = model.cfg.mel.sample_rate
        self.info = EmbedderInfo(name=name, weights_sha256=weights_sha256, sample_rate=sr, window_s=window_s,
                                 hop_s=hop_s, channel_mode="mono")  # fmt: skip
        self.window, self.hop = round(window_s * sr), round(hop_s * sr)
        if self.window < model.cfg.mel.n_fft:
            raise ValueError(f"window_s={window_s} is shorter than one STFT frame ({model.cfg.mel.n_fft} samples)")
        self.dim = model.cfg.embed_dim
        self.batch_size = _check_batch_size(batch_size)

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Embeddings (N, dim) float64 of one file's audio (C, T) at rate ``sr``."""
        mono = prepare(audio, sr, self.info)  # (1, T')
        windows = torch.from_numpy(split_windows(mono, self.window, self.hop))  # (N, 1, window)
        return _batched(self.model.embed, windows, self.batch_size)


class TaggerClassifier:
    """Logits (N, n_labels) float64 of mono windows (N, 1, T) at the tagger's rate, labels ``model.cfg.labels``."""

    def __init__(
        self,
        model: AudioTagger,
        *,
        weights_sha256: str,
        window_s: float = TRAINED_WINDOW_S,
        hop_s: float = TRAINED_WINDOW_S,
        batch_size: int = 32,
        name: str = "synthcaps-tagger",
    ) -> None:
        self.model = model.eval()
        self.info = EmbedderInfo(name=name, weights_sha256=weights_sha256, sample_rate=model.cfg.mel.sample_rate,
                                 window_s=window_s, hop_s=hop_s, channel_mode="mono")  # fmt: skip
        self.labels = tuple(model.cfg.labels)
        self.batch_size = _check_batch_size(batch_size)

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """Logits (N, n_labels) float64 of windows (N, 1, T)."""
        return _batched(self.model, _check_windows(windows, self.info), self.batch_size)


class ContrastiveTextAudio:
    """L2-normalised audio (N, dim) and text (N, dim) embeddings of a contrastive model, float64.

    Texts are tokenised with ``tokenizer`` (longer ones are cut to its ``max_length`` tokens, which must fit the
    text encoder's positions); audio windows are mono at the model's rate.
    """

    def __init__(
        self,
        model: ContrastiveModel,
        tokenizer: Tokenizer,
        *,
        weights_sha256: str,
        window_s: float = TRAINED_WINDOW_S,
        hop_s: float = TRAINED_WINDOW_S,
        batch_size: int = 32,
        name: str = "synthcaps-clap",
    ) -> None:
        positions = model.text.cfg.max_length
        if tokenizer.max_length > positions:
            raise ValueError(f"tokenizer max_length {tokenizer.max_length} exceeds the text encoder's {positions}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.info = EmbedderInfo(name=name, weights_sha256=weights_sha256,
                                 sample_rate=model.audio.cfg.mel.sample_rate, window_s=window_s, hop_s=hop_s,
                                 channel_mode="mono")  # fmt: skip
        self.dim = model.dim
        self.batch_size = _check_batch_size(batch_size)

    def embed_audio(self, windows: np.ndarray) -> np.ndarray:
        """Embeddings (N, dim) float64 of windows (N, 1, T)."""
        return _batched(self.model.embed_audio, _check_windows(windows, self.info), self.batch_size)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings (N, dim) float64 of N texts (each non-empty, at most the tokenizer's character bound)."""
        ids, mask = self.tokenizer.encode(texts)  # (N, L), (N, L); validates the batch
        parts = []
        with torch.no_grad():
            for i in range(0, ids.shape[0], self.batch_size):
                parts.append(self.model.embed_text(ids[i : i + self.batch_size], mask[i : i + self.batch_size]))
        return torch.cat(parts).double().numpy()


def classification_accuracy(
    classifier: TaggerClassifier, windows: np.ndarray, labels: Sequence[int]
) -> dict[str, float]:
    """Top-1 accuracy of ``classifier`` on windows (N, 1, T) with label ids (N,), and two chance levels.

    Returns:
        ``accuracy``, ``n``, ``chance_uniform`` (1 / n_labels) and ``majority_rate`` (share of the most frequent
        label among ``labels``, what always answering it scores).
    """
    labels = np.asarray(labels)
    if labels.shape != (len(windows),):
        raise ValueError(f"labels must be (N,) = ({len(windows)},), got shape {labels.shape}")
    predicted = classifier.logits(windows).argmax(axis=1)  # (N,)
    return {
        "accuracy": float((predicted == labels).mean()),
        "n": float(len(labels)),
        "chance_uniform": 1.0 / len(classifier.labels),
        "majority_rate": float(np.bincount(labels).max() / len(labels)),
    }


def text_audio_retrieval(
    model: TextAudioModel, windows: np.ndarray, texts: Sequence[str], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """:func:`~wavefoundry.eval.retrieval.retrieval_recall` of windows (N, 1, T) against their N texts, over the
    whole set (every other item is a candidate)."""
    if len(texts) != len(windows):
        raise ValueError(f"{len(windows)} windows but {len(texts)} texts")
    return retrieval_recall(model.embed_audio(windows), model.embed_text(texts), ks)
