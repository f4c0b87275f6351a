"""CLAP score: mean cosine similarity between the text embedding of each prompt and the audio embedding of the
audio generated from it (Make-An-Audio, Huang et al. 2023; audiocraft ``CLAPTextConsistencyMetric``;
stable-audio-metrics ``src/clap_score.py``), with a text-audio model such as LAION-CLAP.

The model takes windows of ``model.info.window_s`` (10 s at 48 kHz for LAION-CLAP). How a longer file becomes one
embedding is an explicit, reproducible :class:`ClapPolicy` (docs/kl_and_clap.md):

* ``"chunk-mean"``: every window of the file (hop = window, the last partial window filled), each embedding
  L2-normalised, averaged with weights proportional to the real audio in each window, then L2-normalised.
* ``"random-crop"``: ``n_crops`` crops at uniform random offsets (LAION-CLAP's own ``rand_trunc``), seeded from
  ``(seed, key)`` so a file gets the same crops whatever the order or the set of files; averaged the same way.

A file no longer than one window is one window in both modes, filled by repetition then zeros (LAION-CLAP's
``repeatpad``). LAION-CLAP itself crops long audio at an unseeded random offset (or, for fusion checkpoints,
takes unseeded random local chunks), so its long-audio numbers are not reproducible; ours are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wavefoundry.audio.dsp import peak
from wavefoundry.eval.embedders import TextAudioModel, prepare, split_windows

logger = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("chunk-mean", "random-crop")
#: How a window with less audio than the window is filled: LAION-CLAP "repeatpad" (repeat whole copies, then
#: zeros) or "zeros".
FILLS: tuple[str, ...] = ("repeatpad", "zeros")
#: Texts per ``embed_text`` call (stable-audio-metrics batches 64 prompts).
TEXT_BATCH = 64
#: An embedding with an L2 norm at or below this is degenerate (its direction, hence the cosine, is undefined).
MIN_NORM = 1e-12


@dataclass(frozen=True, kw_only=True)
class ClapPolicy:
    """How one file becomes one audio embedding.

    Attributes:
        mode: one of :data:`MODES`.
        n_crops: crops per file in "random-crop" mode.
        seed: with the file's key, seeds the crops of "random-crop".
        fill: one of :data:`FILLS`, for a file shorter than a window and the last chunk of "chunk-mean".
        peak_dbfs: peak-normalise the prepared (mono, resampled) file to this level first; None keeps the level.
        quantize_int16: round-trip through int16 as LAION-CLAP's examples do (clip to [-1, 1], x * 32767
            truncated, / 32767).
    """

    mode: str = "chunk-mean"
    n_crops: int = 1
    seed: int = 0
    fill: str = "repeatpad"
    peak_dbfs: float | None = None
    quantize_int16: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; valid: {', '.join(MODES)}")
        if self.fill not in FILLS:
            raise ValueError(f"unknown fill {self.fill!r}; valid: {', '.join(FILLS)}")
        if not (isinstance(self.n_crops, int) and self.n_crops >= 1):
            raise ValueError(f"n_crops must be an int >= 1, got {self.n_crops!r}")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        if self.peak_dbfs is not None and not (math.isfinite(self.peak_dbfs) and self.peak_dbfs <= 0):
            raise ValueError(f"peak_dbfs must be a finite level <= 0 dBFS or None, got {self.peak_dbfs}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Named policies (docs/kl_and_clap.md). Up to one window (10 s for LAION-CLAP) all three embed the same window.
CLAP_POLICIES: dict[str, ClapPolicy] = {
    "chunk-mean": ClapPolicy(),
    # clap_score.py: librosa mono 48 kHz, pyln peak -1 dB, int16 round trip; the deterministic chunk mean stands
    # in for the fusion checkpoint's unseeded random chunks on long audio.
    "stable-audio-metrics": ClapPolicy(peak_dbfs=-1.0, quantize_int16=True),
    # clap_consistency.py: mono 48 kHz, no normalisation, use_tensor=True (no quantisation); a long file gets
    # LAION-CLAP's rand_trunc crop, here one seeded crop.
    "audiocraft": ClapPolicy(mode="random-crop", n_crops=1),
}


def clap_policy(name: str) -> ClapPolicy:
    """The named policy of :data:`CLAP_POLICIES`; an unknown name raises ValueError listing the valid ones."""
    if name not in CLAP_POLICIES:
        raise ValueError(f"unknown CLAP policy {name!r}; valid: {', '.join(CLAP_POLICIES)}")
    return CLAP_POLICIES[name]


def crop_starts(n_samples: int, window: int, policy: ClapPolicy, key: str) -> np.ndarray:
    """Start samples (n_crops,) of the random crops of a file of ``n_samples``: uniform in [0, n_samples - window].

    The generator is seeded from ``policy.seed`` and the SHA-256 of ``key`` only, so a file's crops do not depend
    on which other files are scored or in what order.
    """
    words = np.frombuffer(hashlib.sha256(key.encode("utf-8")).digest()[:16], dtype="<u4")
    rng = np.random.default_rng([policy.seed, *words.tolist()])
    return rng.integers(0, max(n_samples - window, 0) + 1, size=policy.n_crops)


def _fill(chunk: np.ndarray, window: int, fill: str) -> np.ndarray:
    """(C, r) with r <= window -> (C, window): whole repeats (for "repeatpad"), then zeros."""
    C, r = chunk.shape
    reps = window // r if fill == "repeatpad" else 1
    out = np.zeros((C, window), dtype=chunk.dtype)
    out[:, : reps * r] = np.tile(chunk, (1, reps))  # (C, reps * r)
    return out


def audio_windows(x: np.ndarray, window: int, policy: ClapPolicy, key: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The windows of one prepared file (C, T) and their weights: ((N, C, window), (N,)).

    A weight is the window's share of real audio (1 for full windows and crops).
    """
    n = x.shape[1]
    if n <= window:
        return _fill(x, window, policy.fill)[None], np.ones(1)  # (1, C, window)
    if policy.mode == "random-crop":
        if key is None:
            raise ValueError("random-crop needs the file's key to seed its crops")
        starts = crop_starts(n, window, policy, key)
        return np.stack([x[:, s : s + window] for s in starts]), np.ones(len(starts))  # (n_crops, C, window)
    wins = split_windows(x, window, window, pad_last=True)  # (N, C, window)
    last = (wins.shape[0] - 1) * window
    weights = np.ones(wins.shape[0])
    if last + window > n:
        wins[-1] = _fill(x[:, last:], window, policy.fill)
        weights[-1] = (n - last) / window
    return wins, weights


