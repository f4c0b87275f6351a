"""``wavefoundry eval adherence``: ceiling on a manifest's own audio, generated clips, the shuffled floor, a tagger."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wavefoundry.audio.io import load_audio, save_audio
from wavefoundry.audio.resample import resample
from wavefoundry.cli import main
from wavefoundry.data.manifest import read_manifest
from wavefoundry.data.synth import SynthConfig, generate_synthcaps
from wavefoundry.eval.adherence import METRICS, score_item
from wavefoundry.train.checkpoint import save_checkpoint
from wavefoundry.train.tagging import SYNTHCAPS_LABELS, TaggerRunConfig
from wavefoundry.understanding.tagger import AudioTagger, TaggerConfig


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthcaps")
    cfg = SynthConfig(n_items=6, seconds=3.0, channels=2, format="wav", seed=1)
    return generate_synthcaps(out, cfg, workers=1, progress=False)


def _run(*args) -> int:
    return main(["eval", "adherence", *map(str, args), "--no-progress"])


def test_ceiling_on_the_manifest_audio(manifest, tmp_path, capsys):
    assert _run(manifest, "--out", tmp_path / "r.json") == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n_items"] == report["n_scored"] == 6 and report["errors"] == []
    assert report["summary"]["pan_ok"] == {"accuracy": 1.0, "n": 6, "ci95": pytest.approx([0.6097, 1.0], abs=1e-3)}
    for metric in ("pitch_ok", "duration_ok", "tempo_ok"):
        assert report["summary"][metric]["accuracy"] in (None, 1.0)
    table = capsys.readouterr().out
    assert all(m in table for m in METRICS) and "scored 6 of 6 items" in table
    # the CLI's rows are score_item's numbers
    item = read_manifest(manifest)[0]
    audio, sr = load_audio(item.path)
    assert report["rows"][0] == {"id": item.id, **score_item(audio, sr, item.attrs)}


def test_generated_clips_missing_silent_and_resampled(manifest, tmp_path):
    items = read_manifest(manifest)
    clips = tmp_path / "gen"
    for k, item in enumerate(items[:-1]):  # the last item has no clip
        audio, sr = load_audio(item.path)
        if k == 0:
            audio = np.zeros_like(audio)
        if k == 1:
            audio, sr = resample(audio, sr, 22050), 22050  # any rate is fine
        save_audio(clips / f"{item.id}.wav", audio, sr)
    assert _run(manifest, "--audio-dir", clips, "--out", tmp_path / "g.json") == 0
    report = json.loads((tmp_path / "g.json").read_text())
    assert report["n_scored"] == 5 and [e["id"] for e in report["errors"]] == [items[-1].id]
    silent = report["rows"][0]
    assert silent["pan_ok"] is False and all(silent[m] in (None, False) for m in METRICS)
    assert all(r["pan_ok"] for r in report["rows"][1:])
    assert _run(manifest, "--audio-dir", tmp_path / "nowhere") == 2


def test_shuffle_scores_against_other_items(manifest, tmp_path):
    assert _run(manifest, "--shuffle", "--seed", 3, "--out", tmp_path / "f.json") == 0
    report = json.loads((tmp_path / "f.json").read_text())
    rows = report["rows"]
    assert report["shuffle"] and report["seed"] == 3 and len(rows) == 6
    assert all(r["scored_against"] != r["id"] for r in rows)
    assert sorted(r["scored_against"] for r in rows) == sorted(r["id"] for r in rows)
    assert _run(manifest, "--shuffle", "--limit", 1) == 2  # no derangement of one item


def test_classifier_adds_class_accuracy(manifest, tmp_path):
    cfg = TaggerRunConfig(model=TaggerConfig(labels=SYNTHCAPS_LABELS, width=4, depth=1, embed_dim=8))
    model = AudioTagger(cfg.model)
    save_checkpoint(tmp_path / "tagger", 1, config=cfg, model_state=model.state_dict(), train_state={})
    assert _run(manifest, "--classifier", tmp_path / "tagger", "--out", tmp_path / "c.json") == 0
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["summary"]["class_ok"]["n"] == 6
    for row in report["rows"]:
        assert row["label_pred"] in SYNTHCAPS_LABELS and row["class_ok"] == (row["label_pred"] == row["label_ref"])
