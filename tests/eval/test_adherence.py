"""Prompt adherence: ceiling on real SynthCaps audio, floor on deranged attrs, closed forms and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wavefoundry.audio.io import NonFiniteAudioError
from wavefoundry.data.synth import SynthConfig, synth_item
from wavefoundry.eval.adherence import (
    METRICS,
    adherence_report,
    arpeggio_root_f0,
    derangement,
    floor_report,
    pan_matches,
    score_item,
    summarize,
    wilson_interval,
)

SR = 16000
STEREO = SynthConfig(seconds=2.0, channels=2)


def _items(n: int, seconds: float = 2.0, **overrides):
    cfg = SynthConfig(seconds=seconds, channels=2)
    return [synth_item(cfg, i, overrides=overrides or None) for i in range(n)]


def _clips(items):
    return [(it.audio, it.sample_rate) for it in items]


def _note_attrs(f0: float, **extra) -> dict:
    return {"category": "tonal", "kind": "note", "f0_hz": f0, "note_s": None, "pan": None, **extra}


def _sine(f0: float, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * f0 * np.arange(round(seconds * sr)) / sr))[None]


@pytest.fixture(scope="module")
def notes():
    return _items(20, category="tonal", kind="note")


def test_ceiling_on_real_notes_and_floor_on_deranged_attrs(notes):
    ceiling = adherence_report(_clips(notes), notes)["summary"]
    assert ceiling["pitch_ok"]["n"] == 20 and ceiling["pitch_ok"]["accuracy"] >= 0.9
    assert ceiling["duration_ok"]["n"] == 20 and ceiling["duration_ok"]["accuracy"] >= 0.9
    assert ceiling["pan_ok"]["n"] == 20 and ceiling["pan_ok"]["accuracy"] >= 0.9
    assert ceiling["tempo_ok"]["n"] == 0 and ceiling["class_ok"]["n"] == 0
    floor = floor_report(_clips(notes), notes, seed=0)
    assert all(row["scored_against"] != row["id"] for row in floor["rows"])
    assert [row["id"] for row in floor["rows"]] == [n.id for n in notes]
    by_id = {n.id: n for n in notes}  # the floor's rows are score_item against the other item's attrs
    for row in floor["rows"][:3]:
        clip = by_id[row["id"]]
        expected = score_item(clip.audio, SR, by_id[row["scored_against"]].attrs)
        assert {k: row[k] for k in expected} == expected
    plain = floor_report(_clips(notes[:3]), [n.attrs for n in notes[:3]], seed=1)["rows"]
    assert sorted(r["scored_against"] for r in plain) == [0, 1, 2] and all(r["id"] is None for r in plain)
    assert all(r["scored_against"] != r["index"] for r in plain)
    assert floor["summary"]["pitch_ok"]["accuracy"] <= 0.2  # 40 possible notes: a match is rare
    assert floor["summary"]["pan_ok"]["accuracy"] <= 0.6
    assert floor["summary"]["pitch_ok"]["ci95"][1] < ceiling["pitch_ok"]["ci95"][0]


def test_ceiling_of_arpeggios_drums_and_stereo_mix():
    arps = _items(8, category="tonal", kind="arpeggio")
    drums = _items(5, seconds=3.0, category="drums")
    mix = _items(12, seconds=3.0)  # drum tempo needs clips of 2.5 s or more
    items = arps + drums + mix
    ceiling = adherence_report(_clips(items), items)["summary"]
    assert ceiling["pitch_ok"]["n"] >= 8 and ceiling["pitch_ok"]["accuracy"] >= 0.85
    assert ceiling["tempo_ok"]["n"] >= 5 and ceiling["tempo_ok"]["accuracy"] == 1.0
    assert ceiling["pan_ok"]["n"] == len(items) and ceiling["pan_ok"]["accuracy"] == 1.0
    floor = floor_report(_clips(items), items, seed=3)["summary"]
    assert floor["tempo_ok"]["accuracy"] <= 0.3 and floor["pan_ok"]["accuracy"] <= 0.6


@pytest.mark.parametrize(("detune_cents", "ok"), [(0, True), (40, True), (-40, True), (60, False), (-60, False),
                                                  (1200, False), (-1200, False)])  # fmt: skip
def test_pure_sines_within_50_cents_and_no_octave_leniency(detune_cents, ok):
    f = 330.0 * 2 ** (detune_cents / 1200)
    row = score_item(_sine(f), SR, _note_attrs(330.0))
    assert row["pitch_ok"] is ok
    assert row["pitch_cents"] == pytest.approx(detune_cents, abs=2.0)


def test_arpeggio_root_is_the_lowest_recurring_note():
    root = 220.0
    steps = [0, 4, 7, 12, 7, 4] * 4  # an up-down arpeggio of a major triad, 0.15 s per note
    audio = np.concatenate([_sine(root * 2 ** (s / 12), 0.15)[0] * np.hanning(2400) for s in steps])[None]
    assert math.isclose(arpeggio_root_f0(audio, SR), root, rel_tol=2 ** (5 / 1200) - 1)
    attrs = {"category": "tonal", "kind": "arpeggio", "f0_hz": root, "pan": None}
    assert score_item(audio, SR, attrs)["pitch_ok"] is True
    assert score_item(audio, SR, {**attrs, "f0_hz": 2 * root})["pitch_ok"] is False  # the octave is not the root
    noise = np.random.default_rng(0).standard_normal((1, SR))
    assert arpeggio_root_f0(noise, SR) == 0.0 and arpeggio_root_f0(np.zeros((2, SR)), SR) == 0.0


def test_silent_clip_fails_every_metric_that_applies():
    calls = []

    def classify(audio, sr):
        calls.append(sr)
        return "sine"

    silent = np.zeros((2, 2 * SR), np.float32)
    for item in _items(3) + _items(2, category="tonal", kind="arpeggio"):
        row = score_item(silent, SR, item.attrs, classify=classify, label_of=lambda a: a["timbre"] or "drums")
        applied = [m for m in METRICS if row[m] is not None]
        assert "pan_ok" in applied and "class_ok" in applied
        assert all(row[m] is False for m in applied)
    assert calls == []


def test_mono_audio_has_no_pan_and_stereo_items_need_a_pan():
    attrs = _note_attrs(440.0, pan=-0.8)
    assert score_item(_sine(440.0), SR, attrs)["pan_ok"] is None
    assert score_item(_sine(440.0)[0], SR, attrs)["pan_ok"] is None  # (T,) is mono
    theta = (-0.8 + 1) * math.pi / 4  # the constant-power law of estimate_pan
    stereo = np.concatenate([math.cos(theta) * _sine(440.0), math.sin(theta) * _sine(440.0)])
    row = score_item(stereo, SR, attrs)
    assert row["pan_ok"] is True and row["pan_est"] == pytest.approx(-0.8, abs=1e-3)
    assert score_item(stereo[::-1], SR, attrs)["pan_ok"] is False  # mirrored: hard right


@pytest.mark.parametrize(
    ("est", "req", "ok"),
    [(0.3, 0.5, True), (0.24, 0.5, False), (-0.05, 0.1, True), (0.2, 0.0, True), (-0.05, 0.2, False),
     (0.0, 0.2, False), (-1.0, -0.8, True), (-0.69, -0.95, False)],
)  # fmt: skip
def test_pan_tolerance_and_side(est, req, ok):
    assert pan_matches(est, req) is ok


@pytest.mark.parametrize(
    ("burst_s", "stated_s", "ok"),
    [(1.0, 1.0, True), (1.2, 1.0, True), (1.3, 1.0, False), (2.35, 2.0, True), (2.45, 2.0, False), (0.5, 1.0, False)],
)
def test_duration_within_max_of_quarter_second_and_20_percent(burst_s, stated_s, ok):
    audio = np.zeros((1, 3 * SR))
    audio[:, SR // 4 : SR // 4 + round(burst_s * SR)] = _sine(220.0, burst_s)
    attrs = {"category": "tonal", "kind": "chord", "note_s": stated_s, "pan": None}
    row = score_item(audio, SR, attrs)
    assert row["pitch_ok"] is None  # chords: no pitch reference
    assert row["duration_ok"] is ok and row["duration_est"] == pytest.approx(burst_s, abs=0.02)


def test_class_uses_the_given_classifier_and_label_function(notes):
    def label_of(attrs):
        return attrs.get("timbre")

    report = adherence_report(_clips(notes[:4]), notes[:4], classify=lambda audio, sr: "sine", label_of=label_of)
    rows = report["rows"]
    assert [r["class_ok"] for r in rows] == [n.attrs["timbre"] == "sine" for n in notes[:4]]
    assert all(r["label_pred"] == "sine" and r["id"] == n.id for r, n in zip(rows, notes[:4]))
    assert score_item(_sine(440.0), SR, {}, classify=lambda a, s: "x", label_of=lambda a: None)["class_ok"] is None
    with pytest.raises(ValueError, match="label_of"):
        score_item(_sine(440.0), SR, _note_attrs(440.0), classify=lambda a, s: "x")
    with pytest.raises(TypeError, match="label string"):
        score_item(_sine(440.0), SR, _note_attrs(440.0), classify=lambda a, s: 3, label_of=lambda a: "x")


def test_bad_clips_are_misses_in_a_report_and_errors_alone():
    nan = _sine(440.0)
    nan[0, 10] = np.nan
    with pytest.raises(NonFiniteAudioError):
        score_item(nan, SR, _note_attrs(440.0))
    attrs = [_note_attrs(440.0, pan=0.5), _note_attrs(440.0, pan=0.5)]
    report = adherence_report([(nan, SR), (np.zeros((2, 0)), SR)], attrs)
    assert [r["pitch_ok"] for r in report["rows"]] == [False, False]
    assert [r["pan_ok"] for r in report["rows"]] == [None, False]  # the NaN clip is mono
    assert all("error" in r for r in report["rows"]) and report["summary"]["pitch_ok"]["accuracy"] == 0.0
    with pytest.raises(ValueError, match="aligned"):
        adherence_report([(nan, SR)], attrs)
    with pytest.raises(ValueError, match="positive"):
        score_item(_sine(440.0), 0, _note_attrs(440.0))


def test_wilson_interval_closed_form():
    lo, hi = wilson_interval(8, 10)
    assert (lo, hi) == (pytest.approx(0.4901625, abs=1e-6), pytest.approx(0.9433178, abs=1e-6))
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    lo3, hi3 = wilson_interval(3, 17)
    lo14, hi14 = wilson_interval(14, 17)
    assert lo3 == pytest.approx(1 - hi14) and hi3 == pytest.approx(1 - lo14)  # symmetric in k <-> n - k
    with pytest.raises(ValueError):
        wilson_interval(3, 0)


def test_summarize_counts_only_items_where_a_metric_applies():
    rows = [{"pitch_ok": True, "pan_ok": None}, {"pitch_ok": False, "pan_ok": True}, {"pitch_ok": True}]
    s = summarize(rows)
    assert s["pitch_ok"]["n"] == 3 and s["pitch_ok"]["accuracy"] == pytest.approx(2 / 3)
    assert s["pitch_ok"]["ci95"] == pytest.approx(list(wilson_interval(2, 3)))
    assert s["pan_ok"] == {"accuracy": 1.0, "n": 1, "ci95": [pytest.approx(wilson_interval(1, 1)[0]), 1.0]}
    assert s["class_ok"] == {"accuracy": None, "n": 0, "ci95": None}


def test_derangement_is_seeded_and_has_no_fixed_points():
    for n in (2, 3, 10, 101):
        perm = derangement(n, seed=n)
        assert sorted(perm) == list(range(n)) and not np.any(perm == np.arange(n))
    assert np.array_equal(derangement(50, 7), derangement(50, 7))
    assert not np.array_equal(derangement(50, 7), derangement(50, 8))
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1)
