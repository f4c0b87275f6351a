"""Channel layout and level operations: shapes, exact values and closed-form levels."""

from __future__ import annotations

import numpy as np
import pytest

from wavefoundry.audio.dsp import (
    SILENCE_DBFS,
    loudness_normalize,
    peak,
    peak_normalize,
    rms_dbfs,
    set_channels,
    to_mono,
    to_stereo,
)
from wavefoundry.audio.io import ChannelError, EmptyAudioError, NonFiniteAudioError


def sine(amplitude: float = 1.0, periods: int = 50, n: int = 4000, channels: int = 1) -> np.ndarray:
    """(C, n) float32 sine with a whole number of periods, so its mean square is exactly amplitude**2 / 2."""
    t = np.arange(n) / n
    return np.tile(amplitude * np.sin(2 * np.pi * periods * t), (channels, 1)).astype(np.float32)


def noise(channels: int = 2, n: int = 4000, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((channels, n))).astype(np.float32)


def test_to_mono_averages_channels():
    x = noise(channels=3)
    y = to_mono(x)
    assert y.shape == (1, x.shape[1])
    np.testing.assert_allclose(y[0], (x[0] + x[1] + x[2]) / 3, atol=1e-7)
    np.testing.assert_array_equal(to_mono(x[:1]), x[:1])


def test_to_stereo():
    mono = noise(channels=1)
    y = to_stereo(mono)
    assert y.shape == (2, mono.shape[1])
    np.testing.assert_array_equal(y[0], mono[0])
    np.testing.assert_array_equal(y[1], mono[0])
    stereo = noise(channels=2)
    assert to_stereo(stereo) is stereo


def test_to_stereo_refuses_more_than_two_channels():
    with pytest.raises(ChannelError, match="3 channels"):
        to_stereo(noise(channels=3))


def test_set_channels():
    six = noise(channels=6)
    assert set_channels(six, 1).shape == (1, 4000)
    down = set_channels(six, 2)  # downmix through mono, never a silent channel drop
    np.testing.assert_allclose(down[0], six.mean(axis=0), atol=1e-7)
    np.testing.assert_array_equal(down[0], down[1])
    mono = noise(channels=1)
    assert set_channels(mono, 1) is mono
    with pytest.raises(ChannelError, match="1 or 2"):
        set_channels(mono, 3)


def test_peak_normalize_hits_the_exact_peak():
    x = noise()
    y = peak_normalize(x, target=0.5)
    assert peak(y) == pytest.approx(0.5, abs=1e-7)
    np.testing.assert_allclose(y, x * (0.5 / peak(x)), rtol=1e-6)  # a pure gain
    assert y.dtype == np.float32


def test_peak_normalize_keeps_silence():
    silence = np.zeros((2, 100), np.float32)
    np.testing.assert_array_equal(peak_normalize(silence), silence)


def test_rms_dbfs_closed_forms():
    assert rms_dbfs(sine(1.0)) == pytest.approx(-10 * np.log10(2), abs=0.01)  # -3.0103 dB
    assert rms_dbfs(sine(0.5)) == pytest.approx(-3.0103 - 6.0206, abs=0.01)
    assert rms_dbfs(np.full((2, 100), 0.1, np.float32)) == pytest.approx(-20.0, abs=1e-4)
    assert rms_dbfs(np.zeros((1, 100), np.float32)) == SILENCE_DBFS


@pytest.mark.parametrize("target", [-30.0, -20.0, -12.0])
def test_loudness_normalize_hits_target(target):
    y = loudness_normalize(noise(), target)
    assert rms_dbfs(y) == pytest.approx(target, abs=0.01)


def test_loudness_normalize_respects_max_peak():
    # A click train has a high crest factor: reaching -6 dBFS RMS would need peaks far above 0.5.
    x = np.zeros((1, 1000), np.float32)
    x[0, ::100] = 0.1
    y = loudness_normalize(x, -6.0, max_peak=0.5)
    assert peak(y) == pytest.approx(0.5, abs=1e-6)
    assert rms_dbfs(y) < -6.0
    # The limiter only scales: the waveform shape is unchanged.
    np.testing.assert_allclose(y, x * (0.5 / 0.1), rtol=1e-6)


def test_loudness_normalize_keeps_silence():
    silence = np.zeros((1, 100), np.float32)
    np.testing.assert_array_equal(loudness_normalize(silence, -20.0), silence)


@pytest.mark.parametrize("fn", [to_mono, to_stereo, peak_normalize, loudness_normalize])
def test_bad_input_is_refused(fn):
    bad = noise()
    bad[0, 5] = np.nan
    with pytest.raises(NonFiniteAudioError):
        fn(bad)
    with pytest.raises(ChannelError):
        fn(noise()[0])  # 1-D
    with pytest.raises(EmptyAudioError):
        fn(np.zeros((1, 0), np.float32))
