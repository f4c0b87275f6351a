"""Reconstruction metrics: multi-resolution STFT distance, mel distance and SI-SDR.

The numbers are those of auraloss 0.4.0 with its default parameters, so they compare with published tables:

* ``stft``: ``auraloss.freq.MultiResolutionSTFTLoss()`` (lower is better);
* ``mel``: ``auraloss.freq.MelSTFTLoss(sample_rate)`` (lower is better);
* ``sisdr``: ``-auraloss.time.SISDRLoss()`` in dB (higher is better).

A file is one ``(C, T)`` pair; its channels are separate signals, as if auraloss got a ``(C, 1, T)`` batch, and the
reduction over channels is auraloss' own (see docs/recon.md): SI-SDR and the log-magnitude terms are means over
channels, the spectral-convergence term is one ratio of norms over all channels together. Everything is computed
in float64, so the values do not depend on the input precision.
"""

from __future__ import annotations

import functools
import logging
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wavefoundry.audio.features import mel_filterbank, stft

logger = logging.getLogger(__name__)

#: (n_fft, hop, window length) of ``auraloss.freq.MultiResolutionSTFTLoss()`` defaults.
STFT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))
#: ``auraloss.freq.MelSTFTLoss`` defaults: n_fft, hop, window length, mel bands (librosa Slaney filters).
MEL_N_FFT, MEL_HOP, MEL_WIN, MEL_BINS = 1024, 256, 1024, 128
#: auraloss' epsilon: magnitude floor ``sqrt(max(|X|^2, EPS))`` and the SI-SDR guards.
EPS = 1e-8
#: Metric name -> True where higher is better.
HIGHER_IS_BETTER: dict[str, bool] = {"stft": False, "mel": False, "sisdr": True}
METRICS: tuple[str, ...] = tuple(HIGHER_IS_BETTER)
#: Default largest length difference (exclusive) that is trimmed instead of refused: the mel hop, the largest
#: hop of the metrics. A codec that pads to its own hop needs ``length_tolerance=hop``.
DEFAULT_LENGTH_TOLERANCE = MEL_HOP
#: A reference channel with zero-mean energy below this is silent: there SI-SDR's projection is dominated by
#: EPS (biased by more than 1 %), so the value would be meaningless.
SILENCE_ENERGY = 100 * EPS
#: Shortest signal: the reflect padding of the largest STFT (n_fft 2048) needs more than 1024 samples.
MIN_SAMPLES = max(n for n, _, _ in STFT_RESOLUTIONS) // 2 + 1


class ReconInputError(ValueError):
    """A reference/estimate pair cannot be scored: shapes, lengths, non-finite or silent reference."""


