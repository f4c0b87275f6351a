"""``wavefoundry eval fd|kl|clap|memorization|report`` end to end on small folders with tiny random models."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from wavefoundry.audio.io import save_audio
from wavefoundry.cli import main
from wavefoundry.conditioning.text import LearnedTextEncoderConfig
from wavefoundry.conditioning.tokenizer import WordTokenizer
from wavefoundry.config import save_json
from wavefoundry.eval.frechet import EmbeddingStats, RunningStats, frechet_distance
from wavefoundry.train.contrastive import ClapConfig, ContrastiveRunConfig, build_contrastive
from wavefoundry.train.tagging import TaggerRunConfig
from wavefoundry.understanding.contrastive import ContrastiveConfig
from wavefoundry.understanding.tagger import AudioTagger, TaggerConfig

SR = 16000


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tagger")
    cfg = TaggerRunConfig(model=TaggerConfig(labels=("a", "b", "c"), width=4, depth=2, embed_dim=8))
    torch.manual_seed(0)
    model = AudioTagger(cfg.model)
    save_json(cfg, out / "config.json")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    return out


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("clap")
    captions = ["a low tone", "a high tone", "a loud tone", "noise"]
    tokenizer = WordTokenizer.build(captions, max_length=12)
    model_cfg = ClapConfig(
        audio=TaggerConfig(labels=("a", "b"), width=4, depth=2, embed_dim=8),
        text=LearnedTextEncoderConfig(vocab_size=len(tokenizer.vocab), dim=16, depth=1, heads=2, max_length=12,
                                      out_dim=16),
        contrastive=ContrastiveConfig(embed_dim=6),
    )  # fmt: skip
    cfg = ContrastiveRunConfig(model=model_cfg)
    torch.manual_seed(1)
    save_json(cfg, out / "config.json")
    model = build_contrastive(model_cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    tokenizer.save(out / "tokenizer.json")
    return out


def tone(f, seconds=1.5, amp=0.3, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * f * t))[None].astype(np.float32)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    for name, shift in (("gen", 1.06), ("ref", 1.0)):
        for i in range(6):
            save_audio(root / name / f"c{i}.wav", tone(200.0 * (i + 1) * shift), SR)
    return root


def run(*argv):
    return main([*argv, "--no-progress"] if argv[1] != "report" else list(argv))


def test_fd_equals_the_formula_on_the_embedder_frames(sets, tagger_dir, tmp_path):
    from wavefoundry.audio.io import load_audio
    from wavefoundry.eval.synthcaps_embedders import TaggerEmbedder
    from wavefoundry.train.contrastive import load_tagger

    out = tmp_path / "fd.json"
    assert run("eval", "fd", str(sets / "gen"), str(sets / "ref"), "--weights", str(tagger_dir), "--out", str(out)) == 0
    result = json.loads(out.read_text())
    embedder = TaggerEmbedder(load_tagger(tagger_dir), weights_sha256="x")
    frames = {s: np.concatenate([embedder.embed(*load_audio(sets / s / f"c{i}.wav")) for i in range(6)])
              for s in ("gen", "ref")}  # fmt: skip
    ref = frechet_distance(frames["gen"].mean(0), np.cov(frames["gen"], rowvar=False),
                           frames["ref"].mean(0), np.cov(frames["ref"], rowvar=False))  # fmt: skip
    assert result["summary"]["fd"] == pytest.approx(ref.fd, rel=1e-9)
    assert result["embedder"]["name"] == "synthcaps-tagger" and len(result["embedder"]["weights_sha256"]) == 64
    # saved statistics give the same number, and statistics of another embedder are refused
    stats = tmp_path / "ref.safetensors"
    assert run("eval", "fd", str(sets / "ref"), "--weights", str(tagger_dir), "--save-stats", str(stats)) == 0
    out2 = tmp_path / "fd2.json"
    assert run("eval", "fd", str(sets / "gen"), str(stats), "--weights", str(tagger_dir), "--out", str(out2)) == 0
    assert json.loads(out2.read_text())["summary"]["fd"] == pytest.approx(ref.fd, rel=1e-9)
    loaded = EmbeddingStats.load(stats)
    other = (
        RunningStats(loaded.dim)
        .update(frames["gen"])
        .to_stats(type(loaded.info)(**{**loaded.info.to_dict(), "hop_s": 0.25}))
    )
    other.save(tmp_path / "other.safetensors")
    code = run("eval", "fd", str(stats), str(tmp_path / "other.safetensors"))
    assert code == 2


def test_fd_rejects_bad_files_and_refuses_mixed_formats(sets, tagger_dir, tmp_path, capsys):
    gen = tmp_path / "gen"
    for i in range(3):
        save_audio(gen / f"c{i}.wav", tone(300.0 * (i + 1)), SR)
    save_audio(gen / "silent.wav", np.zeros((1, SR), np.float32), SR)
    (gen / "broken.wav").write_bytes(b"RIFF nothing")
    out = tmp_path / "fd.json"
    assert run("eval", "fd", str(gen), str(sets / "ref"), "--weights", str(tagger_dir), "--out", str(out)) == 0
    files = json.loads(out.read_text())["sets"][str(gen)]["files"]
    assert [r["id"] for r in files["rejects"]] == ["broken"] and files["silent"] == ["silent"]
    save_audio(gen / "c9.wav", tone(300.0, sr=22050), 22050)
    assert run("eval", "fd", str(gen), str(sets / "ref"), "--weights", str(tagger_dir)) == 2
    assert "mixes sample rates" in capsys.readouterr().err
    assert run("eval", "fd", str(gen), str(sets / "ref"), "--weights", str(tagger_dir), "--allow-mismatch") == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("eval", "fd", str(empty), str(sets / "ref"), "--weights", str(tagger_dir)) == 2
    assert "no audio files" in capsys.readouterr().err


def test_kl_pairs_by_id_and_is_zero_against_itself(sets, tagger_dir, tmp_path):
    out = tmp_path / "kl.json"
    assert run("eval", "kl", str(sets / "ref"), str(sets / "ref"), "--weights", str(tagger_dir), "--out", str(out)) == 0
    same = json.loads(out.read_text())
    assert same["summary"]["n_items"] == 6 and abs(same["summary"]["kl"]) < 1e-4  # only the 1e-6 epsilon bias
    gen = tmp_path / "gen"
    for i in range(4):  # two references have no generation
        save_audio(gen / f"c{i}.wav", tone(900.0 + 50 * i), SR)
    assert run("eval", "kl", str(gen), str(sets / "ref"), "--weights", str(tagger_dir), "--out", str(out),
               "--convention", "audiocraft") == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert result["summary"]["n_items"] == 4 and sorted(result["missing_generated"]) == ["c4", "c5"]
    assert result["summary"]["kl"] > 1e-4 and result["convention"] == "audiocraft"


def test_clap_scores_prompts_of_a_csv(sets, clap_dir, tmp_path):
    from wavefoundry.audio.io import load_audio
    from wavefoundry.eval.clap_score import audio_embedding, clap_policy
    from wavefoundry.eval.synthcaps_embedders import ContrastiveTextAudio
    from wavefoundry.train.contrastive import load_contrastive

    prompts = tmp_path / "prompts.csv"
    prompts.write_text("id,caption\nc0,a low tone\nc1,a high tone\nc2,noise\nzz,a loud tone\n")
    out = tmp_path / "clap.json"
    assert run("eval", "clap", str(sets / "gen"), "--prompts", str(prompts), "--model", "synthcaps",
               "--weights", str(clap_dir), "--out", str(out)) == 0  # fmt: skip
    result = json.loads(out.read_text())
    model = ContrastiveTextAudio(*load_contrastive(clap_dir), weights_sha256="x")
    a = audio_embedding(model, *load_audio(sets / "gen" / "c1.wav"), clap_policy("chunk-mean"))
    t = model.embed_text(["a high tone"])[0]
    assert result["per_item"]["c1"]["cosine"] == pytest.approx(float(a @ t / np.linalg.norm(t)), abs=1e-6)
    assert result["summary"]["n_items"] == 3 and result["prompts_without_audio"] == ["zz"]
    assert sorted(result["missing_text"]) == ["c3", "c4", "c5"]  # generations without a prompt are listed


def test_memorization_flags_a_planted_copy_and_the_report_renders(sets, tagger_dir, tmp_path):
    gen = tmp_path / "gen"
    save_audio(gen / "copy.wav", tone(600.0), SR)  # the same audio as ref/c2
    save_audio(gen / "new.wav", np.random.default_rng(0).normal(0, 0.1, (1, 24000)).astype(np.float32), SR)
    mem = tmp_path / "mem.json"
    assert run("eval", "memorization", str(gen), str(sets / "ref"), "--weights", str(tagger_dir), "--k", "2",
               "--out", str(mem)) == 0  # fmt: skip
    result = json.loads(mem.read_text())
    flags = {row["id"]: row["flag"] for row in result["closest"]}
    assert flags["copy"] == "exact" and flags["new"] is None
    nearest = next(r for r in result["closest"] if r["id"] == "copy")["neighbours"][0]
    assert nearest["id"] == "c2" and nearest["distance"] < 1e-8
    assert len(result["distances"]) == 2
    fd = tmp_path / "fd.json"
    run("eval", "fd", str(sets / "gen"), str(sets / "ref"), "--weights", str(tagger_dir), "--out", str(fd))
    page = tmp_path / "report"
    assert run("eval", "report", str(fd), str(mem), "--generated", str(gen), "--out", str(page)) == 0
    html = (page / "index.html").read_text()
    assert "copy" in html and "exact" in html and "c2" in html
    assert (page / "neighbours").is_dir() and len(list((page / "audio").iterdir())) == 2
