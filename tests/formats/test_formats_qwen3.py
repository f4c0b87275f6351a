"""Hugging Face Qwen3 folders: transformers' save_pretrained loads in ours and our export loads strictly in
transformers (single file, sharded, tied), bit-equal weights, and unsupported configs or weights raise FormatError."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.lm.qwen3_fixtures import MICRO, TIED, WIDE_HEADS, hf_pair
from wavefoundry.formats.errors import FormatError
from wavefoundry.formats.qwen3 import (
    INDEX,
    WEIGHTS,
    decoder_config_from_hf,
    decoder_config_to_hf,
    hf_shapes,
    load_qwen3,
    save_qwen3,
    state_from_hf,
    state_to_hf,
)
from wavefoundry.lm.decoder import PRESETS

IDS = torch.randint(0, MICRO.vocab_size, (2, 11), generator=torch.Generator().manual_seed(5))


def _explicit(cfg):
    """``cfg`` with its head width written out (Hugging Face configs always name head_dim)."""
    return dataclasses.replace(cfg, head_dim=cfg.dh)


def _assert_same_weights(ref, ours, cfg) -> None:
    theirs = {k: v for k, v in ref.state_dict().items() if not (cfg.tie_embeddings and k == "lm_head.weight")}
    exported = state_to_hf(ours.state_dict(), cfg)
    assert exported.keys() == theirs.keys()
    for k, v in theirs.items():
        assert torch.equal(exported[k], v), k


@pytest.mark.parametrize("cfg", [MICRO, WIDE_HEADS, TIED], ids=["gqa", "wide-heads", "tied"])
@pytest.mark.parametrize("shard", [None, "4KB"], ids=["single", "sharded"])
def test_transformers_folder_loads_in_ours(tmp_path, cfg, shard):
    ref, _ = hf_pair(cfg)
    ref.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    assert (tmp_path / (INDEX if shard else WEIGHTS)).is_file()
    ours = load_qwen3(tmp_path)
    assert ours.cfg == _explicit(cfg)
    _assert_same_weights(ref, ours, cfg)
    if cfg.tie_embeddings:
        assert ours.lm_head.weight is ours.embed.weight
    with torch.no_grad():
        torch.testing.assert_close(ours(IDS), ref(IDS).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cfg", [MICRO, WIDE_HEADS, TIED], ids=["gqa", "wide-heads", "tied"])
@pytest.mark.parametrize("shard", [None, 6000], ids=["single", "sharded"])
def test_our_export_loads_strictly_in_transformers(tmp_path, cfg, shard):
    from transformers import Qwen3ForCausalLM

    _, ours = hf_pair(cfg, seed=3)
    save_qwen3(ours, tmp_path, max_shard_bytes=shard)
    if shard:
        index = json.loads((tmp_path / INDEX).read_text())
        assert len(set(index["weight_map"].values())) > 1 and not (tmp_path / WEIGHTS).exists()
    ref, info = Qwen3ForCausalLM.from_pretrained(tmp_path, output_loading_info=True, dtype=torch.float32)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")), info
    _assert_same_weights(ref, ours, cfg)
    with torch.no_grad():
        torch.testing.assert_close(ref.eval()(IDS).logits, ours(IDS), atol=1e-5, rtol=1e-5)
    again = load_qwen3(tmp_path)  # and back: bit-equal
    for k, v in ours.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


def test_export_dtype_and_load_dtype(tmp_path):
    _, ours = hf_pair(MICRO)
    save_qwen3(ours, tmp_path, dtype=torch.bfloat16)
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert load_file(tmp_path / WEIGHTS)["model.embed_tokens.weight"].dtype == torch.bfloat16
    model = load_qwen3(tmp_path, dtype=torch.bfloat16)
    assert model.embed.weight.dtype == torch.bfloat16
    assert torch.equal(model.embed.weight, ours.embed.weight.to(torch.bfloat16))


@pytest.mark.parametrize("name", list(PRESETS))
def test_config_round_trips_through_transformers(name):
    from transformers import Qwen3Config

    cfg = PRESETS[name]()
    exported = decoder_config_to_hf(cfg)
    assert decoder_config_from_hf(exported) == _explicit(cfg)
    # transformers 5 moves rope_theta into rope_parameters when it re-saves a config: still the same model.
    resaved = Qwen3Config(**{k: v for k, v in exported.items() if k != "model_type"}).to_dict()
    assert "rope_parameters" in resaved
    assert decoder_config_from_hf(resaved) == _explicit(cfg)


# --- strict errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"attention_bias": True}, "attention_bias"),
        ({"use_sliding_window": True}, "use_sliding_window"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope type 'yarn'"),
        ({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "factor": 2.0}}, "factor"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"attention_dropout": 0.1}, "attention_dropout"),
        ({"model_type": "llama"}, "model_type"),
        ({"architectures": ["Qwen3ForSequenceClassification"]}, "architectures"),
        ({"layer_types": ["sliding_attention", "full_attention"]}, "layer_types"),
        ({"quantization_config": {"quant_method": "gptq"}}, "quantization_config"),
        ({"hidden_size": None}, "missing fields.*hidden_size"),
        ({"num_key_value_heads": 3}, "must divide n_heads"),
        ({"num_hidden_layers": "2"}, "num_hidden_layers must be int"),
        ({"num_attention_heads": "4"}, "num_attention_heads must be int"),
        ({"num_attention_heads": 0}, "n_heads must be >= 1"),
        ({"tie_word_embeddings": 1}, "tie_word_embeddings must be bool"),
    ],
)
def test_unsupported_configs_raise_format_error_naming_the_field(change, message):
    hf = decoder_config_to_hf(MICRO) | change
    with pytest.raises(FormatError, match=message):
        decoder_config_from_hf(hf)


def test_bad_weights_raise_format_error_naming_the_key():
    ref, _ = hf_pair(MICRO)
    good = ref.state_dict()
    with pytest.raises(FormatError, match=r"missing keys: model\.layers\.1\.self_attn\.k_norm\.weight"):
        state_from_hf({k: v for k, v in good.items() if k != "model.layers.1.self_attn.k_norm.weight"}, MICRO)
    with pytest.raises(FormatError, match=r"unexpected keys: model\.layers\.0\.self_attn\.q_proj\.bias"):
        state_from_hf(good | {"model.layers.0.self_attn.q_proj.bias": torch.zeros(32)}, MICRO)
    with pytest.raises(FormatError, match=r"wrong shapes: model\.layers\.0\.mlp\.up_proj\.weight \(65, 32\)"):
        state_from_hf(good | {"model.layers.0.mlp.up_proj.weight": torch.zeros(65, 32)}, MICRO)
    tied = {k: v for k, v in hf_pair(TIED)[0].state_dict().items()}
    tied["lm_head.weight"] = tied["lm_head.weight"] + 1
    with pytest.raises(FormatError, match=r"lm_head\.weight differs"):
        state_from_hf(tied, TIED)
    assert hf_shapes(MICRO).keys() == good.keys()


def test_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_qwen3(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(decoder_config_to_hf(MICRO)))
    with pytest.raises(FileNotFoundError, match=r"no model\.safetensors"):
        load_qwen3(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(FormatError, match="pickles are not read"):
        load_qwen3(tmp_path)
    _, ours = hf_pair(MICRO)
    save_qwen3(ours, tmp_path / "sharded", max_shard_bytes=6000)
    shard = sorted((tmp_path / "sharded").glob("model-*.safetensors"))[1]
    tensors = load_file(shard)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="shards listed in"):
        load_qwen3(tmp_path / "sharded")
    save_file(tensors | {"extra": torch.zeros(1)}, shard)
    with pytest.raises(FormatError, match="does not place in this shard: \\['extra'\\]"):
        load_qwen3(tmp_path / "sharded")
