"""The models shipped in models/: they load strictly, fit the size budgets of their issues, and generate
deterministically (the built-in text-to-audio model is what ``make demo`` runs)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from wavefoundry.pipelines import Codec, TextToAudio

MODELS = Path(__file__).resolve().parents[1] / "models"
T2A = MODELS / "t2a-tiny"
MB = 1_000_000


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.mark.parametrize("name", ["codec-tiny", "codec-tiny-rvq"])
def test_default_codecs_fit_15_mb_and_reconstruct_at_their_rate(name):
    assert _size(MODELS / name) <= 15 * MB
    codec = Codec.from_pretrained(MODELS / name)
    t = np.arange(8000) / codec.sample_rate
    audio = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None].repeat(codec.channels, 0)
    out = codec.reconstruct(audio, codec.sample_rate)
    assert out.shape == audio.shape and np.isfinite(out).all()


def test_default_text_to_audio_model_fits_40_mb_and_has_a_card():
    assert _size(T2A) <= 40 * MB  # everything make demo needs: DiT, text encoder, tokenizer, autoencoder
    card = (T2A / "README.md").read_text(encoding="utf-8")
    assert "wavefoundry train t2a-tiny" in card and "wavefoundry train codec-stereo" in card
    config = json.loads((T2A / "config.json").read_text())
    assert config["type"] == "text-to-audio"


def test_default_text_to_audio_model_generates_deterministically():
    pipe = TextToAudio.from_pretrained(T2A)
    kw = {"seconds_total": 1.0, "steps": 4, "cfg_scale": 5.0, "seed": 3}
    audio, sr = pipe.generate(["a sine-wave synth playing a single A4 note, panned hard left"], **kw)
    again, _ = pipe.generate(["a sine-wave synth playing a single A4 note, panned hard left"], **kw)
    assert sr == 16000 and audio.shape == (1, 2, 16000)
    assert np.isfinite(audio).all() and np.abs(audio).max() > 1e-4  # not silent
    np.testing.assert_array_equal(audio, again)
    other, _ = pipe.generate(["pouring rain against a window pane"], **kw)
    assert np.abs(other - audio).mean() > 1e-4  # the prompt matters


LM = MODELS / "lm-speech-tiny"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_default_audio_lm_fits_30_mb_and_has_a_card():
    assert _size(LM) <= 30 * MB  # decoder, tokenizer, layout and the codec copy
    card = (LM / "README.md").read_text(encoding="utf-8")
    for command in (
        "wavefoundry train semantic-codec-tiny-ft",
        "wavefoundry train lm-speech-tiny",
        "wavefoundry lm eval",
    ):
        assert command in card
    assert json.loads((LM / "wavefoundry.json").read_text())["type"] == "audio-lm"


@needs_espeak
def test_default_audio_lm_transcribes_unseen_espeak_speech(tmp_path):
    """Held-out transcripts (the split is a hash of the transcript, so valid ones never were trained on), another
    seed's voices, rates and pitches: greedy ASR stays well under the chance CER (~0.78 for shuffled transcripts)."""
    from wavefoundry.audio.io import load_audio
    from wavefoundry.codecs.semantic import char_error_rate, normalize_transcript
    from wavefoundry.data.manifest import read_manifest
    from wavefoundry.data.speech import SpeechConfig, build_speech
    from wavefoundry.pipelines import AudioLM

    build_speech(tmp_path, SpeechConfig(n_items=80, languages=("en",), seed=123), progress=False)
    items = [it for it in read_manifest(tmp_path / "manifest.jsonl") if it.split == "valid"]
    assert len(items) >= 4
    lm = AudioLM.from_pretrained(LM)
    hyps = [normalize_transcript(lm.asr(*load_audio(tmp_path / it.path))) for it in items]
    refs = [normalize_transcript(it.attrs["transcript"]) for it in items]
    assert char_error_rate(hyps, refs) < 0.4  # 0.18 measured on the 815 held-out utterances (model card)
