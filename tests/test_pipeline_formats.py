"""``TextToAudio.from_pretrained`` on outside layouts: one random tiny Stable Audio Open model written as a
stable-audio-tools folder, a diffusers folder and our exported directory generates the same audio from each."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from wavefoundry.config import to_dict
from wavefoundry.formats.stable_audio import (
    DIFFUSERS_WEIGHTS,
    SAO_CONFIG,
    SAO_WEIGHTS,
    write_diffusers,
    write_stable_audio,
)
from wavefoundry.pipelines import ModelLoadError, TextToAudio
from wavefoundry.train.diffusion import TextToAudioConfig

pytest.importorskip("transformers")
from tests.conditioning.t5_fixtures import make_tiny_t5
from tests.formats.test_formats_stable_audio import random_parts

SECONDS = 0.25  # 32 latent frames at 1024 Hz / hop 8
GENERATE = {"seconds_total": SECONDS, "steps": 3, "sampler": "euler", "cfg_scale": 3.0, "seed": 0}


def write_exported(parts, path: Path) -> Path:
    """``parts`` as a ``wavefoundry export`` directory (latent normalisation: mean 0, std = latent scale)."""
    C = parts.dit.io_channels
    cfg = TextToAudioConfig(dit=parts.dit, conditioner=parts.conditioner, latent_mean=[0.0] * C,
                            latent_std=[parts.latent_scale] * C)  # fmt: skip
    state = {f"dit.{k}": v for k, v in parts.dit_state.items()}
    state |= {f"conditioner.{k}": v for k, v in parts.conditioner_state.items()}
    (path / "autoencoder").mkdir(parents=True)
    save_file(state, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"type": "text-to-audio", "model": to_dict(cfg)}))
    save_file(parts.autoencoder_state, str(path / "autoencoder" / "model.safetensors"))
    config = {"type": "autoencoder", "model": to_dict(parts.autoencoder)}
    (path / "autoencoder" / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory) -> Path:
    return make_tiny_t5(tmp_path_factory.mktemp("t5"))


@pytest.fixture(scope="module")
def dirs(t5_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    parts = random_parts(t5_dir)
    return {
        "sao": write_stable_audio(parts, root / "sao"),
        "diffusers": write_diffusers(parts, root / "diffusers"),
        "ours": write_exported(parts, root / "ours"),
    }


def test_all_layouts_generate_the_same_audio(dirs, t5_dir):
    sao = TextToAudio.from_pretrained(dirs["sao"], t5_path=t5_dir)
    diffusers = TextToAudio.from_pretrained(dirs["diffusers"])  # its own copy of the T5
    assert not sao.cross_attention_mask and not diffusers.cross_attention_mask  # as Stable Audio Open attends
    audio, rate = sao.generate(["a dog"], **GENERATE)
    assert rate == 1024 and audio.shape == (1, 2, round(SECONDS * rate)) and audio.dtype == np.float32
    assert np.isfinite(audio).all() and audio.std() > 0
    assert np.array_equal(diffusers.generate(["a dog"], **GENERATE)[0], audio)
    ours = TextToAudio.from_pretrained(dirs["ours"])
    assert ours.cross_attention_mask  # our own models mask padded text tokens
    unmasked = TextToAudio(ours.model, ours.codec, cross_attention_mask=False)
    assert np.array_equal(unmasked.generate(["a dog"], **GENERATE)[0], audio)
    assert not np.array_equal(ours.generate(["a dog"], **GENERATE)[0], audio)  # the mask matters


def test_what_is_loaded_computes_what_diffusers_computes(dirs, tmp_path):
    """Conditioning, one DiT call and decoding of the pipeline loaded from the diffusers folder, against
    diffusers' StableAudioPipeline loaded from the same folder."""
    import shutil
    import warnings

    diffusers = pytest.importorskip("diffusers")
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    folder = shutil.copytree(dirs["diffusers"], tmp_path / "diffusers")
    index = json.loads((folder / "model_index.json").read_text())
    index["tokenizer"] = ["transformers", "PreTrainedTokenizerFast"]  # the tiny tokenizer is WordLevel, not T5's
    (folder / "model_index.json").write_text(json.dumps(index))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # diffusers' Oobleck uses the deprecated weight_norm
        ref = diffusers.StableAudioPipeline.from_pretrained(folder)
    pipe = TextToAudio.from_pretrained(folder)
    with torch.no_grad():
        cond = pipe.model.conditioner(["a dog", "loud rain"], 0.0, SECONDS)
        text = ref.encode_prompt(["a dog", "loud rain"], "cpu", False)  # (B, L, D), zero on padding
        start, end = ref.encode_duration(0.0, SECONDS, "cpu", False, 2)  # (B, 1, D) each
        torch.testing.assert_close(cond.cross, torch.cat([text, start, end], dim=1), atol=1e-5, rtol=0)
        torch.testing.assert_close(cond.global_cond, torch.cat([start, end], dim=2)[:, 0], atol=1e-5, rtol=0)
        g = torch.Generator().manual_seed(0)
        x, t = torch.randn(2, 8, 32, generator=g), torch.tensor([0.3, 0.8])
        rope = get_1d_rotary_pos_embed(ref.rotary_embed_dim, 33, use_real=True, repeat_interleave_real=False)
        theirs = ref.transformer(x, t, encoder_hidden_states=cond.cross, global_hidden_states=cond.global_cond[:, None],
                                 rotary_embedding=rope, return_dict=False)[0]  # fmt: skip
        ours = pipe.model.dit(x, t, cross=cond.cross, cross_mask=None, global_cond=cond.global_cond)
        assert theirs.abs().max() > 0.1
        torch.testing.assert_close(ours, theirs, atol=1e-5 * theirs.abs().max().item(), rtol=0)
        theirs = ref.vae.decode(x).sample
        torch.testing.assert_close(pipe.codec.decode(x), theirs, atol=1e-5 * theirs.abs().max().item(), rtol=0)


