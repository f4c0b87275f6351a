"""Pictures for AVCaps (docs/avcaps.md): a few coloured shapes on a plain background, drawn with Pillow.

A :class:`Scene` says what is drawn; :func:`render_scene` draws it. The same scene always gives the same pixels
(integer geometry, no anti-aliasing randomness), so an item's picture depends only on its (seed, index).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

#: Object colours (image only: the sound never tells them).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 170, 60),
    "cyan": (40, 200, 220),
    "blue": (40, 80, 230),
    "purple": (140, 50, 190),
    "pink": (245, 120, 180),
}
#: Background colours (image only).
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "grey": (120, 120, 120),
    "white": (245, 245, 245),
    "navy": (15, 25, 80),
    "beige": (225, 205, 160),
}
CURTAIN = (170, 170, 170)  # with a black outline, visible on every background
#: Smallest luminance difference between an object colour and its background (so every shape stays visible).
MIN_CONTRAST = 60.0


def luminance(rgb: tuple[int, int, int]) -> float:
    """Rec. 601 luma of an 8-bit colour."""
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def backgrounds_for(color: str) -> tuple[str, ...]:
    """Background names with enough contrast to ``color``."""
    lum = luminance(COLORS[color])
    return tuple(b for b, rgb in BACKGROUNDS.items() if abs(luminance(rgb) - lum) >= MIN_CONTRAST)


def _regular(k: int, phase: float) -> list[tuple[float, float]]:
    """Corners of a regular k-gon of radius 1 (unit coordinates, y down)."""
    return [(math.cos(phase + 2 * math.pi * j / k), math.sin(phase + 2 * math.pi * j / k)) for j in range(k)]


def _star() -> list[tuple[float, float]]:
    pts = []
    for j in range(10):
        rad, ang = (1.0 if j % 2 == 0 else 0.42), -math.pi / 2 + math.pi * j / 5
        pts.append((rad * math.cos(ang), rad * math.sin(ang)))
    return pts


_C = 0.35  # half-width of the arms of the cross
#: Shape name -> outline in unit coordinates (None: drawn by a special case below).
OUTLINES: dict[str, list[tuple[float, float]] | None] = {
    "circle": None,
    "ring": None,
    "half-disc": None,
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "triangle": _regular(3, -math.pi / 2),
    "downward triangle": _regular(3, math.pi / 2),
    "diamond": [(0.0, -1.0), (0.7, 0.0), (0.0, 1.0), (-0.7, 0.0)],
    "pentagon": _regular(5, -math.pi / 2),
    "hexagon": _regular(6, 0.0),
    "star": _star(),
    "pillar": [(-0.35, -1.0), (0.35, -1.0), (0.35, 1.0), (-0.35, 1.0)],
    "bar": [(-1.0, -0.35), (1.0, -0.35), (1.0, 0.35), (-1.0, 0.35)],
    "cross": [
        (-_C, -1),
        (_C, -1),
        (_C, -_C),
        (1, -_C),
        (1, _C),
        (_C, _C),
        (_C, 1),
        (-_C, 1),
        (-_C, _C),
        (-1, _C),
        (-1, -_C),
        (-_C, -_C),
    ],
    "hourglass": [(-0.8, -1.0), (0.8, -1.0), (0.0, 0.0), (0.8, 1.0), (-0.8, 1.0), (0.0, 0.0)],
}
SHAPES = tuple(OUTLINES)
PLURALS = {"cross": "crosses", "hourglass": "hourglasses"}


def plural(shape: str) -> str:
    """'circle' -> 'circles', 'cross' -> 'crosses', 'downward triangle' -> 'downward triangles'."""
    return PLURALS.get(shape, shape + "s")


@dataclass(frozen=True)
class Scene:
    """What a picture shows. Coordinates and radius are fractions of the image width.

    Attributes:
        shape: one of :data:`SHAPES`. color: one of :data:`COLORS`. background: one of :data:`BACKGROUNDS`.
        count: number of objects, 1..5, arranged on a small circle around (x, y).
        x, y: centre of the group in [0, 1]. radius: object radius in (0, 0.25].
        phase: angle of the first object on the group's circle (radians).
        hidden: a grey curtain covers the group (shape, colour and count are not visible; position and size are).
    """

    shape: str
    color: str
    background: str
    count: int
    x: float
    y: float
    radius: float
    phase: float = 0.0
    hidden: bool = False

    def __post_init__(self) -> None:
        for name, value, valid in (
            ("shape", self.shape, SHAPES),
            ("color", self.color, COLORS),
            ("background", self.background, BACKGROUNDS),
        ):
            if value not in valid:
                raise ValueError(f"{name} must be one of {tuple(valid)}, got {value!r}")
        if not 1 <= self.count <= 5:
            raise ValueError(f"count must be in 1..5, got {self.count}")
        if not (0 <= self.x <= 1 and 0 <= self.y <= 1 and 0 < self.radius <= 0.25):
            raise ValueError(f"x, y must be in [0, 1] and radius in (0, 0.25], got {self.x}, {self.y}, {self.radius}")

    def centres(self) -> list[tuple[float, float]]:
        """Object centres (fractions of the width): one at (x, y), else on a circle of radius 1.3 r."""
        if self.count == 1:
            return [(self.x, self.y)]
        rho = 1.3 * self.radius if self.count == 2 else 1.5 * self.radius
        angles = [self.phase + 2 * math.pi * j / self.count for j in range(self.count)]
        return [(self.x + rho * math.cos(a), self.y + rho * math.sin(a)) for a in angles]

    def extent(self) -> float:
        """Half the width of the group (fraction of the image width)."""
        return self.radius if self.count == 1 else (1.3 if self.count == 2 else 1.5) * self.radius + self.radius


def _draw_one(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: tuple) -> None:
    box = (round(cx - r), round(cy - r), round(cx + r), round(cy + r))
    special: dict[str, Callable[[], None]] = {
        "circle": lambda: draw.ellipse(box, fill=fill),
        "ring": lambda: draw.ellipse(box, outline=fill, width=max(2, round(0.3 * r))),
        "half-disc": lambda: draw.pieslice(box, 180, 360, fill=fill),
    }
    if shape in special:
        special[shape]()
        return
    draw.polygon([(round(cx + r * u), round(cy + r * v)) for u, v in OUTLINES[shape]], fill=fill)


def render_scene(scene: Scene, size: int = 224) -> np.ndarray:
    """Draw ``scene`` on a ``size`` x ``size`` canvas.

    Returns:
        (size, size, 3) uint8 RGB pixels.
    """
    if not 16 <= size <= 4096:
        raise ValueError(f"image size must be in [16, 4096], got {size}")
    image = Image.new("RGB", (size, size), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    if scene.hidden:
        e = scene.extent() * size
        cx, cy = scene.x * size, scene.y * size
        draw.rectangle(
            (round(cx - e), round(cy - e), round(cx + e), round(cy + e)), fill=CURTAIN, outline=(0, 0, 0), width=2
        )
    else:
        for ux, uy in scene.centres():
            _draw_one(draw, scene.shape, ux * size, uy * size, scene.radius * size, COLORS[scene.color])
    return np.asarray(image, dtype=np.uint8).copy()
