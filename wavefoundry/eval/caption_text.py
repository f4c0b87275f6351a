"""The caption normaliser shared by the caption metrics, and the checks on (candidates, references) sets.

coco-caption runs the Stanford PTB tokenizer (Java) before scoring; ``pycocoevalcap``'s scorers themselves only
split on whitespace, so raw strings there treat "Dog." and "dog" as different words. The normaliser here needs
no Java and is close to PTB + coco's punctuation removal: NFKC, lowercase, then a token is a run of letters
and digits; a hyphen or apostrophe joining two such runs stays inside the token ("sine-wave", "it's"), as does
a decimal point or thousands comma between digits ("1.5", "1,000"); every other character (punctuation,
symbols, underscores, whitespace) separates tokens.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_TOKEN_RE = re.compile(r"[^\W_]+(?:[-'’][^\W_]+|(?<=\d)[.,]\d+)*")


@dataclass(frozen=True)
class CaptionScore:
    """A corpus score and the score of every item (same ids as the candidates)."""

    score: float
    per_id: dict[str, float]


def tokenize(text: str) -> list[str]:
    """Normalised tokens of a caption: ``"A Saw-lead, 1.5 s!"`` -> ``["a", "saw-lead", "1.5", "s"]``."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    return _TOKEN_RE.findall(text)


def normalize_caption(text: str) -> str:
    """The tokens of :func:`tokenize` joined by single spaces (the form ``pycocoevalcap`` expects)."""
    return " ".join(tokenize(text))


def check_caption_sets(candidates: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> list[str]:
    """The sorted ids of a (candidates, references) pair, after checking that they can be scored.

    Raises:
        ValueError: no items, ids missing on either side, a non-string caption, or an empty reference list.
    """
    if not candidates:
        raise ValueError("no candidate captions to score")
    missing = sorted(set(candidates) - set(references))
    extra = sorted(set(references) - set(candidates))
    if missing or extra:
        raise ValueError(
            f"candidates and references must have the same ids: {len(missing)} candidate ids have no references "
            f"{missing[:5]}, {len(extra)} reference ids have no candidate {extra[:5]}"
        )
    for i, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, Sequence):
            raise ValueError(f"references of {i!r} must be a list of strings, got {type(refs).__name__}")
        if len(refs) == 0:
            raise ValueError(f"item {i!r} has an empty reference list (each item needs >= 1 reference caption)")
        if not all(isinstance(r, str) for r in refs):
            raise ValueError(f"references of {i!r} must all be strings")
        if not isinstance(candidates[i], str):
            raise ValueError(f"candidate of {i!r} must be a string, got {type(candidates[i]).__name__}")
    return sorted(candidates)
