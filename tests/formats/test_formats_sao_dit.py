"""DiT checkpoint conversion: stable-audio-tools and diffusers layouts, round trips and strict errors.

The diffusers direction is also checked numerically by the parity tests in tests/diffusion/test_dit.py.
"""

import dataclasses
import inspect

import pytest
import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from tests.diffusion.dit_fixtures import TINY_DIT
from wavefoundry.config import ConfigError
from wavefoundry.diffusion.dit import DiT, DiTConfig, dit_sao
from wavefoundry.formats.sao_dit import (
    SAO_PREFIX,
    CheckpointMismatchError,
    config_from_diffusers,
    config_from_stable_audio,
    config_to_diffusers,
    diffusers_key_map,
    dit_from_diffusers,
    dit_from_sao,
    dit_to_diffusers,
    dit_to_sao,
    our_keys,
    sao_key_map,
)
from wavefoundry.nn.rope import rope_inv_freq

CFG = TINY_DIT


def random_state(cfg: DiTConfig = CFG, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = DiT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape))
    return model.state_dict()


def assert_states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --- round trips ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [None, CFG])
@pytest.mark.parametrize("prefix", [SAO_PREFIX, ""])
def test_sao_round_trip_is_exact(cfg, prefix):
    ours = random_state()
    sao = dit_to_sao(ours, prefix, cfg)
    assert_states_equal(dit_from_sao(sao, prefix, cfg), ours)


def test_sao_defaults_are_the_full_checkpoint_layout():
    ours = random_state()
    sao = dit_to_sao(ours)
    assert all(k.startswith(SAO_PREFIX) for k in sao)
    assert_states_equal(dit_from_sao(sao), ours)


@pytest.mark.parametrize("cfg", [None, CFG])
def test_diffusers_round_trip_is_exact(cfg):
    ours = random_state()
    assert_states_equal(dit_from_diffusers(dit_to_diffusers(ours, cfg), cfg), ours)


def test_our_keys_are_the_models():
    assert sorted(DiT(CFG).state_dict()) == sorted(our_keys(CFG.depth))
    assert set(sao_key_map(2)) == set(diffusers_key_map(2)) == set(our_keys(2))


# --- the outside layouts -------------------------------------------------------------------------------------------