def _unit_rows(emb: Any, n: int, dim: int, what: str) -> np.ndarray:
    """Check (n, dim) embeddings are finite and non-degenerate; return them L2-normalised, float64."""
    emb = np.asarray(emb, dtype=np.float64)
    if emb.shape != (n, dim):
        raise ValueError(f"{what}: expected embeddings of shape {(n, dim)}, got {emb.shape}")
    if not np.isfinite(emb).all():
        raise ValueError(f"{what}: NaN or infinite embedding")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)  # (n, 1)
    if (norms <= MIN_NORM).any():
        raise ValueError(f"{what}: zero-norm embedding (cosine undefined)")
    return emb / norms


def quantize_int16(x: np.ndarray) -> np.ndarray:
    """laion_clap's int16 round trip in float32: clip to [-1, 1], scale by 32767, truncate to int16, scale back."""
    scale = np.float32(32767.0)
    q = (np.clip(x.astype(np.float32), -1.0, 1.0) * scale).astype(np.int16)
    return (q / 32767.0).astype(np.float32)  # float64 division then float32, as laion_clap's int16_to_float32


def _prepare(audio: np.ndarray, sr: int, model: TextAudioModel, policy: ClapPolicy) -> np.ndarray:
    x = prepare(audio, sr, model.info)  # (C', T') at the model's rate and channel mode
    if policy.peak_dbfs is not None:
        p = peak(x)
        if p == 0.0:
            raise ValueError("audio is digital silence: peak normalisation to a level is undefined")
        x = x * np.float32(10 ** (policy.peak_dbfs / 20) / p)
    if policy.quantize_int16:
        x = quantize_int16(x)
    return x


