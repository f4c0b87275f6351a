"""Free Music Archive metadata: ``fma_metadata/tracks.csv`` (and ``genres.csv``), read with the csv module.

``tracks.csv`` has a two-row header, (section, field): ``("track", "title")``, ``("artist", "name")``,
``("track", "license")``, ``("track", "genres_all")``, ``("track", "tags")``, ... then, as pandas writes it, a
third row ``track_id,,,...`` naming the index column. List fields are Python literals (``"[21, 38]"``,
``"['indie', 'lo-fi']"``) and are parsed with :func:`ast.literal_eval`, never ``eval``. Audio follows the FMA
layout ``fma_small/000/000002.mp3``: the file name is the zero-padded track id.
"""

from __future__ import annotations

import ast
import csv
import logging
import sys
from pathlib import Path
from typing import Any

from wavefoundry.data.sources.records import InvalidMetadataError, SourceRecord

logger = logging.getLogger(__name__)

#: Columns kept from tracks.csv (the rest — listens, bit rates, dates — is not needed for a dataset build).
COLUMNS = (
    "track.title",
    "track.license",
    "track.genre_top",
    "track.genres",
    "track.genres_all",
    "track.tags",
    "track.information",
    "artist.name",
    "album.title",
    "set.split",
    "set.subset",
)
_REQUIRED = ("track.title", "track.license")


def fma_track_id(path: str | Path) -> str | None:
    """The track id of an FMA audio file (``000/000002.mp3`` -> ``"2"``), else None."""
    stem = Path(path).stem
    return str(int(stem)) if stem.isdigit() else None


def _header(reader: Any, where: str) -> list[str]:
    try:
        top, sub = next(reader), next(reader)
    except StopIteration:
        raise InvalidMetadataError(f"{where}: expected a two-row header (section, field)") from None
    names, section = [], ""
    for i in range(max(len(top), len(sub))):
        section = (top[i] if i < len(top) else "").strip() or section  # merged header cells repeat the left one
        field = (sub[i] if i < len(sub) else "").strip()
        names.append(f"{section}.{field}" if section and field else field or section)
    missing = [c for c in _REQUIRED if c not in names]
    if missing:
        raise InvalidMetadataError(f"{where}: not an FMA tracks.csv (no column(s) {', '.join(missing)})")
    return names


def read_fma_tracks(path: str | Path) -> dict[str, dict[str, str]]:
    """Read ``tracks.csv`` into ``{track_id: {"track.title": ..., "artist.name": ..., ...}}`` (raw strings).

    Raises:
        InvalidMetadataError: the file is missing, not CSV, or lacks the FMA header.
    """
    path = Path(path)
    # Free-text fields (track.information) can exceed csv's default 128 KiB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    tracks: dict[str, dict[str, str]] = {}
    skipped = 0
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            names = _header(reader, str(path))
            keep = [(i, name) for i, name in enumerate(names) if name in COLUMNS]
            for row in reader:
                if not row or not row[0].strip().isdigit():
                    # Blank lines and pandas' "track_id,,," index-name row are expected; anything else is not.
                    skipped += row[0].strip() not in ("", "track_id") if row else 0
                    continue
                tracks[str(int(row[0]))] = {name: row[i] if i < len(row) else "" for i, name in keep}
    except OSError as exc:
        raise InvalidMetadataError(f"cannot read FMA tracks {path}: {exc.strerror or exc}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InvalidMetadataError(f"{path}: not a readable CSV file ({exc})") from None
    if skipped:
        logger.warning("%s: skipped %d rows without a numeric track id", path, skipped)
    return tracks


def read_fma_genres(path: str | Path) -> dict[int, str]:
    """Read FMA ``genres.csv`` (``genre_id,#tracks,parent,title,top_level``) into ``{genre_id: title}``."""
    genres: dict[int, str] = {}
    try:
        with Path(path).open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                gid, title = (row.get("genre_id") or "").strip(), (row.get("title") or "").strip()
                if gid.isdigit() and title:
                    genres[int(gid)] = title
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise InvalidMetadataError(f"cannot read FMA genres {path}: {exc}") from None
    return genres


def _literal_list(row: dict[str, str], column: str, where: str) -> list[Any]:
    text = row.get(column, "").strip()
    if not text:
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise InvalidMetadataError(f"{where}: column {column} is not a Python list literal: {text[:60]!r}") from None
    if not isinstance(value, (list, tuple)):
        raise InvalidMetadataError(f"{where}: column {column} must be a list, got {text[:60]!r}")
    return list(value)


def fma_record(track_id: str, row: dict[str, str], genres: dict[int, str] | None = None) -> SourceRecord:
    """A :class:`SourceRecord` for one row of ``tracks.csv``.

    Genre names come from ``track.genre_top`` and, with ``genres`` (from ``genres.csv``), the ids in
    ``track.genres_all``.

    Raises:
        InvalidMetadataError: a list column is not a valid literal.
    """
    where = f"FMA track {track_id}"
    tags = [str(t).strip() for t in _literal_list(row, "track.tags", where) if str(t).strip()]
    names = [row.get("track.genre_top", "").strip()]
    for gid in _literal_list(row, "track.genres_all", where) or _literal_list(row, "track.genres", where):
        if isinstance(gid, int) and genres and gid in genres:
            names.append(genres[gid])
    genre_names = list(dict.fromkeys(n for n in names if n))
    title, artist, album = (row.get(k, "").strip() for k in ("track.title", "artist.name", "album.title"))
    fma_attrs = {k.split(".")[1]: row[k].strip() for k in ("set.split", "set.subset") if row.get(k, "").strip()}
    meta = {"title": title, "artist": artist, "album": album, "genres": genre_names, "tags": tags}
    meta["description"] = row.get("track.information", "")
    return SourceRecord(
        source="fma",
        source_id=str(track_id),
        title=title,
        creator=artist,
        license=row.get("track.license", "").strip(),
        tags=tags,
        prompt_meta={k: v for k, v in meta.items() if v},
        prompt_style="fma",
        attrs={"fma": fma_attrs} if fma_attrs else {},
    )
