"""The masked task end to end on tiny models: encode a code set with a discrete codec, train, evaluate the
validation-perplexity grid, export, generate (plain, continuation, inpainting) through the pipeline and the CLI."""

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from wavefoundry.cli import main
from wavefoundry.codecs.autoencoder import Autoencoder, AutoencoderConfig
from wavefoundry.codecs.bottlenecks import BottleneckConfig, RVQConfig
from wavefoundry.codecs.oobleck import OobleckConfig
from wavefoundry.config import to_dict
from wavefoundry.data.codes import CodeDataset, CodeSet
from wavefoundry.data.synth import SynthConfig, generate_synthcaps
from wavefoundry.pipelines import ModelLoadError
from wavefoundry.pipelines.masked import MaskedAudioGen
from wavefoundry.train.export import load_autoencoder
from wavefoundry.train.masked import MaskedTask, stage_inputs
from wavefoundry.train.tasks import load_model

pytestmark = pytest.mark.xdist_group("masked")

TINY = [
    "model.transformer.dim=32", "model.transformer.n_layers=2", "model.transformer.n_heads=2",
    "model.transformer.ffn_dim=64", "model.transformer.max_frames=128", "model.transformer.n_codebooks=2",
    "model.transformer.codebook_size=32", "model.transformer.cond_dim=32", "model.decode.steps=[3,2]",
    "model.conditioner.cond_dim=32", "model.conditioner.text.dim=32", "model.conditioner.text.depth=1",
    "model.conditioner.text.heads=2", "model.conditioner.text.out_dim=32", "model.conditioner.text.max_length=24",
    "model.conditioner.fourier_dim=16", "data.seconds=1.0", "masking.eval_rates=[0.3,0.8]",
    "train.steps=4", "train.batch_size=4", "train.eval_every=2", "train.ckpt_every=2", "train.log_every=1",
    "train.progress=false", "train.tensorboard=false", "train.precision=fp32",
]  # fmt: skip


def _tiny_rvq(path):
    cfg = AutoencoderConfig(
        oobleck=OobleckConfig(sample_rate=16000, audio_channels=1, channels=4, c_mults=(1, 2, 4, 8),
                              strides=(2, 4, 4, 8), latent_dim=8, encoder_out_dim=8),
        bottleneck=BottleneckConfig(kind="rvq", rvq=RVQConfig(dim=8, codebook_size=32, num_quantizers=2)),
    )  # fmt: skip
    torch.manual_seed(0)
    model = Autoencoder(cfg)
    path.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"type": "autoencoder", "model": to_dict(cfg)}))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("masked")
    manifest = generate_synthcaps(
        root / "synth", SynthConfig(n_items=12, seconds=1.0, channels=1, valid_fraction=0.25), progress=False
    )
    codec = _tiny_rvq(root / "codec")
    assert main(["data", "encode", str(manifest), "--codec", str(codec), "--out", str(root / "codes"),
                 "--no-progress"]) == 0  # fmt: skip
    sets = [a for kv in [*TINY, f"data.codes={root / 'codes'}"] for a in ("--set", kv)]
    assert main(["train", "masked-tiny", *sets, "--out", str(root / "run")]) == 0
    assert main(["export", str(root / "run"), "--out", str(root / "model")]) == 0
    return {"root": root, "manifest": manifest, "codec": codec, "model": root / "model", "run": root / "run"}


def test_code_set_matches_the_codec(setup):
    data = CodeSet(setup["root"] / "codes")
    assert (data.info.n_codebooks, data.info.codebook_size, data.info.frame_rate) == (2, 32, 16000 / 256)
    codec = load_autoencoder(setup["codec"])
    audio, _ = sf.read(setup["manifest"].parent / data.items[0].path, always_2d=True)
    with torch.no_grad():
        direct = codec.encode(torch.from_numpy(audio.T.astype(np.float32))[None]).codes[0]
    assert torch.equal(data.codes[0], direct) and data.codes[0].shape == (2, math.ceil(16000 / 256))
    ds = CodeDataset(data, data.split("train"), frames=40)
    a, b = ds[(0, 7)], ds[(0, 7)]
    assert torch.equal(a["codes"], b["codes"]) and a["codes"].shape == (2, 40) and a["text"] == b["text"]


def test_stage_inputs_hide_the_right_codebooks():
    codes = torch.arange(3 * 6).view(1, 3, 6) % 5
    mask = torch.tensor([[True, False, True, False, False, True]])
    out = stage_inputs(codes, torch.tensor([1]), mask, mask_id=9)
    assert torch.equal(out[0, 0], codes[0, 0])  # coarser: visible
    assert torch.equal(out[0, 1], torch.where(mask[0], 9, codes[0, 1]))  # stage: masked where the mask says
    assert (out[0, 2] == 9).all()  # finer: fully masked


