"""Folder scan of a fixture folder of real audio: good items kept, each bad one rejected with its reason."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wavefoundry.audio.io import save_audio
from wavefoundry.data.licenses import LicensePolicy
from wavefoundry.data.manifest import read_manifest
from wavefoundry.data.sources import (
    InvalidMetadataError,
    MetadataResolver,
    assign_ids,
    fma_record,
    freesound_id,
    load_freesound_index,
    read_fma_tracks,
    scan_folder,
)
from wavefoundry.data.sources.scan import _split

CC0_URL = "http://creativecommons.org/publicdomain/zero/1.0/"


def tone(seconds: float, sr: int, channels: int, seed: int = 0) -> np.ndarray:
    """(C, T) float32 noisy sine, distinct per seed (so contents never collide by accident)."""
    t = np.arange(round(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.05 * rng.standard_normal((channels, t.size))
    return x.astype(np.float32)


def write_item(root: Path, rel: str, meta: dict | str | None, *, sr=16000, channels=1, seconds=0.5, seed=0):
    path = save_audio(root / rel, tone(seconds, sr, channels, seed), sr)
    if meta is not None:
        text = meta if isinstance(meta, str) else json.dumps(meta)
        path.with_suffix(".json").write_text(text)
    return path


# rel path -> (id, sample rate, channels, seconds, licence id)
GOOD = {
    "good/rain.wav": ("good-rain", 16000, 1, 0.5, "CC-BY-4.0"),
    "good/birds.flac": ("good-birds", 22050, 2, 0.75, "CC0-1.0"),
    "good/loop.mp3": ("good-loop", 44100, 2, 0.5, "LicenseRef-CC-Sampling-Plus-1.0"),
    "good/wind.ogg": ("good-wind", 48000, 1, 0.4, "CC-BY-3.0"),
    "good/sub dir/Café take.1.wav": ("good-sub_dir-Caf_take_1", 8000, 2, 0.3, "CC0-1.0"),
}
# rel path -> (stage, kind, text in the reason)
BAD = {
    "bad/corrupt.wav": ("audio", "decode error", "cannot read audio header"),
    "bad/empty.wav": ("audio", "empty audio", "0 bytes"),
    "bad/nan.wav": ("audio", "non-finite audio", "NaN"),
    "bad/truncated.wav": ("audio", "truncated", "truncated"),
    "bad/truncated.flac": ("audio", "decode error", "cannot decode"),
    "bad/long.wav": ("audio", "too long", "longer than the limit"),
    "bad/nc.wav": ("license", "licence not allowed", "licence CC-BY-NC-4.0 not in allow-list"),
    "bad/unknown.wav": ("license", "unknown licence", "unknown licence 'Free Art License'"),
    "bad/nolicence.wav": ("license", "no licence", "no licence"),
    "bad/nometa.wav": ("metadata", "no metadata", "no metadata"),
    "bad/badjson.wav": ("metadata", "invalid metadata", "invalid JSON"),
    "bad/badtags.wav": ("metadata", "invalid metadata", "'tags' must be"),
    "good/rain_copy.wav": ("duplicate", "duplicate", "duplicate content of item good-rain"),
}


def build_fixture(root: Path) -> None:
    cc0 = {"title": "x", "license": "CC0"}
    write_item(
        root,
        "good/rain.wav",
        {"title": "Rain on a roof", "creator": "Ann", "license": "CC-BY-4.0", "tags": ["rain", "roof"]},
    )
    write_item(
        root,
        "good/birds.flac",
        {"license_url": CC0_URL, "description": "birds"},
        sr=22050,
        channels=2,
        seconds=0.75,
        seed=1,
    )
    write_item(
        root,
        "good/loop.mp3",
        {"title": "Loop", "creator": "Bo", "licence": "Sampling+", "bpm": 120},
        sr=44100,
        channels=2,
        seed=2,
    )
    write_item(
        root,
        "good/wind.ogg",
        {
            "title": "Wind",
            "creator": "Cy",
            "license": "Attribution",
            "license_url": "http://creativecommons.org/licenses/by/3.0/",
            "url": "https://example.org/wind",
        },
        sr=48000,
        seconds=0.4,
        seed=3,
    )
    write_item(
        root,
        "good/sub dir/Café take.1.wav",
        {"license": "cc0", "prompt": "a fixed prompt"},
        sr=8000,
        channels=2,
        seconds=0.3,
        seed=4,
    )
    shutil.copy(root / "good/rain.wav", root / "good/rain_copy.wav")
    (root / "good/rain_copy.json").write_text(json.dumps(cc0))
    (root / "bad").mkdir()
    (root / "bad/corrupt.wav").write_bytes(np.random.default_rng(0).bytes(3000))
    (root / "bad/empty.wav").write_bytes(b"")
    nan = tone(0.2, 16000, 1, seed=5)
    nan[0, 100] = np.nan
    sf.write(root / "bad/nan.wav", nan.T, 16000, subtype="FLOAT")
    for suffix in ("wav", "flac"):
        full = write_item(root, f"bad/full.{suffix}", None, seconds=0.5, seed=6).read_bytes()
        (root / f"bad/full.{suffix}").unlink()
        (root / f"bad/truncated.{suffix}").write_bytes(full[: len(full) // 2])
    write_item(root, "bad/long.wav", None, seconds=2.0, seed=7)
    write_item(root, "bad/nc.wav", {"license": "CC-BY-NC-4.0"}, seed=8)
    write_item(root, "bad/unknown.wav", {"license": "Free Art License"}, seed=9)
    write_item(root, "bad/nolicence.wav", {"title": "no licence here"}, seed=10)
    write_item(root, "bad/nometa.wav", None, seed=11)
    write_item(root, "bad/badjson.wav", '{"license": "CC0",', seed=12)
    write_item(root, "bad/badtags.wav", {"license": "CC0", "tags": {"a": 1}}, seed=13)
    for name in ("corrupt", "empty", "nan", "truncated", "long"):
        (root / f"bad/{name}.json").write_text(json.dumps(cc0))
    (root / "README.txt").write_text("not audio")
    (root / "good/cover.jpg").write_bytes(b"\xff\xd8 not audio either")


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    build_fixture(root)
    out = tmp_path_factory.mktemp("out")
    report = scan_folder(root, out, max_seconds=1.5, progress=False, workers=2)
    return root, out, report


def test_every_good_item_kept_and_nothing_lost(scanned) -> None:
    root, out, report = scanned
    items = {item.attrs["rel_path"]: item for item in read_manifest(out / "manifest.jsonl")}
    assert set(items) == set(GOOD)
    assert report.candidates == len(GOOD) + len(BAD)
    assert report.kept + report.rejected == report.candidates
    assert (report.kept, report.rejected) == (len(GOOD), len(BAD))
    for rel, (item_id, sr, channels, seconds, spdx) in GOOD.items():
        item = items[rel]
        assert (item.id, item.sample_rate, item.channels, item.license) == (item_id, sr, channels, spdx)
        assert item.duration_s == pytest.approx(seconds, abs=1 / sr)
        assert item.sha256 == hashlib.sha256((root / rel).read_bytes()).hexdigest()
        assert Path(item.path) == (root / rel).absolute()
        assert "." not in item.id
        assert item.prompt  # every good item has some metadata to draw from
    assert items["good/sub dir/Café take.1.wav"].prompt == "a fixed prompt"
    assert items["good/wind.ogg"].license_url == "https://creativecommons.org/licenses/by/3.0/"
    assert items["good/rain.wav"].tags == ["rain", "roof"]
    assert items["good/loop.mp3"].creator == "Bo"
    sidecars = len(list(root.rglob("*.json")))
    assert sidecars == 16
    assert report.ignored == 2 + sidecars  # README, cover and the JSON sidecars


def test_every_bad_item_rejected_with_its_reason(scanned) -> None:
    root, out, report = scanned
    lines = (out / "rejects.jsonl").read_text().splitlines()
    rejects = {Path(r["path"]).relative_to(root).as_posix(): r for r in map(json.loads, lines)}
    assert set(rejects) == set(BAD)
    for rel, (stage, kind, text) in BAD.items():
        assert (rejects[rel]["stage"], rejects[rel]["kind"]) == (stage, kind), rel
        assert text in rejects[rel]["reason"], rejects[rel]["reason"]
    assert report.by_reason["decode error"] == 2
    assert sum(report.by_reason.values()) == report.rejected


def test_attribution_csv_lists_exactly_the_cc_by_and_sampling_items(scanned) -> None:
    _, out, report = scanned
    with (out / "ATTRIBUTION.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["id", "title", "creator", "source_url", "license", "license_url"]
    assert {r["id"] for r in rows} == {"good-rain", "good-loop", "good-wind"}
    wind = next(r for r in rows if r["id"] == "good-wind")
    assert wind == {
        "id": "good-wind",
        "title": "Wind",
        "creator": "Cy",
        "source_url": "https://example.org/wind",
        "license": "CC-BY-3.0",
        "license_url": "https://creativecommons.org/licenses/by/3.0/",
    }
    assert report.attribution == 3


def test_scan_is_deterministic_across_workers_and_runs(scanned, tmp_path) -> None:
    root, out, _ = scanned
    scan_folder(root, tmp_path, max_seconds=1.5, progress=False, workers=1)
    for name in ("manifest.jsonl", "rejects.jsonl", "ATTRIBUTION.csv"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()


def test_custom_policy_keeps_nc(scanned, tmp_path) -> None:
    root, _, _ = scanned
    policy = LicensePolicy(allow=["CC-BY-NC-4.0"])
    report = scan_folder(root, tmp_path, policy=policy, max_seconds=1.5, progress=False)
    assert [item.id for item in read_manifest(tmp_path / "manifest.jsonl")] == ["bad-nc"]
    assert report.kept + report.rejected == report.candidates


def test_split_is_a_stable_hash_of_the_id() -> None:
    ids = [f"item{i}" for i in range(4000)]
    at_30 = {i for i in ids if _split(i, 0, 0.3) == "valid"}
    at_60 = {i for i in ids if _split(i, 0, 0.6) == "valid"}
    assert 0.27 < len(at_30) / len(ids) < 0.33
    assert at_30 < at_60  # growing the fraction only moves items into valid
    assert all(_split(i, 0, 0.0) == "train" for i in ids)
    assert {i for i in ids if _split(i, 1, 0.3) == "valid"} != at_30  # the seed reshuffles


def test_ids_are_unique_and_dot_free() -> None:
    rels = [Path(p) for p in ("a/b.wav", "a-b.wav", "a/b.flac", "a b.wav", "a_b.wav", "x.y.z.wav")]
    ids = assign_ids(rels)
    assert len(set(ids)) == len(ids)
    assert ids[:3] == ["a-b", "a-b_wav", "a-b_flac"]
    assert all("." not in i and i for i in ids)


def test_bad_arguments(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="audio folder not found"):
        scan_folder(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValueError, match="unknown metadata mode"):
        scan_folder(tmp_path, tmp_path / "out", metadata="csv")
    with pytest.raises(ValueError, match="needs fma_tracks"):
        scan_folder(tmp_path, tmp_path / "out", metadata="fma")
    with pytest.raises(ValueError, match="valid_fraction"):
        scan_folder(tmp_path, tmp_path / "out", valid_fraction=1.0)


def freesound_object(sound_id: int, license_url: str, **extra) -> dict:
    return {
        "id": sound_id,
        "name": f"sound {sound_id}.wav",
        "tags": ["field-recording", f"t{sound_id}"],
        "description": f"<b>Recorded</b> sound {sound_id}",
        "license": license_url,
        "username": f"user{sound_id}",
        "url": f"https://freesound.org/people/user{sound_id}/sounds/{sound_id}/",
        "duration": 0.5,
        "samplerate": 16000,
        "channels": 1,
        "avg_rating": 4.5,
        **extra,
    }


def test_freesound_index_and_sidecars(tmp_path) -> None:
    root = tmp_path / "fs"
    write_item(root, "12345_dog bark.wav", None, seed=1)
    write_item(root, "678.flac", None, seed=2)
    write_item(root, "999.wav", None, seed=3)
    write_item(root, "notanid.wav", None, seed=4)
    write_item(root, "777__user__thing.wav", freesound_object(777, CC0_URL), seed=5)
    index = tmp_path / "sounds.json"
    index.write_text(
        json.dumps(
            {
                "count": 3,
                "results": [
                    freesound_object(12345, "http://creativecommons.org/licenses/by/3.0/"),
                    freesound_object(678, "http://creativecommons.org/licenses/by-nc/3.0/"),
                    {"name": "no id"},
                ],
            }
        )
    )
    report = scan_folder(root, tmp_path / "out", freesound_json=index, progress=False)
    items = {item.source_id: item for item in read_manifest(tmp_path / "out/manifest.jsonl")}
    assert set(items) == {"12345", "777"}
    dog = items["12345"]
    assert (dog.source, dog.license, dog.creator, dog.title) == (
        "freesound",
        "CC-BY-3.0",
        "user12345",
        "sound 12345.wav",
    )
    assert dog.url == "https://freesound.org/people/user12345/sounds/12345/"
    assert dog.attrs["freesound"]["avg_rating"] == 4.5
    assert dog.attrs["prompt_meta"]["title"] == "sound 12345"  # the file suffix is not part of a prompt
    assert set(dog.prompt.lower().replace(",", " ").split()) <= {
        "sound",
        "12345",
        "field-recording",
        "t12345",
        "recorded",
    }
    assert items["777"].license == "CC0-1.0" and not items["777"].attribution_required
    rejects = {Path(r["path"]).name: r for r in map(json.loads, (tmp_path / "out/rejects.jsonl").open())}
    assert rejects["678.flac"]["reason"] == "licence CC-BY-NC-3.0 not in allow-list"
    assert "id 999 not in" in rejects["999.wav"]["reason"]
    assert "no Freesound id in name" in rejects["notanid.wav"]["reason"]
    assert report.kept + report.rejected == report.candidates == 5


def test_freesound_index_layouts(tmp_path) -> None:
    objs = [freesound_object(1, CC0_URL), freesound_object(2, CC0_URL)]
    layouts = {
        "list.json": json.dumps(objs),
        "map.json": json.dumps({str(o["id"]): {k: v for k, v in o.items() if k != "id"} for o in objs}),
        "lines.jsonl": "\n".join(json.dumps(o) for o in objs),
    }
    for name, text in layouts.items():
        (tmp_path / name).write_text(text)
        assert set(load_freesound_index(tmp_path / name)) == {"1", "2"}, name
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(InvalidMetadataError, match="not valid JSON"):
        load_freesound_index(tmp_path / "broken.json")
    assert [freesound_id(n) for n in ("12345.wav", "12345_a.flac", "12_b c.wav", "a12.wav")] == [
        "12345",
        "12345",
        "12",
        None,
    ]


def test_freesound_mode_rejects_own_sidecars(tmp_path) -> None:
    write_item(tmp_path / "in", "1.wav", {"license": "CC0"})
    report = scan_folder(tmp_path / "in", tmp_path / "out", metadata="freesound", progress=False)
    assert report.by_reason == {"invalid metadata": 1}


FMA_COLUMNS = [
    ("album", "title"),
    ("artist", "name"),
    ("set", "split"),
    ("set", "subset"),
    ("track", "genre_top"),
    ("track", "genres"),
    ("track", "genres_all"),
    ("track", "license"),
    ("track", "tags"),
    ("track", "title"),
]


def write_fma_metadata(folder: Path, rows: dict[int, dict[str, str]]) -> Path:
    """A tracks.csv in the real layout: two header rows, pandas' ``track_id`` row, list fields as literals."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tracks.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["", *(c[0] for c in FMA_COLUMNS)])
        writer.writerow(["", *(c[1] for c in FMA_COLUMNS)])
        writer.writerow(["track_id", *([""] * len(FMA_COLUMNS))])
        for track_id, row in rows.items():
            writer.writerow([track_id, *(row.get(f"{a}.{b}", "") for a, b in FMA_COLUMNS)])
    (folder / "genres.csv").write_text(
        "genre_id,#tracks,parent,title,top_level\n21,100,0,Hip-Hop,21\n15,200,0,Electronic,15\n42,5,15,Ambient,15\n"
    )
    return path


