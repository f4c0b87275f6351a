"""Original LAION-CLAP checkpoints -> transformers ClapModel folders: the key map tensor by tensor against
laion_clap's own names, an exact round trip through a hand-written inverse map, strict errors, weights_only reading
and the presets, all with tiny random models."""

import json

import numpy as np
import pytest
import torch

from wavefoundry.eval.laion_clap import ClapFrontendConfig, load_laion_clap
from wavefoundry.formats.errors import CheckpointMismatchError
from wavefoundry.formats.laion_clap import (
    clap_config_file,
    convert_laion_clap_checkpoint,
    laion_clap_config,
    load_laion_clap_state_dict,
    map_laion_clap_state_dict,
)

transformers = pytest.importorskip("transformers")
from tests.laion_clap_fixtures import (  # noqa: E402  (needs transformers)
    make_t5_like_tokenizer,
    make_tokenizer,
    original_state_dict,
    randomise_norms,
    save_training_checkpoint,
    tiny_config,
    to_original,
)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    make_tokenizer(out)
    return out


@pytest.mark.parametrize("fusion", [False, True])
def test_convert_original_checkpoint(tmp_path, tokenizer_dir, fusion):
    cfg = tiny_config(fusion)
    orig = original_state_dict(cfg)
    pt = save_training_checkpoint(tmp_path / "ckpt.pt", orig)
    front = ClapFrontendConfig(truncation="fusion" if fusion else "rand_trunc")
    out = convert_laion_clap_checkpoint(
        pt, tmp_path / "hf", config=cfg, tokenizer=tokenizer_dir, feature_extractor=front.feature_extractor_kwargs()
    )
    clap = load_laion_clap(out)
    hf = clap.model.state_dict()
    a = "audio_model.audio_encoder"
    q, k, v = orig["audio_branch.layers.1.blocks.1.attn.qkv.weight"].chunk(3)
    for name, ref in [("query", q), ("key", k), ("value", v)]:
        torch.testing.assert_close(hf[f"{a}.layers.1.blocks.1.attention.self.{name}.weight"], ref, rtol=0, atol=0)
    expected = {
        f"{a}.layers.0.blocks.1.attention.output.dense.bias": "audio_branch.layers.0.blocks.1.attn.proj.bias",
        f"{a}.layers.0.blocks.0.layernorm_after.weight": "audio_branch.layers.0.blocks.0.norm2.weight",
        f"{a}.layers.1.blocks.0.intermediate.dense.weight": "audio_branch.layers.1.blocks.0.mlp.fc1.weight",
        f"{a}.layers.0.downsample.reduction.weight": "audio_branch.layers.0.downsample.reduction.weight",
        f"{a}.batch_norm.running_var": "audio_branch.bn0.running_var",
        f"{a}.norm.bias": "audio_branch.norm.bias",
        "audio_projection.linear2.weight": "audio_projection.2.weight",
        "text_projection.linear1.bias": "text_projection.0.bias",
        "text_model.encoder.layer.1.attention.output.LayerNorm.weight": (
            "text_branch.encoder.layer.1.attention.output.LayerNorm.weight"
        ),
        "text_model.pooler.dense.weight": "text_branch.pooler.dense.weight",
        "logit_scale_t": "logit_scale_t",
    }
    if fusion:
        expected[f"{a}.patch_embed.fusion_model.global_att.5.running_mean"] = (
            "audio_branch.patch_embed.fusion_model.global_att.5.running_mean"
        )
        expected[f"{a}.patch_embed.mel_conv2d.weight"] = "audio_branch.patch_embed.mel_conv2d.weight"
    for new, old in expected.items():
        torch.testing.assert_close(hf[new], orig[old], rtol=0, atol=0)
    fresh = transformers.ClapModel(cfg).state_dict()
    index_keys = [key for key in fresh if key.endswith("relative_position_index")]
    assert len(index_keys) == sum(cfg.audio_config.depths)
    for key in index_keys:  # the original Swin index (from the checkpoint) equals transformers' own
        torch.testing.assert_close(hf[key], fresh[key], rtol=0, atol=0)
    saved = json.loads((out / "preprocessor_config.json").read_text())
    assert (saved["frequency_min"], saved["frequency_max"], saved["truncation"]) == (50.0, 14000.0, front.truncation)
    assert clap.frontend.config == front
    assert clap.info.name == f"laion-clap-{front.truncation}-int16"
    emb = clap.embed_audio(np.random.RandomState(0).randn(1, 1, 480000).astype(np.float32) * 0.1)
    assert emb.shape == (1, 16) and np.isfinite(emb).all()


@pytest.mark.parametrize("fusion", [False, True])
def test_round_trip_through_the_inverse_map(tmp_path, fusion):
    # A ClapModel -> laion_clap names (hand-written inverse, plus the dropped tensors) -> converter: every tensor back.
    cfg = tiny_config(fusion)
    torch.manual_seed(3)
    model = transformers.ClapModel(cfg).eval()
    randomise_norms(model, 4)
    state = model.state_dict()
    orig = to_original(state, cfg)
    reference = original_state_dict(cfg)
    assert set(orig) == set(reference)  # the two fixtures agree on laion_clap's names ...
    assert all(orig[k].shape == reference[k].shape for k in orig)  # ... and shapes
    mapped = map_laion_clap_state_dict({f"module.{k}": v for k, v in orig.items()})
    assert set(mapped) | {"text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids"} >= set(state)
    for key, value in mapped.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)
    out = convert_laion_clap_checkpoint(save_training_checkpoint(tmp_path / "c.pt", orig), tmp_path / "hf", config=cfg)
    back = transformers.ClapModel.from_pretrained(out, local_files_only=True).state_dict()
    assert set(back) == set(state)
    for key in state:
        torch.testing.assert_close(back[key], state[key], rtol=0, atol=0, msg=key)
    assert not (out / "preprocessor_config.json").exists() and not (out / "tokenizer.json").exists()