def test_the_prompt_and_seed_matter(dirs, t5_dir):
    pipe = TextToAudio.from_pretrained(dirs["sao"], t5_path=t5_dir)
    audio = pipe.generate(["a dog"], **GENERATE)[0]
    assert not np.array_equal(pipe.generate(["loud rain"], **GENERATE)[0], audio)
    assert not np.array_equal(pipe.generate(["a dog"], **(GENERATE | {"seed": 1}))[0], audio)


def test_latent_scale_becomes_the_latent_std(t5_dir, tmp_path):
    write_stable_audio(random_parts(t5_dir, latent_scale=2.5), tmp_path)
    pipe = TextToAudio.from_pretrained(tmp_path, t5_path=t5_dir)
    x = torch.randn(1, 8, 4)
    assert torch.equal(pipe.model.denormalize(x), x * 2.5)  # stable-audio-tools decodes z * scale
    assert torch.allclose(pipe.model.normalize(x), x / 2.5)


def test_a_folder_with_both_layouts_loads_as_diffusers(t5_dir, tmp_path):
    parts = random_parts(t5_dir)
    write_stable_audio(parts, tmp_path)
    write_diffusers(parts, tmp_path)  # as the Hugging Face repository: no T5 needed
    pipe = TextToAudio.from_pretrained(tmp_path)
    assert pipe.model.conditioner.cfg.t5_path == str(tmp_path / "text_encoder")


def test_t5_path_replaces_the_t5_of_an_exported_model(dirs, tmp_path):
    import shutil

    moved = shutil.copytree(dirs["diffusers"], tmp_path / "elsewhere")  # holds text_encoder/ + tokenizer/
    pipe = TextToAudio.from_pretrained(dirs["ours"], t5_path=moved)
    assert pipe.model.conditioner.cfg.t5_path == str(moved / "text_encoder")
    assert pipe.model.conditioner.cfg.t5_tokenizer_path == str(moved / "tokenizer")
    learned = shutil.copytree(dirs["ours"], tmp_path / "learned")
    config = json.loads((learned / "config.json").read_text())
    config["model"]["conditioner"]["text_encoder"] = "learned"
    (learned / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="t5_path was given but this model's text encoder is 'learned'"):
        TextToAudio.from_pretrained(learned, t5_path=moved)


def test_unknown_directories_say_what_was_expected(tmp_path):
    with pytest.raises(ModelLoadError, match="not a model directory"):
        TextToAudio.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match=r"expected config\.json .*model_index\.json .*model_config\.json"):
        TextToAudio.from_pretrained(tmp_path)


def test_stable_audio_needs_a_t5_path(dirs, tmp_path):
    with pytest.raises(ModelLoadError, match="pass t5_path"):
        TextToAudio.from_pretrained(dirs["sao"])
    with pytest.raises(ModelLoadError, match=r"T5 directory not found.*nowhere"):
        TextToAudio.from_pretrained(dirs["sao"], t5_path=tmp_path / "nowhere")


def test_missing_files_are_model_load_errors(dirs, t5_dir, tmp_path):
    import shutil

    sao = shutil.copytree(dirs["sao"], tmp_path / "sao")
    (sao / SAO_WEIGHTS).rename(sao / "model.ckpt")
    with pytest.raises(ModelLoadError, match="pickled checkpoints are not read"):
        TextToAudio.from_pretrained(sao, t5_path=t5_dir)
    (sao / "model.ckpt").unlink()
    with pytest.raises(ModelLoadError, match=f"no {SAO_WEIGHTS}"):
        TextToAudio.from_pretrained(sao, t5_path=t5_dir)
    for missing in (f"vae/{DIFFUSERS_WEIGHTS}", "transformer/config.json", "text_encoder/config.json"):
        broken = shutil.copytree(dirs["diffusers"], tmp_path / missing.replace("/", "-"))
        (broken / missing).unlink()
        with pytest.raises(ModelLoadError, match=f"missing .*{missing}"):
            TextToAudio.from_pretrained(broken)


def test_bad_weights_and_configs_are_model_load_errors(dirs, t5_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file

    sao = shutil.copytree(dirs["sao"], tmp_path / "sao")
    state = load_file(sao / SAO_WEIGHTS)
    del state["pretransform.model.decoder.layers.0.weight_g"]
    save_file(state, str(sao / SAO_WEIGHTS))
    with pytest.raises(ModelLoadError, match=r"missing keys: pretransform\.model\.decoder\.layers\.0\.weight_g"):
        TextToAudio.from_pretrained(sao, t5_path=t5_dir)
    (sao / SAO_CONFIG).write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        TextToAudio.from_pretrained(sao, t5_path=t5_dir)
