"""PaSST adapters for KL_passt: an :class:`~wavefoundry.eval.embedders.AudioClassifier` over the released AudioSet
checkpoint, its 768-d embedding as a :class:`~wavefoundry.eval.embedders.FrameEmbedder`, and the loading code.

The checkpoint is ``passt-s-f128-p16-s10-ap.476-swa.pt`` (PaSST-S, ``passt_s_swa_p16_128_ap476``, release
``v0.0.1-audioset`` of kkoutini/PaSST): a plain PyTorch state dict of the network (``patch_embed.proj.weight``,
``cls_token``, ``dist_token``, ``new_pos_embed``, ``freq_new_pos_embed``, ``time_new_pos_embed``, ``blocks.{i}.*``,
``norm.*``, ``head.0.*``, ``head.1.*``, ``head_dist.*``). It is read from a local path only, with
``torch.load(weights_only=True)`` (or safetensors), and must match the network key for key.

Windows are mono 32 kHz, at most 10 s (the time positional embedding covers 10 s); shorter windows (down to
4801 samples) use the first time embeddings, as the reference does. The windowing policy is the metric's
(:mod:`wavefoundry.eval.kl`); ``hop_s`` defaults to 5 s, stable-audio-metrics' ``passt_kld`` (10 s windows,
5 s overlap).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wavefoundry.eval.embedders import EmbedderInfo, file_sha256, prepare, split_windows
from wavefoundry.understanding.passt import PaSST, PaSSTConfig

logger = logging.getLogger(__name__)

#: The released AudioSet checkpoint this adapter expects (kkoutini/PaSST release v0.0.1-audioset).
PASST_CHECKPOINT = "passt-s-f128-p16-s10-ap.476-swa.pt"
PASST_NAME = "passt_s_swa_p16_128_ap476"
#: Containers a checkpoint may wrap its state dict in (Lightning, DeiT-style, hear21passt's wrapper).
WRAPPER_KEYS = ("state_dict", "model", "net")
#: Prefixes stripped when every network key carries one (``PasstBasicWrapper.net``, DDP, Lightning).
PREFIXES = ("net.", "module.", "model.")
#: Wrapper entries that are not network weights: hear21passt's ``PasstBasicWrapper.device_proxy``.
IGNORED_KEYS = ("device_proxy",)
_SHOW = 5


class PaSSTLoadError(ValueError):
    """A PaSST checkpoint or label file cannot be used: unreadable, or not fitting the network."""


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    """Find the name -> tensor mapping inside a loaded checkpoint object."""
    for _ in range(3):  # e.g. {"state_dict": {"model": {...}}}
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, Tensor) for v in obj.values()):
            return dict(obj)
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    raise PaSSTLoadError(f"{path}: no state dict of tensors found (looked under {', '.join(WRAPPER_KEYS)})")


def _strip_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    state = {k: v for k, v in state.items() if k not in IGNORED_KEYS}
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def read_passt_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a PaSST checkpoint (``.pt``/``.pth``/``.ckpt`` state dict, or ``.safetensors``) from a local path.

    Known wrappers (:data:`WRAPPER_KEYS`) are unwrapped and a common prefix (:data:`PREFIXES`) is stripped.

    Raises:
        PaSSTLoadError: the file is missing, unreadable, or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise PaSSTLoadError(f"{path}: no such checkpoint file (expected {PASST_CHECKPOINT} or a .safetensors)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt file, or one that needs unsafe unpickling
        raise PaSSTLoadError(f"{path}: cannot read the checkpoint ({type(e).__name__}: {e})") from e
    return _strip_prefix(_unwrap(obj, path))


def _head(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(sorted(keys)[:_SHOW]) + more


def check_passt_state(state: Mapping[str, Tensor], model: PaSST, what: str) -> None:
    """Raise unless ``state`` has exactly the keys and shapes of ``model``'s state dict.

    Raises:
        PaSSTLoadError: naming the first missing keys, unexpected keys and wrong shapes.
    """
    expected = {k: v.shape for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(s)}" for k, s in expected.items() if k in state and state[k].shape != s
    ]
    found = (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
    problems = [f"{label}: {_head(keys)}" for label, keys in found if keys]
    if problems:
        raise PaSSTLoadError(f"{what} does not fit the PaSST network: " + "; ".join(problems))


def load_passt_model(path: str | Path, *, config: PaSSTConfig | None = None) -> PaSST:
    """Build :class:`PaSST` (default: PaSST-S) and load a checkpoint into it strictly; returned in eval mode."""
    state = read_passt_state_dict(path)
    model = PaSST(config or PaSSTConfig())
    check_passt_state(state, model, str(path))
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise PaSSTLoadError(f"{path}: non-finite weights in {_head(bad)}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def read_audioset_labels(path: str | Path, n_classes: int = 527) -> tuple[str, ...]:
    """Display names from AudioSet's ``class_labels_indices.csv`` (columns ``index,mid,display_name``).

    Raises:
        PaSSTLoadError: missing columns, indices not ``0 .. n_classes - 1`` in order, or a wrong count.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as e:
        raise PaSSTLoadError(f"{path}: cannot read the label file ({e})") from e
    if not rows or not {"index", "mid", "display_name"} <= set(rows[0]):
        raise PaSSTLoadError(f"{path}: expected a CSV with columns index,mid,display_name")
    if len(rows) != n_classes:
        raise PaSSTLoadError(f"{path}: {len(rows)} labels, but the classifier has {n_classes} outputs")
    for i, row in enumerate(rows):
        if row["index"].strip() != str(i):
            raise PaSSTLoadError(f"{path}: row {i + 1} has index {row['index']!r}, expected {i}")
    return tuple(row["display_name"].strip() for row in rows)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class PaSSTClassifier:
    """AudioSet PaSST as an :class:`~wavefoundry.eval.embedders.AudioClassifier` (527 logits per window).

    Args:
        model: a :class:`PaSST` network (it is put in eval mode; its device is used).
        weights_sha256: hash of the weights file, recorded in :attr:`info`.
        labels: one name per output; default ``"0" .. "526"``.
        name: written into :attr:`info`.
        window_s: longest window (the time embedding covers 10 s).
        hop_s: the hop recorded in :attr:`info` for the metric's windowing (5 s as stable-audio-metrics).
        batch_size: windows per forward pass.
    """

    def __init__(
        self,
        model: PaSST,
        *,
        weights_sha256: str,
        labels: Sequence[str] | None = None,
        name: str = PASST_NAME,
        window_s: float = 10.0,
        hop_s: float = 5.0,
        batch_size: int = 8,
    ) -> None:
        n = model.config.n_classes
        self.labels = tuple(str(i) for i in range(n)) if labels is None else tuple(labels)
        if len(self.labels) != n:
            raise ValueError(f"{len(self.labels)} labels for a classifier with {n} outputs")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.batch_size = batch_size
        sr = model.config.mel.sample_rate
        self.info = EmbedderInfo(name=name, weights_sha256=weights_sha256, sample_rate=sr, window_s=window_s,
                                 hop_s=hop_s, channel_mode="mono")  # fmt: skip
        self.dim = model.config.embed_dim

    @property
    def window(self) -> int:
        """Longest window in samples (320000 for 10 s at 32 kHz)."""
        return round(self.info.window_s * self.info.sample_rate)

    def _check(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows)
        if windows.ndim != 3 or windows.shape[1] != 1:
            raise ValueError(f"PaSST expects mono windows (N, 1, T), got shape {windows.shape}")
        N, _, T = windows.shape
        lo = self.model.config.min_samples
        if N == 0:
            raise ValueError("no windows given")
        if not lo <= T <= self.window:
            sr = self.info.sample_rate
            raise ValueError(f"PaSST windows must have {lo} .. {self.window} samples at {sr} Hz, got {T}")
        if not np.isfinite(windows).all():
            raise ValueError("windows contain NaN or infinite samples")
        return np.ascontiguousarray(windows[:, 0], dtype=np.float32)  # (N, T)

    def _run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        audio = self._check(windows)
        logits, feats = [], []
        device = _device(self.model)
        self.model.eval()
        with torch.inference_mode():
            for s in range(0, len(audio), self.batch_size):
                lg, ft = self.model(torch.from_numpy(audio[s : s + self.batch_size]).to(device))
                logits.append(lg.double().cpu().numpy())
                feats.append(ft.double().cpu().numpy())
        return np.concatenate(logits), np.concatenate(feats)

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """AudioSet logits (N, 527) float64 of mono 32 kHz windows (N, 1, T); softmax them for KL_passt."""
        return self._run(windows)[0]

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """Pre-head embeddings (N, 768) float64, ``(cls + dist) / 2`` after the final norm, of windows (N, 1, T)."""
        return self._run(windows)[1]


