"""Analysers on closed-form signals: sines, click trains, panned noise, silence and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wavefoundry.audio.analysis import (
    active_duration,
    active_span,
    cents,
    envelope_db,
    estimate_f0,
    estimate_pan,
    estimate_tempo,
    loudness,
    onset_strength,
    onsets,
)
from wavefoundry.audio.io import ChannelError, EmptyAudioError, NonFiniteAudioError

SR = 16000


def _sine(f: float, seconds: float = 1.0, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * f * np.arange(int(seconds * sr)) / sr))[None].astype(np.float32)


def _clicks(bpm: float, seconds: float, sr: int = SR, accent_every: int = 1) -> np.ndarray:
    """A click train: 2 ms noise bursts every beat, every ``accent_every``-th twice as loud."""
    out = np.zeros(int(seconds * sr))
    burst = np.random.default_rng(0).standard_normal(int(0.002 * sr))
    for k, t in enumerate(np.arange(0.05, seconds - 0.01, 60.0 / bpm)):
        s = int(t * sr)
        out[s : s + burst.size] += burst * (1.0 if k % accent_every == 0 else 0.5)
    return out[None]


# --- pitch --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("f", [55.0, 110.0, 261.63, 440.0, 987.77, 1760.0])
def test_f0_of_pure_sines(f):
    assert abs(cents(estimate_f0(_sine(f), SR), f)) < 1.0


@pytest.mark.parametrize("sr", [8000, 22050, 44100])
def test_f0_at_other_rates(sr):
    assert abs(cents(estimate_f0(_sine(330.0, sr=sr), sr), 330.0)) < 2.0


def test_f0_of_a_weak_fundamental_is_not_an_octave_off():
    t = np.arange(SR) / SR
    x = 0.3 * np.sin(2 * np.pi * 200 * t) + np.sin(2 * np.pi * 400 * t) + 0.6 * np.sin(2 * np.pi * 600 * t)
    assert abs(cents(estimate_f0(x, SR), 200.0)) < 1.0  # 1-D input is read as mono


def test_f0_ignores_quiet_tails_and_channels_are_mixed():
    x = np.concatenate([_sine(220.0, 0.5), _sine(220.0, 0.5, amp=1e-4)], axis=1)
    assert abs(cents(estimate_f0(np.repeat(x, 2, axis=0), SR), 220.0)) < 1.0


@pytest.mark.parametrize(
    "audio",
    [np.zeros((2, SR)), np.random.default_rng(0).standard_normal((1, SR)), _sine(440.0, 0.02), np.ones((1, 1))],
    ids=["silence", "white-noise", "shorter-than-two-periods", "one-sample"],
)
def test_f0_is_zero_when_there_is_no_pitch(audio):
    assert estimate_f0(audio, SR) == 0.0


def test_cents_closed_forms():
    assert cents(880.0, 440.0) == 1200.0
    assert math.isclose(cents(440.0 * 2 ** (1 / 12), 440.0), 100.0)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="positive"):
            cents(bad, 440.0)


# --- tempo and onsets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bpm", [63.0, 97.0, 120.0, 151.0, 187.0])
def test_tempo_of_click_trains(bpm):
    assert abs(estimate_tempo(_clicks(bpm, 6.0), SR) / bpm - 1) < 0.01


def test_tempo_prefers_the_beat_over_off_beat_ticks():
    # A low thump on every beat at 90 BPM and a quiet high tick between beats: 90, not 180.
    t = np.arange(int(0.15 * SR)) / SR
    thump = np.sin(2 * np.pi * 60 * t) * np.exp(-t / 0.04)
    tick = np.diff(np.random.default_rng(0).standard_normal(int(0.004 * SR) + 1)) * 0.15
    x = np.zeros(6 * SR)
    for k, start in enumerate(np.arange(0.05, 5.8, 60.0 / 180.0)):
        sound = thump if k % 2 == 0 else tick
        x[int(start * SR) : int(start * SR) + sound.size] += sound
    assert abs(estimate_tempo(x, SR) / 90.0 - 1) < 0.01


@pytest.mark.parametrize(
    "audio",
    [np.zeros((1, 4 * SR)), _sine(440.0, 4.0), np.random.default_rng(1).standard_normal((2, 4 * SR))],
    ids=["silence", "steady-tone", "noise"],
)
def test_tempo_is_zero_without_a_pulse(audio):
    assert estimate_tempo(audio, SR) == 0.0


def test_tempo_is_zero_for_clips_shorter_than_two_slowest_beats():
    assert estimate_tempo(_clicks(120.0, 1.5), SR) == 0.0
    with pytest.raises(ValueError, match="bpm_min"):
        estimate_tempo(_clicks(120.0, 4.0), SR, bpm_min=200, bpm_max=100)


def test_onsets_of_a_click_train():
    x = _clicks(100.0, 3.0)
    found = onsets(x, SR)
    truth = np.arange(0.05, 2.99, 0.6)
    assert found.size == truth.size and np.abs(found - truth).max() < 0.015
    assert onsets(np.zeros((1, SR)), SR).size == 0 and onsets(np.ones((1, 10)), SR).size == 0


def test_onset_strength_shapes():
    env, rate = onset_strength(_clicks(120.0, 2.0), SR)
    assert rate == 200.0 and env.shape == (401,) and (env >= 0).all() and np.isfinite(env).all()
    assert onset_strength(np.zeros((1, 100)), SR)[0].size == 0


# --- pan, loudness, active span -----------------------------------------------------------------------


@pytest.mark.parametrize("pan", [-1.0, -0.5, 0.0, 0.3, 1.0])
def test_pan_inverts_the_constant_power_law(pan):
    x = np.random.default_rng(0).standard_normal(SR)
    theta = (pan + 1) * math.pi / 4
    assert abs(estimate_pan(np.stack([math.cos(theta) * x, math.sin(theta) * x])) - pan) < 1e-6


def test_pan_hard_sides_mono_and_silence():
    x = np.random.default_rng(0).standard_normal(SR)
    assert estimate_pan(np.stack([x, 0 * x])) == -1.0 and estimate_pan(np.stack([0 * x, x])) == 1.0
    assert estimate_pan(x[None]) == 0.0 and estimate_pan(np.zeros((2, 100))) == 0.0
    with pytest.raises(ChannelError, match="channels"):
        estimate_pan(np.zeros((3, 100)))


def test_loudness_closed_forms():
    assert abs(loudness(_sine(1000.0, amp=1.0)) - (-3.0103)) < 1e-3
    assert loudness(np.zeros((2, 100))) == -120.0


def test_active_span_of_a_tone_burst():
    x = np.zeros((2, 2 * SR), dtype=np.float32)
    x[:, int(0.5 * SR) : int(1.2 * SR)] = _sine(300.0, 0.7)
    onset, offset = active_span(x, SR)
    assert abs(onset - 0.5) < 0.01 and abs(offset - 1.2) < 0.01
    assert abs(active_duration(x, SR) - 0.7) < 0.02


def test_active_span_threshold_and_silence():
    x = np.concatenate([_sine(300.0, 0.5), _sine(300.0, 0.5, amp=0.5e-2)], axis=1)  # second half at -40 dB
    assert abs(active_span(x, SR, threshold_db=-30.0)[1] - 0.5) < 0.01
    assert active_span(x, SR, threshold_db=-50.0)[1] == 1.0
    assert active_span(np.zeros((1, SR)), SR) == (0.0, 0.0) and active_duration(np.zeros((1, 10)), SR) == 0.0
    with pytest.raises(ValueError, match="threshold_db"):
        active_span(x, SR, threshold_db=3.0)


def test_envelope_db_is_relative_to_its_peak():
    env = envelope_db(np.concatenate([_sine(500.0, 0.5), _sine(500.0, 0.5, amp=0.05)], axis=1), SR)
    assert env.max() == 0.0 and abs(np.median(env[SR // 2 + 400 :]) - (-20.0)) < 0.1


# --- bad input ----------------------------------------------------------------------------------------


ANALYSERS = [
    lambda a: estimate_f0(a, SR),
    lambda a: estimate_tempo(a, SR),
    lambda a: estimate_pan(a),
    lambda a: loudness(a),
    lambda a: active_span(a, SR),
    lambda a: onsets(a, SR),
]


@pytest.mark.parametrize("fn", ANALYSERS)
def test_bad_input_raises_typed_errors(fn):
    with pytest.raises(EmptyAudioError):
        fn(np.zeros((1, 0)))
    with pytest.raises(NonFiniteAudioError):
        fn(np.array([[0.0, math.nan, 0.0]]))
    with pytest.raises(ChannelError):
        fn(np.zeros((1, 2, 3)))


@pytest.mark.parametrize("fn", ANALYSERS)
def test_tiny_inputs_give_finite_results(fn):
    for audio in (np.zeros((2, 1)), np.full((1, 7), 0.5)):
        out = np.asarray(fn(audio), dtype=np.float64)
        assert np.isfinite(out).all()


def test_bad_rates_and_ranges():
    with pytest.raises(ValueError, match="sample rate"):
        estimate_f0(_sine(440.0), 0)
    with pytest.raises(ValueError, match="fmin"):
        estimate_f0(_sine(440.0), SR, fmin=500.0, fmax=100.0)
