"""Whole Stable Audio Open checkpoints: random tiny models written in the stable-audio-tools and diffusers layouts
read back exactly, diffusers' own classes load the written folder strictly, and bad folders fail clearly."""

import dataclasses
import inspect
import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wavefoundry.codecs.autoencoder import Autoencoder, AutoencoderConfig
from wavefoundry.codecs.bottlenecks import BottleneckConfig, VAEConfig
from wavefoundry.codecs.oobleck import OobleckConfig, oobleck_sao
from wavefoundry.conditioning import Conditioner, ConditionerConfig
from wavefoundry.config import ConfigError
from wavefoundry.diffusion.dit import DiT, DiTConfig, dit_sao
from wavefoundry.formats.errors import CheckpointMismatchError
from wavefoundry.formats.stable_audio import (
    DIFFUSERS_WEIGHTS,
    SAO_CONFIG,
    SAO_WEIGHTS,
    StableAudioParts,
    config_to_stable_audio,
    configs_from_stable_audio,
    read_diffusers,
    read_stable_audio,
    write_diffusers,
    write_stable_audio,
)

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")
from tests.conditioning.t5_fixtures import make_tiny_t5  # noqa: E402

# Stable Audio Open's shapes, shrunk: diffusers ties the VAE width to 2 x latent_dim, and both layouts rotate
# max(head_dim // 2, 32) = head_dim // 2 features only for heads of 64 or more.
OOBLECK = OobleckConfig(sample_rate=1024, channels=16, c_mults=(1, 2), strides=(2, 4), latent_dim=8, encoder_out_dim=16)
DIT = DiTConfig(
    io_channels=8, embed_dim=64, depth=2, num_heads=1, cond_token_dim=64, global_cond_dim=128, rotary_dim=32
)
COND_DIM = 64  # the tiny T5 is 32 wide: the conditioner has a text projection


def randomized(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The module's state after adding noise to every parameter (zero-initialised ones included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return {k: v.clone() for k, v in module.state_dict().items()}


def random_parts(t5_dir: Path, *, latent_scale: float = 1.0, seed: int = 0) -> StableAudioParts:
    """A random tiny Stable Audio Open model in our names."""
    cond = ConditionerConfig(text_encoder="t5", t5_path=str(t5_dir), cond_dim=COND_DIM)
    ae = AutoencoderConfig(oobleck=OOBLECK, bottleneck=BottleneckConfig(kind="vae", vae=VAEConfig(latent_dim=8)))
    return StableAudioParts(
        dit=DIT,
        dit_state=randomized(DiT(DIT), seed),
        conditioner=cond,
        conditioner_state=randomized(Conditioner(cond), seed + 1),
        autoencoder=ae,
        autoencoder_state=randomized(Autoencoder(ae), seed + 2),
        latent_scale=latent_scale,
    )


def assert_parts_equal(a: StableAudioParts, b: StableAudioParts) -> None:
    for name in ("dit", "conditioner", "autoencoder", "latent_scale"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("dit_state", "conditioner_state", "autoencoder_state"):
        sa, sb = getattr(a, name), getattr(b, name)
        assert sa.keys() == sb.keys(), name
        for k in sa:
            assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), f"{name}: {k}"


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory) -> Path:
    return make_tiny_t5(tmp_path_factory.mktemp("t5"))


@pytest.fixture(scope="module")
def parts(t5_dir) -> StableAudioParts:
    return random_parts(t5_dir)


# --- stable-audio-tools ------------------------------------------------------------------------------------------


