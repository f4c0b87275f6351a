"""WebDataset-layout tar shards of a manifest, written and read with :mod:`tarfile` only.

A shard ``{name}-000000.tar`` holds, per item, ``{key}.flac`` (the audio) and ``{key}.json`` (the manifest
item with ``path`` replaced by the member name, and rate/channels/duration of the stored audio). Keys are the
dot-free manifest ids, so a WebDataset reader splits member names correctly. Output is deterministic: items
sorted by id, members sorted within an item, headers with mtime 0, uid/gid 0 and no user names, so the same
manifest gives byte-identical shards. Each shard is written to a temp file and renamed into place.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import itertools
import json
import logging
import os
import re
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from wavefoundry.audio.dsp import set_channels
from wavefoundry.audio.io import AudioDecodeError, AudioError, check_audio, load_audio
from wavefoundry.data.manifest import ManifestError, ManifestItem, read_manifest

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 512 * 2**20
#: Member extensions read as audio, in order of preference.
AUDIO_EXTS = ("flac", "wav", "ogg", "opus", "mp3")
FLAC_SUBTYPES = ("PCM_16", "PCM_24")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_BLOCK = tarfile.BLOCKSIZE


@dataclass(frozen=True)
class ShardSample:
    """One item read back from a shard.

    Attributes:
        key: the member key (the manifest id).
        audio: (C, T) float32, or None when read with ``decode=False``.
        sample_rate: of ``audio`` (from the metadata when not decoded).
        meta: the item's JSON member.
        shard: path of the shard it came from.
        data: the encoded audio member (FLAC bytes).
    """

    key: str
    audio: np.ndarray | None
    sample_rate: int
    meta: dict[str, Any]
    shard: str
    data: bytes


def encode_flac(audio: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16") -> bytes:
    """(C, T) float audio -> FLAC bytes (samples clipped to [-1, 1])."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(check_audio(audio), -1.0, 1.0).T, sample_rate, format="FLAC", subtype=subtype)
    return buf.getvalue()


def decode_audio_bytes(data: bytes, *, name: str = "audio") -> tuple[np.ndarray, int]:
    """Encoded audio bytes (FLAC, WAV, OGG, MP3) -> ((C, T) float32, sample_rate).

    Raises:
        AudioDecodeError: not decodable. EmptyAudioError / NonFiniteAudioError: bad content.
    """
    try:
        samples, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioDecodeError(f"{name}: cannot decode audio ({exc})") from None
    return check_audio(np.ascontiguousarray(samples.T), name=name), int(sample_rate)  # (T, C) -> (C, T)


def _prepare(
    item: ManifestItem, sample_rate: int | None, channels: int | None, subtype: str
) -> list[tuple[str, bytes]]:
    """The tar members of one item: ``[(key.flac, bytes), (key.json, bytes)]``."""
    audio, sr = load_audio(item.path)  # (C, T)
    if channels is not None:
        audio = set_channels(audio, channels)
    if sample_rate is not None and sample_rate != sr:
        from wavefoundry.audio.resample import resample  # soxr is only needed when resampling

        audio, sr = resample(audio, sr, sample_rate), sample_rate
    meta = dataclasses.asdict(item)
    meta.update(path=f"{item.id}.flac", sample_rate=sr, channels=audio.shape[0], duration_s=audio.shape[1] / sr)
    body = json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return [(f"{item.id}.flac", encode_flac(audio, sr, subtype=subtype)), (f"{item.id}.json", body)]


