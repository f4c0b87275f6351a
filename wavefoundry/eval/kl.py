"""KL divergence between the class distributions an audio classifier gives generated and reference audio.

KL_passt (Kilgour-style class-distribution metric; PaSST, Koutini et al. 2022, as a judge): each generated file is
paired with the reference file of the same id, both are turned into label distributions by one classifier, and the
KL divergence between the two is averaged over the pairs. Two published conventions differ in windowing, in what
is averaged and in the direction of the divergence; both are :data:`KL_POLICIES` (see docs/kl_and_clap.md):

* ``"stable-audio-metrics"`` (Stability-AI/stable-audio-metrics ``src/passt_kld.py``): mono at the classifier
  rate, peak-normalised to -1 dBFS, 10 s windows every 5 s (the last one zero-padded), logits averaged over the
  windows then one softmax per file, ``KL(generated || reference)`` averaged over files.
* ``"audiocraft"`` (facebookresearch/audiocraft ``audiocraft/metrics/kld.py``): mono at the classifier rate,
  non-overlapping 10 s segments (the last one fed unpadded, dropped if <= 0.15 s), one softmax per segment, the
  i-th generated segment paired with the i-th reference segment, ``KL(reference || generated)`` averaged over all
  segment pairs of all files.

Both add ``eps = 1e-6`` to the second distribution inside the log (``F.kl_div((q + eps).log(), p)`` is
``sum p (log p - log(q + eps))``, i.e. ``KL(p || q + eps)``; ``0 log 0 = 0``). Probabilities are float64.
Functions work one file at a time, so a caller can stream files from disk.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wavefoundry.audio.dsp import peak
from wavefoundry.eval.embedders import AudioClassifier, prepare, split_windows

logger = logging.getLogger(__name__)

#: "generated||reference" is KL(P_gen || P_ref) (stable-audio-metrics); "reference||generated" is audiocraft's.
DIRECTIONS: tuple[str, ...] = ("generated||reference", "reference||generated")
#: How window logits become a file's distribution: softmax of the mean logit, mean of the window softmaxes, or
#: one distribution per segment ("segments": kept apart and paired segment by segment, as audiocraft does).
AGGREGATES: tuple[str, ...] = ("mean-logits", "mean-probs", "segments")
#: What happens to a final partial window: zero-padded to the full window, fed as it is (shorter), or dropped.
LAST_WINDOW: tuple[str, ...] = ("pad", "unpadded", "drop")
#: Largest |sum(p) - 1| accepted for a distribution handed to :func:`paired_kl` (float32 storage of 527 labels).
SUM_TOLERANCE = 1e-4


@dataclass(frozen=True, kw_only=True)
class KLPolicy:
    """How a file becomes a label distribution, and which KL is taken.

    Attributes:
        window_s: analysis window (the classifier's receptive field: 10 s for PaSST).
        hop_s: window start spacing; ``hop_s == window_s`` is non-overlapping segments.
        aggregate: one of :data:`AGGREGATES`.
        direction: one of :data:`DIRECTIONS`.
        last_window: one of :data:`LAST_WINDOW`.
        min_window_s: a window with at most this much real audio (not padding) is dropped; a file with no window
            left is rejected.
        peak_dbfs: peak-normalise the prepared (mono, resampled) file to this level first; None keeps the level.
        eps: added to the second distribution inside the log (see :func:`kl_divergence`).
    """

    window_s: float
    hop_s: float
    aggregate: str
    direction: str
    last_window: str = "pad"
    min_window_s: float = 0.0
    peak_dbfs: float | None = None
    eps: float = 1e-6

    def __post_init__(self) -> None:
        for name, value, valid in (
            ("aggregate", self.aggregate, AGGREGATES),
            ("direction", self.direction, DIRECTIONS),
            ("last_window", self.last_window, LAST_WINDOW),
        ):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        if not (self.window_s > 0 and self.hop_s > 0):
            raise ValueError(f"window_s and hop_s must be > 0, got {self.window_s}, {self.hop_s}")
        if not 0 <= self.min_window_s < self.window_s:
            raise ValueError(f"min_window_s must be in [0, window_s), got {self.min_window_s}")
        if not (0 <= self.eps < 1):
            raise ValueError(f"eps must be in [0, 1), got {self.eps}")
        if self.peak_dbfs is not None and not (math.isfinite(self.peak_dbfs) and self.peak_dbfs <= 0):
            raise ValueError(f"peak_dbfs must be a finite level <= 0 dBFS or None, got {self.peak_dbfs}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_window(self, window_s: float) -> KLPolicy:
        """The same convention for a classifier with another receptive field: hop and minimum scale with the window.

        E.g. stable-audio-metrics for a 4 s tagger: 4 s windows every 2 s, files of <= 0.6 s rejected.
        """
        ratio = window_s / self.window_s
        return dataclasses.replace(
            self, window_s=window_s, hop_s=self.hop_s * ratio, min_window_s=self.min_window_s * ratio
        )


#: The two published conventions (docs/kl_and_clap.md has the line-by-line reading of both).
KL_POLICIES: dict[str, KLPolicy] = {
    # passt_kld.py: librosa mono 32 kHz, pyln peak -1 dB, window 10 s / overlap 5 s, pad windows > 15 % of 10 s,
    # collect='mean' of logits then softmax, F.kl_div((ref + 1e-6).log(), gen) = KL(gen || ref + 1e-6).
    "stable-audio-metrics": KLPolicy(
        window_s=10.0,
        hop_s=5.0,
        aggregate="mean-logits",
        direction="generated||reference",
        last_window="pad",
        min_window_s=1.5,
        peak_dbfs=-1.0,
    ),
    # kld.py: torch.split into 10 s segments, segments <= 0.15 s dropped, softmax per segment,
    # kl_div((gen + 1e-6).log(), ref).sum(-1) = KL(ref || gen + 1e-6), averaged over all segment pairs.
    "audiocraft": KLPolicy(
        window_s=10.0,
        hop_s=10.0,
        aggregate="segments",
        direction="reference||generated",
        last_window="unpadded",
        min_window_s=0.15,
    ),
}


def kl_policy(name: str) -> KLPolicy:
    """The named policy of :data:`KL_POLICIES`; an unknown name raises ValueError listing the valid ones."""
    if name not in KL_POLICIES:
        raise ValueError(f"unknown KL policy {name!r}; valid: {', '.join(KL_POLICIES)}")
    return KL_POLICIES[name]


def window_plan(n_samples: int, sr: int, policy: KLPolicy) -> list[tuple[int, int]]:
    """The windows of a file: (start sample, samples of real audio) for each window that is kept.

    Full windows start every hop; with ``last_window`` "pad" or "unpadded" a final window covers the samples
    the full ones miss (the rule of :func:`split_windows`); a file shorter than one window is one window (padded
    unless "unpadded"). Windows with at most ``min_window_s`` of real audio are dropped, as audiocraft drops
    segments of <= 0.15 s.
    """
    window, hop = round(policy.window_s * sr), round(policy.hop_s * sr)
    if window < 1 or hop < 1:
        raise ValueError(f"window {policy.window_s} s / hop {policy.hop_s} s is under one sample at {sr} Hz")
    # int() as audiocraft's int(0.15 * 32000); the nudge keeps 0.15 * sr from flooring one sample low.
    min_samples = int(policy.min_window_s * sr + 1e-9)
    if n_samples <= window:
        starts = [0]
    else:
        n_full = 1 + (n_samples - window) // hop
        starts = [k * hop for k in range(n_full)]
        if policy.last_window != "drop" and starts[-1] + window < n_samples:
            starts.append(n_full * hop)
    plan = [(s, min(window, n_samples - s)) for s in starts]
    return [(s, real) for s, real in plan if real > min_samples]


def _windows(audio: np.ndarray, sr: int, policy: KLPolicy) -> list[np.ndarray]:
    """The kept windows as batches: [(N, C, window)] plus, for "unpadded", [(1, C, real)] for a short last one."""
    n = audio.shape[1]
    plan = window_plan(n, sr, policy)
    if not plan:
        raise ValueError(
            f"audio of {n / sr:.3f} s has no window with more than {policy.min_window_s} s of audio to classify"
        )
    window, hop = round(policy.window_s * sr), round(policy.hop_s * sr)
    # Every window is zero-padded to full length except a short last one under "unpadded".
    full = [s for s, real in plan if real == window or policy.last_window != "unpadded"]
    batches = []
    if full:
        # split_windows of the span that the kept padded/full windows cover gives exactly those windows.
        first, last = full[0], full[-1]
        span = audio[:, first : last + window]
        wins = split_windows(span, window, hop, pad_last=True)  # (N', C, window)
        batches.append(wins[[(s - first) // hop for s in full]])  # (N, C, window)
    short = [(s, real) for s, real in plan if real < window and policy.last_window == "unpadded"]
    for s, real in short:
        batches.append(audio[None, :, s : s + real])  # (1, C, real): audiocraft feeds the last segment as is
    return batches


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis in float64 (max-subtracted, so large logits do not overflow)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def window_logits(
    classifier: AudioClassifier, audio: np.ndarray, sr: int, policy: KLPolicy, *, batch_size: int = 16
) -> np.ndarray:
    """Logits (S, n_labels) float64 of the kept windows of one file (C, T) at rate ``sr``."""
    info = classifier.info
    if not math.isclose(info.window_s, policy.window_s):
        logger.warning("%s takes %s s windows but the KL policy cuts %s s", info.name, info.window_s, policy.window_s)
    x = prepare(audio, sr, info)  # (C', T') at the classifier's rate and channel mode
    if policy.peak_dbfs is not None:
        p = peak(x)
        if p == 0.0:
            raise ValueError("audio is digital silence: peak normalisation to a level is undefined")
        x = x * np.float32(10 ** (policy.peak_dbfs / 20) / p)
    n_labels = len(classifier.labels)
    out = []
    for batch in _windows(x, info.sample_rate, policy):
        for i in range(0, batch.shape[0], batch_size):
            chunk = np.ascontiguousarray(batch[i : i + batch_size])  # (n, C', window)
            logits = np.asarray(classifier.logits(chunk), dtype=np.float64)
            if logits.shape != (chunk.shape[0], n_labels):
                raise ValueError(
                    f"{info.name} returned logits of shape {logits.shape} for {chunk.shape[0]} windows "
                    f"and {n_labels} labels"
                )
            out.append(logits)
    logits = np.concatenate(out)  # (S, n_labels)
    bad = int((~np.isfinite(logits)).any(axis=1).sum())
    if bad:
        raise ValueError(f"{info.name} returned NaN or infinite logits for {bad} of {len(logits)} windows")
    return logits


def file_distribution(
    classifier: AudioClassifier, audio: np.ndarray, sr: int, policy: KLPolicy, *, batch_size: int = 16
) -> np.ndarray:
    """Label distribution of one file (C, T) at rate ``sr`` under ``policy``, float64.

    Returns:
        (n_labels,) probabilities for "mean-logits" and "mean-probs"; (S, n_labels), one row per kept segment in
        time order, for "segments".

    Raises:
        ValueError (AudioError included): empty, NaN or wrong-shaped audio, silence under peak normalisation, no
        window left, or non-finite / wrong-shaped logits.
    """
    logits = window_logits(classifier, audio, sr, policy, batch_size=batch_size)  # (S, n_labels)
    if policy.aggregate == "mean-logits":
        return np.exp(_log_softmax(logits.mean(axis=0)))  # (n_labels,)
    probs = np.exp(_log_softmax(logits))  # (S, n_labels)
    return probs.mean(axis=0) if policy.aggregate == "mean-probs" else probs


def distributions(
    classifier: AudioClassifier,
    items: Iterable[tuple[str, np.ndarray, int]],
    policy: KLPolicy,
    *,
    batch_size: int = 16,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Distributions of a stream of (id, audio (C, T), sr) items, one file in memory at a time.

    Returns:
        (distribution by id, reject reason by id). A bad file is a reject with its reason; it never stops the run.
    """
    probs: dict[str, np.ndarray] = {}
    rejects: dict[str, str] = {}
    for key, audio, sr in items:
        if key in probs or key in rejects:
            rejects[key] = f"duplicate id {key!r}"
            probs.pop(key, None)
            continue
        try:
            probs[key] = file_distribution(classifier, audio, sr, policy, batch_size=batch_size)
        except ValueError as err:
            rejects[key] = str(err)
            logger.warning("KL: %s rejected: %s", key, err)
    return probs, rejects


def kl_divergence(p: np.ndarray, q: np.ndarray, *, eps: float = 0.0) -> float:
    """KL(p || q) = sum_i p_i log(p_i / (q_i + eps)) in nats, with 0 log 0 = 0.

    ``eps`` is added to q only and q is not renormalised: this is ``F.kl_div((q + eps).log(), p, reduction="sum")``,
    the expression of both reference implementations (eps = 1e-6). It makes KL(p, p) slightly negative
    (about -n_labels * eps); with eps = 0, KL(p, p) = 0 exactly and a q_i = 0 where p_i > 0 gives inf.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64) + eps
    if p.shape != q.shape:
        raise ValueError(f"distributions differ in shape: {p.shape} vs {q.shape}")
    pos = p > 0
    with np.errstate(divide="ignore"):
        terms = p[pos] * (np.log(p[pos]) - np.log(q[pos]))
    return float(terms.sum())


def _check_distribution(p: Any, what: str) -> np.ndarray:
    """(S, n_labels) float64 view of a (n_labels,) or (S, n_labels) distribution, or ValueError naming the fault."""
    p = np.asarray(p, dtype=np.float64)
    p = p[None] if p.ndim == 1 else p  # (S, n_labels)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 2:
        raise ValueError(f"{what}: expected (n_labels,) or (S, n_labels) probabilities, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{what}: contains NaN or infinite probabilities")
    if (p < 0).any():
        raise ValueError(f"{what}: contains negative probabilities")
    err = float(np.abs(p.sum(axis=1) - 1).max())
    if err > SUM_TOLERANCE:
        raise ValueError(f"{what}: probabilities sum to 1 +- {err:.2g} (tolerance {SUM_TOLERANCE})")
    return p


@dataclass(frozen=True, kw_only=True)
class KLResult:
    """Paired KL over the ids present on both sides.

    ``mean`` is in the policy's direction; ``mean_reverse`` the other way (audiocraft reports both as kld_pq and
    kld_qp). With "segments" both are means over all segment pairs (long files weigh more), ``per_item`` the mean
    over each file's pairs.
    """

    mean: float
    mean_reverse: float
    direction: str
    n_items: int
    n_segments: int
    per_item: dict[str, float]
    rejects: dict[str, str] = field(default_factory=dict)
    missing_generated: tuple[str, ...] = ()
    missing_reference: tuple[str, ...] = ()
    policy: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["missing_generated"], out["missing_reference"] = list(self.missing_generated), list(self.missing_reference)
        return out


def _pair_kl(gen: np.ndarray, ref: np.ndarray, policy: KLPolicy) -> tuple[np.ndarray, np.ndarray]:
    """KL per segment pair in the policy's direction and reversed: two (S,) arrays."""
    if gen.shape != ref.shape:
        hint = " (different segment counts: trim both files to one length)" if gen.shape[1] == ref.shape[1] else ""
        raise ValueError(f"generated and reference distributions differ in shape {gen.shape} vs {ref.shape}{hint}")
    p, q = (gen, ref) if policy.direction == "generated||reference" else (ref, gen)
    fwd = np.array([kl_divergence(a, b, eps=policy.eps) for a, b in zip(p, q, strict=True)])  # (S,)
    rev = np.array([kl_divergence(b, a, eps=policy.eps) for a, b in zip(p, q, strict=True)])  # (S,)
    if not (np.isfinite(fwd).all() and np.isfinite(rev).all()):
        raise ValueError("KL is infinite: a label has probability 0 on one side only; use eps > 0")
    return fwd, rev


