"""Pitch names, MIDI numbers and chord qualities (twelve-tone equal temperament, A4 = 440 Hz)."""

from __future__ import annotations

import re

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_NAME_RE = re.compile(r"^([A-Ga-g])([#b]?)(-?\d+)$")
_NATURAL = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

#: Chord quality -> (semitone intervals above the root, symbol suffix).
CHORDS: dict[str, tuple[tuple[int, ...], str]] = {
    "major": ((0, 4, 7), ""),
    "minor": ((0, 3, 7), "m"),
    "diminished": ((0, 3, 6), "dim"),
    "sus2": ((0, 2, 7), "sus2"),
    "sus4": ((0, 5, 7), "sus4"),
    "major seventh": ((0, 4, 7, 11), "maj7"),
    "minor seventh": ((0, 3, 7, 10), "m7"),
    "dominant seventh": ((0, 4, 7, 10), "7"),
}


def midi_to_hz(midi: float) -> float:
    """Frequency of a (possibly fractional) MIDI note number; 69 is A4 = 440 Hz."""
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def midi_to_name(midi: int) -> str:
    """Scientific pitch name with sharps: 60 -> 'C4', 69 -> 'A4', 61 -> 'C#4'."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def pitch_class(midi: int) -> str:
    """The note name without octave: 57 -> 'A'."""
    return NOTE_NAMES[midi % 12]


def name_to_midi(name: str) -> int:
    """Parse 'A4', 'c#3', 'Bb2' to a MIDI number.

    Raises:
        ValueError: the name is not a letter, an optional '#'/'b' and an octave number.
    """
    match = _NAME_RE.match(name.strip())
    if not match:
        raise ValueError(f"bad note name {name!r}; expected e.g. 'A4', 'C#3' or 'Bb2'")
    letter, accidental, octave = match.groups()
    shift = {"#": 1, "b": -1, "": 0}[accidental]
    return (int(octave) + 1) * 12 + _NATURAL[letter.upper()] + shift


def chord_midi(root: int, quality: str) -> list[int]:
    """MIDI numbers of a root-position chord.

    Raises:
        ValueError: unknown quality (the message lists the valid ones).
    """
    if quality not in CHORDS:
        raise ValueError(f"unknown chord quality {quality!r}; valid: {', '.join(CHORDS)}")
    return [root + step for step in CHORDS[quality][0]]


def chord_name(root: int, quality: str) -> str:
    """'A minor', 'C major seventh'."""
    return f"{pitch_class(root)} {quality}"


def chord_symbol(root: int, quality: str) -> str:
    """Lead-sheet symbol: 'Am', 'Cmaj7', 'G7', 'Dsus4'."""
    return pitch_class(root) + CHORDS[quality][1]
