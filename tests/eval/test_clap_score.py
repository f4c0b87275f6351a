"""CLAP score: cosine closed forms, the chunk-mean and seeded random-crop long-audio policies against
hand-computed embeddings, reproducibility, the preprocessing of the reference conventions, and bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from wavefoundry.eval.clap_score import (
    CLAP_POLICIES,
    ClapPolicy,
    audio_embedding,
    clap_policy,
    clap_score,
    clap_score_from_embeddings,
    cosine,
    crop_starts,
    text_embeddings,
)
from wavefoundry.eval.embedders import EmbedderInfo, TextAudioModel

RATE, WINDOW = 10, 20  # a 2 s window at 10 Hz: every number below is computed by hand
CHUNK = CLAP_POLICIES["chunk-mean"]
CROP = ClapPolicy(mode="random-crop", n_crops=3, seed=7)


class FakeClap:
    """Audio window -> (mean, 1, first sample); text -> (len, 1, 0). The first sample reveals a crop's offset."""

    dim = 3

    def __init__(self, rate: int = RATE, window_s: float = WINDOW / RATE):
        self.info = EmbedderInfo(name="fake-clap", weights_sha256="0" * 64, sample_rate=rate, window_s=window_s,
                                 hop_s=window_s, channel_mode="mono")  # fmt: skip
        self.windows: list[np.ndarray] = []

    def embed_audio(self, windows: np.ndarray) -> np.ndarray:
        self.windows.extend(windows)
        m = windows.mean(axis=(1, 2), dtype=np.float64)  # (N,)
        return np.stack([m, np.ones_like(m), windows[:, 0, 0].astype(np.float64)], axis=1)  # (N, 3)

    def embed_text(self, texts):
        return np.array([[float(len(t)), 1.0, 0.0] for t in texts])


def unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def test_fake_implements_the_protocol():
    assert isinstance(FakeClap(), TextAudioModel)


# --- cosine closed forms ---


def test_cosine_closed_forms_and_torch():
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == 0.0
    assert cosine(np.array([1.0, 1.0]), np.array([3.0, 0.0])) == pytest.approx(2**-0.5)
    assert cosine(np.array([1.0, 2.0]), np.array([-2.0, -4.0])) == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 16))
    ref = torch.nn.functional.cosine_similarity(torch.tensor(a)[None], torch.tensor(b)[None], dim=1, eps=1e-8)
    assert cosine(a, b) == pytest.approx(ref.item(), rel=1e-12)


def test_score_from_embeddings_is_the_mean_cosine():
    audio = {"a": np.array([1.0, 0.0]), "b": np.array([1.0, 1.0]), "c": np.array([0.0, 5.0])}
    text = {"a": np.array([2.0, 0.0]), "b": np.array([0.0, 1.0]), "c": np.array([0.0, -1.0]), "d": np.ones(2)}
    res = clap_score_from_embeddings(audio, text)
    assert res.per_item == {"a": pytest.approx(1.0), "b": pytest.approx(2**-0.5), "c": pytest.approx(-1.0)}
    assert res.mean == pytest.approx((1.0 + 2**-0.5 - 1.0) / 3) and res.n_items == 3
    assert res.missing_audio == ("d",) and res.missing_text == ()


# --- long-audio policies ---


def test_one_window_closed_form():
    model = FakeClap()
    audio = np.full((1, 15), 0.5, np.float32)  # 1.5 s < one window: repeat-padded to 2 s (15 real + 5 zeros)
    res = clap_score(model, {"x": (audio, RATE)}, {"x": "ab"}, CHUNK)
    np.testing.assert_array_equal(model.windows[0][0], np.r_[np.full(15, 0.5), np.zeros(5)])
    m = 0.5 * 15 / 20
    assert res.per_item["x"] == pytest.approx(unit([m, 1, 0.5]) @ unit([2, 1, 0]), rel=1e-12)


def test_repeatpad_and_zero_fill():
    model = FakeClap()
    audio = np.arange(1, 7, dtype=np.float32)[None] / 10  # 6 samples: 3 whole copies in 20, then 2 zeros
    audio_embedding(model, audio, RATE, CHUNK)
    np.testing.assert_allclose(model.windows[-1][0], np.r_[np.tile(audio[0], 3), 0, 0])
    audio_embedding(model, audio, RATE, dataclasses.replace(CHUNK, fill="zeros"))
    np.testing.assert_allclose(model.windows[-1][0], np.r_[audio[0], np.zeros(14)])


