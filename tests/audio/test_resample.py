"""soxr resampling: frequency, amplitude and length are kept; aliasing is removed; bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from wavefoundry.audio.io import ChannelError, EmptyAudioError, NonFiniteAudioError
from wavefoundry.audio.resample import QUALITIES, resample


def sine(freq: float, sr: int, seconds: float = 1.0, amplitude: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return np.tile(amplitude * np.sin(2 * np.pi * freq * t), (channels, 1)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    """Frequency of the largest FFT bin of a 1-D signal."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)])


def amplitude(x: np.ndarray, trim: int = 200) -> float:
    """Sine amplitude from the RMS, away from the filter's edge transients."""
    return float(np.sqrt(2 * np.mean(x[trim:-trim].astype(np.float64) ** 2)))


@pytest.mark.parametrize(("orig", "target"), [(44100, 16000), (16000, 44100), (48000, 44100)])
def test_sine_keeps_frequency_and_amplitude(orig, target):
    y = resample(sine(1000.0, orig), orig, target)
    assert peak_hz(y[0], target) == pytest.approx(1000.0, abs=target / y.shape[1])  # within one FFT bin
    assert amplitude(y[0]) == pytest.approx(0.5, rel=0.01)


@pytest.mark.parametrize("n", [1000, 4410, 12345, 44101])
@pytest.mark.parametrize(("orig", "target"), [(44100, 16000), (16000, 48000), (22050, 24000)])
def test_length(n, orig, target):
    y = resample(np.zeros((1, n), np.float32) + 0.1, orig, target)
    assert abs(y.shape[1] - round(n * target / orig)) <= 1


def test_multichannel_resamples_each_channel_alike():
    x = np.concatenate([sine(1000.0, 44100), sine(3000.0, 44100, amplitude=0.25), np.zeros((1, 44100))])
    x = x.astype(np.float32)
    y = resample(x, 44100, 16000)
    assert y.shape == (3, 16000) and y.flags.c_contiguous
    np.testing.assert_allclose(y[0], resample(x[:1], 44100, 16000)[0], atol=1e-6)  # channels independent
    assert peak_hz(y[1], 16000) == pytest.approx(3000.0, abs=1.0)
    assert amplitude(y[1]) == pytest.approx(0.25, rel=0.01)
    assert np.abs(y[2]).max() < 1e-6


def test_round_trip_preserves_band_limited_audio():
    x = sine(1000.0, 44100) + sine(2500.0, 44100, amplitude=0.2)
    y = resample(resample(x, 44100, 16000), 16000, 44100)
    assert y.shape == x.shape
    err = x[0, 500:-500] - y[0, 500:-500]
    assert 10 * np.log10(np.mean(x[0, 500:-500] ** 2) / np.mean(err**2)) > 100.0  # SNR in dB (~130 measured)


def test_content_above_new_nyquist_is_removed():
    y = resample(sine(10000.0, 44100), 44100, 16000)  # would alias to 6 kHz without the low-pass
    assert amplitude(y[0]) < 0.5 * 1e-5  # more than 100 dB down (~140 measured)


def test_same_rate_returns_the_input():
    x = sine(1000.0, 16000, seconds=0.1)
    assert resample(x, 16000, 16000) is x


def test_dtypes():
    x = sine(1000.0, 44100, seconds=0.1)
    assert resample(x, 44100, 16000).dtype == np.float32
    assert resample(x.astype(np.float64), 44100, 16000).dtype == np.float64
    assert resample(x.astype(np.float16), 44100, 16000).dtype == np.float32


@pytest.mark.parametrize("quality", QUALITIES)
def test_every_quality_runs(quality):
    y = resample(sine(1000.0, 44100, seconds=0.2), 44100, 16000, quality=quality)
    assert y.shape == (1, 3200)
    assert amplitude(y[0]) == pytest.approx(0.5, rel=0.02)


@pytest.mark.parametrize("rate", [0, -16000, 16000.0, 16000.5, True, "16000", None])
def test_bad_rates(rate):
    x = sine(1000.0, 16000, seconds=0.1)
    with pytest.raises(ValueError, match="positive integer"):
        resample(x, rate, 16000)
    with pytest.raises(ValueError, match="target_sr"):
        resample(x, 16000, rate)


def test_numpy_integer_rates_are_fine():
    y = resample(sine(1000.0, 44100, seconds=0.1), np.int64(44100), np.int32(16000))
    assert y.shape == (1, 1600)


def test_bad_quality():
    with pytest.raises(ValueError, match="VHQ"):
        resample(sine(1000.0, 16000, seconds=0.1), 16000, 8000, quality="best")


def test_bad_audio():
    bad = sine(1000.0, 16000, seconds=0.1)
    bad[0, 3] = np.inf
    with pytest.raises(NonFiniteAudioError):
        resample(bad, 16000, 8000)
    with pytest.raises(ChannelError):
        resample(np.zeros(100, np.float32), 16000, 8000)
    with pytest.raises(EmptyAudioError):
        resample(np.zeros((1, 0), np.float32), 16000, 8000)
    with pytest.raises(EmptyAudioError, match="too short"):
        resample(np.zeros((1, 1), np.float32), 44100, 8000)
