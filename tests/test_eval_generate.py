"""``wavefoundry eval generate`` with the shipped models/t2a-tiny at 1 step: one <id>.wav per caption, per-id seeds
(independent of batch, order and --limit), resume, generate.json, rejects and errors."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from wavefoundry.audio.io import load_audio
from wavefoundry.cli import main
from wavefoundry.cli.eval_generate import id_seed
from wavefoundry.diffusion.samplers import SamplingError
from wavefoundry.pipelines import TextToAudio

T2A = Path(__file__).resolve().parents[1] / "models" / "t2a-tiny"
ROWS = [
    ("a", "pouring rain against a window pane", "0.125"),
    ("b", "a sine-wave synth playing a single A4 note", "0.25"),
    ("c", "a dog barking in the distance", "0.125"),
]
FAST = ["--steps", "1", "--no-progress"]


@pytest.fixture(scope="module")
def pipe():
    return TextToAudio.from_pretrained(T2A)


@pytest.fixture(autouse=True)
def _load_once(pipe, monkeypatch):
    """The CLI loads models/t2a-tiny through from_pretrained; hand it the module's copy instead of reloading."""
    original = TextToAudio.from_pretrained.__func__

    def from_pretrained(cls, path, **kw):
        return pipe if Path(path).resolve() == T2A else original(cls, path, **kw)

    monkeypatch.setattr(TextToAudio, "from_pretrained", classmethod(from_pretrained))


def _csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


def _generate(prompts, out, *extra):
    return main(["eval", "generate", str(prompts), "--model", str(T2A), "--out", str(out), *FAST, *extra])


def _record(out):
    return json.loads((out / "generate.json").read_text())


def test_files_named_by_id_with_per_id_seeds_resume_and_record(tmp_path):
    prompts = _csv(tmp_path / "p.csv", ["id", "caption", "seconds"], [*ROWS, ("../x", "escape", "1")])
    out = tmp_path / "gen"
    assert _generate(prompts, out) == 0
    clips = {}
    for item_id, _, seconds in ROWS:
        audio, sr = load_audio(out / f"{item_id}.wav")
        assert sr == 16000 and audio.shape == (2, round(float(seconds) * sr))  # the file's duration
        clips[item_id] = audio
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav", "c.wav", "generate.json"]
    assert np.abs(clips["a"] - clips["c"]).mean() > 1e-4  # other caption and seed: other audio
    # Same seed, same audio: `wavefoundry generate` with the id's seed from generate.json gives the same clip.
    alone = tmp_path / "alone.wav"
    assert main(["generate", ROWS[1][1], "--model", str(T2A), "--seconds", "0.25", "--seed", str(id_seed(0, "b")),
                 "--out", str(alone), *FAST]) == 0  # fmt: skip
    np.testing.assert_array_equal(load_audio(alone)[0], clips["b"])
    record = _record(out)
    assert [(it["id"], it["status"], it["seed"]) for it in record["items"]] == [
        (i, "generated", id_seed(0, i)) for i, _, _ in ROWS]  # fmt: skip
    assert record["rejects"][0]["row"] == 5 and "unsafe id '../x'" in record["rejects"][0]["reason"]
    assert record["format"] == "plain" and record["settings"]["steps"] == 1 and record["sample_rate"] == 16000
    assert record["counts"] == {"generated": 3, "skipped": 0, "failed": 0, "pending": 0, "rejected": 1}

    # Batch, order and --limit do not change a clip: rows reversed, two per step, only the first two.
    reordered = _csv(tmp_path / "r.csv", ["id", "caption", "seconds"], ROWS[::-1])
    out2 = tmp_path / "gen2"
    assert _generate(reordered, out2, "--batch", "2", "--limit", "2") == 0
    assert sorted(p.stem for p in out2.glob("*.wav")) == ["b", "c"]
    for item_id in ("b", "c"):
        np.testing.assert_allclose(load_audio(out2 / f"{item_id}.wav")[0], clips[item_id], atol=1e-4)

    # Resume: existing clips are skipped (untouched), the missing one is generated again, identically.
    (out / "b.wav").unlink()
    mtime = (out / "a.wav").stat().st_mtime_ns
    assert _generate(prompts, out) == 0
    assert (out / "a.wav").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(load_audio(out / "b.wav")[0], clips["b"])
    assert [it["status"] for it in _record(out)["items"]] == ["skipped", "generated", "skipped"]

    # A smaller --limit keeps the other clips on record, so a later full run still resumes.
    assert _generate(prompts, out, "--limit", "1") == 0
    assert [it["id"] for it in _record(out)["earlier_items"]] == ["b", "c"]
    assert _generate(prompts, out) == 0
    assert _record(out)["counts"]["skipped"] == 3


