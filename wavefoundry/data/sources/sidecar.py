"""Sidecar metadata: ``foo.wav`` + ``foo.json`` (or ``foo.wav.json``) next to it.

Our own keys (all optional except a licence, which the scanner demands)::

    {"title": "Rain on a tin roof", "creator": "Jane Doe", "license": "CC-BY-4.0",
     "license_url": "https://creativecommons.org/licenses/by/4.0/", "tags": ["rain", "roof"],
     "description": "...", "caption": "...", "prompt": "...", "url": "https://...",
     "source": "field-recordings", "source_id": "r-0042", "genre": ..., "artist": ..., "album": ...,
     "mood": ..., "instruments": ..., "bpm": 120, "key": "C minor", "attrs": {...}}

``licence`` / ``licence_url`` are accepted spellings; ``artist`` or ``author`` stand in for a missing
``creator``. A sidecar holding a Freesound API sound object is read as one. Unknown keys are kept in
``attrs["extra"]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wavefoundry.data.sources.freesound import freesound_record, looks_like_freesound
from wavefoundry.data.sources.records import (
    InvalidMetadataError,
    MissingMetadataError,
    SourceRecord,
    as_tags,
    as_text,
)

_TEXT_KEYS = ("title", "creator", "url", "source", "source_id", "description", "caption", "prompt")
_MUSIC_KEYS = ("genre", "genres", "artist", "album", "mood", "instruments", "bpm", "key")
_KNOWN = frozenset(
    (*_TEXT_KEYS, *_MUSIC_KEYS, "license", "licence", "license_url", "licence_url", "tags", "author", "attrs")
)


def sidecar_path(audio_path: str | Path) -> Path | None:
    """The sidecar JSON of an audio file (``foo.json``, else ``foo.wav.json``), or None when there is none."""
    audio_path = Path(audio_path)
    for candidate in (audio_path.with_suffix(".json"), audio_path.with_name(audio_path.name + ".json")):
        if candidate.is_file():
            return candidate
    return None


def load_sidecar(audio_path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Find and parse the sidecar of ``audio_path``.

    Raises:
        MissingMetadataError: no sidecar. InvalidMetadataError: unreadable, not JSON, or not a JSON object.
    """
    path = sidecar_path(audio_path)
    if path is None:
        raise MissingMetadataError(f"{audio_path}: no metadata (no sidecar {Path(audio_path).stem}.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidMetadataError(f"{path}: cannot read metadata ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidMetadataError(f"{path}: invalid JSON metadata ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidMetadataError(f"{path}: metadata must be a JSON object, got {type(data).__name__}")
    return path, data


def read_sidecar(audio_path: str | Path, *, freesound_only: bool = False) -> SourceRecord:
    """The :class:`SourceRecord` of ``audio_path`` from its sidecar JSON (our keys or a Freesound object).

    Args:
        freesound_only: accept only Freesound sound objects (``metadata="freesound"``).

    Raises:
        MissingMetadataError, InvalidMetadataError.
    """
    path, data = load_sidecar(audio_path)
    if looks_like_freesound(data):
        return freesound_record(data, where=str(path))
    if freesound_only:
        raise InvalidMetadataError(f"{path}: not a Freesound sound object (needs 'id', 'name', 'username')")
    return own_record(data, where=str(path))


def own_record(data: dict[str, Any], *, where: str) -> SourceRecord:
    """A :class:`SourceRecord` from our own sidecar keys (see the module docstring)."""
    text = {key: as_text(data.get(key), key, where) for key in _TEXT_KEYS}
    license_text = as_text(data.get("license", data.get("licence")), "license", where)
    license_url = as_text(data.get("license_url", data.get("licence_url")), "license_url", where)
    tags = as_tags(data.get("tags"), "tags", where)
    attrs = data.get("attrs") or {}
    if not isinstance(attrs, dict):
        raise InvalidMetadataError(f"{where}: 'attrs' must be a JSON object")
    extra = {k: v for k, v in data.items() if k not in _KNOWN}
    if extra:
        attrs = {**attrs, "extra": extra}
    music = {key: data[key] for key in _MUSIC_KEYS if data.get(key) not in (None, "", [])}
    prompt_meta = {"title": text["title"], "tags": tags, "description": text["description"]}
    prompt_meta.update({"caption": text["caption"], **music})
    return SourceRecord(
        source=text["source"] or "folder",
        source_id=text["source_id"],
        title=text["title"],
        creator=text["creator"]
        or as_text(data.get("artist"), "artist", where)
        or as_text(data.get("author"), "author", where),
        license=license_text,
        license_url=license_url,
        url=text["url"],
        tags=tags,
        caption=text["caption"],
        prompt=text["prompt"],
        prompt_meta={k: v for k, v in prompt_meta.items() if v not in (None, "", [])},
        attrs=attrs,
    )
