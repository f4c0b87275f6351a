"""Stable Audio Open conditioner weights: parity with diffusers at equal weights, round trips through both layouts."""

import json

import pytest
import torch
from safetensors.torch import save_file

from wavefoundry.conditioning import Conditioner, ConditionerConfig, LearnedTextEncoderConfig, WordTokenizer
from wavefoundry.conditioning.numbers import NumberConditioner
from wavefoundry.config import ConfigError
from wavefoundry.formats.errors import CheckpointMismatchError
from wavefoundry.formats.sao_conditioning import (
    SAO_PREFIX,
    config_from_diffusers,
    config_from_stable_audio,
    diffusers_key_map,
    from_diffusers,
    from_stable_audio,
    load_diffusers_folder,
    load_stable_audio,
    stable_audio_key_map,
    to_diffusers,
    to_stable_audio,
)

diffusers_sa = pytest.importorskip("diffusers.pipelines.stable_audio.modeling_stable_audio")
pytest.importorskip("transformers")
from tests.conditioning.t5_fixtures import make_tiny_t5  # noqa: E402

TEXT_DIM = 32  # the tiny T5's d_model


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return make_tiny_t5(tmp_path_factory.mktemp("t5"))


def ours(t5_dir, cond_dim: int) -> Conditioner:
    cfg = ConditionerConfig(text_encoder="t5", t5_path=str(t5_dir), t5_max_length=10, cond_dim=cond_dim)
    return Conditioner(cfg).eval()


def projection_model(cond_dim: int, seed: int = 0):
    torch.manual_seed(seed)
    return diffusers_sa.StableAudioProjectionModel(
        text_encoder_dim=TEXT_DIM, conditioning_dim=cond_dim, min_value=0, max_value=512
    ).eval()


def test_number_conditioner_matches_diffusers():
    torch.manual_seed(0)
    ref = diffusers_sa.StableAudioNumberConditioner(12, 0, 512, internal_dim=16).eval()
    mine = NumberConditioner(12, min_value=0, max_value=512, fourier_dim=16)
    # A standalone number conditioner: the same key map, without the conditioner's prefix.
    mine.load_state_dict(
        {
            "fourier.weights": ref.state_dict()["time_positional_embedding.0.weights"],
            "proj.weight": ref.state_dict()["time_positional_embedding.1.weight"],
            "proj.bias": ref.state_dict()["time_positional_embedding.1.bias"],
        }
    )
    x = torch.tensor([0.0, 1.5, 47.0, 511.9, 700.0, -2.0])
    with torch.no_grad():
        assert torch.allclose(mine(x), ref(x), atol=1e-6)


@pytest.mark.parametrize("cond_dim", [16, TEXT_DIM])
def test_conditioner_matches_the_diffusers_pipeline_maths(t5_dir, tmp_path, cond_dim):
    proj = projection_model(cond_dim)
    proj.save_pretrained(tmp_path / "projection_model")
    cond = load_diffusers_folder(tmp_path, ours(t5_dir, cond_dim))
    prompts, start, total = ["a rock drum beat", "pink noise at 9 bpm"], [0.0, 3.0], [30.0, 900.0]
    with torch.no_grad():
        got = cond(prompts, torch.tensor(start), torch.tensor(total))
        # StableAudioPipeline.encode_prompt / encode_duration and the concatenations of its __call__
        tok = cond.text.tokenizer(prompts, padding="max_length", max_length=10, truncation=True, return_tensors="pt")
        hidden = cond.text.t5(input_ids=tok.input_ids, attention_mask=tok.attention_mask).last_hidden_state
        mask = tok.attention_mask
        text = proj(text_hidden_states=hidden).text_hidden_states * mask.unsqueeze(-1)
        out = proj(start_seconds=torch.tensor(start), end_seconds=torch.tensor(total))
        s, e = out.seconds_start_hidden_states, out.seconds_end_hidden_states
        cross = torch.cat([text, s, e], dim=1)
        global_states = torch.cat([s, e], dim=2)  # (B, 1, 2 D): the DiT's global_hidden_states
    assert torch.allclose(got.cross, cross, atol=1e-5)
    assert torch.allclose(got.global_cond, global_states[:, 0], atol=1e-6)
    assert torch.equal(got.cross_mask[:, :10], mask.bool())
    cfg = config_from_diffusers(tmp_path, t5_path=str(t5_dir))
    assert (cfg.cond_dim, cfg.min_seconds, cfg.max_seconds, cfg.t5_path) == (cond_dim, 0.0, 512.0, str(t5_dir))


def test_key_names():
    keys = ["seconds_start.fourier.weights", "seconds_total.proj.bias", "text_proj.weight"]
    assert stable_audio_key_map(keys) == {
        "seconds_start.fourier.weights": "conditioner.conditioners.seconds_start.embedder.embedding.0.weights",
        "seconds_total.proj.bias": "conditioner.conditioners.seconds_total.embedder.embedding.1.bias",
        "text_proj.weight": "conditioner.conditioners.prompt.proj_out.weight",
    }
    assert diffusers_key_map(keys) == {
        "seconds_start.fourier.weights": "start_number_conditioner.time_positional_embedding.0.weights",
        "seconds_total.proj.bias": "end_number_conditioner.time_positional_embedding.1.bias",
        "text_proj.weight": "text_projection.weight",
    }
    with pytest.raises(KeyError, match="no counterpart"):
        stable_audio_key_map(["text.encoder.tok_emb.weight"])


