"""Autoencoder end to end: train a few steps (with the GAN phase), export, encode/decode/eval from the CLI."""

import json

import numpy as np
import pytest
import soundfile as sf
from safetensors.torch import load_file, save_file

from wavefoundry.cli import main
from wavefoundry.pipelines import Codec, ModelLoadError

TINY = [
    "model.oobleck.channels=4", "discriminator.channels=4", "data.synth.n_items=12", "data.synth.seconds=1.0",
    "data.clip.seconds=0.5", "train.steps=3", "train.batch_size=2", "train.eval_every=3", "train.ckpt_every=3",
    "train.log_every=1", "train.progress=false", "train.tensorboard=false",
    "loss.weights.adversarial_warmup_steps=1",
]  # fmt: skip


@pytest.fixture(scope="module", params=["codec-tiny", "codec-tiny-rvq"])
def exported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    sets = [a for kv in [*TINY, f"data.cache_dir={root / 'cache'}"] for a in ("--set", kv)]
    assert main(["train", request.param, *sets, "--out", str(root / "run")]) == 0
    records = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert "loss_discriminator" not in train[0] and "loss_discriminator" in train[-1]  # GAN phase after warm-up
    assert main(["export", str(root / "run"), "--out", str(root / "model")]) == 0
    return root / "model"


def test_encode_decode_round_trip(exported, tmp_path):
    codec = Codec.from_pretrained(exported)
    audio = (0.3 * np.sin(2 * np.pi * 330 * np.arange(7000) / 16000)).astype(np.float32)[None]
    sf.write(tmp_path / "in.wav", audio.T, 16000)
    assert main(["encode", str(tmp_path / "in.wav"), "--model", str(exported), "--out", str(tmp_path / "z.st")]) == 0
    z = load_file(str(tmp_path / "z.st"))
    key = "codes" if codec.model.is_discrete else "latents"
    assert list(z) == [key] and z[key].shape[-1] == -(-7000 // codec.model.hop_length)
    assert main(["decode", str(tmp_path / "z.st"), "--model", str(exported), "--out", str(tmp_path / "out.wav")]) == 0
    out, sr = sf.read(tmp_path / "out.wav", always_2d=True)
    assert sr == 16000 and out.shape == (7000, 1)
    direct = codec.reconstruct(audio, 16000, chunk_seconds=0.1)  # chunked == one pass
    np.testing.assert_allclose(direct, codec.reconstruct(audio, 16000, chunk_seconds=None), atol=1e-5)


def test_wrong_rate_names_both_and_resample_fixes_it(exported, tmp_path, capsys):
    sf.write(tmp_path / "st.wav", np.zeros((4410, 2), np.float32) + 0.1, 44100)
    args = ["encode", str(tmp_path / "st.wav"), "--model", str(exported), "--out", str(tmp_path / "z.st")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "44100 Hz with 2 channel(s)" in err and "16000 Hz with 1 channel(s)" in err
    assert main([*args, "--resample"]) == 0


def test_eval_recon_with_model_and_with_estimates(exported, tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        sf.write(refs / f"r{i}.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    sf.write(refs / "silent.wav", np.zeros(8000, np.float32), 16000)
    saved = tmp_path / "saved"
    args = ["eval", "recon", str(refs), "--model", str(exported), "--out", str(tmp_path / "m.json")]
    assert main([*args, "--save-dir", str(saved)]) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["num_files"] == 3 and report["num_scored"] == 2 and report["num_errors"] == 1
    assert sorted(p.name for p in saved.iterdir()) == ["r0.wav", "r1.wav"]  # the scored ones, as reconstructed
    codec = Codec.from_pretrained(exported)
    ref, _ = sf.read(refs / "r0.wav", dtype="float32")
    kept, sr = sf.read(saved / "r0.wav", dtype="float32")
    assert sr == 16000 and kept.shape == ref.shape
    np.testing.assert_allclose(kept, codec.reconstruct(ref[None], 16000)[0], atol=1e-6)  # float WAV
    assert all(np.isfinite(report["mean"][k]) for k in ("stft", "mel", "sisdr"))
    # the references against themselves: distances 0, SI-SDR very high
    assert main(["eval", "recon", str(refs), "--estimates", str(refs), "--out", str(tmp_path / "e.json")]) == 0
    same = json.loads((tmp_path / "e.json").read_text())["mean"]
    assert same["stft"] < 1e-6 and same["mel"] < 1e-6 and same["sisdr"] > 90


def test_mismatched_checkpoint_lists_keys(exported, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((exported / "config.json").read_text())
    state = load_file(str(exported / "model.safetensors"))
    dropped = sorted(state)[0]
    del state[dropped]
    state["extra.weight"] = state[sorted(state)[0]].clone()
    save_file(state, str(bad / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=f"missing: {dropped}.*unexpected: extra.weight"):
        Codec.from_pretrained(bad)
    (bad / "config.json").write_text(json.dumps({"type": "tagger", "model": {}}))
    with pytest.raises(ModelLoadError, match="expected"):
        Codec.from_pretrained(bad)
