"""Prompt adherence: does a clip have the pitch, pan, duration, tempo and sound class that its prompt asked for?

Each clip is measured with :mod:`wavefoundry.audio.analysis` and compared with the ground truth ``attrs`` of the
SynthCaps item whose prompt produced it (see docs/adherence.md). A metric applies only where the prompt states
the attribute; elsewhere it is ``None`` and left out of the accuracy:

* ``pitch_ok``: tonal single notes (whole-clip YIN f0) and arpeggios (the lowest note heard in >= 8 % of the
  onset segments, i.e. the root) lie within 50 cents of the requested f0; an octave error is a miss. Chords are
  not scored: YIN finds the common period of the chord tones, not the root.
* ``pan_ok``: stereo clips of stereo items: |estimated - requested pan| <= 0.25 and, unless the request is
  centred (|pan| < 0.15, "centered" in the captions), the estimate is on the same side.
* ``duration_ok``: notes and chords ("lasting about X seconds", ``attrs["note_s"]``): the active duration is
  within max(0.25 s, 20 %) of the stated one.
* ``tempo_ok``: drum patterns ("at X BPM"): estimated tempo within 4 % (half or double time is a miss).
* ``class_ok``: with a classifier ``classify(audio, sr) -> label`` and a reference ``label_of(attrs) -> label``.

The ceiling is the real SynthCaps audio scored against its own attrs; the floor (:func:`floor_report`) scores
every clip against the attrs of another item (a seeded derangement), with the same code.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from wavefoundry.audio.analysis import (
    active_duration,
    cents,
    estimate_f0,
    estimate_pan,
    estimate_tempo,
    loudness,
    onsets,
)
from wavefoundry.audio.dsp import SILENCE_DBFS
from wavefoundry.audio.io import AudioError, check_audio

#: Largest pitch error (cents) that counts as the requested note: half a semitone.
PITCH_TOLERANCE_CENTS = 50.0
#: Largest |estimated - requested| pan position (pan in [-1, 1], -1 hard left).
PAN_TOLERANCE = 0.25
#: Requests with |pan| below this are "centered" (the band of wavefoundry.data.synth.captions.pan_words).
PAN_CENTER = 0.15
#: Duration tolerance: max(absolute, relative x stated duration).
DURATION_TOLERANCE_S = 0.25
DURATION_TOLERANCE_REL = 0.2
#: Largest relative tempo error; an octave (half or double time) is far outside it.
TEMPO_TOLERANCE_REL = 0.04
#: An arpeggio note counts as played when it is the pitch of at least this share of the voiced onset segments
#: (one segment in short clips, two from 13 on): every SynthCaps arpeggio plays its root in >= 1/8 of its notes.
ARPEGGIO_MIN_SHARE = 0.08
#: Standard normal quantile of a two-sided 95 % interval.
Z_95 = 1.959963984540054

METRICS: tuple[str, ...] = ("pitch_ok", "pan_ok", "duration_ok", "tempo_ok", "class_ok")

Classify = Callable[[np.ndarray, int], str]
LabelOf = Callable[[Mapping[str, Any]], "str | None"]


def requested_f0(attrs: Mapping[str, Any]) -> float | None:
    """The f0 (Hz) a prompt asks for: the note of a single note, the root of an arpeggio; else None."""
    if attrs.get("category") != "tonal" or attrs.get("kind") not in ("note", "arpeggio"):
        return None
    f0 = attrs.get("f0_hz")
    return float(f0) if f0 else None


def stated_duration(attrs: Mapping[str, Any]) -> float | None:
    """Seconds stated by "lasting about X seconds": ``note_s`` of tonal notes and chords (not arpeggios)."""
    if attrs.get("category") != "tonal" or attrs.get("kind") not in ("note", "chord"):
        return None
    seconds = attrs.get("note_s")
    return float(seconds) if seconds else None


def requested_tempo(attrs: Mapping[str, Any]) -> float | None:
    """BPM stated for a drum pattern; None elsewhere (arpeggio tempi are not measured reliably, see docs)."""
    bpm = attrs.get("tempo_bpm")
    return float(bpm) if attrs.get("category") == "drums" and bpm else None


def _midi(f0: np.ndarray) -> np.ndarray:
    return 69.0 + 12.0 * np.log2(f0 / 440.0)


def arpeggio_root_f0(audio: np.ndarray, sr: int) -> float:
    """f0 (Hz) of the lowest note that recurs in an arpeggio: the root for every direction (up, down, up-down).

    The clip is cut at its onsets; each segment gets a YIN f0. Segment pitches are rounded to semitones and the
    lowest semitone heard in at least ``ARPEGGIO_MIN_SHARE`` of the voiced segments wins (in a long clip a single
    stray octave-down estimate does not); its estimate is the median f0 of those segments.

    Args:
        audio: (C, T) or (T,) audio.

    Returns:
        f0 in Hz, or 0.0 when no note is heard often enough (silence, noise, no onset, scattered pitches).
    """
    times = onsets(audio, sr)
    x = check_audio(np.atleast_2d(audio))
    bounds = np.round(np.append(times, x.shape[-1] / sr) * sr).astype(int)
    f0 = np.array([estimate_f0(x[:, a:b], sr) for a, b in itertools.pairwise(bounds) if b > a])
    f0 = f0[f0 > 0]
    if f0.size == 0:
        return 0.0
    semis = np.round(_midi(f0))
    values, counts = np.unique(semis, return_counts=True)  # values ascending
    enough = counts >= math.ceil(ARPEGGIO_MIN_SHARE * f0.size)
    if not enough.any():
        return 0.0
    return float(np.median(f0[semis == values[np.argmax(enough)]]))


def pan_matches(estimated: float, requested: float) -> bool:
    """Within ``PAN_TOLERANCE`` and, for an off-centre request, strictly on the same side."""
    if abs(estimated - requested) > PAN_TOLERANCE:
        return False
    return abs(requested) < PAN_CENTER or estimated * requested > 0


def _pitch(audio: np.ndarray, sr: int, attrs: Mapping[str, Any], silent: bool) -> dict[str, Any]:
    ref = requested_f0(attrs)
    if ref is None:
        return {"pitch_ok": None}
    if silent:
        est = 0.0
    elif attrs.get("kind") == "arpeggio":
        est = arpeggio_root_f0(audio, sr)
    else:
        est = estimate_f0(audio, sr)
    err = cents(est, ref) if est > 0 else None
    return {
        "pitch_ok": err is not None and abs(err) <= PITCH_TOLERANCE_CENTS,
        "f0_ref": ref,
        "f0_est": round(est, 3) if est > 0 else None,
        "pitch_cents": None if err is None else round(err, 1),
    }


def _pan(audio: np.ndarray, attrs: Mapping[str, Any], silent: bool) -> dict[str, Any]:
    ref = attrs.get("pan")
    if ref is None or audio.shape[0] != 2:
        return {"pan_ok": None}
    est = None if silent else estimate_pan(audio)
    return {
        "pan_ok": est is not None and pan_matches(est, float(ref)),
        "pan_ref": float(ref),
        "pan_est": None if est is None else round(est, 4),
    }


def _duration(audio: np.ndarray, sr: int, attrs: Mapping[str, Any], silent: bool) -> dict[str, Any]:
    ref = stated_duration(attrs)
    if ref is None:
        return {"duration_ok": None}
    est = None if silent else active_duration(audio, sr)
    tolerance = max(DURATION_TOLERANCE_S, DURATION_TOLERANCE_REL * ref)
    return {
        "duration_ok": est is not None and abs(est - ref) <= tolerance,
        "duration_ref": ref,
        "duration_est": None if est is None else round(est, 4),
    }


def _tempo(audio: np.ndarray, sr: int, attrs: Mapping[str, Any], silent: bool) -> dict[str, Any]:
    ref = requested_tempo(attrs)
    if ref is None:
        return {"tempo_ok": None}
    est = 0.0 if silent else estimate_tempo(audio, sr)
    return {
        "tempo_ok": est > 0 and abs(est / ref - 1.0) <= TEMPO_TOLERANCE_REL,
        "tempo_ref": ref,
        "tempo_est": round(est, 2) if est > 0 else None,
    }


def _class(
    audio: np.ndarray,
    sr: int,
    attrs: Mapping[str, Any],
    silent: bool,
    classify: Classify | None,
    label_of: LabelOf | None,
) -> dict[str, Any]:
    if classify is None:
        return {"class_ok": None}
    if label_of is None:
        raise ValueError("classify needs label_of(attrs) -> label (e.g. wavefoundry.train.tagging.synthcaps_label)")
    ref = label_of(attrs)
    if ref is None:
        return {"class_ok": None}
    pred = None if silent else classify(audio, sr)
    if pred is not None and not isinstance(pred, str):
        raise TypeError(f"classify must return a label string, got {type(pred).__name__}")
    return {"class_ok": pred == ref, "label_ref": ref, "label_pred": pred}


def score_item(
    audio: np.ndarray,
    sr: int,
    attrs: Mapping[str, Any],
    *,
    classify: Classify | None = None,
    label_of: LabelOf | None = None,
) -> dict[str, Any]:
    """Score one clip against the attributes its prompt was made from.

    A silent clip (RMS at or below ``SILENCE_DBFS``) fails every metric that applies, with ``None`` estimates.

    Args:
        audio: (C, T) float audio, or (T,) read as mono; pan applies to stereo (C = 2) only.
        sr: sample rate of ``audio``.
        attrs: the item's ground truth (SynthCaps ``attrs``: category, kind, f0_hz, pan, note_s, tempo_bpm, ...).
        classify: ``classify(audio (C, T), sr) -> label``; enables ``class_ok``.
        label_of: the reference label of ``attrs`` (None: class does not apply); required with ``classify``.

    Returns:
        Every name of ``METRICS`` (True/False, or None where it does not apply) plus, for the metrics that apply,
        the requested and estimated values (``f0_ref``, ``f0_est``, ``pitch_cents``, ``pan_ref``, ``pan_est``,
        ``duration_ref``, ``duration_est``, ``tempo_ref``, ``tempo_est``, ``label_ref``, ``label_pred``).

    Raises:
        AudioError: empty, non-finite or badly shaped audio.
        ValueError: ``sr`` not positive, or ``classify`` without ``label_of``.
    """
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    audio = check_audio(np.atleast_2d(np.asarray(audio)))
    silent = loudness(audio) <= SILENCE_DBFS
    return {
        **_pitch(audio, sr, attrs, silent),
        **_pan(audio, attrs, silent),
        **_duration(audio, sr, attrs, silent),
        **_tempo(audio, sr, attrs, silent),
        **_class(audio, sr, attrs, silent, classify, label_of),
    }


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n (Wilson 1927).

    (p + z^2 / 2n +- z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n), p = k / n.
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # The bounds are exactly 0 at k = 0 and 1 at k = n; rounding would leave ~1e-17 there.
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per metric: ``accuracy`` (None when it applies nowhere), ``n`` (items where it applies), ``ci95``."""
    out: dict[str, dict[str, Any]] = {}
    for metric in METRICS:
        hits = [bool(r[metric]) for r in rows if r.get(metric) is not None]
        n, k = len(hits), sum(hits)
        out[metric] = {
            "accuracy": k / n if n else None,
            "n": n,
            "ci95": list(wilson_interval(k, n)) if n else None,
        }
    return out