def fma_row(title: str, license: str, tags: str = "[]", genres: str = "[21]") -> dict[str, str]:
    return {
        "album.title": "AWOL - A Way Of Life",
        "artist.name": "AWOL",
        "set.split": "training",
        "set.subset": "small",
        "track.genre_top": "Hip-Hop",
        "track.genres": genres,
        "track.genres_all": genres,
        "track.license": license,
        "track.tags": tags,
        "track.title": title,
    }


def test_fma_tracks_csv(tmp_path) -> None:
    tracks = write_fma_metadata(
        tmp_path / "fma_metadata",
        {
            2: fma_row("Food", "Attribution 4.0 International", "['lo-fi', 'beats']", "[21, 15, 42]"),
            5: fma_row("This World", "Attribution-NonCommercial-ShareAlike 3.0 International"),
            10: fma_row("Freeway", "CC0 1.0 Universal"),
            20: fma_row("Broken", "CC0 1.0 Universal", "['unclosed"),
        },
    )
    root = tmp_path / "fma_small"
    for i, track_id in enumerate((2, 5, 10, 20, 99)):
        write_item(root, f"000/{track_id:06d}.mp3", None, sr=22050, seconds=0.3, seed=i)
    report = scan_folder(root, tmp_path / "out", metadata="fma", fma_tracks=tracks, progress=False)
    items = {item.source_id: item for item in read_manifest(tmp_path / "out/manifest.jsonl")}
    assert set(items) == {"2", "10"}
    food = items["2"]
    assert (food.id, food.source, food.title, food.creator, food.license) == (
        "000-000002",
        "fma",
        "Food",
        "AWOL",
        "CC-BY-4.0",
    )
    assert food.tags == ["lo-fi", "beats"]
    assert food.attrs["prompt_meta"]["genres"] == ["Hip-Hop", "Electronic", "Ambient"]
    assert food.attrs["fma"] == {"split": "training", "subset": "small"}
    assert food.attrs["prompt_style"] == "fma"
    rejects = {Path(r["path"]).name: r for r in map(json.loads, (tmp_path / "out/rejects.jsonl").open())}
    assert rejects["000005.mp3"]["reason"] == "licence CC-BY-NC-SA-3.0 not in allow-list"
    assert rejects["000020.mp3"]["kind"] == "invalid metadata"
    assert "track.tags is not a Python list literal" in rejects["000020.mp3"]["reason"]
    assert rejects["000099.mp3"]["kind"] == "no metadata"
    assert report.kept + report.rejected == report.candidates == 5


def test_fma_reader_edges(tmp_path) -> None:
    tracks = write_fma_metadata(tmp_path, {2: fma_row("Food", "Attribution")})
    rows = read_fma_tracks(tracks)
    assert list(rows) == ["2"] and rows["2"]["track.title"] == "Food"
    record = fma_record("2", rows["2"])  # without genres.csv only genre_top names a genre
    assert record.prompt_meta["genres"] == ["Hip-Hop"]
    (tmp_path / "plain.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InvalidMetadataError, match=r"not an FMA tracks\.csv"):
        read_fma_tracks(tmp_path / "plain.csv")
    with pytest.raises(InvalidMetadataError, match="cannot read FMA tracks"):
        read_fma_tracks(tmp_path / "missing.csv")
    resolver = MetadataResolver("auto", fma_tracks=tracks)
    assert resolver.resolve(tmp_path / "000002.mp3").title == "Food"  # no sidecar: falls back to the FMA row