def test_convert_rejects_bad_checkpoints(tmp_path, tokenizer_dir):
    cfg = tiny_config(False)
    orig = original_state_dict(cfg)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected LAION-CLAP keys.*audio_branch\.mel_conv1d"):
        map_laion_clap_state_dict({**orig, "audio_branch.mel_conv1d.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"1 unexpected.*blocks\.0\.attn\.q_bias"):
        map_laion_clap_state_dict({**orig, "audio_branch.layers.0.blocks.0.attn.q_bias": torch.zeros(1)})
    sd = dict(orig)
    del sd["text_branch.pooler.dense.bias"]
    torch.save(sd, tmp_path / "missing.pt")
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: text_model\.pooler\.dense\.bias"):
        convert_laion_clap_checkpoint(tmp_path / "missing.pt", tmp_path / "out", config=cfg)
    torch.save(orig, tmp_path / "ok.pt")
    with pytest.raises(CheckpointMismatchError, match=r"wrong shapes: .*\(wrong preset\?\)"):
        convert_laion_clap_checkpoint(tmp_path / "ok.pt", tmp_path / "out", config=tiny_config(False, width=32))
    with pytest.raises(ValueError, match="pad id 0, the text tower 1"):
        convert_laion_clap_checkpoint(
            tmp_path / "ok.pt", tmp_path / "out", config=cfg, tokenizer=make_t5_like_tokenizer(tmp_path / "t5")
        )
    with pytest.raises(FileNotFoundError, match="tokenizer directory not found"):
        convert_laion_clap_checkpoint(tmp_path / "ok.pt", tmp_path / "out", config=cfg, tokenizer=tmp_path / "no")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # failed conversions leave no temp folder
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        convert_laion_clap_checkpoint(tmp_path / "ok.pt", tmp_path / "busy", config=cfg)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    convert_laion_clap_checkpoint(tmp_path / "ok.pt", tmp_path / "empty", config=cfg, tokenizer=tokenizer_dir)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (tmp_path / "empty").iterdir()}
    with pytest.raises(ValueError, match="unknown LAION-CLAP preset"):
        laion_clap_config("HTSAT-huge")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_laion_clap_state_dict(tmp_path / "none.pt")


class Opaque:
    pass


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_untrusted_pickle_is_refused(tmp_path):
    torch.save({"state_dict": {"logit_scale_a": torch.tensor(1.0)}, "args": Opaque()}, tmp_path / "evil.pt")
    with pytest.raises(
        ValueError, match=r"weights_only=True\): .*Opaque was not an allowed global.*Extract its state dict once"
    ):
        load_laion_clap_state_dict(tmp_path / "evil.pt")
    torch.save({"state_dict": {"a": torch.zeros(1)}}, tmp_path / "p4.pt", pickle_protocol=4)
    with pytest.raises(ValueError, match="pickle protocol 4"):
        load_laion_clap_state_dict(tmp_path / "p4.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="no state dict of tensors"):
        load_laion_clap_state_dict(tmp_path / "list.pt")


def test_safetensors_state_dict_and_presets(tmp_path):
    from safetensors.torch import save_file

    orig = original_state_dict(tiny_config(False))
    save_file({k: v.contiguous() for k, v in orig.items()}, tmp_path / "sd.safetensors")
    loaded = load_laion_clap_state_dict(tmp_path / "sd.safetensors")
    assert set(loaded) == set(orig) and torch.equal(loaded["logit_scale_a"], orig["logit_scale_a"])
    base = laion_clap_config("HTSAT-base")
    assert (base.audio_config.patch_embeds_hidden_size, base.audio_config.hidden_size) == (128, 1024)
    assert list(base.audio_config.depths) == [2, 2, 12, 2] and not base.audio_config.enable_fusion
    fused = laion_clap_config("HTSAT-tiny-fusion")
    assert fused.audio_config.enable_fusion and fused.audio_config.hidden_size == 768
    assert (fused.text_config.vocab_size, fused.text_config.layer_norm_eps, fused.projection_dim) == (50265, 1e-5, 512)


def test_clap_config_file(tmp_path):
    cfg = tiny_config(True)
    cfg.save_pretrained(tmp_path / "m")
    for where in (tmp_path / "m", tmp_path / "m" / "config.json"):
        got = clap_config_file(where)
        assert got.audio_config.enable_fusion and got.text_config.hidden_size == 32 and got.projection_dim == 16
    with pytest.raises(FileNotFoundError, match="CLAP config not found"):
        clap_config_file(tmp_path / "nothing.json")
    (tmp_path / "t5.json").write_text('{"model_type": "t5"}')
    with pytest.raises(ValueError, match="model_type 't5', expected 'clap'"):
        clap_config_file(tmp_path / "t5.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        clap_config_file(tmp_path / "bad.json")