def _tar_size(members: list[tuple[str, bytes]]) -> int:
    """Bytes the members take in a tar: a header block each plus data padded to whole blocks."""
    return sum(_BLOCK + -(-len(data) // _BLOCK) * _BLOCK for _, data in members)


class _ShardWriter:
    """Rolls members into numbered shards of at most ``max_items`` items / about ``max_bytes`` bytes."""

    def __init__(self, out_dir: Path, name: str, max_items: int, max_bytes: int) -> None:
        self.out_dir, self.name, self.max_items, self.max_bytes = out_dir, name, max_items, max_bytes
        self.paths: list[Path] = []
        self._tar: tarfile.TarFile | None = None
        self._tmp: Path | None = None
        self._items = self._bytes = 0

    def add(self, members: list[tuple[str, bytes]]) -> None:
        size = _tar_size(members)
        full = self._items >= self.max_items or self._bytes + size > self.max_bytes
        if self._tar is not None and full:
            self._finish()
        if self._tar is None:
            fd, tmp = tempfile.mkstemp(dir=self.out_dir, prefix=f".{self.name}-", suffix=".tar.tmp")
            self._tmp = Path(tmp)
            # The shard stays open across add() calls; _finish() or abort() closes it.
            fileobj = os.fdopen(fd, "wb")
            self._tar = tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        for member_name, data in sorted(members):
            info = tarfile.TarInfo(member_name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))
        self._items += 1
        self._bytes += size

    def _finish(self) -> None:
        assert self._tar is not None and self._tmp is not None
        fileobj = self._tar.fileobj
        self._tar.close()  # writes the end-of-archive blocks; leaves the file object open
        fileobj.flush()
        os.fsync(fileobj.fileno())
        fileobj.close()
        path = self.out_dir / f"{self.name}-{len(self.paths):06d}.tar"
        os.replace(self._tmp, path)
        self.paths.append(path)
        self._tar, self._tmp, self._items, self._bytes = None, None, 0, 0

    def close(self) -> list[Path]:
        if self._tar is not None:
            self._finish()
        return self.paths

    def abort(self) -> None:
        if self._tar is not None and self._tmp is not None:
            self._tar.fileobj.close()
            self._tmp.unlink(missing_ok=True)


def _check_shard_args(name: str, max_items: int, max_bytes: int, channels: int | None, subtype: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(f"shard name {name!r} must be non-empty and use only letters, digits, '_' and '-'")
    if max_items < 1 or max_bytes < 1:
        raise ValueError(f"max_items and max_bytes must be positive, got {max_items} and {max_bytes}")
    if channels not in (None, 1, 2):
        raise ValueError(f"channels must be None, 1 or 2, got {channels}")
    if subtype not in FLAC_SUBTYPES:
        raise ValueError(f"unknown FLAC subtype {subtype!r}; valid: {', '.join(FLAC_SUBTYPES)}")


def _sorted_items(manifest_path: str | Path) -> list[ManifestItem]:
    items = sorted(read_manifest(manifest_path), key=lambda i: i.id)
    for a, b in itertools.pairwise(items):
        if a.id == b.id:
            raise ManifestError(f"{manifest_path}: duplicate id {a.id!r}; shard keys must be unique")
    return items


def write_shards(
    manifest_path: str | Path,
    out_dir: str | Path,
    *,
    name: str = "shard",
    max_items: int = 1000,
    max_bytes: int = DEFAULT_MAX_BYTES,
    sample_rate: int | None = None,
    channels: int | None = None,
    subtype: str = "PCM_16",
    progress: bool = True,
) -> list[Path]:
    """Pack the items of a manifest into WebDataset tar shards ``{name}-000000.tar``, ... in ``out_dir``.

    Items that fail to load are skipped, logged and listed in ``{name}-rejects.jsonl`` (a bad file never stops
    the run). Shards ``{name}-NNNNNN.tar`` left in ``out_dir`` by an earlier, longer run are removed.

    Args:
        manifest_path: a JSONL manifest.
        out_dir: output folder (created).
        name: shard name prefix (letters, digits, '_' and '-').
        max_items: items per shard at most.
        max_bytes: a shard is closed before it would grow past this size (one huge item still gets a shard).
        sample_rate: resample to this rate (soxr) when given.
        channels: convert to 1 or 2 channels when given.
        subtype: FLAC sample format, "PCM_16" or "PCM_24".
        progress: show a progress bar.

    Returns:
        the shard paths, in order.

    Raises:
        ManifestError: the manifest is missing or invalid. ValueError: a bad argument.
    """
    _check_shard_args(name, max_items, max_bytes, channels, subtype)
    items = _sorted_items(manifest_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = _ShardWriter(out_dir, name, max_items, max_bytes)
    rejects = []
    try:
        for item in tqdm(items, desc="shard", unit="item", disable=not progress):
            try:
                members = _prepare(item, sample_rate, channels, subtype)
            except (AudioError, ValueError) as exc:
                logger.warning("skipping %s: %s", item.id, exc)
                rejects.append(json.dumps({"path": item.path, "reason": str(exc), "stage": "shard", "id": item.id}))
                continue
            writer.add(members)
        paths = writer.close()
    except BaseException:
        writer.abort()
        raise
    (out_dir / f"{name}-rejects.jsonl").write_text("".join(r + "\n" for r in rejects), encoding="utf-8")
    _remove_stale(out_dir, name, len(paths))
    logger.info(
        "wrote %d shards (%d items, %d skipped) to %s",
        len(paths),
        len(items) - len(rejects),
        len(rejects),
        out_dir,
    )
    return paths


def _remove_stale(out_dir: Path, name: str, count: int) -> None:
    pattern = re.compile(rf"^{re.escape(name)}-(\d{{6}})\.tar$")
    for path in out_dir.iterdir():
        match = pattern.match(path.name)
        if match and int(match.group(1)) >= count:
            logger.warning("removing stale shard %s from an earlier run", path)
            path.unlink()


def _expand_braces(spec: str) -> list[str]:
    """WebDataset brace ranges: ``shard-{000000..000002}.tar`` -> three names (zero padding kept)."""
    match = re.search(r"\{(\d+)\.\.(\d+)\}", spec)
    if not match:
        return [spec]
    lo, hi = match.group(1), match.group(2)
    head, tail = spec[: match.start()], spec[match.end() :]
    return [n for i in range(int(lo), int(hi) + 1) for n in _expand_braces(f"{head}{i:0{len(lo)}d}{tail}")]


def shard_paths(paths_or_glob: str | Path | Iterable[str | Path]) -> list[Path]:
    """Resolve shard inputs: a folder (its ``*.tar``), a glob, a brace range, a file, or a list of these.

    Raises:
        FileNotFoundError: an input matches no shard.
    """
    specs = [paths_or_glob] if isinstance(paths_or_glob, (str, Path)) else list(paths_or_glob)
    found: list[Path] = []
    for spec in specs:
        for text in _expand_braces(str(spec)):
            path = Path(text)
            if path.is_dir():
                matches = sorted(path.glob("*.tar"))
            elif re.search(r"[*?\[]", text):
                matches = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
            else:
                matches = [path] if path.is_file() else []
            if not matches:
                raise FileNotFoundError(f"no shards at {text}")
            found += matches
    return found


def _split_name(name: str) -> tuple[str, str]:
    """WebDataset member naming: key = folder + basename up to its first dot, ext = the rest (lower case)."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _sample(shard: Path, key: str, members: dict[str, bytes], decode: bool) -> ShardSample | None:
    """Build a sample from its members, or log why not and return None."""
    where = f"{shard}: sample {key!r}"
    audio_ext = next((ext for ext in AUDIO_EXTS if ext in members), None)
    if "json" not in members or audio_ext is None:
        logger.warning("%s: skipped (members %s; need json and one of %s)", where, sorted(members), AUDIO_EXTS)
        return None
    try:
        meta = json.loads(members["json"].decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("the json member is not an object")
        audio, sample_rate = None, int(meta.get("sample_rate") or 0)
        if decode:
            audio, sample_rate = decode_audio_bytes(members[audio_ext], name=f"{key}.{audio_ext}")
    except (ValueError, UnicodeDecodeError, AudioError) as exc:
        logger.warning("%s: skipped (%s)", where, exc)
        return None
    return ShardSample(key, audio, sample_rate, meta, str(shard), members[audio_ext])


def _iter_one(shard: Path, decode: bool) -> Iterator[ShardSample]:
    key, members = None, {}
    try:
        # Stream mode reads front to back without seeking; ignore_zeros steps over a damaged block
        # instead of treating it as the end of the archive.
        with tarfile.open(shard, mode="r|*", ignore_zeros=True) as tar:
            for info in tar:
                if not info.isfile():
                    continue
                member_key, ext = _split_name(info.name)
                if member_key != key:
                    sample = _sample(shard, key, members, decode) if members else None
                    if sample is not None:
                        yield sample
                    key, members = member_key, {}
                fh = tar.extractfile(info)
                members[ext] = fh.read() if fh is not None else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        logger.warning("%s: unreadable after sample %r (%s); skipping the rest of this shard", shard, key, exc)
    sample = _sample(shard, key, members, decode) if members else None
    if sample is not None:
        yield sample


def iter_shards(paths_or_glob: str | Path | Iterable[str | Path], *, decode: bool = True) -> Iterator[ShardSample]:
    """Stream the samples of shards in order (see :func:`shard_paths` for the inputs).

    A bad member (undecodable audio, bad JSON, a missing half) or a damaged tar is logged and skipped; the
    stream goes on with the next sample or shard.

    Args:
        paths_or_glob: shard files, folders, globs or brace ranges.
        decode: decode the audio to (C, T) float32; with False only ``meta`` and the raw ``data`` are read.
    """
    for shard in shard_paths(paths_or_glob):
        yield from _iter_one(shard, decode)
