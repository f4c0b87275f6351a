"""The manifest: one JSON object per line describing one audio item (schema in DESIGN.md, "Data formats")."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wavefoundry.config import atomic_write_bytes

_ID_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
SPLITS = ("train", "valid", "test")


class ManifestError(ValueError):
    """A manifest line is not a valid item; the message names the file and line."""


@dataclass(kw_only=True)
class ManifestItem:
    """One audio item. ``id`` is dot-free (it becomes a WebDataset key); ``attrs`` is free-form ground truth."""

    id: str
    path: str
    duration_s: float
    sample_rate: int
    channels: int
    prompt: str = ""
    caption: str = ""
    source: str = ""
    source_id: str = ""
    url: str = ""
    title: str = ""
    creator: str = ""
    license: str = ""
    license_url: str = ""
    attribution_required: bool = False
    tags: list[str] = field(default_factory=list)
    split: str = "train"
    sha256: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    #: Audio-visual items (docs/avcaps.md): the picture's path and every reference caption; left out when empty.
    image: str = ""
    captions: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _ID_RE.match(self.id):
            raise ValueError(f"id {self.id!r} must be non-empty and use only letters, digits, '_' and '-'")
        if self.duration_s <= 0:
            raise ValueError(f"{self.id}: duration_s must be positive, got {self.duration_s}")
        if self.sample_rate <= 0 or self.channels <= 0:
            raise ValueError(f"{self.id}: sample_rate and channels must be positive")
        if self.split not in SPLITS:
            raise ValueError(f"{self.id}: split must be one of {SPLITS}, got {self.split!r}")

    @property
    def text(self) -> str:
        """The text conditioning of the item: the prompt, else the caption."""
        return self.prompt or self.caption

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        for key in _OPTIONAL_FIELDS:  # audio-only manifests stay as they were
            if not data[key]:
                del data[key]
        return json.dumps(data, ensure_ascii=False, sort_keys=False)


_FIELDS = {f.name for f in dataclasses.fields(ManifestItem)}
_OPTIONAL_FIELDS = ("image", "captions")


def item_from_dict(data: dict, *, where: str = "manifest") -> ManifestItem:
    """Build a :class:`ManifestItem` strictly: unknown keys and bad values raise :class:`ManifestError`."""
    unknown = set(data) - _FIELDS
    if unknown:
        raise ManifestError(f"{where}: unknown keys {sorted(unknown)}; valid keys: {', '.join(sorted(_FIELDS))}")
    try:
        return ManifestItem(**data)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"{where}: {exc}") from None


def read_manifest(path: str | Path) -> list[ManifestItem]:
    """Read a JSONL manifest; relative ``path`` fields are resolved against the manifest's folder."""
    return list(iter_manifest(path))


def iter_manifest(path: str | Path) -> Iterator[ManifestItem]:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(data, dict):
                raise ManifestError(f"{path}:{lineno}: expected a JSON object")
            item = item_from_dict(data, where=f"{path}:{lineno}")
            if not Path(item.path).is_absolute():
                item.path = str(path.parent / item.path)
            if item.image and not Path(item.image).is_absolute():
                item.image = str(path.parent / item.image)
            yield item


def write_manifest(path: str | Path, items: Iterable[ManifestItem]) -> Path:
    """Write items as JSONL (atomically); item ids must be unique."""
    seen: set[str] = set()
    lines = []
    for item in items:
        if item.id in seen:
            raise ManifestError(f"duplicate id {item.id!r}")
        seen.add(item.id)
        lines.append(item.to_json())
    path = Path(path)
    atomic_write_bytes(path, ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8"))
    return path
