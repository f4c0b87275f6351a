"""Tonal items: one timbre playing a single note, a sustained chord, or an arpeggio at a tempo."""

from __future__ import annotations

import numpy as np

from wavefoundry.data.synth.envelopes import ENVELOPES, draw_envelope, envelope
from wavefoundry.data.synth.instruments import (
    BRIGHTNESS,
    FM_RATIOS,
    ORGAN_STOPS,
    TIMBRES,
    fm_tone,
    harmonic_weights,
    natural_t60,
    pluck_tone,
    wavetable_tone,
)
from wavefoundry.data.synth.music import (
    CHORDS,
    chord_midi,
    chord_name,
    chord_symbol,
    midi_to_hz,
    midi_to_name,
)
from wavefoundry.data.synth.sampling import Chooser, Rendered

TONAL_KINDS = ("note", "chord", "arpeggio")
ARPEGGIO_DIRECTIONS = ("up", "down", "up-down")
#: Note value -> notes per beat, and the tempo range (BPM) drawn for it.
NOTE_VALUES = {"eighth": (2, (70, 170)), "sixteenth": (4, (60, 120))}
#: Level of the notes between beats relative to the accented note on each beat.
ARP_OFFBEAT_GAIN = 0.5

#: Envelopes each timbre may get: strings and bells are struck, so they always decay.
_TIMBRE_ENVELOPES = {"pluck": ("percussive",), "fm_bell": ("percussive",)}


def _draw_voice(ch: Chooser, timbre: str) -> dict:
    """Timbre parameters that stay fixed for every note of an item."""
    voice: dict = {"timbre": timbre, "brightness": None}
    if timbre != "sine":
        voice["brightness"] = ch.choice("brightness", tuple(BRIGHTNESS))
    if timbre == "organ":
        voice["organ_stops"] = ch.choice("organ_stops", tuple(ORGAN_STOPS))
    if timbre == "fm_bell":
        voice["fm_ratio"] = ch.choice("fm_ratio", FM_RATIOS)
        voice["fm_index"] = ch.uniform("fm_index", 1.0, 2.0, digits=3) * (3.0 - 1.2 * BRIGHTNESS[voice["brightness"]])
        voice["fm_index_decay_s"] = ch.uniform("fm_index_decay_s", 0.2, 0.8, digits=3)
    return voice