class PaSSTEmbedder:
    """PaSST's pre-head embedding as a :class:`~wavefoundry.eval.embedders.FrameEmbedder`: one 768-d vector per
    10 s window every ``hop_s`` (short files give one zero-padded window)."""

    def __init__(self, classifier: PaSSTClassifier, *, hop_s: float = 5.0) -> None:
        self.classifier = classifier
        base = classifier.info
        self.info = EmbedderInfo(name=f"{base.name}-embed", weights_sha256=base.weights_sha256,
                                 sample_rate=base.sample_rate, window_s=base.window_s, hop_s=hop_s,
                                 channel_mode="mono")  # fmt: skip
        self.dim = classifier.dim

    def embed(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Embeddings (N, 768) float64 of one file's audio (C, T) at rate ``sr``."""
        mono = prepare(audio, sr, self.info)  # (1, T') at 32 kHz
        if mono.shape[1] == 0:
            raise ValueError("audio is empty")
        hop = round(self.info.hop_s * self.info.sample_rate)
        return self.classifier.embed_windows(split_windows(mono, self.classifier.window, hop))


def load_passt(
    path: str | Path,
    *,
    labels_csv: str | Path | None = None,
    config: PaSSTConfig | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
) -> PaSSTClassifier:
    """Load the PaSST AudioSet classifier from a local checkpoint (see :data:`PASST_CHECKPOINT`).

    Args:
        path: the checkpoint (state dict ``.pt`` or ``.safetensors``).
        labels_csv: AudioSet's ``class_labels_indices.csv`` for label names; default ``"0" .. "526"``.
        config: the network shape; default PaSST-S.
        device: where the network runs.
        batch_size: windows per forward pass.
    """
    model = load_passt_model(path, config=config).to(device)
    labels = None if labels_csv is None else read_audioset_labels(labels_csv, model.config.n_classes)
    logger.info("loaded PaSST from %s", path)
    return PaSSTClassifier(model, weights_sha256=file_sha256(path), labels=labels, batch_size=batch_size)