def paired_kl(generated: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], policy: KLPolicy) -> KLResult:
    """Mean KL between the generated and reference distribution of each id present on both sides.

    Args:
        generated, reference: distribution by id, as :func:`file_distribution` returns them under ``policy``.
        policy: gives the direction, eps and whether distributions are per segment.

    Returns:
        :class:`KLResult`; ids on one side only are listed, a bad pair is a reject with its reason.

    Raises:
        ValueError: an empty side, no common id, or no valid pair.
    """
    if not generated or not reference:
        raise ValueError(f"empty input: {len(generated)} generated and {len(reference)} reference distributions")
    common = [k for k in generated if k in reference]
    if not common:
        raise ValueError(
            f"no id in common between {len(generated)} generated and {len(reference)} reference distributions "
            f"(e.g. {next(iter(generated))!r} vs {next(iter(reference))!r})"
        )
    per_item: dict[str, float] = {}
    fwd_all, rev_all, rejects = [], [], {}
    for key in common:
        try:
            gen = _check_distribution(generated[key], f"generated {key!r}")
            ref = _check_distribution(reference[key], f"reference {key!r}")
            if policy.aggregate != "segments" and (gen.shape[0] > 1 or ref.shape[0] > 1):
                raise ValueError(f"{policy.aggregate!r} expects one distribution per file, got segments")
            fwd, rev = _pair_kl(gen, ref, policy)
        except ValueError as err:
            rejects[key] = str(err)
            logger.warning("KL: %s rejected: %s", key, err)
            continue
        per_item[key] = float(fwd.mean())
        fwd_all.append(fwd)
        rev_all.append(rev)
    if not per_item:
        first = next(iter(rejects.items()))
        raise ValueError(f"no valid pair among {len(common)} common ids; first reject {first[0]!r}: {first[1]}")
    fwd, rev = np.concatenate(fwd_all), np.concatenate(rev_all)  # (total segments,)
    return KLResult(
        mean=float(fwd.mean()),
        mean_reverse=float(rev.mean()),
        direction=policy.direction,
        n_items=len(per_item),
        n_segments=int(fwd.size),
        per_item=per_item,
        rejects=rejects,
        missing_generated=tuple(k for k in reference if k not in generated),
        missing_reference=tuple(k for k in generated if k not in reference),
        policy=policy.to_dict(),
    )