def test_chunk_mean_closed_form():
    model = FakeClap()
    audio = np.r_[np.full(20, 0.5), np.full(20, -0.3), np.full(10, 0.8)].astype(np.float32)[None]  # 5 s
    emb = audio_embedding(model, audio, RATE, CHUNK)
    assert len(model.windows) == 3  # hop = window: 0-2 s, 2-4 s, 4-5 s (filled)
    rows = [unit([0.5, 1, 0.5]), unit([-0.3, 1, -0.3]), unit([0.8, 1, 0.8])]  # the tail repeats to a full 0.8
    expected = unit(rows[0] + rows[1] + 0.5 * rows[2])  # the tail holds half a window of audio
    np.testing.assert_allclose(emb, expected, rtol=1e-6)  # float32 audio
    zeros = audio_embedding(model, audio, RATE, dataclasses.replace(CHUNK, fill="zeros"))
    np.testing.assert_allclose(zeros, unit(rows[0] + rows[1] + 0.5 * unit([0.4, 1, 0.8])), rtol=1e-6)
    assert np.abs(zeros - emb).max() > 1e-3  # the fill matters


def test_random_crops_closed_form_and_laion_offsets():
    model = FakeClap()
    ramp = (np.arange(200, dtype=np.float32) / 200)[None]  # 20 s
    starts = crop_starts(200, WINDOW, CROP, "song-1")
    assert starts.shape == (3,) and ((starts >= 0) & (starts <= 180)).all()  # LAION rand_trunc: [0, overflow]
    emb = audio_embedding(model, ramp, RATE, CROP, key="song-1")
    crops = [ramp[0, s : s + WINDOW] for s in starts]
    np.testing.assert_allclose(emb, unit(sum(unit([c.mean(), 1, c[0]]) for c in crops)), rtol=1e-6)
    many = crop_starts(200, WINDOW, dataclasses.replace(CROP, n_crops=4000), "k")
    assert many.min() == 0 and many.max() == 180  # both ends reachable, as randint(0, overflow + 1)


def test_random_crops_are_reproducible_and_independent_of_order_and_set():
    rng = np.random.default_rng(1)
    audio = {f"f{i}": (rng.uniform(-1, 1, (1, 300)).astype(np.float32), RATE) for i in range(5)}
    texts = {k: "x" * (i + 1) for i, k in enumerate(audio)}
    first = clap_score(FakeClap(), audio, texts, CROP)
    again = clap_score(FakeClap(), audio, texts, CROP)
    assert first.per_item == again.per_item and first.mean == again.mean
    shuffled = {k: audio[k] for k in ["f3", "f0", "f4"]}  # other order, fewer files
    sub = clap_score(FakeClap(), shuffled, texts, CROP)
    assert all(sub.per_item[k] == first.per_item[k] for k in shuffled)
    other = clap_score(FakeClap(), audio, texts, dataclasses.replace(CROP, seed=8))
    assert all(other.per_item[k] != first.per_item[k] for k in audio)


def test_chunk_mean_is_deterministic_and_random_crop_of_short_audio_is_one_window():
    model = FakeClap()
    audio = np.random.default_rng(2).uniform(-1, 1, (2, 123)).astype(np.float32)
    a = audio_embedding(model, audio, RATE, CHUNK)
    np.testing.assert_array_equal(a, audio_embedding(model, audio, RATE, CHUNK, batch_size=1))
    short = audio[:, :20]
    np.testing.assert_array_equal(
        audio_embedding(model, short, RATE, CROP, key="a"), audio_embedding(model, short, RATE, CHUNK)
    )


# --- preprocessing of the reference conventions ---


def test_stable_audio_metrics_peak_and_int16():
    model = FakeClap()
    sam = clap_policy("stable-audio-metrics")
    audio = np.r_[np.full(10, 0.25), np.full(10, -0.5)].astype(np.float32)[None]
    audio_embedding(model, audio, RATE, sam)
    g = 10 ** (-1 / 20) / 0.5  # peak -> -1 dBFS
    q = np.trunc(np.float32(audio[0] * g) * 32767) / 32767  # float32_to_int16 truncates toward zero
    np.testing.assert_allclose(model.windows[-1][0], q, rtol=0, atol=1e-7)
    np.testing.assert_allclose(
        audio_embedding(model, 3 * audio, RATE, sam), audio_embedding(model, audio, RATE, sam), atol=1e-6
    )  # level-invariant
    quantized = model.windows[-1].copy()  # (1, 20)
    audio_embedding(model, quantized, RATE, ClapPolicy(quantize_int16=True))
    np.testing.assert_array_equal(model.windows[-1], quantized)  # idempotent: a model that quantizes is harmless
    clipped = np.full((1, 20), 1.5, np.float32)
    audio_embedding(model, clipped, RATE, ClapPolicy(quantize_int16=True))
    assert model.windows[-1].max() == 1.0  # clipped to [-1, 1] before quantising