def _tone(voice: dict, midi: int, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note of the voice without envelope: (n,), peak about 1."""
    f0 = midi_to_hz(midi)
    timbre = voice["timbre"]
    tilt = BRIGHTNESS.get(voice["brightness"], 0.0)
    if timbre == "pluck":
        # At most 20 dB of string decay over the note: its end is the gate's release, not a fade into the
        # -40 dB threshold that defines the active span.
        return pluck_tone(f0, n, sr, rng, tilt, max(natural_t60(f0), 3.0 * n / sr))
    if timbre == "fm_bell":
        return fm_tone(f0, n, sr, voice["fm_ratio"], voice["fm_index"], voice["fm_index_decay_s"])
    weights = harmonic_weights(timbre, f0, sr, tilt, voice.get("organ_stops", "full"))
    return wavetable_tone(weights, f0, n, sr, phase0=float(rng.uniform()))


def _note(voice: dict, midis: list[int], env_kind: str, env: dict, n: int, sr: int, rng) -> np.ndarray:
    """Notes sounding together under one envelope: (n,)."""
    tone = sum(_tone(voice, m, n, sr, rng) for m in midis)
    # The string decays by itself, so its envelope only gates it (no extra decay).
    decay_db = 0.0 if voice["timbre"] == "pluck" else -24.0
    return tone * envelope(env_kind, n, sr, env, decay_db=decay_db)


def _arpeggio_order(midis: list[int], direction: str) -> list[int]:
    tones = [*midis, midis[0] + 12]
    if direction == "down":
        return tones[::-1]
    if direction == "up-down":
        return tones + tones[-2:0:-1]
    return tones


def _draw_pitches(ch: Chooser, kind: str) -> dict:
    if kind == "note":
        midi = ch.integer("midi", 45, 84)
        return {"midi": [midi], "chord": None, "chord_symbol": None, "root": midi_to_name(midi)}
    root = ch.integer("midi", 45, 69)
    quality = ch.choice("chord", tuple(CHORDS))
    return {
        "midi": chord_midi(root, quality),
        "chord": chord_name(root, quality),
        "chord_symbol": chord_symbol(root, quality),
        "root": midi_to_name(root),
    }


def render_tonal(ch: Chooser, n: int, sr: int) -> Rendered:
    """Draw and render a tonal item of ``n`` samples: a (1, n) point source and its attributes."""
    kind = ch.choice("kind", TONAL_KINDS, p=(0.4, 0.25, 0.35))
    voice = _draw_voice(ch, ch.choice("timbre", TIMBRES))
    attrs = {"kind": kind, **voice, **_draw_pitches(ch, kind)}
    attrs["notes"] = [midi_to_name(m) for m in attrs["midi"]]
    attrs["f0_hz"] = round(midi_to_hz(attrs["midi"][0]), 3)
    allowed = _TIMBRE_ENVELOPES.get(voice["timbre"], ENVELOPES)
    if kind == "arpeggio":
        allowed = tuple(e for e in allowed if e in ("adsr", "percussive"))
    attrs["envelope"] = ch.choice("envelope", allowed)
    seconds = n / sr
    if kind == "arpeggio":
        image = _render_arpeggio(ch, attrs, seconds, sr, n)
    else:
        start = ch.uniform("start_s", 0.02, 0.2 * seconds, digits=4)
        note_s = round((seconds - start - 0.05) * ch.uniform("length_fraction", 0.35, 0.95), 4)
        attrs["envelope_params"] = draw_envelope(ch, attrs["envelope"], note_s)
        attrs.update(tempo_bpm=None, onsets_s=[start], note_s=note_s)
        attrs.update(active_onset_s=start, active_offset_s=round(start + note_s, 4))
        image = np.zeros(n)
        s0, m = round(start * sr), round(note_s * sr)
        image[s0 : s0 + m] = _note(voice, attrs["midi"], attrs["envelope"], attrs["envelope_params"], m, sr, ch.rng)
    return Rendered(image=image[None], attrs=attrs)


def _render_arpeggio(ch: Chooser, attrs: dict, seconds: float, sr: int, n: int) -> np.ndarray:
    note_value = ch.choice("note_value", tuple(NOTE_VALUES))
    per_beat, (lo, hi) = NOTE_VALUES[note_value]
    tempo = ch.integer("tempo_bpm", lo, hi)
    direction = ch.choice("arpeggio", ARPEGGIO_DIRECTIONS)
    step_s = 60.0 / tempo / per_beat
    note_s = round(step_s * ch.uniform("legato", 0.5, 0.95), 4)
    start = ch.uniform("start_s", 0.02, 0.15, digits=4)
    n_steps = max(1, int((seconds - 0.05 - start - note_s) // step_s) + 1)
    env = draw_envelope(ch, attrs["envelope"], note_s)
    order = _arpeggio_order(attrs["midi"], direction)
    onsets = [round(start + k * step_s, 4) for k in range(n_steps)]
    image = np.zeros(n)
    m = round(note_s * sr)
    for k, onset in enumerate(onsets):
        s0 = round(onset * sr)
        note = _note(attrs, [order[k % len(order)]], attrs["envelope"], env, m, sr, ch.rng)
        # Notes on the beat are accented, as a player would: it also makes the tempo audible.
        image[s0 : s0 + m] += note[: n - s0] * (1.0 if k % per_beat == 0 else ARP_OFFBEAT_GAIN)
    attrs.update(note_value=note_value, tempo_bpm=tempo, arpeggio=direction, envelope_params=env)
    attrs.update(onsets_s=onsets, note_s=note_s, active_onset_s=start, active_offset_s=round(onsets[-1] + note_s, 4))
    return image