def test_training_logs_the_validation_grid(setup):
    lines = [json.loads(x) for x in (setup["run"] / "metrics.jsonl").read_text().splitlines()]
    evals = [x for x in lines if x["split"] == "eval"]
    assert [x["step"] for x in evals] == [2, 4]
    last = evals[-1]
    cells = [last[f"nll_g{g}_k{k}"] for g in ("0.3", "0.8") for k in (0, 1)]
    assert last["nll"] == pytest.approx(sum(cells) / 4, rel=1e-5)
    # a barely trained model is near uniform over 32 codes: perplexity exp(nll) close to 32
    assert 24 < math.exp(last["nll"]) < 40
    train = [x for x in lines if "mask_rate" in x]
    assert train and all(0 <= x["mask_rate"] <= 1 for x in train)


def test_validation_is_deterministic(setup):
    task, model = load_model(setup["run"])
    assert isinstance(task, MaskedTask)
    _, valid = task.datasets()
    batch = task.collate([valid[(i, 0)] for i in range(len(valid))])
    with torch.no_grad():
        a = task.loss_fn(model, batch)[1]
        b = task.loss_fn(model, batch)[1]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pipeline_generates_continues_and_inpaints(setup):
    pipe = MaskedAudioGen.from_pretrained(setup["model"])
    audio, sr = pipe.generate(["a sine wave", "noise"], seconds=0.5, seed=0)
    assert sr == 16000 and audio.shape == (2, 1, 8000) and np.isfinite(audio).all()
    again, _ = pipe.generate(["a sine wave", "noise"], seconds=0.5, seed=0)
    np.testing.assert_array_equal(audio, again)

    clip, clip_sr = sf.read(setup["manifest"].parent / CodeSet(setup["root"] / "codes").items[0].path)
    given = pipe.encode(clip[:4000], clip_sr)  # (K, frames of 0.25 s)
    seen = []
    pipe._decode_orig = pipe._decode

    def spy(*args):
        out = pipe._decode_orig(*args)
        seen.append(out)
        return out

    pipe._decode = spy
    pipe.generate(["continue"], seconds=0.75, prefix=(clip[:4000], clip_sr))
    assert torch.equal(seen[-1][0, :, : given.shape[1]], given)  # the prefix comes back exactly

    full = pipe.encode(clip, clip_sr)
    pipe.generate(["inpaint"], inpaint=(clip, clip_sr, 0.25, 0.5))
    out = seen[-1][0]
    lo, hi = math.floor(0.25 * pipe.frame_rate), math.ceil(0.5 * pipe.frame_rate)
    assert torch.equal(out[:, :lo], full[:, :lo]) and torch.equal(out[:, hi:], full[:, hi:])


def test_pipeline_bad_input(setup):
    pipe = MaskedAudioGen.from_pretrained(setup["model"])
    with pytest.raises(ValueError, match="longer than the requested duration"):
        pipe.generate(["x"], seconds=0.25, prefix=(np.zeros(8000, dtype=np.float32), 16000))
    with pytest.raises(ValueError, match="has 3 stages; this model has 2 codebooks"):
        pipe.generate(["x"], seconds=0.5, steps=(2, 2, 2))
    with pytest.raises(ValueError, match="one count >= 1 per codebook"):
        pipe.generate(["x"], seconds=0.5, steps=(2, 0))
    with pytest.raises(ValueError, match=r"seconds must be in \(0, "):
        pipe.generate(["x"], seconds=10.0)
    with pytest.raises(ValueError, match="inpainting range"):
        pipe.generate(["x"], inpaint=(np.zeros(16000, dtype=np.float32), 16000, 0.5, 2.0))
    with pytest.raises(ModelLoadError):
        MaskedAudioGen.from_pretrained(setup["codec"])  # an autoencoder directory, not a masked model


def test_cli_generate_dispatches_on_the_model_kind(setup, tmp_path, capsys):
    out = tmp_path / "a.wav"
    assert main(["generate", "a sine wave", "--model", str(setup["model"]), "--seconds", "0.5", "--stage-steps",
                 "2,1", "--no-progress", "--out", str(out)]) == 0  # fmt: skip
    audio, sr = sf.read(out)
    assert sr == 16000 and len(audio) == 8000
    bad = ["generate", "x", "--model", str(setup["model"]), "--seconds", "0.5", "--out", str(out)]
    assert main([*bad, "--stage-steps", "2,1,1"]) == 2
    assert "has 3 stages" in capsys.readouterr().err
    assert main([*bad, "--stage-steps", "2,x"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err


def test_code_set_rejects_bad_codes(tmp_path):
    from wavefoundry.data.codes import CodeInfo, write_code_set
    from wavefoundry.data.manifest import read_manifest

    manifest = generate_synthcaps(tmp_path / "s", SynthConfig(n_items=1, seconds=0.5, channels=1), progress=False)
    items = read_manifest(manifest)
    info = CodeInfo(codec="", sample_rate=16000, channels=1, hop_length=256, n_codebooks=2, codebook_size=32)
    with pytest.raises(ValueError, match=r"code ids outside \[0, 32\)"):
        write_code_set(tmp_path / "c", items, [np.full((2, 5), 32)], info)
    with pytest.raises(ValueError, match=r"expected \(2, L\)"):
        write_code_set(tmp_path / "c", items, [np.zeros((3, 5), dtype=np.int64)], info)
    with pytest.raises(FileNotFoundError, match="is not a code set"):
        CodeSet(tmp_path / "nothing")