def _attrs_of(item: Any) -> Mapping[str, Any]:
    """``attrs`` of a ManifestItem/SynthItem-like object, or the mapping itself."""
    return item if isinstance(item, Mapping) else item.attrs


def _failed(
    attrs: Mapping[str, Any], channels: int | None, error: str, has_classifier: bool, label_of: LabelOf | None
) -> dict[str, Any]:
    """The row of a clip that could not be analysed: every metric its prompt asks for is a miss."""
    applies = {
        "pitch_ok": requested_f0(attrs) is not None,
        "pan_ok": attrs.get("pan") is not None and channels in (None, 2),
        "duration_ok": stated_duration(attrs) is not None,
        "tempo_ok": requested_tempo(attrs) is not None,
        "class_ok": has_classifier and label_of is not None and label_of(attrs) is not None,
    }
    return {**{m: (False if a else None) for m, a in applies.items()}, "error": error}


def adherence_report(
    generated: Sequence[tuple[np.ndarray, int]],
    items: Sequence[Any],
    *,
    classify: Classify | None = None,
    label_of: LabelOf | None = None,
) -> dict[str, Any]:
    """Score ``generated[i]`` against ``items[i]`` and summarize.

    A clip that fails validation (empty, NaN) gets a row with an ``error`` and counts as a miss.

    Args:
        generated: (audio (C, T), sample rate) per item.
        items: attrs mappings or objects with ``.attrs`` (and optionally ``.id``), aligned with ``generated``.
        classify: see :func:`score_item`.
        label_of: see :func:`score_item`.

    Returns:
        ``{"n_items", "summary": summarize(rows), "rows": [{"index", "id", **score_item(...)}]}``.
    """
    if len(generated) != len(items):
        raise ValueError(f"{len(generated)} clips for {len(items)} items: they must be aligned one to one")
    if classify is not None and label_of is None:
        raise ValueError("classify needs label_of(attrs) -> label (e.g. wavefoundry.train.tagging.synthcaps_label)")
    rows = []
    for i, ((audio, sr), item) in enumerate(zip(generated, items)):
        attrs = _attrs_of(item)
        head = {"index": i, "id": getattr(item, "id", None)}
        try:
            rows.append({**head, **score_item(audio, sr, attrs, classify=classify, label_of=label_of)})
        except AudioError as exc:
            channels = {1: 1, 2: np.shape(audio)[0]}.get(np.ndim(audio))
            rows.append({**head, **_failed(attrs, channels, str(exc), classify is not None, label_of)})
    return {"n_items": len(rows), "summary": summarize(rows), "rows": rows}


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A permutation of range(n) without fixed points, fixed by ``seed`` (rejection sampling, ~e draws).

    Raises:
        ValueError: n < 2 (no derangement exists).
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {n}")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def floor_report(
    generated: Sequence[tuple[np.ndarray, int]],
    items: Sequence[Any],
    *,
    seed: int = 0,
    classify: Classify | None = None,
    label_of: LabelOf | None = None,
) -> dict[str, Any]:
    """Shuffled-prompt floor: clip i is scored against ``items[derangement(n, seed)[i]]``, never its own.

    Returns:
        As :func:`adherence_report` plus ``seed``; each row keeps the clip's own ``index`` and ``id`` and names
        the item it was scored against in ``scored_against`` (its id, or its index when items have no ids).
    """
    perm = derangement(len(items), seed)
    report = adherence_report(generated, [items[j] for j in perm], classify=classify, label_of=label_of)
    for row, item, j in zip(report["rows"], items, perm):
        row["id"] = getattr(item, "id", None)
        row["scored_against"] = getattr(items[j], "id", int(j))
    return {**report, "seed": seed}
