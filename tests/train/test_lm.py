"""Task "lm": tokenised corpus cache, packed rows, per-modality NLL, training/resume, export and the AudioLM pipeline,
on tone "speech" (one tone per character) with a random-weight RVQ codec and a tiny decoder."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from wavefoundry.codecs.autoencoder import Autoencoder, AutoencoderConfig
from wavefoundry.codecs.bottlenecks import BottleneckConfig, RVQConfig
from wavefoundry.codecs.oobleck import OobleckConfig
from wavefoundry.config import ConfigError, to_dict
from wavefoundry.data.manifest import write_manifest
from wavefoundry.lm.decoder import DecoderConfig, next_token_loss
from wavefoundry.lm.sequences import parse_sequence
from wavefoundry.lm.text_tokenizer import TextTokenizer
from wavefoundry.pipelines import AudioLM, ModelLoadError, export_any
from wavefoundry.train import checkpoint as ckpt
from wavefoundry.train.engine import train
from wavefoundry.train.lm import LMTask, lm_speech_tiny, modality_nll
from wavefoundry.train.lm_data import Corpus, PackedRowDataset, load_audio_tokenizer, prepare_corpus, train_rows
from wavefoundry.train.logging import read_metrics
from wavefoundry.train.tasks import build_task, load_run_config

from .tone_speech import HOP, SR, tone_speech, write_speech

CODES, K = 32, 2


def make_manifest(root):
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("abcd"), size=int(rng.integers(3, 6)))) for _ in range(16)]
    items = write_speech(root, texts[:12]) + write_speech(root, texts[12:], split="valid", start=12)
    return write_manifest(root / "manifest.jsonl", items)


def make_codec(root):
    """An exported random-weight RVQ codec: 16 kHz mono, hop 256, 2 codebooks of 32."""
    cfg = AutoencoderConfig(
        oobleck=OobleckConfig(sample_rate=SR, audio_channels=1, channels=4, c_mults=(1, 2, 4, 8), strides=(2, 4, 4, 8),
                              latent_dim=16, encoder_out_dim=16),
        bottleneck=BottleneckConfig(kind="rvq", rvq=RVQConfig(dim=16, codebook_size=CODES, num_quantizers=K)),
    )  # fmt: skip
    torch.manual_seed(0)
    model = Autoencoder(cfg)
    root.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "model.safetensors"))
    (root / "config.json").write_text(json.dumps({"type": "autoencoder", "model": to_dict(cfg)}))
    return root


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    return make_manifest(root), make_codec(root / "codec"), root


def tiny_config(speech, **train):
    manifest, codec, root = speech
    cfg = lm_speech_tiny()
    cfg.model = DecoderConfig(vocab_size=1, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, max_seq_len=256)
    cfg.data = dataclasses.replace(cfg.data, manifest=str(manifest), codec=str(codec), cache_dir=str(root / "cache"),
                                   seq_len=64, codebooks=None, bpe_vocab_size=260, epochs=4.0)  # fmt: skip
    cfg.train = dataclasses.replace(cfg.train, steps=30, batch_size=4, eval_every=30, ckpt_every=30, log_every=1,
                                    progress=False, tensorboard=False, **train)  # fmt: skip
    cfg.optim = dataclasses.replace(cfg.optim, lr=1e-2, weight_decay=0.0)
    cfg.schedule = dataclasses.replace(cfg.schedule, warmup_steps=2)
    return cfg


@pytest.fixture(scope="module")
def trained(speech, tmp_path_factory):
    """A 30-step run and its export."""
    root = tmp_path_factory.mktemp("lm-run")
    result = train(build_task(tiny_config(speech)), root / "run")
    export_any(root / "run", root / "model")
    return root, result


def test_corpus_cache_hit_and_miss(speech, tmp_path):
    cfg = tiny_config(speech)
    cfg.data.cache_dir = str(tmp_path)
    first = prepare_corpus(cfg.data, progress=False)
    stamp = os.stat(first / "corpus.safetensors").st_mtime_ns
    assert prepare_corpus(cfg.data, progress=False) == first  # hit: nothing rebuilt
    assert os.stat(first / "corpus.safetensors").st_mtime_ns == stamp
    other = prepare_corpus(dataclasses.replace(cfg.data, codebooks=(0,)), progress=False)  # layout change: miss
    assert other != first and (other / "index.json").is_file()
    assert prepare_corpus(dataclasses.replace(cfg.data, codec_codebooks=1), progress=False) not in (first, other)

    corpus, codec = Corpus.load(first), load_audio_tokenizer(cfg.data.codec)
    tok = TextTokenizer.from_file(first / "tokenizer.json")
    for i, item in enumerate(corpus.info["items"][:4]):
        text = item["transcript"]
        assert tok.decode(corpus.text[i].tolist()) == text
        expected = codec.encode(torch.from_numpy(tone_speech(text))[None, None])[0]
        assert torch.equal(corpus.codes[i], expected)
    assert len(corpus.utterances("train")) == 12 and len(corpus.utterances("valid")) == 4


def test_packed_rows_parse_back_to_the_utterances(speech):
    cfg = tiny_config(speech)
    corpus = Corpus.load(prepare_corpus(cfg.data, progress=False))
    layout, utts = corpus.layout(None), corpus.utterances("train")
    rows = train_rows(layout, utts, cfg.data, seed=0)
    assert rows.ids.shape[1] == cfg.data.seq_len + 1
    assert torch.equal(train_rows(layout, utts, cfg.data, seed=0).ids, rows.ids)  # deterministic from the seed
    ids, docs = rows.ids.view(-1), rows.document_ids.view(-1)
    known = {(tuple(u.text.tolist()), tuple(u.codes.view(-1).tolist())) for u in utts}
    whole = [d for d in docs.unique().tolist() if int(docs[0]) != d != int(docs[-1])]  # cut at neither end
    orders = set()
    for d in whole:
        segments = parse_sequence(layout, ids[docs == d])
        kinds = tuple(s.kind for s in segments)
        orders.add(kinds)
        text = next(s.tokens for s in segments if s.kind == "text")
        codes = next(s.tokens for s in segments if s.kind == "audio")
        assert (tuple(text.tolist()), tuple(codes.view(-1).tolist())) in known
    assert orders == {("text", "audio"), ("audio", "text")}
    sample = PackedRowDataset(rows)[(0, 0)]
    assert torch.equal(sample["labels"][:-1], sample["inputs"][1:])


def test_modality_nll_sums_to_the_total():
    torch.manual_seed(0)
    logits, labels = torch.randn(3, 20, 50), torch.randint(0, 50, (3, 20))
    mask = torch.rand(3, 20) > 0.2
    _, ref = next_token_loss(logits, labels, loss_mask=mask, z_loss=0.0)
    parts = modality_nll(logits, labels, mask, text_vocab_size=20)
    total = sum(parts[f"nll_{m}"] * parts[f"tokens_{m}"] for m in ("text", "audio", "special"))
    assert parts["tokens_text"] == int((mask & (labels < 20)).sum())
    assert parts["tokens_audio"] == int((mask & (labels >= 24)).sum())
    assert float(total / ref["tokens"]) == pytest.approx(float(ref["nll"]), rel=1e-5)


def test_training_lowers_the_loss_and_resumes_exactly(speech, trained, tmp_path):
    root, result = trained
    losses = np.array([r["loss"] for r in read_metrics(root / "run", "train")])
    assert len(losses) == 30 and np.isfinite(losses).all()
    assert losses[-5:].mean() < 0.8 * losses[:5].mean()
    for key in ("nll_text", "nll_audio", "nll_special", "z_loss", "tokens"):
        assert np.isfinite(result.eval_metrics[key]), key
    saved = load_run_config(root / "run")  # the derived vocabulary is in config.json
    layout = build_task(saved).layout()
    assert saved.model.vocab_size == layout.vocab_size and saved.data.text_vocab_size == layout.text_vocab_size

    cfg = tiny_config(speech)
    train(build_task(cfg), tmp_path / "split", until=15)
    train(build_task(tiny_config(speech)), tmp_path / "split", resume=True)
    a = load_file(str(ckpt.latest_checkpoint(root / "run") / "model.safetensors"))
    b = load_file(str(ckpt.latest_checkpoint(tmp_path / "split") / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_saved_vocab_size_must_match_the_corpus(speech):
    cfg = tiny_config(speech)
    cfg.data.text_vocab_size, cfg.model.vocab_size = 300, 999
    task = build_task(cfg)
    task.prepare_data()
    with pytest.raises(ConfigError, match="corpus layout gives"):
        task.build_model()
    with pytest.raises(ConfigError, match="seq_len"):
        dataclasses.replace(tiny_config(speech), data=dataclasses.replace(cfg.data, seq_len=512))


def test_export_loads_in_transformers_with_equal_logits(trained):
    from transformers import Qwen3ForCausalLM

    root, _ = trained
    assert json.loads((root / "model" / "wavefoundry.json").read_text())["type"] == "audio-lm"
    lm = AudioLM.from_pretrained(root / "model")
    hf = Qwen3ForCausalLM.from_pretrained(str(root / "model"), local_files_only=True).eval()
    ids = torch.randint(0, lm.layout.vocab_size, (2, 17))
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, lm.decoder(ids), atol=1e-5)


def test_pipeline_asr_tts_continue(trained, speech):
    root, _ = trained
    lm = AudioLM.from_pretrained(root / "model")
    assert isinstance(lm.asr(tone_speech("abca"), SR), str)
    shot = (tone_speech("db"), SR, "db")
    assert isinstance(lm.asr(tone_speech("abca"), SR, few_shot=[shot], max_new_tokens=8), str)
    audio, sr = lm.tts("abc", seconds_max=0.3, seed=1)
    assert sr == SR and audio.shape[0] == 1 and audio.shape[1] <= 0.3 * SR and audio.shape[1] % HOP == 0
    a2, _ = lm.tts("abc", seconds_max=0.3, seed=1)
    assert np.array_equal(audio, a2)  # seeded

    prefix = lm.encode_audio(tone_speech("ab"), SR)
    codes = lm.continue_codes(prefix, seconds=0.2, seed=0)
    assert torch.equal(codes[:, : prefix.shape[1]], prefix) and codes.shape[1] <= prefix.shape[1] + 12
    out, sr = lm.continue_audio(tone_speech("ab"), SR, seconds=0.2)
    assert sr == SR and out.shape == (1, codes.shape[1] * HOP)


def test_pipeline_bad_input(trained, tmp_path):
    root, _ = trained
    lm = AudioLM.from_pretrained(root / "model")
    with pytest.raises(ValueError, match="max_seq_len=256"):
        lm.tts("abc", seconds_max=60.0)
    with pytest.raises(ValueError, match="non-empty"):
        lm.tts("   ")
    with pytest.raises(ValueError, match="longer than"):
        lm.asr(np.zeros(SR * 60, dtype=np.float32), SR)
    with pytest.raises(ValueError, match="does not fit"):
        lm.asr(tone_speech("ab"), SR, max_new_tokens=10_000)
    for part in ("layout.json", "tokenizer.json", "wavefoundry.json", "codec"):
        broken = shutil.copytree(root / "model", tmp_path / part)
        target = broken / part
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        with pytest.raises(ModelLoadError, match=part.split(".")[0]):
            AudioLM.from_pretrained(broken)


def test_lm_task_is_registered(speech):
    assert isinstance(build_task(tiny_config(speech)), LMTask)
