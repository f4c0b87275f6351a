"""The SynthCaps adapters (tagger frame embedder, classifier, contrastive text-audio model) on small random-weight
models, and the shipped default folders models/eval-tagger and models/eval-clap."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wavefoundry.conditioning.text import LearnedTextEncoderConfig
from wavefoundry.conditioning.tokenizer import WordTokenizer
from wavefoundry.eval.embedders import AudioClassifier, FrameEmbedder, TextAudioModel, file_sha256
from wavefoundry.eval.synthcaps_embedders import (
    ContrastiveTextAudio,
    TaggerClassifier,
    TaggerEmbedder,
    classification_accuracy,
    text_audio_retrieval,
)
from wavefoundry.train.contrastive import ClapConfig, build_contrastive, load_contrastive, load_tagger
from wavefoundry.understanding.contrastive import ContrastiveConfig
from wavefoundry.understanding.tagger import AudioTagger, TaggerConfig

MODELS = Path(__file__).resolve().parents[2] / "models"
SHA = "0" * 64
MB = 1_000_000


@pytest.fixture(scope="module")
def tagger():
    torch.manual_seed(0)
    return AudioTagger(TaggerConfig(labels=("a", "b", "c"), width=4, depth=2, embed_dim=8)).eval()


@pytest.fixture(scope="module")
def clap():
    torch.manual_seed(1)
    cfg = ClapConfig(
        audio=TaggerConfig(labels=("a", "b"), width=4, depth=2, embed_dim=8),
        text=LearnedTextEncoderConfig(vocab_size=64, dim=16, depth=1, heads=2, max_length=12, out_dim=16),
        contrastive=ContrastiveConfig(embed_dim=6),
    )
    tokenizer = WordTokenizer.build(["a soft piano note", "rain on a window", "a drum beat at 97 BPM"], max_length=12)
    return build_contrastive(cfg).eval(), tokenizer


def test_tagger_embedder_windows_and_values(tagger):
    emb = TaggerEmbedder(tagger, weights_sha256=SHA, window_s=1.0, hop_s=0.5)
    assert isinstance(emb, FrameEmbedder) and emb.dim == 8 and emb.info.channel_mode == "mono"
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((2, 36800))).astype(np.float32)  # 2.3 s stereo at 16 kHz
    out = emb.embed(audio, 16000)
    # starts 0, 0.5, 1.0 s fit whole; 1.5 s is a padded fourth window covering the tail
    assert out.shape == (4, 8) and out.dtype == np.float64
    np.testing.assert_array_equal(out, emb.embed(audio, 16000))  # deterministic
    mono = torch.from_numpy(audio.mean(0, keepdims=True))
    with torch.no_grad():
        ref = tagger.embed(mono[None, :, 8000:24000])[0].double().numpy()  # the second window by hand
    np.testing.assert_allclose(out[1], ref, rtol=1e-5, atol=1e-6)
    one_by_one = TaggerEmbedder(tagger, weights_sha256=SHA, batch_size=1).embed(audio, 16000)
    np.testing.assert_allclose(one_by_one, out, rtol=1e-5, atol=1e-6)  # batching does not change the result
    up = emb.embed(np.repeat(audio, 2, axis=1), 32000)  # same duration at another rate: same windows
    assert up.shape == (4, 8)
    assert emb.embed(audio[:, :4000], 16000).shape == (1, 8)  # shorter than a window: one padded window


def test_tagger_embedder_bad_input(tagger):
    emb = TaggerEmbedder(tagger, weights_sha256=SHA)
    with pytest.raises(ValueError, match="NaN"):
        emb.embed(np.full((1, 16000), np.nan, np.float32), 16000)
    with pytest.raises(ValueError, match="shorter than one STFT frame"):
        TaggerEmbedder(tagger, weights_sha256=SHA, window_s=0.01)
    with pytest.raises(ValueError, match="batch_size"):
        TaggerEmbedder(tagger, weights_sha256=SHA, batch_size=0)


def test_tagger_classifier(tagger):
    clf = TaggerClassifier(tagger, weights_sha256=SHA)
    assert isinstance(clf, AudioClassifier) and clf.labels == ("a", "b", "c") and clf.info.window_s == 4.0
    windows = np.random.default_rng(1).standard_normal((5, 1, 8000)).astype(np.float32) * 0.1
    logits = clf.logits(windows)
    with torch.no_grad():
        ref = tagger(torch.from_numpy(windows)).double().numpy()
    assert logits.shape == (5, 3) and logits.dtype == np.float64
    np.testing.assert_allclose(logits, ref, rtol=1e-5, atol=1e-6)
    acc = classification_accuracy(clf, windows, ref.argmax(1))
    assert acc["accuracy"] == 1.0 and acc["n"] == 5 and acc["chance_uniform"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="mono"):
        clf.logits(np.zeros((2, 2, 8000), np.float32))
    with pytest.raises(ValueError, match=r"\(N, C, T\)"):
        clf.logits(np.zeros((8000,), np.float32))
    with pytest.raises(ValueError, match="labels"):
        classification_accuracy(clf, windows, [0, 1])


def test_contrastive_adapter(clap):
    model, tokenizer = clap
    tam = ContrastiveTextAudio(model, tokenizer, weights_sha256=SHA, batch_size=2)
    assert isinstance(tam, TextAudioModel) and tam.dim == 6
    windows = np.random.default_rng(2).standard_normal((3, 1, 8000)).astype(np.float32) * 0.1
    a = tam.embed_audio(windows)
    texts = ["a soft piano note", "rain on a window", "a drum beat at 97 BPM"]
    t = tam.embed_text(texts)
    assert a.shape == t.shape == (3, 6) and a.dtype == t.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(t, tam.embed_text(texts))  # deterministic
    np.testing.assert_allclose(tam.embed_text(texts[1:2])[0], t[1], atol=1e-6)  # independent of the batch
    long = " ".join(["rain"] * 40)  # more tokens than max_length: cut, not an error
    assert tam.embed_text([long]).shape == (1, 6)
    with pytest.raises(ValueError, match="empty"):
        tam.embed_text(["   "])
    with pytest.raises(TypeError, match="list of strings"):
        tam.embed_text("a soft piano note")
    scores = text_audio_retrieval(tam, windows, texts, ks=(1, 3))
    assert scores["text_to_audio_recall@3"] == 1.0 and scores["n"] == 3
    with pytest.raises(ValueError, match="texts"):
        text_audio_retrieval(tam, windows, texts[:2])


def test_contrastive_adapter_rejects_a_tokenizer_longer_than_the_encoder(clap):
    model, _ = clap
    with pytest.raises(ValueError, match="max_length"):
        ContrastiveTextAudio(model, WordTokenizer.build(["x"], max_length=64), weights_sha256=SHA)


# ---------------------------------------------------------------------------------------- shipped defaults
def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_shipped_defaults_fit_10_mb_and_cards_name_their_commands():
    assert _size(MODELS / "eval-tagger") + _size(MODELS / "eval-clap") <= 10 * MB
    tagger_card = (MODELS / "eval-tagger" / "README.md").read_text(encoding="utf-8")
    clap_card = (MODELS / "eval-clap" / "README.md").read_text(encoding="utf-8")
    assert "wavefoundry train tagger-eval" in tagger_card and "export_embedder" in tagger_card
    assert "wavefoundry train clap-synthcaps" in clap_card and "export_embedder" in clap_card
    assert "text_audio_retrieval" in clap_card and "classification_accuracy" in tagger_card
    assert json.loads((MODELS / "eval-tagger" / "config.json").read_text())["task"] == "tagger"
    assert json.loads((MODELS / "eval-clap" / "config.json").read_text())["task"] == "contrastive"


def test_shipped_tagger_loads_and_embeds_deterministically():
    path = MODELS / "eval-tagger"
    model = load_tagger(path)
    emb = TaggerEmbedder(model, weights_sha256=file_sha256(path / "model.safetensors"))
    t = np.arange(24000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    out = emb.embed(tone, 16000)
    assert out.shape == (2, model.cfg.embed_dim) and np.isfinite(out).all()  # 1.5 s: windows at 0 and 0.5 s
    np.testing.assert_array_equal(out, emb.embed(tone, 16000))
    logits = TaggerClassifier(model, weights_sha256=SHA).logits(np.tile(tone, 3)[None, :, :64000])
    assert logits.shape == (1, len(model.cfg.labels))


def test_shipped_clap_loads_and_embeds_deterministically():
    model, tokenizer = load_contrastive(MODELS / "eval-clap")
    tam = ContrastiveTextAudio(model, tokenizer, weights_sha256=file_sha256(MODELS / "eval-clap"))
    t = np.arange(32000) / 16000
    rng = np.random.default_rng(0)
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    noise = (0.1 * rng.standard_normal(32000)).astype(np.float32)
    a = tam.embed_audio(np.stack([tone, noise])[:, None])
    u = tam.embed_text(["a sine-wave synth playing a single A4 note", "white noise hiss"])
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(u, tam.embed_text(["a sine-wave synth playing a single A4 note", "white noise hiss"]))
    assert np.isfinite(a @ u.T).all()
