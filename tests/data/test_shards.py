"""Tar shards: round trip, determinism, rollover, and a reader that survives damaged members."""

from __future__ import annotations

import dataclasses
import json
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest

from wavefoundry.audio.io import save_audio
from wavefoundry.data.manifest import ManifestError, ManifestItem, read_manifest, write_manifest
from wavefoundry.data.shards import iter_shards, shard_paths, write_shards

# id -> (sample rate, channels, frames)
SPECS = {
    "b-rain": (16000, 1, 4000),
    "a_birds": (22050, 2, 5000),
    "e-loop": (8000, 2, 3000),
    "c-wind": (48000, 1, 6000),
    "d_hum": (16000, 2, 2000),
}
PCM16_STEP = 1.0 / 32768


def make_dataset(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """FLOAT wav files (so the round trip measures the 16-bit FLAC quantisation) and their manifest."""
    items, audio = [], {}
    for k, (item_id, (sr, channels, frames)) in enumerate(SPECS.items()):
        x = np.random.default_rng(k).uniform(-0.9, 0.9, (channels, frames)).astype(np.float32)
        path = save_audio(root / "audio" / f"{item_id}.wav", x, sr, subtype="FLOAT")
        audio[item_id] = x
        items.append(
            ManifestItem(
                id=item_id,
                path=str(path),
                duration_s=frames / sr,
                sample_rate=sr,
                channels=channels,
                prompt=f"prompt of {item_id}",
                license="CC0-1.0",
                tags=["x", item_id],
                attrs={"k": k},
            )
        )
    return write_manifest(root / "manifest.jsonl", items), audio


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path)


def test_round_trip(dataset, tmp_path) -> None:
    manifest, audio = dataset
    paths = write_shards(manifest, tmp_path / "shards", max_items=3, progress=False)
    assert [p.name for p in paths] == ["shard-000000.tar", "shard-000001.tar"]
    samples = list(iter_shards(tmp_path / "shards"))
    assert [s.key for s in samples] == sorted(SPECS)  # sorted by id, nothing lost
    items = {item.id: item for item in read_manifest(manifest)}
    for sample in samples:
        sr, channels, frames = SPECS[sample.key]
        assert "." not in sample.key
        assert sample.audio is not None and sample.audio.dtype == np.float32
        assert sample.audio.shape == (channels, frames) and sample.sample_rate == sr
        assert np.max(np.abs(sample.audio - audio[sample.key])) <= PCM16_STEP
        expected = dataclasses.asdict(items[sample.key])
        expected["path"] = f"{sample.key}.flac"
        assert sample.meta == expected
    with tarfile.open(paths[0]) as tar:
        names = tar.getnames()
        assert names == [
            "a_birds.flac",
            "a_birds.json",
            "b-rain.flac",
            "b-rain.json",
            "c-wind.flac",
            "c-wind.json",
        ]
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in tar.getmembers())


def test_shards_are_byte_identical_and_atomic(dataset, tmp_path) -> None:
    manifest, _ = dataset
    first = write_shards(manifest, tmp_path / "one", max_items=2, progress=False)
    # a reordered manifest gives the same shards
    items = read_manifest(manifest)[::-1]
    second = write_shards(write_manifest(tmp_path / "rev.jsonl", items), tmp_path / "two", max_items=2, progress=False)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert not list((tmp_path / "one").glob(".*"))  # no temp files left behind


def test_rollover_by_bytes_and_stale_shards_removed(dataset, tmp_path) -> None:
    manifest, _ = dataset
    out = tmp_path / "shards"
    assert len(write_shards(manifest, out, max_items=1, progress=False)) == 5
    assert len(write_shards(manifest, out, max_bytes=1, progress=False)) == 5  # one item per shard at least
    assert len(write_shards(manifest, out, max_items=4, progress=False)) == 2
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000000.tar", "shard-000001.tar"]
    assert sum(1 for _ in iter_shards(out)) == 5


