"""espeak-ng speech corpus: sentence generator, config, rendering, manifest, splits, cache, rejects and the CLI."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from wavefoundry.audio.dsp import rms_dbfs
from wavefoundry.audio.io import load_audio
from wavefoundry.cli import main
from wavefoundry.config import ConfigError, from_dict
from wavefoundry.data.espeak import MISSING, EspeakNotFoundError, render_speech, trim_silence
from wavefoundry.data.manifest import read_manifest
from wavefoundry.data.speech import (
    SpeechConfig,
    assign_split,
    build_speech,
    config_hash,
    generated_utterance,
    plan,
    prepare_speech,
    speech_cache_dir,
)
from wavefoundry.data.speech_text import (
    LANGUAGES,
    LEXICONS,
    clean_text,
    generate_sentence,
    normalize_transcript,
    sentence,
)

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
SR = 16000


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: _sha(p) for p in folder.iterdir()}


def _text_file(tmp_path: Path, lines: list[str], name: str = "lines.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- sentences --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_sentences_are_seeded_varied_and_bounded(language):
    assert sentence(3, 17, language) == sentence(3, 17, language)
    assert sentence(3, 17, language) != sentence(4, 17, language)
    transcripts = {sentence(0, i, language).transcript for i in range(4000)}
    assert len(transcripts) > 3950  # the space is ~1e8 sentences: repeats are rare
    rng = np.random.default_rng(0)
    assert all(len(generate_sentence(language, rng, max_chars=40).text) <= 40 for _ in range(300))


@pytest.mark.parametrize("language", LANGUAGES)
def test_text_and_transcript_conventions(language):
    for i in range(300):
        s = sentence(1, i, language)
        assert s.text[-1] in ".?" and s.kind == ("question" if s.text.endswith("?") else "statement")
        first = s.text.lstrip("¿")[0]
        assert first.isupper(), s.text
        assert s.transcript == normalize_transcript(s.text) and s.transcript == s.transcript.lower()
        assert not any(c in s.transcript for c in ".,?¿!")
        if language == "es" and s.kind == "question":
            assert s.text.startswith("¿")


@pytest.mark.parametrize("language", LANGUAGES)
def test_verbs_agree_with_the_subject(language):
    lex = LEXICONS[language]
    statements = [" " + s.transcript + " " for i in range(3000) if (s := sentence(2, i, language)).kind == "statement"]
    for subject, plural in lex.subjects:
        for sg, pl, _ in lex.verbs:
            if sg == pl:
                continue
            wrong = f" {subject.lower()} {sg if plural else pl} "
            assert not any(wrong in t for t in statements), wrong


@pytest.mark.parametrize("language", ["fr", "es", "it"])
def test_adjectives_agree_with_the_noun(language):
    lex = LEXICONS[language]
    forms = {}  # adjective form -> set of genders it is right for
    for masc, fem, _ in lex.adjectives:
        forms.setdefault(masc, set()).add("m")
        forms.setdefault(fem, set()).add("f")
    genders = {noun: gender for noun, gender, _ in lex.nouns}
    checked = 0
    for i in range(2000):
        words = sentence(5, i, language).transcript.split()
        for j, word in enumerate(words):
            if word not in genders:
                continue
            for k in (j - 1, j + 1):
                if 0 <= k < len(words) and words[k] in forms:
                    assert genders[word] in forms[words[k]], (words[k], word)
                    checked += 1
    assert checked > 500


def test_german_word_order_and_capitalised_nouns():
    for i in range(500):
        text = sentence(0, i, "de").text
        words = text.rstrip(".?").split()
        verbs = {v for sg, pl, _ in LEXICONS["de"].verbs for v in (sg, pl)}
        if text.endswith("?"):
            assert words[0].lower() in verbs  # yes/no question: verb first
        nouns = {n for n, _, _ in LEXICONS["de"].nouns}
        assert any(w in nouns for w in words)  # the plural noun keeps its capital


def test_normalize_and_clean():
    assert normalize_transcript("¿Qué tal, Ana?") == "qué tal ana"
    assert normalize_transcript("Est-ce qu’il  vient ?") == "est-ce qu'il vient"
    assert normalize_transcript("Hello -- world! 'quoted'") == "hello world quoted"
    assert clean_text("say [[h@'loU]] now\x07\tplease") == "say h@'loU now please"
    with pytest.raises(ValueError, match="valid: en, de, fr, es, it"):
        generate_sentence("xx", np.random.default_rng(0))


# --- config and planning ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"n_items": 0},
        {"languages": ()},
        {"languages": ("en", "en")},
        {"languages": ("xx",)},
        {"variants": ()},
        {"variants": ("m1; rm",)},
        {"rate_range": (200, 100)},
        {"rate_range": (50, 100)},
        {"pitch_range": (0, 120)},
        {"sample_rate": 100},
        {"loudness_dbfs": 0.0},
        {"valid_fraction": 1.0},
        {"seed": -1},
        {"max_chars": 10},
        {"text_file": "x.txt"},
        {"text_language": "en"},
        {"text_file": "x.txt", "text_language": "en", "text_license": "CC-BY-NC-4.0"},
        {"text_license": "cc0"},
        {"format": "mp3"},
    ],
)
def test_bad_config(bad):
    with pytest.raises(ValueError):
        SpeechConfig(**bad)


def test_config_from_dict_is_strict():
    cfg = from_dict(SpeechConfig, {"n_items": "4", "languages": ["de", "fr"], "rate_range": [100, 120]})
    assert cfg.languages == ("de", "fr") and cfg.rate_range == (100, 120)
    with pytest.raises(ConfigError, match="unknown config key 'speakers'"):
        from_dict(SpeechConfig, {"speakers": 3})


def test_plan_voices_are_drawn_in_range_and_languages_take_turns():
    cfg = SpeechConfig(n_items=50, rate_range=(100, 120), pitch_range=(10, 20), variants=("m3", "f2"))
    utts = plan(cfg)
    assert [u.language for u in utts[:10]] == list(LANGUAGES) * 2
    assert all(100 <= u.rate <= 120 and 10 <= u.pitch <= 20 and u.variant in ("m3", "f2") for u in utts)
    assert utts[7] == generated_utterance(cfg, 7)
    # the voice stream is its own: a different rate range leaves the sentences as they were
    other = plan(SpeechConfig(n_items=50, rate_range=(300, 400)))
    assert [u.text for u in other] == [u.text for u in utts]


def test_split_is_a_function_of_the_transcript():
    transcripts = [sentence(0, i, "en").transcript for i in range(5000)]
    splits = [assign_split("en", t, 0.1) for t in transcripts]
    assert 0.08 < splits.count("valid") / len(splits) < 0.12
    assert all(assign_split("en", t, 0.1) == s for t, s in zip(transcripts[:100], splits))
    assert {assign_split("en", t, 0.0) for t in transcripts} == {"train"}


def test_cache_dir_follows_config_and_text_bytes(tmp_path):
    text = _text_file(tmp_path, ["one line."])
    cfg = SpeechConfig(n_items=3, text_file=str(text), text_language="en")
    first = speech_cache_dir(cfg, tmp_path)
    assert first.name == f"speech-{config_hash(cfg)}" and first.parent == tmp_path
    assert speech_cache_dir(SpeechConfig(n_items=3, text_file=str(text), text_language="en", seed=1), tmp_path) != first
    text.write_text("another line.\n", encoding="utf-8")
    assert speech_cache_dir(cfg, tmp_path) != first


def test_trim_silence_keeps_the_loud_part_and_a_pad():
    sr = 16000
    tone = 0.5 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr)
    audio = np.concatenate([np.zeros(sr), tone, np.zeros(2 * sr)])[None].astype(np.float32)
    out = trim_silence(audio, sr)
    assert abs(out.shape[-1] - (sr + 2 * 0.05 * sr)) <= 2 * sr // 100
    assert np.allclose(np.abs(out).max(), 0.5, atol=1e-3)


def test_missing_espeak_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EspeakNotFoundError, match=f"^{re.escape(MISSING)}$"):
        build_speech(tmp_path / "out", SpeechConfig(n_items=2))
    assert main(["data", "speech", "--out", str(tmp_path / "out"), "--items", "2", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {MISSING}"


# --- rendering (espeak-ng) ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("speech")
    report = build_speech(out, SpeechConfig(n_items=10, valid_fraction=0.3), workers=2, progress=False)
    return out, report


@needs_espeak
def test_every_default_language_renders(corpus):
    out, report = corpus
    assert report.kept == 10 and report.rejected == 0 and not report.cached
    items = read_manifest(out / "manifest.jsonl")  # strict schema validation
    assert sorted({i.attrs["language"] for i in items}) == sorted(LANGUAGES)
    for item in items:
        audio, sr = load_audio(item.path)
        assert sr == SR == item.sample_rate and audio.shape[0] == item.channels == 1
        assert audio.shape[1] == round(item.duration_s * sr)
        assert rms_dbfs(audio) > -30 and abs(rms_dbfs(audio) - item.attrs["loudness_dbfs"]) < 0.1
        assert np.abs(audio).max() <= 0.98 + 1e-4
        assert item.sha256 == _sha(Path(item.path))
        assert item.source == "espeak-ng" and item.license == "CC0-1.0" and not item.attribution_required
        assert item.attrs["transcript"] == normalize_transcript(item.attrs["text"]) and item.attrs["phonemes"]
        assert item.attrs["voice"] == f"{item.attrs['language']}+{item.attrs['variant']}"
        assert item.caption.endswith(item.attrs["text"]) and item.attrs["gender"] in item.caption
        assert item.split in ("train", "valid")
    assert (out / "rejects.jsonl").read_text() == ""
    assert (out / "ATTRIBUTION.csv").read_text().splitlines() == ["id,title,creator,source_url,license,license_url"]


@needs_espeak
def test_duration_grows_with_text_length_and_falls_with_rate():
    short = "The cat sleeps."
    long = "The cat sleeps in the warm kitchen while seven small birds sing in the garden outside."

    def seconds(text, rate):
        audio, _ = render_speech(text, voice="en+m1", rate=rate, pitch=50, sample_rate=SR, binary=ESPEAK)
        return trim_silence(audio, SR).shape[-1] / SR

    assert seconds(long, 160) > 2.5 * seconds(short, 160)
    assert seconds(long, 300) < 0.75 * seconds(long, 150)


@needs_espeak
def test_same_seed_same_manifest_and_audio_whatever_the_workers(tmp_path, corpus):
    out, _ = corpus
    again = tmp_path / "again"
    build_speech(again, SpeechConfig(n_items=10, valid_fraction=0.3), workers=1, progress=False)
    assert (again / "manifest.jsonl").read_bytes() == (out / "manifest.jsonl").read_bytes()
    assert {p.name: _sha(p) for p in (again / "audio").iterdir()} == {
        p.name: _sha(p) for p in (out / "audio").iterdir()
    }
    other = tmp_path / "other"
    build_speech(other, SpeechConfig(n_items=10, valid_fraction=0.3, seed=1), progress=False)
    assert (other / "manifest.jsonl").read_bytes() != (out / "manifest.jsonl").read_bytes()


@needs_espeak
def test_splits_never_share_a_transcript(tmp_path):
    lines = [f"The number {w} is written on the wall." for w in ("one", "two", "three", "four", "five", "six")]
    text = _text_file(tmp_path, lines * 3)  # each sentence three times, with three different voices
    cfg = SpeechConfig(n_items=100, text_file=str(text), text_language="en", valid_fraction=0.5)
    report = build_speech(tmp_path / "out", cfg, progress=False)
    items = read_manifest(report.manifest_path)
    assert len(items) == 18 and len({i.attrs["voice"] + i.attrs["transcript"] for i in items}) > 6
    by_split = {s: {i.attrs["transcript"] for i in items if i.split == s} for s in ("train", "valid")}
    assert by_split["train"] and by_split["valid"] and not by_split["train"] & by_split["valid"]


@needs_espeak
def test_user_text_file(tmp_path):
    lines = ["# a comment", "", "Hello there, how are you?", "x" * 300, "Guten Morgen!", "   ", "-v fr [[x]] ok."]
    text = _text_file(tmp_path, lines, "my text.txt")
    cfg = SpeechConfig(n_items=10, text_file=str(text), text_language="en", text_license="CC-BY-4.0", max_chars=100)
    report = build_speech(tmp_path / "out", cfg, progress=False)
    items = read_manifest(report.manifest_path)
    assert [i.attrs["transcript"] for i in items] == ["hello there how are you", "guten morgen", "v fr x ok"]
    assert [i.source_id for i in items] == ["my text.txt:3", "my text.txt:5", "my text.txt:7"]
    assert all(i.license == "CC-BY-4.0" and i.attribution_required and i.attrs["kind"] == "line" for i in items)
    rejects = [json.loads(line) for line in report.rejects_path.read_text().splitlines()]
    assert [(r["stage"], r["kind"]) for r in rejects] == [("text", "text too long")]
    assert rejects[0]["path"].endswith("my text.txt:4")
    attribution = (tmp_path / "out" / "ATTRIBUTION.csv").read_text().splitlines()
    assert len(attribution) == 4 and attribution[1].startswith(items[0].id)


@needs_espeak
def test_a_failing_render_goes_to_rejects_and_the_run_goes_on(tmp_path):
    fake = tmp_path / "fake-espeak"
    fake.write_text(f'#!/bin/sh\ncase "$*" in *zebra*) echo "boom: no zebras" >&2; exit 1;; esac\nexec {ESPEAK} "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    text = _text_file(tmp_path, ["A horse runs.", "A zebra runs.", "A dog runs."])
    cfg = SpeechConfig(n_items=3, text_file=str(text), text_language="en")
    report = build_speech(tmp_path / "out", cfg, espeak=str(fake), progress=False)
    assert (report.kept, report.rejected) == (2, 1)
    assert [i.attrs["transcript"] for i in read_manifest(report.manifest_path)] == ["a horse runs", "a dog runs"]
    (reject,) = [json.loads(line) for line in report.rejects_path.read_text().splitlines()]
    assert reject["stage"] == "render" and "exited with 1: boom: no zebras" in reject["reason"]


@needs_espeak
def test_voices_espeak_lacks_are_errors(tmp_path):
    with pytest.raises(ValueError, match="no variants \\['nosuchvariant'\\]"):
        build_speech(tmp_path, SpeechConfig(n_items=1, variants=("m1", "nosuchvariant")), progress=False)
    text = _text_file(tmp_path, ["hello."])
    with pytest.raises(ValueError, match="no voice for \\['zz'\\]"):
        build_speech(tmp_path, SpeechConfig(n_items=1, text_file=str(text), text_language="zz"), progress=False)


@needs_espeak
def test_an_identical_build_is_reused(tmp_path):
    cfg = SpeechConfig(n_items=3)
    manifest = prepare_speech(cfg, cache_dir=tmp_path, progress=False)
    assert manifest.parent == speech_cache_dir(cfg, tmp_path)
    first = sorted((manifest.parent / "audio").iterdir())
    stamps = [p.stat().st_mtime_ns for p in first]
    report = build_speech(manifest.parent, cfg, progress=False)
    assert report.cached and report.kept == 3 and [p.stat().st_mtime_ns for p in first] == stamps
    first[0].unlink()  # a build with missing audio is not reused
    assert not build_speech(manifest.parent, cfg, progress=False).cached and first[0].exists()
    assert not build_speech(manifest.parent, cfg, progress=False, force=True).cached
    # another config into the same folder: a fresh build, and audio it did not write is removed
    build_speech(manifest.parent, SpeechConfig(n_items=2), progress=False)
    assert sorted(p.name for p in (manifest.parent / "audio").iterdir()) == [p.name for p in first[:2]]


@needs_espeak
def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["data", "speech", "--out", str(out), "--items", "4", "--languages", "fr,it", "--seed", "3"]
    assert main([*argv, "--no-progress"]) == 0
    assert "4 utterances" in capsys.readouterr().out
    items = read_manifest(out / "manifest.jsonl")
    assert [i.attrs["language"] for i in items] == ["fr", "it", "fr", "it"]
    assert all(i.id.startswith("speech-s3-") for i in items)
    assert main([*argv, "--no-progress"]) == 0 and "reused cached build" in capsys.readouterr().out
    text = _text_file(tmp_path, ["Hallo Welt.", "Wie geht es dir?"])
    assert main(["data", "speech", "--out", str(tmp_path / "t"), "--text", str(text), "--language", "de"]) == 0
    assert [i.attrs["language"] for i in read_manifest(tmp_path / "t" / "manifest.jsonl")] == ["de", "de"]
    assert main(["data", "speech", "--out", str(out), "--language", "en"]) == 2
    assert "text_language is only used with text_file" in capsys.readouterr().err
