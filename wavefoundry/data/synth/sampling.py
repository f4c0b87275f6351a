"""Seeded attribute draws that a caller may pin: every random choice of an item goes through a Chooser.

The draw is always made (so the random stream, and every later choice, stays the same whatever is pinned);
an override only replaces the drawn value. Overrides that no draw asked for are an error, so a typo never
passes silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Chooser:
    """Draw named attributes from ``rng``; ``overrides`` pins some of them by name."""

    def __init__(self, rng: np.random.Generator, overrides: Mapping[str, Any] | None = None) -> None:
        self.rng = rng
        self.overrides = dict(overrides or {})
        self.asked: list[str] = []

    def _pin(self, key: str, drawn: Any) -> Any:
        self.asked.append(key)
        return self.overrides.get(key, drawn)

    def choice(self, key: str, options: Sequence[Any], p: Sequence[float] | None = None) -> Any:
        """One of ``options`` (weights ``p``); an override must be one of them."""
        drawn = options[int(self.rng.choice(len(options), p=p))]
        value = self._pin(key, drawn)
        if value not in options:
            raise ValueError(f"override {key}={value!r} is not one of {', '.join(map(repr, options))}")
        return value

    def uniform(self, key: str, low: float, high: float, *, digits: int | None = None) -> float:
        """A float in [low, high], rounded to ``digits`` when given; an override must lie in the range."""
        drawn = float(self.rng.uniform(low, high))
        if digits is not None:  # rounding may step just past a bound that is not itself round
            drawn = min(max(round(drawn, digits), low), high)
        value = self._pin(key, drawn)
        return self._in_range(key, value, low, high, float)

    def integer(self, key: str, low: int, high: int) -> int:
        """An int in [low, high] (both included); an override must lie in the range."""
        drawn = int(self.rng.integers(low, high + 1))
        return self._in_range(key, self._pin(key, drawn), low, high, int)

    def number(self, key: str, drawn: float, low: float, high: float) -> float:
        """Pin a float the caller drew itself (e.g. from a mixture); an override must lie in [low, high]."""
        return self._in_range(key, self._pin(key, drawn), low, high, float)

    @staticmethod
    def _in_range(key: str, value: Any, low: float, high: float, kind: type) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"override {key}={value!r} must be a number")
        if not low <= value <= high:
            raise ValueError(f"override {key}={value!r} is outside [{low}, {high}]")
        return kind(value)

    def check_used(self) -> None:
        """Raise if an override named no attribute that this item drew.

        Raises:
            ValueError: listing the unused keys and the keys this item did draw.
        """
        unused = sorted(set(self.overrides) - set(self.asked))
        if unused:
            raise ValueError(
                f"override keys {unused} are not attributes of this item; it drew: {', '.join(self.asked)}"
            )


@dataclass
class Rendered:
    """What a category generator returns: the source image before pan and level, and its attributes.

    ``image`` is (1, T) for a point source or (2, T) for a stereo image whose channel correlation is
    1 - ``attrs["stereo_width"]``; the builder applies pan and loudness afterwards.
    """

    image: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