def test_resample_and_channels(dataset, tmp_path) -> None:
    manifest, _ = dataset
    write_shards(manifest, tmp_path / "s", sample_rate=16000, channels=1, name="mono16k", progress=False)
    for sample in iter_shards(tmp_path / "s" / "mono16k-*.tar"):
        sr, _, frames = SPECS[sample.key]
        assert sample.sample_rate == sample.meta["sample_rate"] == 16000
        assert sample.audio.shape == (1, round(frames * 16000 / sr)) == (sample.meta["channels"], sample.audio.shape[1])
        assert sample.meta["duration_s"] == pytest.approx(frames / sr, abs=1e-4)


def test_bad_item_is_skipped_and_listed(dataset, tmp_path) -> None:
    manifest, _ = dataset
    Path(read_manifest(manifest)[0].path).write_bytes(b"not audio")  # b-rain
    paths = write_shards(manifest, tmp_path / "s", progress=False)
    assert [s.key for s in iter_shards(paths)] == sorted(set(SPECS) - {"b-rain"})
    rejects = [json.loads(line) for line in (tmp_path / "s" / "shard-rejects.jsonl").open()]
    assert [r["id"] for r in rejects] == ["b-rain"]


def _member_offset(shard: Path, name: str) -> int:
    with tarfile.open(shard) as tar:
        return tar.getmember(name).offset_data


def test_reader_skips_corrupt_members(dataset, tmp_path, caplog) -> None:
    manifest, _ = dataset
    (shard,) = write_shards(manifest, tmp_path / "s", progress=False)
    data = bytearray(shard.read_bytes())
    flac_at = _member_offset(shard, "b-rain.flac")
    data[flac_at : flac_at + 64] = b"\x00" * 64  # destroy the FLAC stream header
    json_at = _member_offset(shard, "d_hum.json")
    data[json_at : json_at + 8] = b"{{{{{{{{"
    shard.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="wavefoundry.data.shards"):
        keys = [s.key for s in iter_shards(shard)]
    assert keys == ["a_birds", "c-wind", "e-loop"]
    assert "b-rain" in caplog.text and "d_hum" in caplog.text
    assert [s.key for s in iter_shards(shard, decode=False)] == ["a_birds", "b-rain", "c-wind", "e-loop"]


def test_reader_survives_a_truncated_shard(dataset, tmp_path) -> None:
    manifest, _ = dataset
    first, second = write_shards(manifest, tmp_path / "s", max_items=3, progress=False)
    cut = _member_offset(first, "b-rain.flac") + 100  # inside the second item of the first shard
    first.write_bytes(first.read_bytes()[:cut])
    keys = [s.key for s in iter_shards([first, second])]
    assert keys == [
        "a_birds",
        "d_hum",
        "e-loop",
    ]  # the rest of the damaged shard is lost, the next one is read


def test_shard_inputs(dataset, tmp_path) -> None:
    manifest, _ = dataset
    paths = write_shards(manifest, tmp_path / "s", max_items=2, progress=False)
    assert shard_paths(tmp_path / "s") == paths
    assert shard_paths(str(tmp_path / "s" / "shard-*.tar")) == paths
    assert shard_paths(str(tmp_path / "s" / "shard-{000000..000002}.tar")) == paths
    assert shard_paths([paths[1], paths[0]]) == [paths[1], paths[0]]
    with pytest.raises(FileNotFoundError, match="no shards"):
        shard_paths(str(tmp_path / "s" / "other-*.tar"))


def test_bad_arguments(dataset, tmp_path) -> None:
    manifest, _ = dataset
    with pytest.raises(ValueError, match="shard name"):
        write_shards(manifest, tmp_path, name="a.b")
    with pytest.raises(ValueError, match="max_items"):
        write_shards(manifest, tmp_path, max_items=0)
    with pytest.raises(ValueError, match="channels"):
        write_shards(manifest, tmp_path, channels=6)
    with pytest.raises(ManifestError, match="manifest not found"):
        write_shards(tmp_path / "missing.jsonl", tmp_path)
    lines = manifest.read_text().splitlines()
    (tmp_path / "dup.jsonl").write_text("\n".join([lines[0], lines[0]]))
    with pytest.raises(ManifestError, match="duplicate id"):
        write_shards(tmp_path / "dup.jsonl", tmp_path / "dup")
