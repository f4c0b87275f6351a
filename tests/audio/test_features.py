"""STFT and mel features: closed forms, invariants, and librosa as an independent reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wavefoundry.audio.features import (
    MelConfig,
    MelSpectrogram,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
    stft,
)
from wavefoundry.config import ConfigError, from_dict, to_dict


def tone(freq: float, sr: int, n: int, amplitude: float = 1.0) -> torch.Tensor:
    return amplitude * torch.sin(2 * math.pi * freq * torch.arange(n, dtype=torch.float64) / sr)


def centres_hz(n_mels: int, sr: int, f_min: float, f_max: float, mel_scale: str) -> torch.Tensor:
    """The n_mels + 2 filter edges, equally spaced in mels."""
    lo, hi = hz_to_mel(f_min, mel_scale).item(), hz_to_mel(f_max, mel_scale).item()
    return mel_to_hz(torch.linspace(lo, hi, n_mels + 2, dtype=torch.float64), mel_scale)


# --- mel scales --------------------------------------------------------------------------------------------


def test_mel_scale_closed_forms():
    assert hz_to_mel(1000.0).item() == pytest.approx(15.0, abs=1e-12)  # slaney: 1 kHz is 15 mels
    assert hz_to_mel(200.0).item() == pytest.approx(3.0, abs=1e-12)  # linear part, 200/3 Hz per mel
    assert hz_to_mel(6400.0).item() == pytest.approx(15.0 + 27.0, abs=1e-9)  # 27 mels per factor 6.4
    assert hz_to_mel(700.0, "htk").item() == pytest.approx(2595 * math.log10(2), abs=1e-9)
    assert hz_to_mel(0.0, "htk").item() == 0.0


@pytest.mark.parametrize("scale", ["slaney", "htk"])
def test_mel_scale_inverts_and_is_monotonic(scale):
    f = torch.linspace(0, 24000, 1001, dtype=torch.float64)
    m = hz_to_mel(f, scale)
    assert (m.diff() > 0).all()
    torch.testing.assert_close(mel_to_hz(m, scale), f, rtol=1e-12, atol=1e-9)


def test_unknown_mel_scale():
    with pytest.raises(ValueError, match="slaney, htk"):
        hz_to_mel(100.0, "bark")


# --- filterbank: closed forms ---------------------------------------------------------------------------


@pytest.mark.parametrize("scale", ["slaney", "htk"])
def test_filters_peak_at_their_mel_centres(scale):
    sr, n_fft, n_mels = 16000, 2048, 20
    fb = mel_filterbank(n_fft // 2 + 1, n_mels, sr, norm=None, mel_scale=scale, dtype=torch.float64)
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1, dtype=torch.float64)
    df = sr / n_fft
    edges = centres_hz(n_mels, sr, 0.0, sr / 2, scale)
    widths = edges.diff()
    for m in range(n_mels):
        centre = edges[m + 1]
        assert abs(freqs[fb[:, m].argmax()] - centre) <= df
        assert 1 - df / min(widths[m], widths[m + 1]) <= fb[:, m].max() <= 1.0  # a unit-height triangle


def test_unnormalised_triangles_sum_to_one_inside_the_band():
    sr, n_fft, n_mels = 16000, 1024, 32
    fb = mel_filterbank(n_fft // 2 + 1, n_mels, sr, f_min=50.0, f_max=7000.0, norm=None, dtype=torch.float64)
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = centres_hz(n_mels, sr, 50.0, 7000.0, "slaney")
    inside = (freqs >= edges[1]) & (freqs <= edges[-2])
    torch.testing.assert_close(fb.sum(1)[inside], torch.ones(int(inside.sum()), dtype=torch.float64))
    outside = (freqs <= 50.0) | (freqs >= 7000.0)
    assert (fb[outside] == 0).all()


def test_slaney_norm_gives_unit_area_in_hz():
    sr, n_fft, n_mels = 16000, 4096, 24
    fb = mel_filterbank(n_fft // 2 + 1, n_mels, sr, norm="slaney", dtype=torch.float64)
    area = fb.sum(0) * (sr / n_fft)  # Riemann sum over the bins, in Hz
    torch.testing.assert_close(area, torch.ones(n_mels, dtype=torch.float64), rtol=0.02, atol=0.0)


def test_empty_filters_are_reported(caplog):
    with caplog.at_level("WARNING", logger="wavefoundry.audio.features"):
        fb = mel_filterbank(33, 64, 16000)  # n_fft=64: far too few bins for 64 filters
    assert "mel filters are empty" in caplog.text
    assert (fb.max(0).values == 0).any()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"f_max": 9000.0}, "f_max"),
        ({"f_min": 4000.0, "f_max": 3000.0}, "f_min"),
        ({"f_min": -1.0}, "f_min"),
        ({"norm": "area"}, "norm"),
        ({"mel_scale": "bark"}, "mel_scale"),
        ({"n_mels": 0}, "n_mels"),
    ],
)
def test_filterbank_bad_args(kwargs, match):
    args = {"n_freqs": 257, "n_mels": 40, "sample_rate": 16000, **kwargs}
    with pytest.raises(ValueError, match=match):
        mel_filterbank(**args)


# --- filterbank and spectrogram: librosa reference ----------------------------------------------------------


@pytest.mark.parametrize("norm", ["slaney", None])
@pytest.mark.parametrize("scale", ["slaney", "htk"])
@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "f_min", "f_max"),
    [(16000, 512, 40, 0.0, None), (44100, 2048, 128, 30.0, 16000.0)],
)
def test_filterbank_matches_librosa(norm, scale, sr, n_fft, n_mels, f_min, f_max):
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(
        sr=sr,
        n_fft=n_fft,
        n_mels=n_mels,
        fmin=f_min,
        fmax=f_max,
        htk=scale == "htk",
        norm=norm,
        dtype=np.float64,
    )  # (n_mels, n_freqs)
    fb = mel_filterbank(n_fft // 2 + 1, n_mels, sr, f_min, f_max, norm, scale, dtype=torch.float64)
    np.testing.assert_allclose(fb.numpy().T, ref, rtol=1e-10, atol=1e-12)


def test_stft_matches_librosa():
    librosa = pytest.importorskip("librosa")
    x = torch.randn(2, 3000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = stft(x, 400, 160, win_length=320)
    ref = librosa.stft(x.numpy(), n_fft=400, hop_length=160, win_length=320, pad_mode="reflect")
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-9, atol=1e-9)


def test_mel_spectrogram_matches_librosa():
    librosa = pytest.importorskip("librosa")
    x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(0))
    cfg = MelConfig(sample_rate=16000, n_fft=512, hop_length=128, n_mels=40, f_min=20.0, f_max=7600.0, log=False)
    ref = librosa.feature.melspectrogram(
        y=x.numpy(),
        sr=16000,
        n_fft=512,
        hop_length=128,
        n_mels=40,
        fmin=20.0,
        fmax=7600.0,
        pad_mode="reflect",
    )
    ours = MelSpectrogram(cfg)(x).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * ref.max())


# --- stft ---------------------------------------------------------------------------------------------------


def test_stft_shapes():
    x = torch.randn(2, 3, 1000)
    assert stft(x, 256, 64).shape == (2, 3, 129, 1 + 1000 // 64)
    assert stft(x[0, 0], 256, 64, center=False).shape == (129, 1 + (1000 - 256) // 64)
    batched = stft(x, 256, 64)
    torch.testing.assert_close(batched[1, 2], stft(x[1, 2], 256, 64))


@pytest.mark.parametrize("window", ["hann", "hamming", "blackman", "rectangular"])
def test_stft_of_a_bin_centred_sine(window):
    sr, n_fft, k = 8000, 256, 20  # k * sr / n_fft = 625 Hz sits exactly on bin 20
    spec = stft(tone(k * sr / n_fft, sr, 4096, amplitude=0.7), n_fft, 64, window=window)  # (F, frames)
    inner = spec[:, 4:-4].abs()  # frames away from the reflect-padded edges
    assert (inner.argmax(0) == k).all()
    w = {"hann": torch.hann_window, "hamming": torch.hamming_window, "blackman": torch.blackman_window}
    window_sum = w[window](n_fft, dtype=torch.float64).sum() if window in w else n_fft
    torch.testing.assert_close(inner[k], torch.full_like(inner[k], 0.7 * window_sum / 2), rtol=1e-6, atol=0.0)


def test_parseval_for_rectangular_frames():
    # Non-overlapping rectangular frames tile the signal: sum |X|^2 over the full spectrum = n_fft * sum x^2.
    n_fft = 128
    x = torch.randn(8 * n_fft, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    spec = stft(x, n_fft, n_fft, window="rectangular", center=False).abs().square()  # (F, 8)
    full = spec.sum(0) * 2 - spec[0] - spec[-1]  # one-sided -> two-sided: DC and Nyquist appear once
    torch.testing.assert_close(full.sum(), n_fft * x.square().sum())


def test_parseval_per_windowed_frame():
    n_fft, hop = 256, 64
    x = torch.randn(2000, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    spec = stft(x, n_fft, hop, center=False).abs().square()  # (F, N)
    frames = x.unfold(0, n_fft, hop) * torch.hann_window(n_fft, dtype=torch.float64)  # (N, n_fft)
    energy = spec.sum(0) * 2 - spec[0] - spec[-1]
    torch.testing.assert_close(energy, n_fft * frames.square().sum(1))


def test_stft_istft_round_trip():
    x = torch.randn(2, 4000, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    spec = stft(x, 512, 128)
    y = torch.istft(spec, 512, 128, window=torch.hann_window(512, dtype=torch.float64), length=4000)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-10)


def test_stft_half_precision_runs_in_float32():
    x = torch.randn(1, 2048)
    spec = stft(x.bfloat16(), 256, 64)
    assert spec.dtype == torch.complex64
    torch.testing.assert_close(spec, stft(x.bfloat16().float(), 256, 64))


def test_window_cached_under_inference_mode_still_supports_autograd():
    with torch.inference_mode():
        stft(torch.randn(1000), 96, 24)  # first use of this (window, size, device, dtype) builds the cache entry
    x = torch.randn(1000, requires_grad=True)
    stft(x, 96, 24).abs().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (torch.arange(1000), {}, "floating"),
        (torch.randn(1000, dtype=torch.complex64), {}, "floating"),
        (torch.randn(100), {}, "too short"),
        (torch.randn(200), {"center": False}, "too short"),
        (torch.randn(1000), {"hop_length": 0}, "hop_length"),
        (torch.randn(1000), {"win_length": 512}, "win_length"),
        (torch.randn(1000), {"window": "kaiser"}, "hann"),
    ],
)
def test_stft_bad_input(x, kwargs, match):
    args = {"n_fft": 256, "hop_length": 64, **kwargs}
    with pytest.raises(ValueError, match=match):
        stft(x, **args)


# --- MelConfig ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_mels": 0}, "n_mels"),
        ({"hop_length": 0}, "hop_length"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"win_length": 2048}, "win_length"),
        ({"f_max": 9000.0}, "f_max"),
        ({"f_min": 8000.0}, "f_min"),
        ({"power": 0.0}, "power"),
        ({"log_floor": 0.0}, "log_floor"),
        ({"window": "kaiser"}, "window"),
        ({"norm": "area"}, "norm"),
        ({"mel_scale": "bark"}, "mel_scale"),
    ],
)
def test_mel_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MelConfig(**kwargs)


def test_mel_config_through_the_config_system():
    cfg = MelConfig(n_mels=80, norm=None, mel_scale="htk", f_max=7600.0)
    assert from_dict(MelConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="n_mel"):
        from_dict(MelConfig, {"n_mel": 80})
    with pytest.raises(ConfigError, match="f_max"):
        from_dict(MelConfig, {"f_max": 20000.0})


def test_num_frames():
    assert MelConfig(hop_length=256).num_frames(16000) == 1 + 16000 // 256
    assert MelConfig(n_fft=1024, hop_length=256, center=False).num_frames(16000) == 1 + (16000 - 1024) // 256


# --- MelSpectrogram -----------------------------------------------------------------------------------------

SMALL = {"sample_rate": 8000, "n_fft": 256, "hop_length": 64, "n_mels": 24}


def test_mel_spectrogram_shapes():
    mel = MelSpectrogram(MelConfig(**SMALL))
    assert mel(torch.randn(3, 2000)).shape == (3, 24, 1 + 2000 // 64)
    assert mel(torch.randn(3, 2, 2000)).shape == (3, 2, 24, 1 + 2000 // 64)
    assert mel(torch.randn(2000)).shape == (24, MelConfig(**SMALL).num_frames(2000))


def test_mel_spectrogram_is_log_of_clamped_mel_energy():
    x = torch.randn(2, 2000)
    linear = MelSpectrogram(MelConfig(**SMALL, log=False))(x)
    logged = MelSpectrogram(MelConfig(**SMALL, log_floor=1e-3))(x)
    torch.testing.assert_close(logged, torch.log(linear.clamp(min=1e-3)))
    silence = MelSpectrogram(MelConfig(**SMALL, log_floor=1e-3))(torch.zeros(1, 2000))
    torch.testing.assert_close(silence, torch.full_like(silence, math.log(1e-3)))


def test_mel_spectrogram_equals_filterbank_times_power():
    cfg = MelConfig(**SMALL, log=False, power=1.0)
    x = torch.randn(2, 2000)
    expected = torch.einsum("bfn,fm->bmn", stft(x, 256, 64).abs(), mel_filterbank(129, 24, 8000))
    torch.testing.assert_close(MelSpectrogram(cfg)(x), expected)


def test_mel_energy_is_quadratic_in_gain():
    mel = MelSpectrogram(MelConfig(**SMALL, log=False))
    x = torch.randn(1, 2000, dtype=torch.float64)
    torch.testing.assert_close(mel(3.0 * x), 9.0 * mel(x))


def test_a_tone_lands_in_the_band_around_its_frequency():
    cfg = MelConfig(**SMALL, log=False)
    energy = MelSpectrogram(cfg)(tone(1000.0, 8000, 4000).float()[None]).mean(-1)[0]  # (n_mels,)
    m = int(energy.argmax())
    edges = centres_hz(cfg.n_mels, 8000, 0.0, 4000.0, "slaney")
    assert edges[m] < 1000.0 < edges[m + 2]  # inside the support of filter m


def test_filterbank_is_a_non_persistent_buffer():
    mel = MelSpectrogram(MelConfig(**SMALL))
    assert "fb" in dict(mel.named_buffers())
    assert mel.state_dict() == {}
    assert mel.fb.shape == (129, 24)


def test_bf16_autocast_computes_in_float32():
    mel = MelSpectrogram(MelConfig(**SMALL))
    x = torch.randn(2, 2000).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mel(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, mel(x.float()))  # bit-for-bit the fp32 path on the same samples


def test_float64_input_stays_float64():
    assert MelSpectrogram(MelConfig(**SMALL))(torch.randn(1, 2000, dtype=torch.float64)).dtype == torch.float64


def test_gradients_are_finite_even_on_silence():
    mel = MelSpectrogram(MelConfig(**SMALL, log=False))
    x = torch.zeros(1, 1000, requires_grad=True)
    mel(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    tiny = MelSpectrogram(MelConfig(sample_rate=8000, n_fft=32, hop_length=8, n_mels=4))
    x = torch.randn(1, 64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tiny, (x,))
