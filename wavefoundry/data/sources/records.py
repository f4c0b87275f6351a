"""What a metadata reader returns for one audio file, and the errors it raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class MetadataError(ValueError):
    """Metadata for an item is missing or unusable; the message is one line that names the file."""


class MissingMetadataError(MetadataError):
    """No metadata was found for the audio file."""


class InvalidMetadataError(MetadataError):
    """Metadata exists but cannot be read (bad JSON, wrong types, unparsable fields)."""


@dataclass(kw_only=True)
class SourceRecord:
    """Metadata of one audio file as read from a sidecar, the Freesound API or FMA's ``tracks.csv``.

    ``license`` and ``license_url`` are raw (a title, an id or a URL): the scanner normalises them.
    ``prompt_meta`` holds the fields the prompt builder may draw from (``wavefoundry.data.prompts.FIELDS``);
    ``prompt`` is a fixed prompt given by the user, used verbatim instead of a drawn one.
    """

    source: str
    source_id: str = ""
    title: str = ""
    creator: str = ""
    license: str = ""
    license_url: str = ""
    url: str = ""
    tags: list[str] = field(default_factory=list)
    caption: str = ""
    prompt: str = ""
    prompt_meta: dict[str, Any] = field(default_factory=dict)
    prompt_style: str = "auto"
    attrs: dict[str, Any] = field(default_factory=dict)


def as_text(value: Any, key: str, where: str) -> str:
    """A metadata value that must be text (numbers are accepted and printed)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidMetadataError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    return str(value).strip()


def as_tags(value: Any, key: str, where: str) -> list[str]:
    """A list of strings, or one comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, int, float)) for v in value):
        raise InvalidMetadataError(f"{where}: {key!r} must be a list of strings or a comma-separated string")
    return [str(v).strip() for v in value if str(v).strip()]