@pytest.mark.parametrize("cond_dim", [16, TEXT_DIM])
def test_round_trips(t5_dir, cond_dim):
    cond = ours(t5_dir, cond_dim)
    theirs = projection_model(cond_dim).state_dict()
    mine = from_diffusers(theirs, cond)
    assert set(mine) == set(cond.state_dict())
    back = to_diffusers(mine, cond)
    assert back.keys() == theirs.keys() and all(torch.equal(back[k], theirs[k]) for k in theirs)
    sao = to_stable_audio(mine, cond)
    assert all(k.startswith(SAO_PREFIX) for k in sao)
    again = from_stable_audio({**sao, "model.model.other.weight": torch.zeros(1)}, cond)  # outside keys ignored
    assert all(torch.equal(again[k], mine[k]) for k in mine)


def test_sao_layout_agrees_with_the_diffusers_conversion_rules(t5_dir):
    """diffusers' convert_stable_audio.py renames conditioner keys by plain substitutions (no text projection)."""
    cond = ours(t5_dir, TEXT_DIM)
    theirs = projection_model(TEXT_DIM).state_dict()
    sao = to_stable_audio(from_diffusers(theirs, cond), cond)

    def rename(key: str) -> str:
        key = key.replace(SAO_PREFIX, "").replace("embedder.embedding", "time_positional_embedding")
        return key.replace("seconds_start", "start_number_conditioner").replace(
            "seconds_total", "end_number_conditioner"
        )

    converted = {rename(k): v for k, v in sao.items()}
    assert converted.keys() == theirs.keys() and all(torch.equal(converted[k], theirs[k]) for k in theirs)


def test_strictness(t5_dir):
    cond = ours(t5_dir, 16)
    theirs = projection_model(16).state_dict()
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: text_projection\.bias"):
        from_diffusers({k: v for k, v in theirs.items() if k != "text_projection.bias"}, cond)
    with pytest.raises(CheckpointMismatchError, match="wrong shapes"):
        from_diffusers({**theirs, "text_projection.weight": torch.zeros(16, 8)}, cond)
    with pytest.raises(CheckpointMismatchError, match="text projection is present in one"):
        from_diffusers(projection_model(TEXT_DIM).state_dict(), cond)
    sao = to_stable_audio(from_diffusers(theirs, cond), cond)
    with pytest.raises(CheckpointMismatchError, match="unexpected keys"):
        from_stable_audio({**sao, SAO_PREFIX + "prompt.extra": torch.zeros(1)}, cond)


def test_load_stable_audio_file_and_config(t5_dir, tmp_path):
    cond = ours(t5_dir, 16)
    sao = to_stable_audio(from_diffusers(projection_model(16, seed=5).state_dict(), cond), cond)
    path = tmp_path / "model.safetensors"
    save_file({**sao, "model.model.transformer.x": torch.ones(2)}, path)
    fresh = load_stable_audio(path, ours(t5_dir, 16))
    expected = from_stable_audio(sao, cond)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in expected.items())
    model_config = {
        "model": {
            "conditioning": {
                "cond_dim": 768,
                "configs": [
                    {"id": "prompt", "type": "t5", "config": {"t5_model_name": "t5-base", "max_length": 128}},
                    {"id": "seconds_start", "type": "number", "config": {"min_val": 0, "max_val": 512}},
                    {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 512}},
                ],
            }
        }
    }
    cfg = config_from_stable_audio(model_config, t5_path="/models/t5-base")
    assert (cfg.text_encoder, cfg.cond_dim, cfg.max_seconds, cfg.t5_max_length) == ("t5", 768, 512.0, 128)
    model_config["model"]["conditioning"]["configs"][2]["config"]["max_val"] = 256
    with pytest.raises(ConfigError, match="range"):
        config_from_stable_audio(model_config, t5_path="/models/t5-base")


def test_learned_text_encoder_cannot_load_sao_weights(t5_dir, tmp_path):
    sao_cond = ours(t5_dir, 16)
    sao = to_stable_audio(from_diffusers(projection_model(16).state_dict(), sao_cond), sao_cond)
    path = tmp_path / "model.safetensors"
    save_file(sao, path)
    text = LearnedTextEncoderConfig(vocab_size=32, dim=32, depth=1, heads=4, max_length=8, out_dim=TEXT_DIM)
    learned = Conditioner(
        ConditionerConfig(text=text, cond_dim=16), tokenizer=WordTokenizer.build(["a rock drum beat"])
    )
    before = {k: v.clone() for k, v in learned.state_dict().items()}
    with pytest.raises(ConfigError, match=r"text\.encoder"):
        load_stable_audio(path, learned)
    assert all(torch.equal(before[k], v) for k, v in learned.state_dict().items())  # nothing loaded


def test_config_from_diffusers_folder(tmp_path):
    (tmp_path / "projection_model").mkdir()
    (tmp_path / "projection_model" / "config.json").write_text(
        json.dumps(
            {
                "_class_name": "StableAudioProjectionModel",
                "conditioning_dim": 768,
                "min_value": 0,
                "max_value": 512,
                "text_encoder_dim": 768,
            }
        )
    )
    cfg = config_from_diffusers(tmp_path)
    assert cfg.t5_path == str(tmp_path / "text_encoder") and cfg.t5_tokenizer_path == str(tmp_path / "tokenizer")
    assert (cfg.cond_dim, cfg.min_seconds, cfg.max_seconds) == (768, 0.0, 512.0)
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        config_from_diffusers(tmp_path / "nowhere")
