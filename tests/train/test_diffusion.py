"""Text-to-audio end to end on tiny models: encode a latent set, train the diffusion task, export, generate."""

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from wavefoundry.cli import main
from wavefoundry.codecs.autoencoder import Autoencoder, AutoencoderConfig
from wavefoundry.codecs.bottlenecks import BottleneckConfig, VAEConfig
from wavefoundry.codecs.oobleck import OobleckConfig
from wavefoundry.config import to_dict
from wavefoundry.data.latents import LatentDataset, LatentSet
from wavefoundry.data.synth import SynthConfig, generate_synthcaps
from wavefoundry.diffusion.samplers import SamplingError
from wavefoundry.pipelines import ModelLoadError, TextToAudio
from wavefoundry.train.export import load_autoencoder
from wavefoundry.train.latents import encode_manifest

pytestmark = pytest.mark.xdist_group("t2a")

TINY = [
    "model.dit.embed_dim=64", "model.dit.depth=2", "model.dit.num_heads=2", "model.dit.rotary_dim=16",
    "model.dit.io_channels=8", "model.dit.cond_token_dim=32", "model.dit.global_cond_dim=64",
    "model.conditioner.cond_dim=32", "model.conditioner.text.dim=32", "model.conditioner.text.depth=1",
    "model.conditioner.text.heads=2", "model.conditioner.text.out_dim=32", "model.conditioner.text.max_length=24",
    "model.conditioner.fourier_dim=16", "data.seconds=1.0",
    "train.steps=4", "train.batch_size=4", "train.eval_every=2", "train.ckpt_every=2", "train.log_every=1",
    "train.progress=false", "train.tensorboard=false", "demo.n_prompts=1", "demo.sampling.steps=2",
]  # fmt: skip


def _tiny_codec(path):
    cfg = AutoencoderConfig(
        oobleck=OobleckConfig(sample_rate=16000, audio_channels=2, channels=4, c_mults=(1, 2, 4, 8),
                              strides=(2, 4, 4, 8), latent_dim=8, encoder_out_dim=16),
        bottleneck=BottleneckConfig(kind="vae", vae=VAEConfig(latent_dim=8)),
    )  # fmt: skip
    torch.manual_seed(0)
    model = Autoencoder(cfg)
    path.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"type": "autoencoder", "model": to_dict(cfg)}))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2a")
    manifest = generate_synthcaps(
        root / "synth", SynthConfig(n_items=12, seconds=1.0, channels=2, valid_fraction=0.25), progress=False
    )
    codec = _tiny_codec(root / "codec")
    latents = encode_manifest(load_autoencoder(codec), manifest, root / "latents", codec_path=str(codec),
                              progress=False)  # fmt: skip
    sets = [a for kv in [*TINY, f"data.latents={latents}"] for a in ("--set", kv)]
    assert main(["train", "t2a-tiny", *sets, "--out", str(root / "run")]) == 0
    assert main(["export", str(root / "run"), "--out", str(root / "model")]) == 0
    return {"root": root, "manifest": manifest, "latents": latents, "model": root / "model", "run": root / "run"}


def test_latent_set_matches_the_codec(setup):
    data = LatentSet(setup["latents"])
    codec = load_autoencoder(setup["latents"].parent / "codec")
    assert data.info.latent_dim == 8 and data.info.frame_rate == 16000 / 256
    item = data.items[0]
    audio, _ = sf.read(setup["manifest"].parent / item.path, always_2d=True)
    with torch.no_grad():
        direct = codec.encode(torch.from_numpy(audio.T.astype(np.float32))[None], sample=False).latents[0]
    assert data.latents[0].shape == (8, math.ceil(16000 / 256))
    torch.testing.assert_close(data.latents[0], direct, atol=2e-3, rtol=2e-3)  # stored as float16
    train = torch.cat([data.latents[i] for i in data.split("train")], dim=1)
    np.testing.assert_allclose(data.info.mean, train.mean(1).numpy(), atol=1e-5)