def test_resampling_goes_through_prepare():
    model = FakeClap(rate=48000, window_s=0.5)
    stereo = np.stack([np.full(44100, 0.3), np.full(44100, 0.1)]).astype(np.float32)  # 1 s at 44.1 kHz
    audio_embedding(model, stereo, 44100, CHUNK)
    assert [w.shape for w in model.windows] == [(1, 24000), (1, 24000)]
    assert abs(model.windows[0][0, 12000] - 0.2) < 1e-3  # the mono mix


# --- bad input ---


def test_policy_names_and_validation():
    assert clap_policy("audiocraft").mode == "random-crop"
    with pytest.raises(ValueError, match="chunk-mean, stable-audio-metrics, audiocraft"):
        clap_policy("fusion")
    with pytest.raises(ValueError, match="mode"):
        ClapPolicy(mode="fusion")
    with pytest.raises(ValueError, match="n_crops"):
        ClapPolicy(mode="random-crop", n_crops=0)
    with pytest.raises(ValueError, match="seed"):
        ClapPolicy(seed=-1)


class NaNClap(FakeClap):
    def embed_audio(self, windows):
        out = super().embed_audio(windows)
        out[:, 0] = np.nan
        return out


class ZeroClap(FakeClap):
    def embed_audio(self, windows):
        return np.zeros((windows.shape[0], self.dim))

    def embed_text(self, texts):
        return np.array([[np.nan, 0, 0] if t == "nan" else [1.0, 0, 0] for t in texts])


def test_clap_score_rejects_with_reasons():
    good = (np.full((1, 30), 0.5, np.float32), RATE)
    nan = np.full((1, 30), 0.5, np.float32)
    nan[0, 3] = np.nan
    audio = {"ok": good, "nan": (nan, RATE), "silent": (np.zeros((1, 30), np.float32), RATE),
             "empty": (np.zeros((1, 0), np.float32), RATE), "no_text": good, "blank": good}  # fmt: skip
    texts = {"ok": "a", "nan": "b", "silent": "c", "empty": "d", "blank": "  ", "no_audio": "e"}
    res = clap_score(FakeClap(), audio, texts, clap_policy("stable-audio-metrics"))
    assert list(res.per_item) == ["ok"]
    assert "NaN" in res.rejects["nan"] and "silence" in res.rejects["silent"]
    assert "no samples" in res.rejects["empty"] and "empty" in res.rejects["blank"]
    assert res.missing_text == ("no_text",) and res.missing_audio == ("no_audio",)
    assert res.to_dict()["policy"]["peak_dbfs"] == -1.0


def test_bad_embeddings_are_rejects():
    good = (np.full((1, 30), 0.5, np.float32), RATE)
    with pytest.raises(ValueError, match=r"no audio could be scored.*NaN"):
        clap_score(NaNClap(), {"a": good}, {"a": "x"}, CHUNK)
    with pytest.raises(ValueError, match="zero-norm"):
        clap_score(ZeroClap(), {"a": good}, {"a": "x"}, CHUNK)
    emb, rejects = text_embeddings(ZeroClap(), {"a": "ok", "b": "nan"})
    assert list(emb) == ["a"] and "NaN" in rejects["b"]
    res = clap_score_from_embeddings({"a": np.ones(3), "b": np.ones(2)}, {"a": np.ones(3), "b": np.ones(3)})
    assert list(res.per_item) == ["a"] and "shape" in res.rejects["b"]


def test_empty_and_mismatched_inputs_are_errors():
    good = (np.full((1, 30), 0.5, np.float32), RATE)
    with pytest.raises(ValueError, match="no texts"):
        clap_score(FakeClap(), {"a": good}, {}, CHUNK)
    with pytest.raises(ValueError, match="no audio"):
        clap_score(FakeClap(), {}, {"a": "x"}, CHUNK)
    with pytest.raises(ValueError, match="no audio could be scored: 1 files, 1 without a text"):
        clap_score(FakeClap(), {"a": good}, {"b": "x"}, CHUNK)
    with pytest.raises(ValueError, match="no id in common"):
        clap_score_from_embeddings({"a": np.ones(2)}, {"b": np.ones(2)})
    with pytest.raises(ValueError, match="empty"):
        clap_score_from_embeddings({}, {"b": np.ones(2)})
    with pytest.raises(ValueError, match="key"):
        audio_embedding(FakeClap(), np.ones((1, 100), np.float32), RATE, CROP)


def test_streamed_items_and_duplicates():
    good = np.full((1, 30), 0.5, np.float32)
    stream = iter([("a", good, RATE), ("b", good, RATE), ("b", good, RATE)])
    res = clap_score(FakeClap(), stream, {"a": "x", "b": "y"}, CHUNK)
    assert list(res.per_item) == ["a"] and "duplicate" in res.rejects["b"]
