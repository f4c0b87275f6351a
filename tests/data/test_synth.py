"""SynthCaps: determinism, the written dataset, captions, and ground truth measured back by the analysers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from wavefoundry.audio.analysis import (
    active_span,
    cents,
    estimate_f0,
    estimate_pan,
    estimate_tempo,
    loudness,
    onsets,
)
from wavefoundry.audio.io import load_audio
from wavefoundry.config import ConfigError, from_dict, load_json
from wavefoundry.data.manifest import read_manifest
from wavefoundry.data.synth import (
    COMMON_KEYS,
    LICENSE,
    LICENSE_URL,
    SynthConfig,
    assign_split,
    generate_synthcaps,
    item_id,
    spatialize,
    synth_item,
)
from wavefoundry.data.synth.captions import TEXTURE_STEMS, TIMBRE_STEMS, loudness_words, pan_words
from wavefoundry.data.synth.drums import PATTERNS
from wavefoundry.data.synth.envelopes import ENVELOPES, envelope
from wavefoundry.data.synth.instruments import TIMBRES, harmonic_weights, pluck_tone, wavetable_tone
from wavefoundry.data.synth.music import chord_midi, midi_to_hz, midi_to_name, name_to_midi
from wavefoundry.data.synth.signals import colored_noise, stft_filter
from wavefoundry.data.synth.textures import TEXTURES

SR = 16000
SHORT = SynthConfig(n_items=6, seconds=1.0)


def _item(seconds: float = 1.5, index: int = 0, **overrides):
    return synth_item(SynthConfig(seconds=seconds), index, overrides=overrides)


# --- config -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"n_items": 0},
        {"seconds": 0.1},
        {"sample_rate": 100},
        {"channels": 3},
        {"seed": -1},
        {"categories": ()},
        {"categories": ("tonal", "speech")},
        {"categories": ("tonal", "tonal")},
        {"category_weights": (1.0, 2.0)},
        {"category_weights": (1.0, -1.0, 1.0)},
        {"valid_fraction": 1.0},
        {"valid_fraction": 0.6, "test_fraction": 0.5},
        {"format": "mp3"},
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        SynthConfig(**bad)


def test_config_from_dict_is_strict_and_coerces():
    cfg = from_dict(SynthConfig, {"n_items": "8", "categories": "tonal,drums", "category_weights": [1, 3]})
    assert cfg.n_items == 8 and cfg.categories == ("tonal", "drums")
    np.testing.assert_allclose(cfg.probabilities(), [0.25, 0.75])
    with pytest.raises(ConfigError, match="n_itemz"):
        from_dict(SynthConfig, {"n_itemz": 3})


# --- determinism --------------------------------------------------------------------------------------


def test_same_seed_and_index_give_identical_items():
    a, b = synth_item(SHORT, 3), synth_item(SynthConfig(n_items=999, seconds=1.0), 3)
    assert a.audio.tobytes() == b.audio.tobytes()
    assert a.attrs == b.attrs and a.prompt == b.prompt and a.id == b.id == "synthcaps-s0-000003"


def test_different_seeds_and_indices_differ():
    base = synth_item(SHORT, 1)
    other_seed = synth_item(SynthConfig(seconds=1.0, seed=1), 1)
    other_index = synth_item(SHORT, 2)
    assert base.audio.tobytes() != other_seed.audio.tobytes()
    assert base.audio.tobytes() != other_index.audio.tobytes()
    assert other_seed.id == "synthcaps-s1-000001"


def test_override_changes_only_the_pinned_draw():
    free = _item(index=4, category="tonal", kind="note", timbre="saw")
    pinned = _item(index=4, category="tonal", kind="note", timbre="saw", pan=-0.5)
    assert pinned.attrs["pan"] == -0.5
    for key in ("midi", "envelope", "active_onset_s", "active_offset_s", "brightness"):
        assert free.attrs[key] == pinned.attrs[key]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"category": "tonal", "tempo_bpm": 120, "kind": "note"}, "tempo_bpm"),
        ({"timbre": "kazoo", "category": "tonal"}, "kazoo"),
        ({"category": "drums", "tempo_bpm": 500}, "outside"),
        ({"pan": "left"}, "number"),
        ({"colour": "pink"}, "colour"),
    ],
)
def test_bad_overrides_are_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        _item(**overrides)


def test_negative_index_is_an_error():
    with pytest.raises(ValueError, match="index"):
        synth_item(SHORT, -1)


# --- the written dataset ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The same 6 items written serially and with 2 worker processes."""
    cfg = SynthConfig(n_items=6, seconds=1.0, valid_fraction=0.3, test_fraction=0.2)
    serial = generate_synthcaps(tmp_path_factory.mktemp("serial"), cfg, workers=1, progress=False)
    parallel = generate_synthcaps(tmp_path_factory.mktemp("parallel"), cfg, workers=2, progress=False)
    return cfg, read_manifest(serial), read_manifest(parallel), serial


