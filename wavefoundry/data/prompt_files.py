"""Benchmark prompt files: the caption CSVs that text-to-audio models are evaluated on.

The format is detected from the header (docs/benchmark_prompts.md):

* AudioCaps (Kim et al. 2019): ``audiocap_id,youtube_id,start_time,caption``; id = ``audiocap_id``; the clips
  are 10 s AudioSet segments, so every prompt asks for 10 s.
* Song Describer (Manco et al. 2023), ``song_describer.csv``: ``caption_id,track_id,caption,is_valid_subset,
  familiarity,artist_id,album_id,path,duration``; id = ``caption_id``. Its ``duration`` is the length of the whole
  original Jamendo track (the dataset's audio are ~2 min excerpts), not a clip length: prompts have no duration.
* plain: ``id,caption`` or ``id,caption,seconds`` (an empty ``seconds`` cell: no duration).

Ids become file names (``<id>.wav``), so they must be safe: letters, digits, ``_``, ``-`` and ``.``, not starting
with a dot or ending with one, at most :data:`MAX_ID_CHARS` characters, not a reserved Windows device name. A row
with an unsafe or empty id, an empty caption, a bad duration or the wrong number of fields is rejected with its
row number and the reason (the header is row 1); duplicate ids are an error, as is a header of no known format.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

MAX_ID_CHARS = 128
#: Rows read at most (AudioCaps' training split has ~50k): bounds memory on a wrong or huge file.
MAX_ROWS = 1_000_000
#: Length of an AudioCaps clip (a 10 s AudioSet segment).
AUDIOCAPS_SECONDS = 10.0
_SAFE_ID = re.compile(r"^[A-Za-z0-9_\-](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_\-])?$")
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


class PromptFileError(ValueError):
    """A prompt file cannot be used as a whole (missing, unknown header, duplicate ids, no valid row)."""


@dataclass(frozen=True, kw_only=True)
class BenchmarkPrompt:
    """One caption to generate: ``id`` names the output file, ``seconds`` is None when the file gives none."""

    id: str
    caption: str
    seconds: float | None
    source_row: int  # row number in the CSV; the header is row 1


@dataclass(kw_only=True)
class PromptTable:
    """A read prompt file: its detected ``format``, the valid prompts in file order, and the rejected rows."""

    path: str
    format: str
    prompts: list[BenchmarkPrompt]
    rejects: list[dict] = field(default_factory=list)  # {"row", "id", "reason"}


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a file name, or None when it can."""
    if not value:
        return "empty id"
    if len(value) > MAX_ID_CHARS:
        return f"id has {len(value)} characters (at most {MAX_ID_CHARS})"
    if not _SAFE_ID.match(value):
        return (f"unsafe id {value!r}: use letters, digits, '_', '-' and '.', not starting or ending with '.' "
                "(no path separators or spaces)")  # fmt: skip
    if value.split(".")[0].upper() in _RESERVED:
        return f"id {value!r} is a reserved device name on Windows"
    return None


def _seconds(cell: str | None) -> float | None:
    """A duration cell: None when empty; ValueError unless a finite number > 0."""
    if cell is None or not cell.strip():
        return None
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"seconds must be a number, got {cell.strip()!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"seconds must be a finite number > 0, got {cell.strip()!r}")
    return value


def _audiocaps(row: dict[str, str]) -> tuple[str, str, float | None]:
    return row["audiocap_id"], row["caption"], AUDIOCAPS_SECONDS


def _song_describer(row: dict[str, str]) -> tuple[str, str, float | None]:
    return row["caption_id"], row["caption"], None  # "duration" is the full track's, not a clip length


def _plain(row: dict[str, str]) -> tuple[str, str, float | None]:
    return row["id"], row["caption"], _seconds(row.get("seconds"))


@dataclass(frozen=True, kw_only=True)
class _Format:
    name: str
    id_column: str
    required: tuple[str, ...]  # in the order the format's files have them
    optional: tuple[str, ...] | None  # None: any further columns
    read: Callable[[dict[str, str]], tuple[str, str, float | None]]

    def matches(self, header: set[str]) -> bool:
        allowed = None if self.optional is None else {*self.required, *self.optional}
        return set(self.required) <= header and (allowed is None or header <= allowed)