def audio_embedding(
    model: TextAudioModel,
    audio: np.ndarray,
    sr: int,
    policy: ClapPolicy,
    *,
    key: str | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """Unit-norm audio embedding (dim,) float64 of one file (C, T) at rate ``sr``.

    Args:
        key: the file's id; required by "random-crop" (it seeds the crops), unused by "chunk-mean".

    Raises:
        ValueError (AudioError included): empty/NaN audio, silence under peak normalisation, bad embeddings.
    """
    window = round(model.info.window_s * model.info.sample_rate)
    wins, weights = audio_windows(_prepare(audio, sr, model, policy), window, policy, key)  # (N, C, W), (N,)
    rows = []
    for i in range(0, wins.shape[0], batch_size):
        chunk = np.ascontiguousarray(wins[i : i + batch_size])  # (n, C, W)
        rows.append(_unit_rows(model.embed_audio(chunk), chunk.shape[0], model.dim, f"{model.info.name} audio"))
    mean = (weights[:, None] * np.concatenate(rows)).sum(axis=0) / weights.sum()  # (dim,)
    norm = float(np.linalg.norm(mean))
    if norm <= MIN_NORM:
        raise ValueError("window embeddings cancel out: the mean audio embedding has zero norm")
    return mean / norm


def text_embeddings(
    model: TextAudioModel, text_by_id: Mapping[str, str], *, batch_size: int = TEXT_BATCH
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Unit-norm text embeddings by id, and reject reasons by id (empty text, NaN or zero embedding).

    Texts go to the model exactly as given (no template, no case change): the prompt that produced the audio.
    """
    emb: dict[str, np.ndarray] = {}
    rejects: dict[str, str] = {}
    good = []
    for key, text in text_by_id.items():
        if not isinstance(text, str) or not text.strip():
            rejects[key] = f"text: empty or not a string ({text!r})"
        else:
            good.append(key)
    for i in range(0, len(good), batch_size):
        keys = good[i : i + batch_size]
        out = np.asarray(model.embed_text([text_by_id[k] for k in keys]), dtype=np.float64)
        if out.shape != (len(keys), model.dim):
            raise ValueError(f"{model.info.name}: embed_text gave shape {out.shape} for {len(keys)} texts")
        for key, row in zip(keys, out, strict=True):
            try:
                emb[key] = _unit_rows(row[None], 1, model.dim, "text")[0]
            except ValueError as err:
                rejects[key] = str(err)
    return emb, rejects


@dataclass(frozen=True, kw_only=True)
class ClapResult:
    """CLAP score: ``mean`` cosine over the scored ids, ``per_item`` cosine by id.

    ``missing_audio``: ids with a text but no audio; ``missing_text``: ids with audio but no text.
    """

    mean: float
    n_items: int
    per_item: dict[str, float]
    rejects: dict[str, str] = field(default_factory=dict)
    missing_audio: tuple[str, ...] = ()
    missing_text: tuple[str, ...] = ()
    policy: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["missing_audio"], out["missing_text"] = list(self.missing_audio), list(self.missing_text)
        return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two non-degenerate vectors (D,) in float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"embeddings must be two vectors of one size, got shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("NaN or infinite embedding")
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na <= MIN_NORM or nb <= MIN_NORM:
        raise ValueError("zero-norm embedding (cosine undefined)")
    return float(a @ b) / (na * nb)


def clap_score_from_embeddings(audio_emb: Mapping[str, np.ndarray], text_emb: Mapping[str, np.ndarray]) -> ClapResult:
    """Mean cosine between the audio and text embedding of every id present on both sides.

    Raises:
        ValueError: an empty side, no common id, or no valid pair.
    """
    if not audio_emb or not text_emb:
        raise ValueError(f"empty input: {len(audio_emb)} audio and {len(text_emb)} text embeddings")
    common = [k for k in audio_emb if k in text_emb]
    if not common:
        raise ValueError(
            f"no id in common between {len(audio_emb)} audio and {len(text_emb)} text embeddings "
            f"(e.g. {next(iter(audio_emb))!r} vs {next(iter(text_emb))!r})"
        )
    per_item, rejects = {}, {}
    for key in common:
        try:
            per_item[key] = cosine(audio_emb[key], text_emb[key])
        except ValueError as err:
            rejects[key] = str(err)
    if not per_item:
        first = next(iter(rejects.items()))
        raise ValueError(f"no valid pair among {len(common)} common ids; first reject {first[0]!r}: {first[1]}")
    return ClapResult(
        mean=float(np.mean(list(per_item.values()))),
        n_items=len(per_item),
        per_item=per_item,
        rejects=rejects,
        missing_audio=tuple(k for k in text_emb if k not in audio_emb),
        missing_text=tuple(k for k in audio_emb if k not in text_emb),
    )


def clap_score(
    model: TextAudioModel,
    audio_by_id: Mapping[str, tuple[np.ndarray, int]] | Iterable[tuple[str, np.ndarray, int]],
    text_by_id: Mapping[str, str],
    policy: ClapPolicy,
    *,
    batch_size: int = 16,
) -> ClapResult:
    """CLAP score of generated audio against the prompts that produced it.

    Args:
        audio_by_id: {id: (audio (C, T), sr)} or a stream of (id, audio, sr) (one file in memory at a time).
        text_by_id: the prompt of each id.
        policy: the long-audio policy (:data:`CLAP_POLICIES`).

    Returns:
        :class:`ClapResult`; a bad file or text is a reject with its reason and never stops the run.

    Raises:
        ValueError: no texts, no audio, no common id, or no valid pair.
    """
    if not text_by_id:
        raise ValueError("empty input: no texts")
    texts, rejects = text_embeddings(model, text_by_id)
    items = ((k, a, s) for k, (a, s) in audio_by_id.items()) if isinstance(audio_by_id, Mapping) else audio_by_id
    audio_emb: dict[str, np.ndarray] = {}
    seen: set[str] = set()
    missing_text: list[str] = []
    for key, audio, sr in items:
        if key in seen:
            rejects[key] = f"duplicate id {key!r}"
            audio_emb.pop(key, None)
            continue
        seen.add(key)
        if key not in text_by_id:
            missing_text.append(key)
        elif key in texts:  # a key with a rejected text keeps the text's reason; its audio is not embedded
            try:
                audio_emb[key] = audio_embedding(model, audio, sr, policy, key=key, batch_size=batch_size)
            except ValueError as err:
                rejects[key] = str(err)
    for key, reason in rejects.items():
        logger.warning("CLAP: %s rejected: %s", key, reason)
    if not seen:
        raise ValueError("empty input: no audio")
    if not audio_emb:
        detail = f"; first reject {next(iter(rejects.items()))}" if rejects else ""
        raise ValueError(f"no audio could be scored: {len(seen)} files, {len(missing_text)} without a text{detail}")
    result = clap_score_from_embeddings(audio_emb, texts)
    return dataclasses.replace(
        result,
        rejects={**rejects, **result.rejects},
        missing_audio=tuple(k for k in text_by_id if k not in seen),
        missing_text=tuple(missing_text),
        policy=policy.to_dict(),
    )