def test_manifest_fields(built):
    cfg, items, _, manifest = built
    assert [it.id for it in items] == [item_id(0, i) for i in range(6)]
    assert len({it.id for it in items}) == 6 and all("." not in it.id for it in items)
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert all(line["path"] == f"audio/{line['id']}.flac" for line in lines)
    for i, it in enumerate(items):
        assert (it.source, it.license, it.license_url) == ("synthcaps", LICENSE, LICENSE_URL)
        assert it.creator == "wavefoundry SynthCaps" and it.attribution_required is False
        assert it.split == assign_split(i, 0.3, 0.2)
        assert it.prompt in it.attrs["captions"] and it.caption == it.attrs["captions"][0]
        assert (it.sample_rate, it.channels, it.duration_s) == (16000, 2, 1.0)
    assert load_json(SynthConfig, manifest.parent / "synthcaps.json") == cfg


def test_files_decode_to_the_generated_items(built):
    cfg, items, _, _ = built
    for it in items[:3]:
        audio, sr = load_audio(it.path)
        assert (sr, audio.shape) == (16000, (2, 16000))
        ref = synth_item(cfg, int(it.source_id.split(":")[1])).audio
        np.testing.assert_allclose(audio, ref, atol=1.0 / 32768 + 1e-7)  # 16-bit FLAC
        assert abs(loudness(audio) - it.attrs["loudness_dbfs"]) < 0.5
        assert np.abs(audio).max() <= 1.0


def test_parallel_build_is_identical_to_serial(built):
    _, serial, parallel, _ = built
    assert [it.sha256 for it in serial] == [it.sha256 for it in parallel]
    assert [it.attrs for it in serial] == [it.attrs for it in parallel]


def test_split_fractions_follow_the_config():
    splits = [assign_split(i, 0.1, 0.05) for i in range(4000)]
    assert abs(splits.count("valid") / 4000 - 0.1) < 0.02
    assert abs(splits.count("test") / 4000 - 0.05) < 0.015


def test_bad_worker_count_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        generate_synthcaps(tmp_path, SHORT, workers=0)


# --- every item ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
def test_random_items_are_clean(channels):
    cfg = SynthConfig(seconds=1.0, sample_rate=8000, channels=channels)
    seen = set()
    for i in range(36):
        item = synth_item(cfg, i)
        a = item.attrs
        seen.add(a["category"])
        assert item.audio.dtype == np.float32 and item.audio.shape == (channels, 8000)
        assert np.isfinite(item.audio).all() and np.abs(item.audio).max() <= 0.98 + 1e-6
        assert abs(loudness(item.audio) - a["loudness_dbfs"]) < 0.05
        assert set(COMMON_KEYS) <= set(a) and json.loads(json.dumps(a)) is not None
        assert 0.0 <= a["active_onset_s"] < a["active_offset_s"] <= 1.0
        assert len(item.captions) >= 3 and len(set(item.captions)) == len(item.captions)
        if channels == 1:
            assert a["pan"] is None and not any(w in c for c in item.captions for w in ("panned", "center"))
    assert seen == {"tonal", "drums", "texture"}


def test_category_weights_select_categories():
    cfg = SynthConfig(seconds=0.5, sample_rate=8000, categories=("drums", "texture"), category_weights=(0, 1))
    assert {synth_item(cfg, i).attrs["category"] for i in range(5)} == {"texture"}


@pytest.mark.parametrize("kind", sorted(TEXTURES))
def test_every_texture_renders(kind):
    item = _item(seconds=1.0, category="texture", kind=kind)
    assert item.attrs["kind"] == kind and np.abs(item.audio).max() > 0
    assert all(TEXTURE_STEMS[kind] in c for c in item.captions)