#: Supported formats, tried in order.
FORMATS: tuple[_Format, ...] = (
    _Format(
        name="audiocaps",
        id_column="audiocap_id",
        required=("audiocap_id", "youtube_id", "start_time", "caption"),
        optional=(),
        read=_audiocaps,
    ),
    _Format(
        name="song-describer",
        id_column="caption_id",
        required=("caption_id", "track_id", "caption"),
        optional=None,  # is_valid_subset, familiarity, artist_id, album_id, path, duration, tags, ...
        read=_song_describer,
    ),
    _Format(
        name="plain",
        id_column="id",
        required=("id", "caption"),
        optional=("seconds",),
        read=_plain,
    ),
)


def _columns(fmt: _Format) -> str:
    """The columns of a format as the error message lists them: required, then [optional]."""
    more = "" if not fmt.optional else f"[,{','.join(fmt.optional)}]"
    return ",".join(fmt.required) + more + (",..." if fmt.optional is None else "")


def _detect(header: list[str], path: Path) -> _Format:
    names = set(header)
    if len(names) != len(header):
        raise PromptFileError(f"{path}: repeated column names in the header {header}")
    for fmt in FORMATS:
        if fmt.matches(names):
            return fmt
    supported = "; ".join(f"{f.name}: {_columns(f)}" for f in FORMATS)
    raise PromptFileError(f"{path}: unknown prompt file header {','.join(header)}; supported formats: {supported}")


def _row(fmt: _Format, values: list[str], header: list[str]) -> tuple[str, str, float | None]:
    """(id, caption, seconds) of one row; ValueError with the reason when the row is unusable."""
    if len(values) != len(header):
        raise ValueError(f"row has {len(values)} fields, the header has {len(header)}")
    row = {name: value.strip() for name, value in zip(header, values)}
    item_id, caption, seconds = fmt.read(row)
    problem = id_problem(item_id)
    if problem:
        raise ValueError(problem)
    if not caption:
        raise ValueError("empty caption")
    return item_id, caption, seconds


def read_prompt_table(path: str | Path) -> PromptTable:
    """Read a benchmark prompt CSV (AudioCaps, Song Describer or plain), detecting the format from its header.

    Raises:
        PromptFileError: missing or empty file, unknown header, duplicate ids, more than :data:`MAX_ROWS` rows,
            or no valid row at all.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"no prompt file at {path}")
    with open(path, encoding="utf-8-sig", newline="") as fh:  # utf-8-sig: spreadsheet exports start with a BOM
        reader = csv.reader(fh)
        header = [name.strip().lower() for name in next(reader, [])]
        if not header:
            raise PromptFileError(f"{path}: empty file (expected a header row)")
        fmt = _detect(header, path)
        prompts, rejects, first_row = [], [], {}
        for row_number, values in enumerate(reader, start=2):
            if row_number > MAX_ROWS + 1:
                raise PromptFileError(f"{path}: more than {MAX_ROWS} rows")
            if not any(v.strip() for v in values):
                continue  # blank line
            try:
                item_id, caption, seconds = _row(fmt, values, header)
            except (KeyError, ValueError) as exc:
                cell = values[header.index(fmt.id_column)] if len(values) > header.index(fmt.id_column) else ""
                rejects.append({"row": row_number, "id": cell.strip(), "reason": str(exc)})
                continue
            if item_id in first_row:
                raise PromptFileError(f"{path}: duplicate id {item_id!r} in rows {first_row[item_id]} and {row_number}")
            first_row[item_id] = row_number
            prompts.append(BenchmarkPrompt(id=item_id, caption=caption, seconds=seconds, source_row=row_number))
    if not prompts:
        why = f"; first reject: row {rejects[0]['row']}: {rejects[0]['reason']}" if rejects else ""
        raise PromptFileError(f"{path}: no valid prompts ({len(rejects)} rows rejected{why})")
    return PromptTable(path=str(path), format=fmt.name, prompts=prompts, rejects=rejects)


def read_prompt_file(path: str | Path) -> list[BenchmarkPrompt]:
    """The valid prompts of a benchmark prompt CSV, in file order; rejected rows are logged as warnings
    (:func:`read_prompt_table` returns them)."""
    table = read_prompt_table(path)
    for reject in table.rejects:
        logger.warning("%s: row %d rejected: %s", path, reject["row"], reject["reason"])
    return table.prompts