def _as_signal(x: Any, what: str) -> Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, Tensor) else x
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ReconInputError(f"{what} must be a non-empty (C, T) array, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ReconInputError(f"{what} must be floating point audio, got {t.dtype}")
    if not bool(torch.isfinite(t).all()):
        raise ReconInputError(f"{what} contains NaN or inf samples")
    return t.detach().to(device="cpu", dtype=torch.float64)


def prepare_pair(
    reference: Any, estimate: Any, *, length_tolerance: int = DEFAULT_LENGTH_TOLERANCE
) -> tuple[Tensor, Tensor, int]:
    """Validate a pair and trim it to a common length.

    Args:
        reference, estimate: (C, T) float arrays or tensors.
        length_tolerance: lengths that differ by fewer samples than this are both cut to the shorter one
            (the end is dropped); a larger difference is an error.

    Returns:
        (reference, estimate, trimmed): float64 (C, T) tensors and the number of samples cut.

    Raises:
        ReconInputError: not (C, T), not float, NaN/inf, channel counts differ, lengths differ by
            ``length_tolerance`` or more, or shorter than :data:`MIN_SAMPLES`.
    """
    ref, est = _as_signal(reference, "reference"), _as_signal(estimate, "estimate")
    if ref.shape[0] != est.shape[0]:
        raise ReconInputError(f"channel counts differ: reference {ref.shape[0]}, estimate {est.shape[0]}")
    diff = abs(ref.shape[1] - est.shape[1])
    if diff >= max(length_tolerance, 1):
        raise ReconInputError(
            f"lengths differ by {diff} samples (reference {ref.shape[1]}, estimate {est.shape[1]}); "
            f"only differences below {length_tolerance} are trimmed"
        )
    T = min(ref.shape[1], est.shape[1])
    if T < MIN_SAMPLES:
        raise ReconInputError(f"signals of {T} samples are too short; need at least {MIN_SAMPLES}")
    return ref[:, :T], est[:, :T], diff


def _magnitude(x: Tensor, n_fft: int, hop: int, win: int) -> Tensor:
    spec = stft(x, n_fft, hop, win, "hann")  # (C, F, N)
    return torch.sqrt(torch.clamp(spec.real.square() + spec.imag.square(), min=EPS))


def _sc_plus_log_mag(est_mag: Tensor, ref_mag: Tensor) -> Tensor:
    # auraloss STFTLoss with w_sc = w_log_mag = 1: the norms run over the whole (C, ...) batch at once.
    sc = torch.linalg.vector_norm(ref_mag - est_mag) / torch.linalg.vector_norm(ref_mag)
    log_mag = (torch.log(ref_mag) - torch.log(est_mag)).abs().mean()
    return sc + log_mag


def stft_distance(reference: Tensor, estimate: Tensor) -> float:
    """auraloss ``MultiResolutionSTFTLoss()`` of an estimate against a reference, both (C, T) float64."""
    total = sum(
        _sc_plus_log_mag(_magnitude(estimate, n, h, w), _magnitude(reference, n, h, w)) for n, h, w in STFT_RESOLUTIONS
    )
    return float(total) / len(STFT_RESOLUTIONS)


@functools.lru_cache(maxsize=16)
def _mel_fb(sample_rate: int) -> Tensor:
    # librosa.filters.mel(sr, n_fft, n_mels) defaults: Slaney scale, Slaney area norm, 0 .. sr / 2.
    fb = mel_filterbank(MEL_N_FFT // 2 + 1, MEL_BINS, sample_rate, dtype=torch.float64)  # (F, M)
    # From 88.2 kHz on, some low filters fall between two bins; auraloss then takes log(0) and returns NaN.
    if bool((fb.sum(dim=0) == 0).any()):
        raise ReconInputError(
            f"{sample_rate} Hz is too high for {MEL_BINS} mel bands at n_fft {MEL_N_FFT} (empty filters); "
            "resample to 48 kHz or lower"
        )
    return fb


def mel_distance(reference: Tensor, estimate: Tensor, sample_rate: int) -> float:
    """auraloss ``MelSTFTLoss(sample_rate)`` (mel filters on magnitudes) of (C, T) float64 signals."""
    fb = _mel_fb(sample_rate)
    mags = [_magnitude(x, MEL_N_FFT, MEL_HOP, MEL_WIN) for x in (estimate, reference)]  # (C, F, N)
    est_mel, ref_mel = (torch.matmul(m.mT, fb) for m in mags)  # (C, N, F) @ (F, M) -> (C, N, M)
    return float(_sc_plus_log_mag(est_mel, ref_mel))


def _check_not_silent(reference: Tensor) -> None:
    energy = (reference - reference.mean(dim=-1, keepdim=True)).square().sum(dim=-1)  # (C,)
    silent = [int(c) for c in torch.nonzero(energy < SILENCE_ENERGY).flatten()]
    if silent:
        raise ReconInputError(f"silent reference (channel {', '.join(map(str, silent))}): SI-SDR is undefined")


def si_sdr(reference: Tensor, estimate: Tensor) -> float:
    """SI-SDR in dB (``-auraloss.time.SISDRLoss()``), the mean over channels of (C, T) float64 signals.

    Raises:
        ReconInputError: a reference channel is silent (zero-mean energy below :data:`SILENCE_ENERGY`).
    """
    _check_not_silent(reference)
    ref = reference - reference.mean(dim=-1, keepdim=True)
    est = estimate - estimate.mean(dim=-1, keepdim=True)
    # Le Roux et al. 2018: project the estimate on the reference, s = alpha * ref, e = est - s.
    alpha = (est * ref).sum(-1) / (ref.square().sum(-1) + EPS)  # (C,)
    target = alpha[:, None] * ref
    ratio = target.square().sum(-1) / ((est - target).square().sum(-1) + EPS)
    return float((10 * torch.log10(ratio + EPS)).mean())


def _check_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate < 1:
        raise ReconInputError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    return int(sample_rate)


def _score(ref: Tensor, est: Tensor, sample_rate: int) -> dict[str, float]:
    sisdr = si_sdr(ref, est)  # first: a silent reference stops before the costlier spectra
    return {"stft": stft_distance(ref, est), "mel": mel_distance(ref, est, sample_rate), "sisdr": sisdr}


def recon_metrics(
    reference: Any, estimate: Any, sample_rate: int, *, length_tolerance: int = DEFAULT_LENGTH_TOLERANCE
) -> dict[str, float]:
    """All metrics of one file.

    Args:
        reference, estimate: (C, T) float arrays (numpy or torch) at ``sample_rate``.
        sample_rate: in Hz (used by the mel filterbank).
        length_tolerance: see :func:`prepare_pair`.

    Returns:
        ``{"stft": ..., "mel": ..., "sisdr": ...}``.

    Raises:
        ReconInputError: see :func:`prepare_pair` and :func:`si_sdr`; also a bad sample rate.
    """
    sample_rate = _check_rate(sample_rate)
    ref, est, _ = prepare_pair(reference, estimate, length_tolerance=length_tolerance)
    return _score(ref, est, sample_rate)


def evaluate_pair(
    name: str, reference: Any, estimate: Any, sample_rate: int, *, length_tolerance: int = DEFAULT_LENGTH_TOLERANCE
) -> dict[str, Any]:
    """One per-file entry: the metrics and the pair's facts, or ``{"name", "error"}`` for a pair that cannot be scored.

    Only :class:`ReconInputError` becomes an error entry; anything else is a bug and propagates.
    """
    try:
        sample_rate = _check_rate(sample_rate)
        ref, est, trimmed = prepare_pair(reference, estimate, length_tolerance=length_tolerance)
        metrics = _score(ref, est, sample_rate)
    except ReconInputError as exc:
        logger.warning("%s: %s", name, exc)
        return {"name": name, "error": str(exc)}
    C, T = est.shape
    return {"name": name, "sample_rate": sample_rate, "channels": C, "samples": T, "trimmed": trimmed, **metrics}


def summarize(per_file: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means over the entries without an ``error``; a metric with no valid file is None."""
    ok = [e for e in per_file if "error" not in e]
    mean = {k: (math.fsum(e[k] for e in ok) / len(ok) if ok else None) for k in METRICS}
    return {"mean": mean, "num_files": len(per_file), "num_scored": len(ok), "num_errors": len(per_file) - len(ok)}


def evaluate_pairs(
    pairs: Iterable[tuple[str, Any, Any, int]], *, length_tolerance: int = DEFAULT_LENGTH_TOLERANCE
) -> dict[str, Any]:
    """Score ``(name, reference, estimate, sample_rate)`` pairs, consumed lazily (wrap them in a progress bar).

    Returns:
        ``{"per_file": [...], "mean": {...}, "num_files", "num_scored", "num_errors"}``; see :func:`evaluate_pair`
        and :func:`summarize`.
    """
    per_file = [evaluate_pair(n, r, e, sr, length_tolerance=length_tolerance) for n, r, e, sr in pairs]
    return {"per_file": per_file, **summarize(per_file)}