# --- captions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("timbre", TIMBRES)
def test_tonal_captions_name_timbre_and_pitch(timbre):
    for index, kind in enumerate(("note", "chord", "arpeggio")):
        a = _item(index=index, category="tonal", kind=kind, timbre=timbre).attrs
        for caption in a["captions"]:
            assert TIMBRE_STEMS[timbre] in caption.lower()
            if kind == "note":
                assert a["notes"][0] in caption
            else:
                assert a["chord"] in caption or f"{a['chord_symbol']} chord" in caption
            if kind == "arpeggio":
                assert f"{a['tempo_bpm']} BPM" in caption


def test_drum_captions_name_the_tempo_and_first_caption_has_every_modifier():
    for index in range(6):
        a = _item(seconds=1.0, index=index, category="drums").attrs
        assert all(f"{a['tempo_bpm']} BPM" in c for c in a["captions"])
        first = a["captions"][0]
        assert any(w in first for w in loudness_words(a["loudness_dbfs"]))
        assert any(w in first for w in pan_words(a["pan"]))


def test_caption_words_follow_the_attribute():
    assert "hard left" in pan_words(-1.0)[1] and "slightly right" in pan_words(0.3)[0]
    assert pan_words(0.0)[0] == "centered" and pan_words(None) == ()
    assert loudness_words(-40)[0] == "very quiet" and loudness_words(-10)[0] == "loud"


def test_wide_textures_say_so():
    a = _item(seconds=1.0, category="texture", kind="noise", stereo_width=0.9).attrs
    assert any("wide" in c for c in a["captions"][:1])


# --- ground truth measured back -----------------------------------------------------------------------


@pytest.mark.parametrize("timbre", TIMBRES)
def test_f0_of_single_notes_within_25_cents(timbre):
    for index in range(4):
        item = _item(index=index, category="tonal", kind="note", timbre=timbre)
        f0 = estimate_f0(item.audio, SR)
        assert abs(cents(f0, item.attrs["f0_hz"])) < 25, (item.attrs["notes"], f0)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_tempo_of_drum_patterns_within_2_percent(pattern):
    for index, bpm in enumerate((72, 97, 123, 148, 170)):
        item = _item(seconds=4.0, index=index, category="drums", pattern=pattern, tempo_bpm=bpm)
        assert abs(estimate_tempo(item.audio, SR) / bpm - 1) < 0.02


def test_drum_onsets_are_detected():
    for index in range(3):
        a = (item := _item(seconds=2.0, index=index, category="drums")).attrs
        found = onsets(item.audio, SR)
        truth = np.asarray(a["onsets_s"])
        assert np.abs(found[:, None] - truth[None]).min(axis=1).max() < 0.02  # every detection is a hit
        step = 60.0 / a["tempo_bpm"] / 4
        beats = truth[np.round((truth - a["active_onset_s"]) / step).astype(int) % 4 == 0]
        assert np.abs(beats[:, None] - found[None]).min(axis=1).max() < 0.02  # every beat hit is found


@pytest.mark.parametrize("pan", [-1.0, -0.6, 0.0, 0.25, 1.0])
@pytest.mark.parametrize("category", ["tonal", "drums", "texture"])
def test_pan_measured_within_0_05(pan, category):
    item = _item(seconds=1.0, category=category, pan=pan)
    assert abs(estimate_pan(item.audio) - pan) < 0.05


@pytest.mark.parametrize("env", ENVELOPES)
def test_active_span_of_enveloped_notes_within_50_ms(env):
    timbres = ("pluck", "fm_bell") if env == "percussive" else ("sine", "square", "saw", "organ")
    for index, timbre in enumerate(timbres):
        a = (item := _item(seconds=2.0, index=index, category="tonal", kind="note", timbre=timbre, envelope=env)).attrs
        onset, offset = active_span(item.audio, SR)
        assert abs(onset - a["active_onset_s"]) < 0.05 and abs(offset - a["active_offset_s"]) < 0.05


def test_requested_loudness_is_met():
    item = _item(seconds=1.0, category="tonal", kind="note", timbre="sine", loudness_dbfs=-27.0)
    assert abs(loudness(item.audio) - (-27.0)) < 0.01 and item.attrs["loudness_dbfs"] == -27.0


