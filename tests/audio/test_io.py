"""Audio file I/O: round trips per format and a typed error for every kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from wavefoundry.audio.io import (
    AUDIO_SUFFIXES,
    AudioDecodeError,
    AudioError,
    AudioTooLongError,
    ChannelError,
    EmptyAudioError,
    NonFiniteAudioError,
    audio_info,
    check_audio,
    load_audio,
    save_audio,
)

SR = 22050


def tones(channels: int, seconds: float = 0.5, sr: int = SR) -> np.ndarray:
    """(C, T) float32 sines: 440 Hz, 660 Hz, ... at amplitude 0.5."""
    t = np.arange(int(seconds * sr)) / sr
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * (1 + c / 2) * t) for c in range(channels)]).astype(np.float32)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(("suffix", "atol"), [(".wav", 1.01 / 32768), (".flac", 1.01 / 32768)])
def test_lossless_round_trip(tmp_path, suffix, atol, channels):
    x = tones(channels)
    path = save_audio(tmp_path / f"a{suffix}", x, SR)
    y, sr = load_audio(path)
    assert sr == SR
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=atol)  # 16-bit quantisation only


def test_float_wav_is_exact_and_unclipped(tmp_path):
    x = tones(2) * 3.0  # beyond full scale on purpose
    y, _ = load_audio(save_audio(tmp_path / "a.wav", x, SR, subtype="FLOAT"))
    np.testing.assert_array_equal(y, x)


def test_integer_formats_clip(tmp_path):
    x = np.array([[1.5, -2.0, 0.25]], dtype=np.float32)
    y, _ = load_audio(save_audio(tmp_path / "a.wav", x, SR))
    np.testing.assert_allclose(y, [[1.0, -1.0, 0.25]], atol=1 / 32768)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("suffix", [".ogg", ".mp3"])
def test_lossy_round_trip(tmp_path, suffix, channels):
    x = tones(channels, seconds=1.0, sr=44100)
    path = save_audio(tmp_path / f"a{suffix}", x, 44100)
    y, sr = load_audio(path)
    assert sr == 44100 and y.shape[0] == channels
    assert abs(y.shape[1] - x.shape[1]) <= 0.01 * 44100  # duration within 10 ms
    n = min(x.shape[1], y.shape[1])
    for c in range(channels):
        assert np.corrcoef(x[c, :n], y[c, :n])[0, 1] > 0.999
        snr = 10 * np.log10(np.sum(x[c, :n] ** 2) / np.sum((x[c, :n] - y[c, :n]) ** 2))
        assert snr > 30.0  # ~40 dB (vorbis) and ~45 dB (mp3) measured


def test_opus_round_trip_keeps_rate_and_duration(tmp_path):
    x = tones(1, seconds=0.5, sr=48000)
    y, sr = load_audio(save_audio(tmp_path / "a.opus", x, 48000))
    assert sr == 48000 and y.shape[0] == 1
    assert abs(y.shape[1] - x.shape[1]) <= 0.01 * 48000
    assert abs(np.sqrt(np.mean(y**2)) - np.sqrt(np.mean(x**2))) < 0.05  # level kept


def test_mono_1d_input_is_saved_as_one_channel(tmp_path):
    x = tones(1)[0]
    y, _ = load_audio(save_audio(tmp_path / "a.flac", x, SR))
    assert y.shape == (1, x.shape[0])


def test_audio_info_reads_header(tmp_path):
    path = save_audio(tmp_path / "a.flac", tones(2, seconds=0.5), SR)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (SR, 2, SR // 2)
    assert info.format == "FLAC" and info.subtype == "PCM_16"
    assert info.duration_s == pytest.approx(0.5)


def test_offset_and_duration_read_a_window(tmp_path):
    x = tones(2, seconds=1.0)
    path = save_audio(tmp_path / "a.wav", x, SR, subtype="FLOAT")
    y, _ = load_audio(path, offset_s=0.25, duration_s=0.5)
    np.testing.assert_array_equal(y, x[:, SR // 4 : SR // 4 + SR // 2])
    with pytest.raises(ValueError, match="offset_s"):
        load_audio(path, offset_s=-1.0)


def test_suffixes_cover_writable_formats():
    assert {".wav", ".flac", ".ogg", ".opus", ".mp3"} <= AUDIO_SUFFIXES


# --- bad input -------------------------------------------------------------------------------------------


def test_errors_are_value_errors():
    for cls in (AudioDecodeError, EmptyAudioError, NonFiniteAudioError, AudioTooLongError, ChannelError):
        assert issubclass(cls, AudioError) and issubclass(cls, ValueError)


def test_missing_file(tmp_path):
    with pytest.raises(AudioDecodeError, match=r"missing\.wav"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioDecodeError):
        audio_info(tmp_path / "missing.wav")


def test_empty_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match=r"empty\.wav"):
        load_audio(tmp_path / "empty.wav")


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".ogg"])
def test_corrupt_bytes(tmp_path, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioDecodeError, match="junk"):
        load_audio(path)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_truncated_header(tmp_path, suffix):
    good = save_audio(tmp_path / f"a{suffix}", tones(1), SR)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(good.read_bytes()[:40])
    with pytest.raises(AudioDecodeError):
        load_audio(cut)


def test_truncated_flac_body_is_a_decode_error(tmp_path):
    good = save_audio(tmp_path / "a.flac", tones(2), SR)
    data = good.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioDecodeError, match="cannot decode"):
        load_audio(cut)


def test_truncated_wav_body_gives_the_intact_prefix(tmp_path):
    # libsndfile clamps the data chunk to the file size: we get exactly the samples that are there.
    x = tones(2)
    good = save_audio(tmp_path / "a.wav", x, SR, subtype="FLOAT")
    data = good.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    y, _ = load_audio(cut)
    assert 0 < y.shape[1] < x.shape[1]
    np.testing.assert_array_equal(y, x[:, : y.shape[1]])


def test_valid_header_with_zero_frames(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(str(path), np.zeros((0, 2), dtype=np.float32), SR)
    assert audio_info(path).frames == 0
    with pytest.raises(EmptyAudioError, match="no samples"):
        load_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_wav(tmp_path, bad):
    x = tones(1).T.copy()  # (T, 1) for soundfile
    x[100, 0] = bad
    path = tmp_path / "bad.wav"
    sf.write(str(path), x, SR, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match="1 NaN/inf"):
        load_audio(path)


def test_too_long_is_refused(tmp_path):
    path = save_audio(tmp_path / "a.wav", tones(1, seconds=1.0), SR)
    with pytest.raises(AudioTooLongError, match=r"limit of 0\.5 s"):
        load_audio(path, max_seconds=0.5)
    # A window inside the limit of a longer file is fine.
    y, _ = load_audio(path, duration_s=0.25, max_seconds=0.5)
    assert y.shape[1] == SR // 4


def test_too_long_is_refused_from_the_header(tmp_path, monkeypatch):
    path = save_audio(tmp_path / "a.wav", tones(1, seconds=1.0), SR)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a file the header already ruled out")

    monkeypatch.setattr(sf, "read", no_decoding)
    with pytest.raises(AudioTooLongError):
        load_audio(path, max_seconds=0.5)


def test_save_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"unknown audio suffix '\.xyz'"):
        save_audio(tmp_path / "a.xyz", tones(1), SR)
    assert not (tmp_path / "a.xyz").exists()


@pytest.mark.parametrize("sr", [0, -16000])
def test_save_bad_sample_rate(tmp_path, sr):
    with pytest.raises(ValueError, match="sample_rate"):
        save_audio(tmp_path / "a.wav", tones(1), sr)


def test_save_refuses_bad_audio(tmp_path):
    bad = tones(1)
    bad[0, 3] = np.nan
    with pytest.raises(NonFiniteAudioError):
        save_audio(tmp_path / "nan.wav", bad, SR)
    with pytest.raises(EmptyAudioError):
        save_audio(tmp_path / "empty.wav", np.zeros((1, 0), np.float32), SR)
    with pytest.raises(ChannelError):
        save_audio(tmp_path / "3d.wav", np.zeros((1, 2, 100), np.float32), SR)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_save_unsupported_rate_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="cannot write"):
        save_audio(tmp_path / "a.opus", tones(1), 44100)  # Opus has no 44.1 kHz mode
    assert not (tmp_path / "a.opus").exists()


@pytest.mark.parametrize(
    ("audio", "error", "match"),
    [
        (np.zeros(10, np.float32), ChannelError, "shape"),
        (np.zeros((1, 2, 10), np.float32), ChannelError, "shape"),
        (np.zeros((0, 10), np.float32), EmptyAudioError, "zero channels"),
        (np.zeros((2, 0), np.float32), EmptyAudioError, "no samples"),
        (np.array([[0.0, np.nan, np.inf]], np.float32), NonFiniteAudioError, "2 NaN/inf"),
    ],
)
def test_check_audio(audio, error, match):
    with pytest.raises(error, match=match):
        check_audio(audio)


def test_check_audio_returns_its_input():
    x = tones(2)
    assert check_audio(x) is x