def test_resume_refuses_other_settings_captions_or_unrecorded_clips(tmp_path, capsys):
    prompts = _csv(tmp_path / "p.csv", ["id", "caption", "seconds"], ROWS[:1])
    out = tmp_path / "gen"
    assert _generate(prompts, out) == 0
    assert _generate(prompts, out, "--seed", "1") == 2
    assert "was generated with other settings (seed 0 -> 1)" in capsys.readouterr().err
    changed = _csv(tmp_path / "q.csv", ["id", "caption", "seconds"], [("a", "another caption", "0.25")])
    assert _generate(changed, out) == 2
    assert "a.wav was generated for another caption or duration than row 2" in capsys.readouterr().err
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "x.wav").write_bytes(b"")
    assert _generate(prompts, stray) == 2
    assert "holds 1 .wav files (e.g. x.wav) but no generate.json" in capsys.readouterr().err


def test_one_failing_caption_does_not_stop_the_run(tmp_path, pipe, monkeypatch):
    real = pipe.generate

    def flaky(prompts, **kw):
        if prompts == [ROWS[0][1]]:
            raise SamplingError("non-finite values at step 1 of 2")
        return real(prompts, **kw)

    monkeypatch.setattr(pipe, "generate", flaky)
    prompts = _csv(tmp_path / "p.csv", ["id", "caption", "seconds"], ROWS[:2])
    assert _generate(prompts, tmp_path / "gen") == 0
    items = _record(tmp_path / "gen")["items"]
    assert [(it["id"], it["status"]) for it in items] == [("a", "failed"), ("b", "generated")]
    assert items[0]["reason"] == "non-finite values at step 1 of 2" and not (tmp_path / "gen" / "a.wav").exists()


def test_bounds_and_bad_files(tmp_path, capsys):
    long_caption = "x" * 1001  # the tiny model's conditioner takes at most 1000 characters
    rows = [("long", long_caption, "0.25"), ("ok", "wind", "0.125"), ("far", "rain", "513")]
    prompts = _csv(tmp_path / "p.csv", ["id", "caption", "seconds"], rows)
    assert _generate(prompts, tmp_path / "gen") == 0
    rejects = {r["id"]: r["reason"] for r in _record(tmp_path / "gen")["rejects"]}
    assert rejects == {"long": "caption has 1001 characters; the model takes at most 1000",
                       "far": "513 s is longer than the model's maximum of 512 s"}  # fmt: skip
    cases = [
        (_csv(tmp_path / "u.csv", ["file", "text"], [("a", "b")]), [], "unknown prompt file header file,text"),
        (tmp_path / "missing.csv", [], "no prompt file at"),
        (_csv(tmp_path / "s.csv", ["caption_id", "track_id", "caption"], [("1", "9", "piano")]), [],
         r"1 prompts of .*s.csv \(song-describer\) have no duration \(first: row 2, id 1\); pass --seconds"),
        (prompts, ["--seconds", "600"], "--seconds 600 is longer than the model's maximum of 512 s"),
        (prompts, ["--seconds", "nan"], "--seconds must be a finite number > 0"),
        (prompts, ["--batch", "0"], r"--batch must be in \[1, 64\]"),
        (prompts, ["--limit", "0"], "--limit must be >= 1"),
        (prompts, ["--steps", "0"], r"--steps must be in \[1, 1000\]"),
        (prompts, ["--sampler", "ddpm"], "unknown sampler 'ddpm'"),
    ]  # fmt: skip
    for path, extra, message in cases:
        assert _generate(path, tmp_path / "other", *extra) == 2, message
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert re.search(message, err), err
    assert not (tmp_path / "other").exists()  # nothing written when the run cannot start