def test_stable_audio_round_trip_is_exact(parts, t5_dir, tmp_path):
    write_stable_audio(parts, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([SAO_CONFIG, SAO_WEIGHTS])
    assert_parts_equal(read_stable_audio(tmp_path, t5_path=t5_dir), parts)


def test_stable_audio_layout_is_the_official_one(parts, tmp_path):
    write_stable_audio(parts, tmp_path)
    state = load_file(tmp_path / SAO_WEIGHTS)
    prefixes = ("model.model.", "conditioner.conditioners.", "pretransform.model.")
    assert all(k.startswith(prefixes) for k in state)
    for key, shape in {
        "model.model.transformer.layers.1.self_attn.to_qkv.weight": (192, 64),
        "model.model.transformer.layers.0.cross_attn.to_kv.weight": (128, 64),
        "model.model.timestep_features.weight": (128, 1),
        "conditioner.conditioners.prompt.proj_out.weight": (COND_DIM, 32),
        "conditioner.conditioners.seconds_total.embedder.embedding.1.weight": (COND_DIM, 257),
        "pretransform.model.encoder.layers.0.weight_v": (16, 2, 7),
        "pretransform.model.encoder.layers.4.weight_v": (16, 32, 3),
        "pretransform.model.decoder.layers.0.weight_v": (32, 8, 7),
        "pretransform.model.decoder.layers.2.layers.1.weight_v": (16, 16, 4),
        "pretransform.model.decoder.layers.4.weight_v": (2, 16, 7),
    }.items():
        assert tuple(state[key].shape) == shape, key
    config = json.loads((tmp_path / SAO_CONFIG).read_text())
    assert config["model_type"] == "diffusion_cond" and config["sample_rate"] == 1024
    diffusion = config["model"]["diffusion"]
    assert diffusion["cross_attention_cond_ids"] == ["prompt", "seconds_start", "seconds_total"]
    assert diffusion["global_cond_ids"] == ["seconds_start", "seconds_total"]
    assert "scale" not in config["model"]["pretransform"]


def test_latent_scale_is_the_pretransform_scale(t5_dir, tmp_path):
    parts = random_parts(t5_dir, latent_scale=2.5)
    write_stable_audio(parts, tmp_path / "sao")
    config = json.loads((tmp_path / "sao" / SAO_CONFIG).read_text())
    assert config["model"]["pretransform"]["scale"] == 2.5
    assert read_stable_audio(tmp_path / "sao", t5_path=t5_dir).latent_scale == 2.5
    with pytest.raises(ConfigError, match="latent_scale"):  # diffusers decodes latents unscaled
        write_diffusers(parts, tmp_path / "diffusers")
    assert not (tmp_path / "diffusers").exists()


def test_t5_path_may_be_a_diffusers_download(parts, t5_dir, tmp_path):
    write_diffusers(parts, tmp_path / "diffusers")
    write_stable_audio(parts, tmp_path / "sao")
    read = read_stable_audio(tmp_path / "sao", t5_path=tmp_path / "diffusers")
    assert read.conditioner.t5_path == str(tmp_path / "diffusers" / "text_encoder")
    assert read.conditioner.t5_tokenizer_path == str(tmp_path / "diffusers" / "tokenizer")
    assert torch.equal(read.conditioner_state["text_proj.weight"], parts.conditioner_state["text_proj.weight"])


def official_model_config() -> dict:
    """Stable Audio Open 1.0's ``model_config.json`` without its training section."""
    shape = {"channels": 128, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8], "use_snake": True}
    numbers = {"min_val": 0, "max_val": 512}
    return {
        "model_type": "diffusion_cond",
        "sample_size": 2097152,
        "sample_rate": 44100,
        "audio_channels": 2,
        "model": {
            "pretransform": {
                "type": "autoencoder",
                "iterate_batch": True,
                "config": {
                    "encoder": {"type": "oobleck", "requires_grad": False,
                                "config": {"in_channels": 2, **shape, "latent_dim": 128}},
                    "decoder": {"type": "oobleck",
                                "config": {"out_channels": 2, **shape, "latent_dim": 64, "final_tanh": False}},
                    "bottleneck": {"type": "vae"},
                    "latent_dim": 64,
                    "downsampling_ratio": 2048,
                    "io_channels": 2,
                },
            },
            "conditioning": {
                "configs": [
                    {"id": "prompt", "type": "t5", "config": {"t5_model_name": "t5-base", "max_length": 128}},
                    {"id": "seconds_start", "type": "number", "config": numbers},
                    {"id": "seconds_total", "type": "number", "config": numbers},
                ],
                "cond_dim": 768,
            },
            "diffusion": {
                "cross_attention_cond_ids": ["prompt", "seconds_start", "seconds_total"],
                "global_cond_ids": ["seconds_start", "seconds_total"],
                "type": "dit",
                "config": {"io_channels": 64, "embed_dim": 1536, "depth": 24, "num_heads": 24, "cond_token_dim": 768,
                           "global_cond_dim": 1536, "project_cond_tokens": False,
                           "transformer_type": "continuous_transformer"},
            },
            "io_channels": 64,
        },
    }  # fmt: skip


