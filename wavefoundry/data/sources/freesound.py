"""Freesound API metadata: sound objects as the API returns them (``/apiv2/sounds/<id>/``, search pages).

A sound object has ``id``, ``name``, ``tags``, ``description``, ``license`` (a Creative Commons deed URL),
``username``, ``url`` and optional facts (``duration``, ``samplerate``, ``channels``, ``avg_rating``,
``num_downloads``, ...). Objects come either as a sidecar per audio file or in one JSON file (a list, a search
page ``{"results": [...]}``, an ``{id: object}`` mapping, or JSON Lines); audio files are matched by the id at
the start of their name: ``12345.wav``, ``12345_dog-bark.flac``, ``12345__user__dog bark.wav``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from wavefoundry.audio.io import AUDIO_SUFFIXES
from wavefoundry.data.sources.records import InvalidMetadataError, SourceRecord, as_tags, as_text

logger = logging.getLogger(__name__)

_ID_RE = re.compile(r"^(\d+)(?=$|[_\-\s.])")
#: Optional facts kept in ``attrs["freesound"]`` when present.
EXTRA_KEYS = (
    "duration",
    "samplerate",
    "channels",
    "bitdepth",
    "type",
    "avg_rating",
    "num_ratings",
    "num_downloads",
    "created",
    "pack",
    "geotag",
)


def looks_like_freesound(obj: Any) -> bool:
    """Whether a JSON object is a Freesound sound object (rather than our own sidecar keys)."""
    return isinstance(obj, dict) and {"id", "name", "username"} <= obj.keys()


def freesound_id(path: str | Path) -> str | None:
    """The Freesound id at the start of a file name (``"12345_dog.wav"`` -> ``"12345"``), else None."""
    match = _ID_RE.match(Path(path).name)
    return str(int(match.group(1))) if match else None


def freesound_record(obj: dict[str, Any], *, where: str = "freesound") -> SourceRecord:
    """A :class:`SourceRecord` from one Freesound sound object.

    Raises:
        InvalidMetadataError: not an object, no ``id``, or fields of the wrong type.
    """
    if not isinstance(obj, dict) or obj.get("id") in (None, ""):
        raise InvalidMetadataError(f"{where}: not a Freesound sound object (no 'id')")
    sound_id = as_text(obj["id"], "id", where)
    name = as_text(obj.get("name"), "name", where)
    tags = as_tags(obj.get("tags"), "tags", where)
    description = as_text(obj.get("description"), "description", where)
    stem = Path(name).stem if Path(name).suffix.lower() in AUDIO_SUFFIXES else name
    extra = {k: obj[k] for k in EXTRA_KEYS if obj.get(k) not in (None, "")}
    return SourceRecord(
        source="freesound",
        source_id=sound_id,
        title=name,
        creator=as_text(obj.get("username"), "username", where),
        license=as_text(obj.get("license"), "license", where),
        url=as_text(obj.get("url"), "url", where) or f"https://freesound.org/s/{sound_id}/",
        tags=tags,
        prompt_meta={"title": stem, "tags": tags, "description": description},
        prompt_style="freesound",
        attrs={"freesound": extra} if extra else {},
    )


def _objects(data: Any, where: str) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        return data["results"]
    if looks_like_freesound(data):
        return [data]
    if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        return [{"id": key, **value} for key, value in data.items()]
    raise InvalidMetadataError(f"{where}: expected a list of sound objects, a search page or an id -> object map")


def load_freesound_index(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read Freesound sound objects from a JSON (or ``.jsonl``) file into ``{id: object}``.

    Objects without an ``id`` are skipped with a warning.

    Raises:
        InvalidMetadataError: the file is missing, not valid JSON or not a known layout.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".jsonl":
            data: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
    except OSError as exc:
        raise InvalidMetadataError(f"cannot read Freesound metadata {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidMetadataError(f"{path}: not valid JSON ({exc})") from None
    index: dict[str, dict[str, Any]] = {}
    skipped = 0
    for obj in _objects(data, str(path)):
        if not isinstance(obj, dict) or obj.get("id") in (None, "") or not str(obj["id"]).strip().isdigit():
            skipped += 1
            continue
        index[str(int(str(obj["id"]).strip()))] = obj
    if skipped:
        logger.warning("%s: skipped %d entries without a numeric 'id'", path, skipped)
    return index
