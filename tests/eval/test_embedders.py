"""Shared embedder preprocessing: EmbedderInfo validation, prepare (rate, channel mode) and split_windows."""

import numpy as np
import pytest

from wavefoundry.eval.embedders import EmbedderInfo, file_sha256, prepare, split_windows


def info(**kw):
    base = {"name": "x", "weights_sha256": "0" * 64, "sample_rate": 16000, "window_s": 1.0, "hop_s": 0.5,
            "channel_mode": "mono"}  # fmt: skip
    return EmbedderInfo(**{**base, **kw})


def test_info_validates():
    with pytest.raises(ValueError, match="channel_mode"):
        info(channel_mode="surround")
    with pytest.raises(ValueError, match="> 0"):
        info(hop_s=0.0)
    assert info().to_dict()["sample_rate"] == 16000


@pytest.mark.parametrize(("length", "window", "hop", "pad_last", "n"), [
    (10, 4, 2, True, 4),   # starts 0 2 4 6: 6 + 4 = 10 covers every sample
    (11, 4, 2, True, 5),   # the sample at 10 needs a padded fifth window
    (11, 4, 2, False, 4),
    (3, 4, 2, True, 1),    # shorter than a window: one padded window
    (8, 4, 4, True, 2),
])  # fmt: skip
def test_split_windows_counts_and_content(length, window, hop, pad_last, n):
    audio = np.arange(1, 2 * length + 1, dtype=np.float32).reshape(2, length)
    w = split_windows(audio, window, hop, pad_last=pad_last)
    assert w.shape == (n, 2, window)
    for i in range(n):
        s = i * hop
        expected = np.zeros((2, window), np.float32)
        chunk = audio[:, s : s + window]
        expected[:, : chunk.shape[1]] = chunk
        np.testing.assert_array_equal(w[i], expected)
    if pad_last:  # every sample lands in some window
        assert set(np.unique(w[w > 0])) == set(audio.ravel())


def test_split_windows_rejects_bad_sizes():
    with pytest.raises(ValueError, match=">= 1"):
        split_windows(np.zeros((1, 10), np.float32), 0, 1)


def test_prepare_channels_and_rate():
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)]).astype(np.float32)
    mono = prepare(stereo, 44100, info(channel_mode="mono"))
    assert mono.shape == (1, 16000) and mono.dtype == np.float32
    # the mono mix is the channel mean: amplitude 0.75 survives resampling (band-limited tone)
    assert abs(np.abs(mono[0, 2000:-2000]).max() - 0.75) < 0.01
    both = prepare(stereo[:1], 16000, info(channel_mode="lr-concat"))
    np.testing.assert_array_equal(both[0], both[1])  # mono is duplicated
    kept = prepare(stereo, 16000, info(channel_mode="stereo"))
    np.testing.assert_array_equal(kept, stereo)  # same rate: untouched


def test_prepare_rejects_nan_and_empty():
    bad = np.zeros((1, 100), np.float32)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        prepare(bad, 16000, info())
    with pytest.raises(ValueError):
        prepare(np.zeros((1, 0), np.float32), 16000, info())


def test_file_sha256_of_file_and_folder(tmp_path):
    import hashlib

    (tmp_path / "a.bin").write_bytes(b"abc")
    assert file_sha256(tmp_path / "a.bin") == hashlib.sha256(b"abc").hexdigest()
    (tmp_path / "b.bin").write_bytes(b"def")
    assert file_sha256(tmp_path) == hashlib.sha256(b"abcdef").hexdigest()
