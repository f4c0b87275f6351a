"""Text prompts from item metadata, as Stable Audio Open builds them (Evans et al. 2024, section "Data").

Metadata is not a caption, so each prompt is a random view of it: a random non-empty subset of the usable
fields in random order, list fields (tags, genres, ...) shuffled, one random letter case (original, lower,
Title), joined with ", ". For music metadata (FMA style) half of the prompts name their fields ("genre: rock,
bpm: 120, title: ...") and half give the plain values, so a model learns both a tag soup and a structured
prompt.

Re-sampling a prompt per epoch is cheap: the scanner stores the cleaned fields in ``attrs["prompt_meta"]``.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping

import numpy as np

#: Canonical field -> metadata keys read for it (first present wins).
FIELDS: dict[str, tuple[str, ...]] = {
    "title": ("title", "name"),
    "tags": ("tags",),
    "description": ("description",),
    "caption": ("caption",),
    "genre": ("genres", "genre", "genre_top"),
    "artist": ("artist",),
    "album": ("album",),
    "mood": ("mood", "moods"),
    "instruments": ("instruments", "instrument"),
    "bpm": ("bpm", "tempo"),
    "key": ("key", "musical_key"),
}
#: Fields whose presence marks music metadata ("auto" style picks FMA-style prompts for them).
MUSIC_FIELDS = frozenset({"genre", "artist", "album", "mood", "instruments", "bpm", "key"})
STYLES = ("auto", "freesound", "fma")
DEFAULT_MAX_CHARS = 512
#: Longest single value kept (long descriptions are cut at a word boundary).
MAX_FIELD_CHARS = 256

_TAG_RE = re.compile(r"<[^>]+>")
_SPACE_RE = re.compile(r"\s+")


def clean_text(value: object, *, max_chars: int = MAX_FIELD_CHARS) -> str:
    """One line of plain text: HTML tags and entities removed, spaces collapsed, cut at a word boundary."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = _SPACE_RE.sub(" ", html.unescape(_TAG_RE.sub(" ", str(value)))).strip()
    return _cut(text, max_chars)


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    space = head.rfind(" ")
    return (head[:space] if space > 0 else head).rstrip(" ,;:")


def _clean_list(value: object) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        items = [items]
    out: list[str] = []
    for item in items:
        text = clean_text(item, max_chars=64)
        if text and text.lower() not in {o.lower() for o in out}:
            out.append(text)
    return out


_LIST_FIELDS = frozenset({"tags", "genre", "mood", "instruments"})


def prompt_fields(meta: Mapping[str, object]) -> dict[str, str | list[str]]:
    """The usable fields of ``meta``, cleaned: canonical name -> text (or list of texts for list fields)."""
    fields: dict[str, str | list[str]] = {}
    for name, keys in FIELDS.items():
        raw = next((meta[k] for k in keys if meta.get(k) not in (None, "", [], ())), None)
        if raw is None:
            continue
        value: str | list[str] = _clean_list(raw) if name in _LIST_FIELDS else clean_text(raw)
        if name == "bpm":
            value = re.sub(r"\s*bpm$", "", str(value), flags=re.I)  # the unit is added back when it is printed
        if value:
            fields[name] = value
    return fields


def _style(fields: Mapping[str, object], style: str) -> str:
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r}; valid: {', '.join(STYLES)}")
    if style == "auto":
        return "fma" if MUSIC_FIELDS & set(fields) else "freesound"
    return style


def build_prompt(
    meta: Mapping[str, object],
    rng: np.random.Generator | int,
    *,
    style: str = "auto",
    max_chars: int = DEFAULT_MAX_CHARS,
) -> str:
    """Draw one prompt from ``meta`` (keys as in :data:`FIELDS`; others are ignored).

    Args:
        meta: item metadata, e.g. ``{"title": ..., "tags": [...], "genres": [...], "bpm": 120}``.
        rng: a numpy Generator, or an int seed (same seed, same prompt).
        style: "freesound" (plain values), "fma" (half "key: value", half plain) or "auto" (fma when any music
            field is present).
        max_chars: upper bound on the length; the prompt is cut at a field boundary (a single overlong first
            value is cut at a word boundary).

    Returns:
        the prompt; ``""`` only when ``meta`` has no usable field.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    if isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(int(rng))
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator or an int seed, got {type(rng).__name__}")
    fields = prompt_fields(meta)
    style = _style(fields, style)
    if not fields:
        return ""
    names = list(fields)
    chosen = [names[i] for i in rng.permutation(len(names))[: int(rng.integers(1, len(names) + 1))]]
    keyed = style == "fma" and bool(rng.integers(2))
    case = ("original", "lower", "title")[int(rng.integers(3))]
    pieces: list[str] = []
    for name in chosen:
        value = fields[name]
        if isinstance(value, list):
            value = ", ".join(value[i] for i in rng.permutation(len(value)))
        if keyed:
            value = f"{name}: {value}"
        elif name == "bpm":
            value = f"{value} BPM"  # a bare number says nothing without its unit
        pieces.append(value)
    return _apply_case(_join_bounded(pieces, max_chars), case)


def _join_bounded(pieces: list[str], max_chars: int) -> str:
    """Join with ", ", dropping whole trailing pieces (and list items) that would pass ``max_chars``."""
    words = [w for piece in pieces for w in piece.split(", ")]
    out = _cut(words[0], max_chars)
    for word in words[1:]:
        if len(out) + 2 + len(word) > max_chars:
            break
        out += ", " + word
    return out


def _apply_case(text: str, case: str) -> str:
    if case == "lower":
        return text.lower()
    if case == "title":
        return text.title()
    return text