def test_latent_dataset_is_keyed_and_normalised(setup):
    data = LatentSet(setup["latents"])
    ds = LatentDataset(data, data.split("train"), frames=40)
    a, b = ds[(0, 7)], ds[(0, 7)]
    assert torch.equal(a["latents"], b["latents"]) and a["text"] == b["text"]
    assert a["latents"].shape == (8, 40) and a["mask"].all()
    start = round(a["seconds_start"] * data.info.frame_rate)
    raw = data.latents[data.split("train")[0]][:, start : start + 40]
    expected = (raw - torch.tensor(data.info.mean)[:, None]) / torch.tensor(data.info.std)[:, None]
    torch.testing.assert_close(a["latents"], expected)
    padded = LatentDataset(data, data.split("train"), frames=100, random_crop=False)[(0, 0)]
    assert padded["mask"].sum() == 63 and (padded["latents"][:, 63:] == 0).all()


def test_training_logs_fixed_t_losses_and_writes_demos(setup):
    rows = [json.loads(line) for line in (setup["run"] / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r["split"] == "eval"]
    assert evals and all({"loss_t0.2", "loss_t0.5", "loss_t0.8"} <= set(r) for r in evals)
    assert all(math.isfinite(r["loss"]) for r in rows if r["split"] == "train")
    demos = sorted((setup["run"] / "demos").iterdir())
    assert [d.name for d in demos] == ["step-00000002", "step-00000004"]
    wavs = list(demos[-1].glob("*.wav"))
    audio, sr = sf.read(wavs[0], always_2d=True)
    assert len(wavs) == 1 and sr == 16000 and audio.shape == (16000, 2) and np.isfinite(audio).all()
    saved = json.loads((setup["run"] / "config.json").read_text())
    assert len(saved["model"]["latent_std"]) == 8  # the normalisation is part of the model config


def test_exported_model_is_self_contained(setup):
    names = {p.name for p in setup["model"].iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "autoencoder"} <= names
    pipe = TextToAudio.from_pretrained(setup["model"])
    assert pipe.sample_rate == 16000 and pipe.frame_rate == 62.5


@pytest.fixture(scope="module")
def pipe(setup):
    return TextToAudio.from_pretrained(setup["model"])


def test_generate_is_seeded_and_has_the_requested_length(pipe):
    kw = {"seconds_total": 0.5, "steps": 3, "sampler": "dpmpp-2m", "cfg_scale": 3.0}
    a, sr = pipe.generate(["a sine tone", "rain"], seed=1, **kw)
    b, _ = pipe.generate(["a sine tone", "rain"], seed=1, **kw)
    c, _ = pipe.generate(["a sine tone", "rain"], seed=2, **kw)
    assert sr == 16000 and a.shape == (2, 2, 8000) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    cut, _ = pipe.generate(["a sine tone"], seconds_total=0.5, seconds_start=0.25, seed=1, **{k: v for k, v in
                           kw.items() if k != "seconds_total"})  # fmt: skip
    assert cut.shape == (1, 2, 4000)


def test_only_the_needed_latent_frames_are_denoised(pipe, monkeypatch):
    seen = []
    forward = pipe.model.dit.forward
    monkeypatch.setattr(pipe.model.dit, "forward", lambda x, t, **kw: seen.append(x.shape[-1]) or forward(x, t, **kw))
    pipe.generate(["a bell"], seconds_total=0.3, steps=2, sampler="euler", cfg_scale=1.0)
    assert set(seen) == {math.ceil(0.3 * 62.5)}


def test_sde_samplers_and_negative_prompt_and_init_audio_run(pipe):
    for sampler in ("heun", "dpmpp-2m-sde", "dpmpp-3m-sde"):
        out, _ = pipe.generate(["wind"], seconds_total=0.25, steps=3, sampler=sampler, negative_prompt="noise")
        assert out.shape == (1, 2, 4000) and np.isfinite(out).all()
    init = (0.2 * np.sin(2 * np.pi * 440 * np.arange(8000) / 22050)).astype(np.float32)  # mono, other rate
    out, _ = pipe.generate(["a tone"], seconds_total=0.5, steps=3, init_audio=(init, 22050), init_noise_level=2.0)
    assert out.shape == (1, 2, 8000) and np.isfinite(out).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prompts": []}, "non-empty"),
        ({"prompts": [""]}, "empty"),
        ({"prompts": ["x" * 1001]}, "1000"),
        ({"seconds_total": -1.0}, "seconds_total"),
        ({"seconds_total": 1e6}, "seconds_total"),
        ({"steps": 0}, "steps"),
        ({"sampler": "ddim"}, "dpmpp-2m"),
        ({"batch": 0}, "batch"),
    ],
)
def test_bad_input_is_one_clear_error(pipe, kwargs, match):
    args = {"prompts": ["a tone"], "seconds_total": 0.25, "steps": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        pipe.generate(args.pop("prompts"), **args)


def test_nan_during_sampling_names_the_step(pipe, monkeypatch):
    calls = []

    def broken(x, t, **kw):
        calls.append(1)
        return torch.full_like(x, float("nan")) if len(calls) >= 3 else torch.zeros_like(x)

    monkeypatch.setattr(pipe.model.dit, "forward", broken)
    with pytest.raises(SamplingError, match="step 3 of 5"):
        pipe.generate(["a tone"], seconds_total=0.25, steps=5, sampler="euler", cfg_scale=1.0)


def test_missing_files_are_model_load_errors(setup, tmp_path):
    import shutil

    for name in ("model.safetensors", "tokenizer.json", "autoencoder"):
        broken = tmp_path / name
        shutil.copytree(setup["model"], broken)
        target = broken / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        with pytest.raises(ModelLoadError, match=name.split(".")[0]):
            TextToAudio.from_pretrained(broken)


def test_generate_cli(setup, tmp_path):
    model = str(setup["model"])
    common = ["--model", model, "--seconds", "0.5", "--steps", "2", "--no-progress"]
    assert main(["generate", "a sine tone", *common, "--out", str(tmp_path / "a.wav")]) == 0
    audio, sr = sf.read(tmp_path / "a.wav", always_2d=True)
    assert sr == 16000 and audio.shape == (8000, 2)
    (tmp_path / "p.txt").write_text("rain\n\nan organ chord\n")
    assert main(["generate", "--prompts", str(tmp_path / "p.txt"), *common, "--out", str(tmp_path / "many")]) == 0
    assert sorted(p.name for p in (tmp_path / "many").glob("*.wav")) == ["000.wav", "001.wav"]
    assert (tmp_path / "many" / "prompts.tsv").read_text().splitlines()[1] == "001.wav\tan organ chord"
    assert main(["generate", *common, "--out", str(tmp_path / "x.wav")]) == 2  # no prompt
    assert main(["generate", "x", *common, "--sampler", "nope", "--out", str(tmp_path / "y.wav")]) == 2


def test_generate_manifest_mode_feeds_adherence(setup, tmp_path):
    manifest = str(setup["manifest"])
    out = tmp_path / "gen"
    args = ["generate", "--manifest", manifest, "--split", "valid", "--model", str(setup["model"]), "--steps", "2",
            "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    from wavefoundry.data.manifest import read_manifest

    valid = [it for it in read_manifest(manifest) if it.split == "valid"]
    assert sorted(p.stem for p in out.glob("*.wav")) == sorted(it.id for it in valid)
    audio, sr = sf.read(out / f"{valid[0].id}.wav", always_2d=True)
    assert audio.shape == (round(valid[0].duration_s * sr), 2)
    report = tmp_path / "adherence.json"
    assert main(["eval", "adherence", manifest, "--split", "valid", "--audio-dir", str(out), "--out", str(report),
                 "--no-progress"]) == 0  # fmt: skip
    assert json.loads(report.read_text())["summary"]


def test_t2a_demo_writes_a_page(setup, tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "t2a", "--model", str(setup["model"]), "--steps", "2", "--out", str(out)]) == 0
    from wavefoundry.cli.demo import DEMO_PROMPTS

    html = (out / "index.html").read_text()
    assert len(list(out.glob("*.wav"))) == len(DEMO_PROMPTS) and html.count("<audio") == len(DEMO_PROMPTS)
    assert main(["demo", "t2a", "--model", str(tmp_path / "none"), "--out", str(out)]) == 2