def test_sao_names_and_shapes():
    sao = dit_to_sao(random_state(), SAO_PREFIX, CFG)
    p, layer = SAO_PREFIX, SAO_PREFIX + "transformer.layers.1."
    D, Dc, H = CFG.embed_dim, CFG.cond_token_dim, CFG.ff_mult * CFG.embed_dim
    expected = {
        p + "timestep_features.weight": (CFG.timestep_features_dim // 2, 1),
        p + "to_timestep_embed.0.weight": (D, CFG.timestep_features_dim),
        p + "to_timestep_embed.2.bias": (D,),
        p + "to_global_embed.0.weight": (D, CFG.global_cond_dim),
        p + "to_cond_embed.2.weight": (Dc, Dc),
        p + "preprocess_conv.weight": (CFG.io_channels, CFG.io_channels, 1),
        p + "postprocess_conv.weight": (CFG.io_channels, CFG.io_channels, 1),
        p + "transformer.project_in.weight": (D, CFG.io_channels),
        p + "transformer.project_out.weight": (CFG.io_channels, D),
        p + "transformer.rotary_pos_emb.inv_freq": (CFG.rot_dim // 2,),
        layer + "pre_norm.gamma": (D,),
        layer + "pre_norm.beta": (D,),
        layer + "self_attn.to_qkv.weight": (3 * D, D),
        layer + "self_attn.to_out.weight": (D, D),
        layer + "cross_attend_norm.gamma": (D,),
        layer + "cross_attn.to_q.weight": (D, D),
        layer + "cross_attn.to_kv.weight": (2 * Dc, Dc),
        layer + "cross_attn.to_out.weight": (D, D),
        layer + "ff_norm.beta": (D,),
        layer + "ff.ff.0.proj.weight": (2 * H, D),
        layer + "ff.ff.0.proj.bias": (2 * H,),
        layer + "ff.ff.2.weight": (D, H),
        layer + "ff.ff.2.bias": (D,),
    }
    for key, shape in expected.items():
        assert tuple(sao[key].shape) == shape, key
    assert len(sao) == 13 + 1 + CFG.depth * 15  # 12 parameters + 3 beta buffers per layer, inv_freq
    assert not sao[layer + "pre_norm.beta"].any()
    torch.testing.assert_close(sao[p + "transformer.rotary_pos_emb.inv_freq"], rope_inv_freq(8))


def diffusers_script_conversion(sao: dict) -> dict:
    """diffusers' scripts/convert_stable_audio.py renaming rules, re-stated: the independent reference for our map.

    One addition: the script leaves ``timestep_features.weight`` named as is, while ``StableAudioDiTModel`` calls it
    ``time_proj.weight``.
    """
    out = {}
    for key, value in sao.items():
        if not key.startswith(SAO_PREFIX) or key.endswith("inv_freq"):
            continue
        new = key.removeprefix(SAO_PREFIX)
        for a, b in [
            ("transformer.", ""),
            ("layers", "transformer_blocks"),
            ("self_attn", "attn1"),
            ("cross_attn", "attn2"),
            ("ff.ff", "ff.net"),
            ("pre_norm", "norm1"),
            ("cross_attend_norm", "norm2"),
            ("ff_norm", "norm3"),
            ("to_out", "to_out.0"),
            ("gamma", "weight"),
            ("beta", "bias"),
            ("project", "proj"),
            ("to_timestep_embed", "timestep_proj"),
            ("to_global_embed", "global_proj"),
            ("to_cond_embed", "cross_attention_proj"),
            ("timestep_features", "time_proj"),
        ]:
            new = new.replace(a, b)
        if new == "time_proj.weight":
            value = value.squeeze(1)
        if "to_qkv" in new:
            out |= dict(zip([new.replace("qkv", c) for c in "qkv"], value.chunk(3, dim=0)))
        elif "to_kv" in new:
            out |= dict(zip([new.replace("kv", c) for c in "kv"], value.chunk(2, dim=0)))
        else:
            out[new] = value
    return out


def test_sao_layout_agrees_with_diffusers_conversion_script():
    ours = random_state()
    via_sao = diffusers_script_conversion(dit_to_sao(ours, SAO_PREFIX, CFG))
    assert_states_equal(dict(sorted(via_sao.items())), dict(sorted(dit_to_diffusers(ours, CFG).items())))


def test_diffusers_state_loads_into_diffusers():
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.StableAudioDiTModel(**{k: v for k, v in config_to_diffusers(CFG).items() if k[0] != "_"})
    theirs = dit_to_diffusers(random_state(), CFG)
    assert set(theirs) == set(ref.state_dict())
    ref.load_state_dict(theirs, strict=True)
    assert_states_equal(dit_from_diffusers(ref.state_dict(), CFG), random_state())


def test_exports_save_as_safetensors():
    # Split projections must not share storage, which safetensors refuses.
    theirs = dit_to_diffusers(random_state(), CFG)
    assert_states_equal(safetensors_load(safetensors_save(theirs)), theirs)
    sao = dit_to_sao(random_state(), SAO_PREFIX, CFG)
    assert_states_equal(safetensors_load(safetensors_save(sao)), sao)


def test_sao_import_scopes_to_prefix_and_allows_missing_buffers():
    sao = dit_to_sao(random_state(), SAO_PREFIX, CFG)
    sao = {k: v for k, v in sao.items() if not k.endswith(("beta", "inv_freq"))}
    sao["conditioner.conditioners.prompt.proj.weight"] = torch.zeros(3)  # the rest of a full checkpoint
    sao["pretransform.model.encoder.layers.0.weight_v"] = torch.zeros(3)
    assert_states_equal(dit_from_sao(sao, cfg=CFG), random_state())


# --- strict errors -------------------------------------------------------------------------------------------------


def test_missing_and_unexpected_keys_raise():
    sao = dit_to_sao(random_state(), SAO_PREFIX)
    del sao[SAO_PREFIX + "transformer.layers.0.self_attn.to_qkv.weight"]
    sao[SAO_PREFIX + "transformer.layers.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: .*to_qkv\.weight.*unexpected keys: .*extra"):
        dit_from_sao(sao)
    theirs = dit_to_diffusers(random_state())
    del theirs["transformer_blocks.1.attn2.to_v.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"attn2\.to_v\.weight"):
        dit_from_diffusers(theirs)
    ours = random_state()
    ours["blocks.0.unknown"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys: blocks\.0\.unknown"):
        dit_to_diffusers(ours)


def test_depth_mismatch_with_cfg_raises():
    sao = dit_to_sao(random_state(), SAO_PREFIX)
    with pytest.raises(CheckpointMismatchError, match=r"transformer\.layers\.2"):
        dit_from_sao(sao, cfg=dataclasses.replace(CFG, depth=3))


def test_wrong_shapes_raise_with_cfg():
    theirs = dit_to_diffusers(random_state())
    with pytest.raises(CheckpointMismatchError, match="wrong shapes"):
        dit_from_diffusers(theirs, dataclasses.replace(CFG, embed_dim=128, num_heads=8))
    with pytest.raises(CheckpointMismatchError, match="wrong shapes"):
        dit_to_sao(random_state(), cfg=dataclasses.replace(CFG, ff_mult=2))


def test_nonzero_norm_biases_raise():
    theirs = dit_to_diffusers(random_state())
    theirs["transformer_blocks.0.norm2.bias"] += 0.1
    with pytest.raises(CheckpointMismatchError, match=r"non-zero: transformer_blocks\.0\.norm2\.bias"):
        dit_from_diffusers(theirs)
    sao = dit_to_sao(random_state(), SAO_PREFIX)
    sao[SAO_PREFIX + "transformer.layers.1.ff_norm.beta"] += 1.0
    with pytest.raises(CheckpointMismatchError, match=r"ff_norm\.beta"):
        dit_from_sao(sao)


def test_other_rotary_frequencies_raise():
    sao = dit_to_sao(random_state(), SAO_PREFIX, CFG)
    sao[SAO_PREFIX + "transformer.rotary_pos_emb.inv_freq"] = rope_inv_freq(8, base=500.0)
    with pytest.raises(CheckpointMismatchError, match="rotary"):
        dit_from_sao(sao)
    sao[SAO_PREFIX + "transformer.rotary_pos_emb.inv_freq"] = rope_inv_freq(16)
    with pytest.raises(CheckpointMismatchError, match="rotary"):
        dit_from_sao(sao, cfg=CFG)  # 8 frequencies: rotary dim 16, but CFG rotates 8


def test_wrong_prefix_hints():
    bare = dit_to_sao(random_state(), "")
    with pytest.raises(CheckpointMismatchError, match="prefix=''"):
        dit_from_sao(bare)


def test_unequal_split_parts_raise():
    theirs = dit_to_diffusers(random_state())
    theirs["transformer_blocks.0.attn1.to_k.weight"] = torch.zeros(3, 64)
    with pytest.raises(CheckpointMismatchError, match="equal shapes"):
        dit_from_diffusers(theirs)


# --- configs -------------------------------------------------------------------------------------------------------


def test_diffusers_config_round_trip():
    for cfg in (CFG, dataclasses.replace(CFG, project_cond_tokens=True), dataclasses.replace(dit_sao(), depth=3)):
        assert config_from_diffusers(config_to_diffusers(cfg)) == dataclasses.replace(cfg, rotary_dim=cfg.rot_dim)
    # diffusers' constructor defaults are Stable Audio Open's; a config.json may leave any of them out.
    diffusers = pytest.importorskip("diffusers")
    params = inspect.signature(diffusers.StableAudioDiTModel.__init__).parameters
    defaults = {k: p.default for k, p in params.items() if k not in ("self", "sample_size")}
    assert config_from_diffusers(defaults) == config_from_diffusers({}) == dataclasses.replace(dit_sao(), rotary_dim=32)


def test_diffusers_config_rejects_what_it_cannot_express():
    with pytest.raises(ConfigError, match="rot_dim"):
        config_to_diffusers(dataclasses.replace(CFG, rotary_dim=16))
    with pytest.raises(ConfigError, match="StableAudioDiTModel"):
        config_from_diffusers({"_class_name": "UNet2DModel"})
    with pytest.raises(ConfigError, match="not expressible"):
        config_from_diffusers({"in_channels": 64, "out_channels": 32})


def test_stable_audio_config():
    # The diffusion part of Stable Audio Open 1.0's model_config.json.
    sao = {
        "model": {
            "diffusion": {
                "type": "dit",
                "cross_attention_cond_ids": ["prompt", "seconds_start", "seconds_total"],
                "config": {
                    "io_channels": 64,
                    "embed_dim": 1536,
                    "depth": 24,
                    "num_heads": 24,
                    "cond_token_dim": 768,
                    "global_cond_dim": 1536,
                    "project_cond_tokens": False,
                    "transformer_type": "continuous_transformer",
                },
            }
        }
    }
    assert config_from_stable_audio(sao) == dit_sao()
    conf = sao["model"]["diffusion"]["config"]
    assert config_from_stable_audio({"type": "dit", "config": conf | {"project_cond_tokens": True}}).cond_embed_dim
    with pytest.raises(ConfigError, match="unsupported values"):
        config_from_stable_audio({"type": "dit", "config": conf | {"global_cond_type": "adaLN"}})
    with pytest.raises(ConfigError, match="unsupported keys"):
        config_from_stable_audio({"type": "dit", "config": conf | {"qk_norm": True}})
    with pytest.raises(ConfigError, match="'dit'"):
        config_from_stable_audio({"type": "adp_cfg_1d", "config": {}})
