"""Drum patterns: synthesised kick, snare and hi-hat placed on a 16-step grid (sixteenth notes) at a tempo.

Every pattern puts a kick or a snare on each quarter-note beat, so the beat (not the eighth-note hi-hat
pulse) is the strongest periodicity, and the tempo a listener or a tempo tracker hears is ``tempo_bpm``.
"""

from __future__ import annotations

import numpy as np

from wavefoundry.data.synth.sampling import Chooser, Rendered
from wavefoundry.data.synth.signals import add_at, band_filter, max_freq

#: Pattern name -> voice -> 16 steps ('x' hit, '.' rest); one bar of 4/4 in sixteenth notes.
PATTERNS: dict[str, dict[str, str]] = {
    "rock": {"kick": "x.......x.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "four-on-the-floor": {"kick": "x...x...x...x...", "snare": "....x.......x...", "hat": "..x...x...x...x."},
    "disco": {"kick": "x...x...x...x...", "snare": "....x.......x...", "hat": "xxxxxxxxxxxxxxxx"},
    "syncopated": {"kick": "x.....x.x.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "pop": {"kick": "x.......x.x.....", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "funk": {"kick": "x..x....x.x.....", "snare": "....x..x....x...", "hat": "x.x.x.x.x.x.x.x."},
}
KITS = ("tight", "punchy", "boomy")
VOICES = ("kick", "snare", "hat")

#: Kit -> (kick decay s, snare noise decay s, hat decay s) ranges.
_KIT_DECAYS = {
    "tight": ((0.06, 0.12), (0.04, 0.08), (0.012, 0.025)),
    "punchy": ((0.12, 0.22), (0.07, 0.12), (0.02, 0.04)),
    "boomy": ((0.25, 0.45), (0.1, 0.18), (0.03, 0.06)),
}


def _decay(n: int, sr: int, tau: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau * sr))


def kick(sr: int, rng: np.random.Generator, *, f_start: float, f_end: float, tau: float) -> np.ndarray:
    """Sine with an exponential pitch drop, exponential amplitude decay and a 2 ms click: (n,), peak 1."""
    n = int(4.6 * tau * sr) + 1  # until -40 dB
    t = np.arange(n) / sr
    freq = f_end + (f_start - f_end) * np.exp(-t / 0.03)
    body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * _decay(n, sr, tau)
    click = np.zeros(n)
    m = min(n, int(0.002 * sr))
    click[:m] = 0.3 * rng.standard_normal(m) * np.linspace(1, 0, m)
    out = body + click
    return out / np.abs(out).max()


def snare(sr: int, rng: np.random.Generator, *, tone_hz: float, tau: float) -> np.ndarray:
    """A 'body' sine plus band-passed noise (the wires), both decaying: (n,), peak 1."""
    n = int(4.6 * tau * sr) + 1
    t = np.arange(n) / sr
    body = np.sin(2 * np.pi * tone_hz * t) * _decay(n, sr, 0.05)
    wires = band_filter(rng.standard_normal(n), sr, 1000.0, min(7000.0, max_freq(sr))) * _decay(n, sr, tau)
    out = 0.5 * body + wires / np.abs(wires).max()
    return out / np.abs(out).max()


def hat(sr: int, rng: np.random.Generator, *, tau: float) -> np.ndarray:
    """High-passed noise with a short decay: (n,), peak 1."""
    n = int(4.6 * tau * sr) + 1
    cutoff = min(7000.0, 0.33 * sr)
    out = band_filter(rng.standard_normal(n), sr, cutoff, max_freq(sr), order=4) * _decay(n, sr, tau)
    return out / np.abs(out).max()


def _draw_kit(ch: Chooser, sr: int) -> tuple[dict, dict[str, np.ndarray]]:
    kit = ch.choice("kit", KITS)
    (k_lo, k_hi), (s_lo, s_hi), (h_lo, h_hi) = _KIT_DECAYS[kit]
    params = {
        "kit": kit,
        "kick_hz": [
            ch.uniform("kick_start_hz", 110, 180, digits=1),
            ch.uniform("kick_end_hz", 42, 60, digits=1),
        ],
        "kick_decay_s": ch.uniform("kick_decay_s", k_lo, k_hi, digits=4),
        "snare_hz": ch.uniform("snare_hz", 160, 240, digits=1),
        "snare_decay_s": ch.uniform("snare_decay_s", s_lo, s_hi, digits=4),
        "hat_decay_s": ch.uniform("hat_decay_s", h_lo, h_hi, digits=4),
    }
    rng = ch.rng
    sounds = {
        "kick": kick(sr, rng, f_start=params["kick_hz"][0], f_end=params["kick_hz"][1], tau=params["kick_decay_s"]),
        "snare": snare(sr, rng, tone_hz=params["snare_hz"], tau=params["snare_decay_s"]),
        "hat": hat(sr, rng, tau=params["hat_decay_s"]),
    }
    return params, sounds


def render_drums(ch: Chooser, n: int, sr: int) -> Rendered:
    """Draw and render a drum pattern of ``n`` samples: a (1, n) point source (the kit) and its attributes."""
    pattern = ch.choice("pattern", tuple(PATTERNS))
    tempo = ch.integer("tempo_bpm", 70, 170)
    start = ch.uniform("start_s", 0.02, 0.1, digits=4)
    params, sounds = _draw_kit(ch, sr)
    levels = {"kick": 1.0, "snare": ch.uniform("snare_level", 0.6, 0.9, digits=3)}
    levels["hat"] = ch.uniform("hat_level", 0.15, 0.35, digits=3)
    step_s = 60.0 / tempo / 4
    seconds = n / sr
    n_steps = int((seconds - 0.05 - start) // step_s) + 1
    image = np.zeros(n)
    onsets: set[float] = set()
    last_end = start
    for k in range(n_steps):
        t = start + k * step_s
        for voice in VOICES:
            if PATTERNS[pattern][voice][k % 16] != "x":
                continue
            # Off-beat hats a little softer: the usual accent on the eighth-note downbeats.
            gain = levels[voice] * (0.7 if voice == "hat" and k % 4 else 1.0)
            add_at(image, sounds[voice], round(t * sr), gain)
            onsets.add(round(t, 4))
            last_end = max(last_end, t + len(sounds[voice]) / sr)
    attrs = {
        "kind": "pattern",
        "pattern": pattern,
        "steps": dict(PATTERNS[pattern]),
        "tempo_bpm": tempo,
        **params,
    }
    attrs.update(levels={k: round(v, 3) for k, v in levels.items()}, onsets_s=sorted(onsets))
    attrs.update(active_onset_s=start, active_offset_s=round(min(seconds, last_end), 4))
    return Rendered(image=image[None], attrs=attrs)
