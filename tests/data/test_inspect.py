"""Dataset summaries on a manifest with known numbers, and the same numbers read back from its shards."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wavefoundry.audio.io import save_audio
from wavefoundry.data.inspect import format_summary, summarize
from wavefoundry.data.manifest import ManifestItem, write_manifest
from wavefoundry.data.shards import write_shards

# id, seconds, rate, channels, licence, source, split, prompt
ROWS = [
    ("a", 1.0, 8000, 1, "CC0-1.0", "freesound", "train", "dog"),
    ("b", 2.0, 8000, 2, "CC-BY-4.0", "freesound", "train", "a dog barking"),
    ("c", 3.0, 16000, 2, "CC-BY-4.0", "fma", "valid", ""),
    ("d", 10.0, 8000, 2, "LicenseRef-CC-Sampling-Plus-1.0", "fma", "train", "rock, 120 bpm"),
]


@pytest.fixture
def manifest(tmp_path):
    items = []
    for item_id, seconds, sr, channels, lic, source, split, prompt in ROWS:
        path = save_audio(tmp_path / "audio" / f"{item_id}.flac", np.zeros((channels, int(seconds * sr))), sr)
        items.append(
            ManifestItem(
                id=item_id,
                path=str(path),
                duration_s=seconds,
                sample_rate=sr,
                channels=channels,
                prompt=prompt,
                license=lic,
                attribution_required=lic != "CC0-1.0",
                source=source,
                split=split,
            )
        )
    return write_manifest(tmp_path / "data" / "manifest.jsonl", items)


def check_known_numbers(summary: dict) -> None:
    assert summary["items"] == 4
    assert summary["total_hours"] == pytest.approx(16.0 / 3600)
    assert summary["duration_s"] == pytest.approx({"min": 1.0, "median": 2.5, "mean": 4.0, "max": 10.0})
    assert summary["sample_rates"] == {8000: 3, 16000: 1}
    assert summary["channels"] == {2: 3, 1: 1}
    assert summary["licenses"] == {"CC-BY-4.0": 2, "CC0-1.0": 1, "LicenseRef-CC-Sampling-Plus-1.0": 1}
    assert next(iter(summary["licenses"])) == "CC-BY-4.0"  # most common first
    assert summary["sources"] == {"fma": 2, "freesound": 2}
    assert summary["splits"] == {"train": 3, "valid": 1}
    assert summary["attribution_required"] == 3
    assert summary["prompt_chars"] == pytest.approx({"min": 0.0, "median": 8.0, "mean": 29 / 4, "max": 13.0})
    assert summary["empty_prompts"] == 1


def test_manifest_summary(manifest) -> None:
    summary = summarize(manifest)
    assert summary["kind"] == "manifest"
    check_known_numbers(summary)
    assert summarize(manifest.parent) == summary  # a folder holding manifest.jsonl
    json.dumps(summary)  # JSON-ready for a --json flag


def test_shard_summary_matches_the_manifest(manifest, tmp_path) -> None:
    write_shards(manifest, tmp_path / "shards", max_items=3, progress=False)
    for spec in (tmp_path / "shards", str(tmp_path / "shards" / "shard-*.tar")):
        summary = summarize(spec)
        assert (summary["kind"], summary["shards"]) == ("shards", 2)
        check_known_numbers(summary)


def test_format_summary(manifest) -> None:
    text = format_summary(summarize(manifest))
    rows = dict(line.split("  ", 1) for line in text.splitlines())  # names hold single spaces only
    lines = {name.strip(): value.strip() for name, value in rows.items()}
    assert lines["items"] == "4"
    assert "0.004 h (16.0 s)" in lines["total"]
    assert "median 2.50 s" in lines["duration"]
    assert lines["sample rates"] == "8000: 3, 16000: 1"
    assert "3 items need attribution" in text


def test_empty_and_missing(tmp_path) -> None:
    write_manifest(tmp_path / "manifest.jsonl", [])
    summary = summarize(tmp_path / "manifest.jsonl")
    assert summary["items"] == 0 and summary["duration_s"] is None and summary["total_hours"] == 0.0
    assert "items" in format_summary(summary)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no manifest\.jsonl and no"):
        summarize(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no shards"):
        summarize(tmp_path / "nothing-*.tar")