def test_the_released_config_reads_as_our_presets_and_writes_back(tmp_path):
    official = official_model_config()
    parts = configs_from_stable_audio(official, t5_path=tmp_path)  # configs only: no T5 is loaded
    assert parts.dit == dataclasses.replace(dit_sao(), rotary_dim=32)
    assert parts.autoencoder.oobleck == oobleck_sao() and parts.latent_scale == 1.0
    c = parts.conditioner
    assert (c.cond_dim, c.t5_max_length, c.fourier_dim, c.min_seconds, c.max_seconds) == (768, 128, 256, 0, 512)
    assert config_to_stable_audio(parts) == official


# --- diffusers -----------------------------------------------------------------------------------------------------


def test_diffusers_round_trip_is_exact(parts, t5_dir, tmp_path):
    write_diffusers(parts, tmp_path)
    folders = ["projection_model", "scheduler", "text_encoder", "tokenizer", "transformer", "vae"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model_index.json", *folders])
    assert_parts_equal(read_diffusers(tmp_path, t5_path=t5_dir), parts)
    own = read_diffusers(tmp_path)  # the copied T5
    assert own.conditioner.t5_path == str(tmp_path / "text_encoder")
    assert own.conditioner.t5_tokenizer_path == str(tmp_path / "tokenizer")
    mine = dataclasses.replace(own.conditioner, t5_path=parts.conditioner.t5_path, t5_tokenizer_path=None)
    assert_parts_equal(dataclasses.replace(own, conditioner=mine), parts)


def test_diffusers_classes_load_the_folder_strictly(parts, tmp_path):
    from diffusers.pipelines.stable_audio import StableAudioProjectionModel

    write_diffusers(parts, tmp_path)
    classes = {
        "transformer": diffusers.StableAudioDiTModel,
        "vae": diffusers.AutoencoderOobleck,
        "projection_model": StableAudioProjectionModel,
    }
    for folder, cls in classes.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # diffusers' Oobleck uses the deprecated weight_norm
            model, info = cls.from_pretrained(tmp_path / folder, output_loading_info=True)
        assert not any(info.values()), (folder, info)  # no missing, unexpected or mismatched keys
        written = load_file(tmp_path / folder / DIFFUSERS_WEIGHTS)
        loaded = model.state_dict()
        assert loaded.keys() == written.keys(), folder
        assert all(torch.equal(loaded[k], written[k]) for k in written), folder
    index = json.loads((tmp_path / "model_index.json").read_text())
    components = {k: v for k, v in index.items() if not k.startswith("_")}
    assert index["_class_name"] == "StableAudioPipeline"
    assert set(components) == set(inspect.signature(diffusers.StableAudioPipeline.__init__).parameters) - {"self"}
    assert all((tmp_path / name).is_dir() for name in components)
    assert components["transformer"] == ["diffusers", "StableAudioDiTModel"]
    assert components["tokenizer"] == ["transformers", "T5TokenizerFast"]


def test_diffusers_pipeline_loads_the_folder(parts, tmp_path):
    write_diffusers(parts, tmp_path)
    # The tiny tokenizer is WordLevel, which T5TokenizerFast (right for a real T5) cannot load.
    index = json.loads((tmp_path / "model_index.json").read_text())
    index["tokenizer"] = ["transformers", "PreTrainedTokenizerFast"]
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        pipe = diffusers.StableAudioPipeline.from_pretrained(tmp_path)
    assert pipe.tokenizer.model_max_length == parts.conditioner.t5_max_length
    assert pipe.transformer.config.attention_head_dim // 2 == DIT.rot_dim  # the rotary dim diffusers will use


def test_diffusers_tokenizer_length_is_kept(t5_dir, tmp_path):
    parts = random_parts(t5_dir)
    parts.conditioner = dataclasses.replace(parts.conditioner, t5_max_length=16)
    write_diffusers(parts, tmp_path)
    assert read_diffusers(tmp_path).conditioner.t5_max_length == 16
    with pytest.raises(ConfigError, match="t5_max_length"):  # without the tokenizer nothing records it
        write_diffusers(parts, tmp_path / "bare", copy_t5=False)


# --- refusals ------------------------------------------------------------------------------------------------------


def test_pickles_are_refused(parts, t5_dir, tmp_path):
    write_stable_audio(parts, tmp_path)
    (tmp_path / SAO_WEIGHTS).rename(tmp_path / "model.ckpt")
    with pytest.raises(ValueError, match=r"model\.ckpt.*pickled checkpoints are not read"):
        read_stable_audio(tmp_path, t5_path=t5_dir)


def test_missing_files_are_named(parts, t5_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=SAO_CONFIG):
        read_stable_audio(tmp_path, t5_path=t5_dir)
    write_stable_audio(parts, tmp_path / "sao")
    (tmp_path / "sao" / SAO_WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match=f"no {SAO_WEIGHTS}"):
        read_stable_audio(tmp_path / "sao", t5_path=t5_dir)
    with pytest.raises(FileNotFoundError, match=r"model_index\.json"):
        read_diffusers(tmp_path)
    d = write_diffusers(parts, tmp_path / "diffusers")
    (d / "vae" / DIFFUSERS_WEIGHTS).unlink()
    (d / "text_encoder" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"vae/diffusion_pytorch_model\.safetensors.*text_encoder/config\.json"):
        read_diffusers(d)


def test_bad_t5_path_is_named(parts, tmp_path):
    write_stable_audio(parts, tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_stable_audio(tmp_path, t5_path=tmp_path / "nowhere")


def test_weights_that_do_not_fit_are_refused(parts, t5_dir, tmp_path):
    write_stable_audio(parts, tmp_path)
    state = load_file(tmp_path / SAO_WEIGHTS)
    save_file(state | {"model_ema.model.foo": torch.zeros(1)}, tmp_path / SAO_WEIGHTS)
    with pytest.raises(CheckpointMismatchError, match=r"keys outside.*model_ema\.model\.foo"):
        read_stable_audio(tmp_path, t5_path=t5_dir)
    del state["model.model.transformer.layers.1.ff.ff.2.bias"]
    save_file(state, tmp_path / SAO_WEIGHTS)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: .*layers\.1\.ff\.ff\.2\.bias"):
        read_stable_audio(tmp_path, t5_path=t5_dir)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c.update(model_type="autoencoder"), "diffusion_cond"),
        (lambda c: c["model"]["diffusion"].update(global_cond_ids=["seconds_total"]), "wiring"),
        (lambda c: c["model"]["diffusion"].update(diffusion_objective="rectified_flow"), "wiring"),
        (lambda c: c["model"]["pretransform"]["config"]["bottleneck"].update(type="rvq"), "vae"),
    ],
)
def test_unsupported_configs_are_refused(parts, t5_dir, tmp_path, edit, match):
    write_stable_audio(parts, tmp_path)
    config = json.loads((tmp_path / SAO_CONFIG).read_text())
    edit(config)
    (tmp_path / SAO_CONFIG).write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=match):
        read_stable_audio(tmp_path, t5_path=t5_dir)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("dit", dataclasses.replace(DIT, rotary_dim=16), "rot"),
        ("conditioner", None, "fourier_dim"),
        ("autoencoder", None, "final_tanh"),
    ],
)
def test_inexpressible_models_are_refused_before_writing(t5_dir, tmp_path, field, value, match):
    parts = random_parts(t5_dir)
    if field == "conditioner":
        value = dataclasses.replace(parts.conditioner, fourier_dim=8)
    if field == "autoencoder":
        value = dataclasses.replace(parts.autoencoder, oobleck=dataclasses.replace(OOBLECK, final_tanh=True))
    setattr(parts, field, value)
    layouts = (write_diffusers,) if field == "autoencoder" else (write_stable_audio, write_diffusers)
    for write in layouts:  # stable-audio-tools keeps final_tanh; diffusers does not
        with pytest.raises(ConfigError, match=match):
            write(parts, tmp_path / write.__name__)
        assert not (tmp_path / write.__name__).exists()


def test_parts_must_fit_together(parts):
    with pytest.raises(ConfigError, match="io_channels"):
        dataclasses.replace(parts, dit=dataclasses.replace(DIT, io_channels=4))
    learned = dataclasses.replace(parts.conditioner, text_encoder="learned")
    with pytest.raises(ConfigError, match="T5"):
        dataclasses.replace(parts, conditioner=learned)
    with pytest.raises(ConfigError, match="latent_scale"):
        dataclasses.replace(parts, latent_scale=0.0)
