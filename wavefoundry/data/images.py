"""Image files for audio-visual items: read any Pillow format as RGB uint8, optionally resized; write PNG.

Defined behaviour for awkward pictures: grey, palette, CMYK and alpha images are converted to RGB (alpha is
composited on black); a picture of another size is resized (bicubic, aspect ratio not kept) when ``size`` is
given; an unreadable, truncated or empty file raises :class:`ImageError`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from wavefoundry.config import atomic_write_bytes

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
#: Largest picture accepted (pixels): guards memory against decompression bombs.
MAX_PIXELS = 64_000_000


class ImageError(ValueError):
    """An image file cannot be used; the message names the file."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; transparent pixels become black."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (0, 0, 0))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def load_image(path: str | Path, *, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB.

    Args:
        path: any format Pillow reads (PNG, JPEG, WebP, BMP, GIF: first frame, TIFF).
        size: resize to ``size`` x ``size`` (or (H, W)) when the picture differs; None keeps its size.

    Raises:
        ImageError: missing, unreadable, truncated, empty or too large.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageError(f"{path}: {im.width}x{im.height} is larger than {MAX_PIXELS} pixels")
            im.load()
            rgb = to_rgb(im)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    if rgb.width == 0 or rgb.height == 0:
        raise ImageError(f"{path}: empty image")
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        if (rgb.height, rgb.width) != (h, w):
            rgb = rgb.resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8).copy()


def save_png(path: str | Path, pixels: np.ndarray) -> Path:
    """Write (H, W, 3) uint8 RGB as PNG, atomically. The bytes depend only on the pixels."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be (H, W, 3) uint8, got {pixels.shape} {pixels.dtype}")
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=False, compress_level=6)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
