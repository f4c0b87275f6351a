"""Task "semantic-codec": autoencoder losses + CTC on codebook 0, on synthetic "speech" (one tone per character)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from wavefoundry.codecs.autoencoder import AutoencoderConfig
from wavefoundry.codecs.bottlenecks import BottleneckConfig, FSQConfig, RVQConfig
from wavefoundry.codecs.oobleck import OobleckConfig
from wavefoundry.codecs.semantic import CharVocab, char_error_rate
from wavefoundry.config import ConfigError
from wavefoundry.data.datasets import ClipConfig
from wavefoundry.data.manifest import read_manifest, write_manifest
from wavefoundry.train.engine import train
from wavefoundry.train.logging import read_metrics
from wavefoundry.train.semantic_codec import (
    SemanticCodecTask,
    TranscribedClips,
    codebook0_transcripts,
    collate_transcribed,
    semantic_codec_tiny,
)
from wavefoundry.train.tasks import build_task, load_model, load_run_config

from .tone_speech import CHAR_SAMPLES, HOP, SR, tone_speech, write_speech


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech")
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("abcd "), size=int(rng.integers(3, 7)))).strip() or "a" for _ in range(16)]
    items = write_speech(root, texts[:12], transcript=str.upper)
    items += write_speech(root, texts[12:], split="valid", start=12, transcript=str.upper)
    return write_manifest(root / "manifest.jsonl", items)


def tiny_config(manifest, **ctc):
    cfg = semantic_codec_tiny()
    cfg.model = AutoencoderConfig(
        oobleck=OobleckConfig(sample_rate=SR, audio_channels=1, channels=4, c_mults=(1, 2, 4, 8), strides=(2, 4, 4, 8),
                              latent_dim=16, encoder_out_dim=16),
        bottleneck=BottleneckConfig(kind="rvq", rvq=RVQConfig(dim=16, codebook_size=32, num_quantizers=2,
                                                              kmeans_iters=2)),
    )  # fmt: skip
    cfg.loss.weights = dataclasses.replace(cfg.loss.weights, adversarial_warmup_steps=10_000)
    cfg.ctc = dataclasses.replace(cfg.ctc, **ctc)
    cfg.data.manifest, cfg.data.clip = str(manifest), ClipConfig(sample_rate=SR, channels=1, seconds=0.4)
    cfg.train = dataclasses.replace(cfg.train, steps=20, batch_size=4, eval_every=20, ckpt_every=20, log_every=1,
                                    ema_decay=0.0, progress=False, tensorboard=False)  # fmt: skip
    cfg.optim = dataclasses.replace(cfg.optim, lr=3e-3)
    cfg.schedule = dataclasses.replace(cfg.schedule, name="constant", warmup_steps=0)
    return cfg


def test_training_lowers_the_losses_and_the_run_reloads(manifest, tmp_path):
    cfg = tiny_config(manifest)
    result = train(build_task(cfg), tmp_path / "run")
    records = read_metrics(tmp_path / "run", "train")
    assert len(records) == 20
    for key in ("ctc", "loss"):  # "loss": the generator loss (no GAN phase here)
        values = np.array([r[key] for r in records])
        assert np.isfinite(values).all()
        assert values[-5:].mean() < 0.9 * values[:5].mean(), key
    assert result.eval_metrics["cer"] >= 0.0 and np.isfinite(result.eval_metrics["ctc"])

    saved = load_run_config(tmp_path / "run")  # the vocabulary built from the transcripts is in config.json
    texts = [it.attrs["transcript"] for it in read_manifest(manifest) if it.split == "train"]
    assert saved.ctc.vocab == CharVocab.build(texts).chars
    task, model = load_model(tmp_path / "run")
    assert isinstance(task, SemanticCodecTask)
    batch = task.collate([task.datasets()[1][(i, i)] for i in range(4)])
    torch.manual_seed(0)
    _, metrics = task.loss_fn(model, batch)
    assert metrics["cer"] == pytest.approx(result.eval_metrics["cer"], abs=1e-6)  # the held-out set is 4 items


def test_eval_cer_is_greedy_decoding_of_codebook0_ids_only(manifest):
    task = build_task(tiny_config(manifest))
    task.prepare_data()
    torch.manual_seed(0)
    model = task.build_model().eval()
    batch = task.collate([task.datasets()[1][(i, i)] for i in range(4)])
    with torch.no_grad():
        _, metrics = task.loss_fn(model, batch)
        out = model.autoencoder.encode(batch["audio"])
    frames = (batch["padding_mask"].sum(-1) + HOP - 1) // HOP
    hyps = codebook0_transcripts(model, out.codes, frames)
    refs = [t[:n].tolist() for t, n in zip(batch["targets"], batch["target_lengths"], strict=True)]
    assert metrics["cer"] == pytest.approx(char_error_rate(hyps, refs))
    other = out.codes.clone()
    other[:, 1:] = (other[:, 1:] + 1) % 32  # the acoustic codebooks do not enter the semantic decoding
    assert codebook0_transcripts(model, other, frames) == hyps


def test_generator_loss_adds_weight_times_ctc(manifest):
    def loss(weight):
        task = build_task(tiny_config(manifest, weight=weight))
        task.prepare_data()
        torch.manual_seed(0)
        model = task.build_model()
        batch = task.collate([task.datasets()[0][(i, i)] for i in range(4)])
        torch.manual_seed(1)
        losses, metrics = task.loss_fn(model, batch)
        return losses["generator"], metrics["ctc"]

    base, ctc = loss(0.0)
    weighted, _ = loss(2.5)
    torch.testing.assert_close(weighted - base, 2.5 * ctc, rtol=1e-4, atol=1e-5)
    assert ctc > 0


def test_dataset_yields_whole_padded_utterances_with_targets(manifest, tmp_path):
    vocab = CharVocab("abcd ")
    items = write_speech(tmp_path, ["ab", "abcdabc"], transcript=str.upper)  # 2 and 7 characters: 0.128 s and 0.448 s
    clips = TranscribedClips(items, ClipConfig(sample_rate=SR, seconds=0.4), vocab, hop=HOP)
    assert len(clips) == 1  # the 0.448 s utterance is longer than the padded length
    sample = clips[(0, 123)]
    assert sample["audio"].shape == (1, 6400) and int(sample["padding_mask"].sum()) == 2 * CHAR_SAMPLES
    np.testing.assert_allclose(sample["audio"][0, : 2 * CHAR_SAMPLES].numpy(), tone_speech("ab"), atol=1e-4)
    assert sample["targets"].tolist() == vocab.encode("ab")
    batch = collate_transcribed([clips[(0, 1)], clips[(0, 2)]])
    assert batch["targets"].shape == (2, 2) and batch["target_lengths"].tolist() == [2, 2]


def test_dataset_and_task_errors(manifest, tmp_path):
    vocab = CharVocab("ab")
    (item,) = write_speech(tmp_path, ["ab"], transcript=str.upper)
    bare = dataclasses.replace(item, attrs={})
    with pytest.raises(ValueError, match="no attrs\\['transcript'\\]"):
        TranscribedClips([bare], ClipConfig(sample_rate=SR, seconds=0.4), vocab, hop=HOP)
    crowded = dataclasses.replace(item, attrs={"transcript": "abababab abab"})  # 13 characters in 8 frames
    with pytest.raises(ValueError, match="enough codec frames"):
        TranscribedClips([crowded], ClipConfig(sample_rate=SR, seconds=0.4), vocab, hop=HOP)
    cfg = tiny_config(manifest)
    cfg.data.manifest = ""
    with pytest.raises(ConfigError, match=r"data\.manifest"):
        build_task(cfg).prepare_data()
    with pytest.raises(ValueError, match="kind=rvq"):
        dataclasses.replace(cfg, model=AutoencoderConfig(
            oobleck=dataclasses.replace(cfg.model.oobleck, encoder_out_dim=8, latent_dim=8),
            bottleneck=BottleneckConfig(kind="fsq", fsq=FSQConfig(dim=8)),
        ))  # fmt: skip
    with pytest.raises(ValueError, match="duplicate"):
        dataclasses.replace(cfg.ctc, vocab="aab")


def test_saved_config_is_strict_json(manifest, tmp_path):
    cfg = tiny_config(manifest)
    cfg.train.steps = cfg.train.ckpt_every = cfg.train.eval_every = 1
    train(build_task(cfg), tmp_path / "run")
    data = json.loads((tmp_path / "run" / "config.json").read_text())
    assert data["task"] == "semantic-codec" and set(data["ctc"]["vocab"]) == set("abcd ")