# --- building blocks ----------------------------------------------------------------------------------


def test_note_names_round_trip():
    assert midi_to_hz(69) == 440.0 and name_to_midi("A4") == 69 and name_to_midi("Bb2") == 46
    assert all(name_to_midi(midi_to_name(m)) == m for m in range(12, 120))
    assert chord_midi(57, "minor") == [57, 60, 64]
    with pytest.raises(ValueError, match="note name"):
        name_to_midi("H2")


def test_wavetable_has_the_requested_partials():
    f0 = SR / 64  # 250 Hz: exactly 64 samples per period, so each partial sits on an FFT bin
    weights = harmonic_weights("square", f0, SR, tilt=0.0)
    tone = wavetable_tone(weights, f0, 4096, SR)
    mag = np.abs(np.fft.rfft(tone))[64::64][: len(weights)]
    np.testing.assert_allclose(mag / mag[0], weights / weights[0], atol=2e-3)  # odd partials at 1/k
    assert len(weights) * f0 <= 0.45 * SR  # band-limited


def test_pluck_is_tuned_and_decays_at_its_t60():
    f0, t60 = 220.0, 1.5
    y = pluck_tone(f0, 2 * SR, SR, np.random.default_rng(0), tilt=1.2, t60_s=t60)
    t = np.arange(SR // 10) / SR

    def level_db(start: float) -> float:  # amplitude of the partial at f0 over 100 ms from ``start``
        seg = y[int(start * SR) : int(start * SR) + t.size]
        return 20 * math.log10(abs(np.sum(seg * np.exp(-2j * np.pi * f0 * t))) * 2 / t.size)

    assert abs(level_db(1.0) - level_db(0.5) - (-60.0 * 0.5 / t60)) < 1.5
    assert abs(cents(estimate_f0(y, SR), f0)) < 2


def test_envelopes_have_finite_support():
    params = {"attack_s": 0.05, "decay_s": 0.1, "sustain": 0.5, "release_s": 0.1}
    for kind in ENVELOPES:
        e = envelope(kind, SR, SR, params)
        assert e[0] == 0.0 and e[-1] < 0.01 and e.max() <= 1.0 and e.min() >= 0.0
    np.testing.assert_allclose(envelope("adsr", SR, SR, params)[SR // 2], 0.5)


def test_spatialize_follows_the_constant_power_law():
    image = np.random.default_rng(0).standard_normal((2, 4000))  # a wide (uncorrelated) image
    for pan in (-1.0, -0.3, 0.0, 0.8):
        out = spatialize(image, pan, 2)
        theta = (pan + 1) * math.pi / 4
        rms = np.sqrt(np.mean(out**2, axis=1)) / np.sqrt(np.mean(image**2))
        np.testing.assert_allclose(rms, [math.cos(theta), math.sin(theta)], atol=0.02)


def test_colored_noise_slopes():
    for exponent in (0.0, 1.0, 2.0):
        x = colored_noise(np.random.default_rng(0), 2**16, SR, exponent)
        power = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(x.size, 1 / SR)
        band = (freqs > 200) & (freqs < 6000)
        slope = np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0]
        assert abs(slope + exponent) < 0.1 and abs(np.sqrt(np.mean(x**2)) - 1) < 1e-9


def test_stft_filter_with_unit_gain_is_identity():
    x = np.random.default_rng(0).standard_normal(5000)
    y = stft_filter(x, SR, lambda f, t: np.ones((t.size, f.size)))
    np.testing.assert_allclose(y, x, atol=1e-12)


def test_rounded_uniform_draws_stay_inside_unround_bounds():
    from wavefoundry.data.synth.sampling import Chooser

    low, high = 0.03, 0.28788  # rounding to 4 digits can land on 0.2879 > high
    ch = Chooser(np.random.default_rng(0), {})
    draws = [ch.uniform(f"k{i}", low, high, digits=4) for i in range(20000)]
    assert low <= min(draws) and max(draws) <= high


def test_regression_item_19_of_two_second_mono_set():
    item = synth_item(SynthConfig(n_items=480, seconds=2.0, channels=1), 19)
    assert item.audio.shape == (1, 32000)
