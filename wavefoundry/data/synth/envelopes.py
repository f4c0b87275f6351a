"""Amplitude envelopes of notes. Each has finite support: it starts at 0, ends at 0 and, between its
ramps, stays within ``PERCUSSIVE_FLOOR_DB`` of its peak, so the ground-truth active span of a note is its
support (see docs/synthcaps.md, "active span")."""

from __future__ import annotations

import numpy as np

from wavefoundry.data.synth.sampling import Chooser

ENVELOPES = ("adsr", "percussive", "swell", "sustained")

#: Level a percussive decay reaches at the start of its release (dB re. peak); well above the -40 dB
#: threshold the active-span analyser uses, so the release marks the end of the note.
PERCUSSIVE_FLOOR_DB = -24.0


def _ramp(n: int, start: float, stop: float) -> np.ndarray:
    return np.linspace(start, stop, n, endpoint=False) if n > 0 else np.zeros(0)


def _pieces(n: int, parts: list[tuple[int, np.ndarray | float]]) -> np.ndarray:
    """Concatenate (length, values) pieces, fitting the last piece so the total is ``n``."""
    out = np.zeros(n)
    pos = 0
    for length, values in parts:
        length = max(0, min(length, n - pos))
        out[pos : pos + length] = values[:length] if isinstance(values, np.ndarray) else values
        pos += length
    return out


def _range(lo: float, hi: float, note_s: float, fraction: float) -> tuple[float, float]:
    """[lo, hi] shrunk so that the segment takes at most ``fraction`` of a ``note_s`` note."""
    high = min(hi, fraction * note_s)
    return min(lo, 0.5 * high), high


def draw_envelope(ch: Chooser, kind: str, note_s: float) -> dict:
    """Draw the parameters of an envelope ``kind`` for a note lasting ``note_s`` seconds (support length)."""
    if kind == "adsr":
        return {
            "attack_s": ch.uniform("attack_s", *_range(0.005, 0.08, note_s, 0.2), digits=4),
            "decay_s": ch.uniform("decay_s", *_range(0.03, 0.3, note_s, 0.3), digits=4),
            "sustain": ch.uniform("sustain", 0.4, 0.9, digits=3),
            "release_s": ch.uniform("release_s", *_range(0.02, 0.4, note_s, 0.3), digits=4),
        }
    if kind == "percussive":
        return {
            "attack_s": ch.uniform("attack_s", *_range(0.002, 0.006, note_s, 0.1), digits=4),
            "release_s": round(min(0.02, 0.2 * note_s), 4),
        }
    if kind == "swell":
        return {
            "attack_s": round(note_s * ch.uniform("attack_fraction", 0.3, 0.7), 4),
            "release_s": ch.uniform("release_s", *_range(0.05, 0.5, note_s, 0.2), digits=4),
        }
    return {
        "attack_s": round(min(0.01, 0.1 * note_s), 4),
        "release_s": ch.uniform("release_s", *_range(0.01, 0.06, note_s, 0.2), digits=4),
    }


def envelope(kind: str, n: int, sr: int, params: dict, *, decay_db: float = PERCUSSIVE_FLOOR_DB) -> np.ndarray:
    """Sample an envelope over a note's whole support of ``n`` samples: (n,) float64 in [0, 1].

    ``adsr``: linear attack, decay to ``sustain``, hold, linear release. ``percussive``: fast attack, then an
    exponential decay to ``decay_db`` and a short linear release. ``swell``: slow linear rise to the peak,
    then release. ``sustained``: gate with short ramps (organ-like).
    """
    a = round(params["attack_s"] * sr)
    r = round(params["release_s"] * sr)
    body = max(0, n - a - r)
    if kind == "adsr":
        d = round(params["decay_s"] * sr)
        s = params["sustain"]
        parts = [(a, _ramp(a, 0.0, 1.0)), (min(d, body), _ramp(d, 1.0, s)), (max(0, body - d), s)]
        parts.append((r, _ramp(r, s, 0.0)))
        return _pieces(n, parts)
    if kind == "percussive":
        floor = 10 ** (decay_db / 20)
        decay = floor ** (np.arange(body) / max(body, 1))
        return _pieces(n, [(a, _ramp(a, 0.0, 1.0)), (body, decay), (r, _ramp(r, floor, 0.0))])
    if kind in ("swell", "sustained"):
        return _pieces(n, [(a, _ramp(a, 0.0, 1.0)), (body, 1.0), (r, _ramp(r, 1.0, 0.0))])
    raise ValueError(f"unknown envelope {kind!r}; valid: {', '.join(ENVELOPES)}")
