"""Tiny LAION-CLAP fixtures shared by the adapter, converter and CLI tests: a RoBERTa-like tokenizer, tiny
ClapConfigs, and random state dicts under laion_clap's own (original) names."""

import pickle
import re
import types

import numpy as np
import torch
import transformers

WORDS = ["a", "dog", "barks", "loud", "soft", "rain", "on", "the", "roof", "piano", "chord", "drum", "beat", "bpm"]


def make_tokenizer(directory):
    """A RoBERTa-like WordLevel tokenizer (<s> 0, <pad> 1, </s> 2), saved offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.save_pretrained(directory)
    return fast


def tiny_config(fusion, width=16):
    text = dict(vocab_size=len(WORDS) + 4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    text.update(intermediate_size=64, max_position_embeddings=80, layer_norm_eps=1e-5)
    audio = dict(patch_embeds_hidden_size=width, depths=[2, 2], num_attention_heads=[2, 4], hidden_size=2 * width)
    audio.update(enable_fusion=fusion, fusion_type="aff_2d" if fusion else None)
    return transformers.ClapConfig(text_config=text, audio_config=audio, projection_dim=16)


def randomise_norms(model, seed):
    # Fresh BatchNorms are identities (mean 0, var 1): give them real statistics so the test would see them.
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 10)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 20 + 1)


def make_t5_like_tokenizer(directory):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1, "dog": 2}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>").save_pretrained(
        directory
    )
    return directory


def relative_position_index(ws):
    # Swin's pairwise (dh, dw) offsets in a ws x ws window, flattened (htsat.py WindowAttention).
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)  # (2, ws*ws)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)  # (ws*ws, ws*ws, 2)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


def original_state_dict(cfg, seed=0):
    """Random tensors under laion_clap's own names (model.py CLAP, htsat.py, RobertaModel) for ``cfg``."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def add(name, *shape):
        sd[name] = torch.randn(*shape, generator=g)

    def bn(name, n):
        add(f"{name}.weight", n), add(f"{name}.bias", n), add(f"{name}.running_mean", n)
        sd[f"{name}.running_var"] = torch.rand(n, generator=g) + 0.5
        sd[f"{name}.num_batches_tracked"] = torch.tensor(100)

    a, t, P = cfg.audio_config, cfg.text_config, cfg.projection_dim
    E, ab = a.patch_embeds_hidden_size, "audio_branch"
    add(f"{ab}.spectrogram_extractor.stft.conv_real.weight", 513, 1, 1024)
    add(f"{ab}.spectrogram_extractor.stft.conv_imag.weight", 513, 1, 1024)
    add(f"{ab}.logmel_extractor.melW", 513, 64)
    bn(f"{ab}.bn0", 64)
    add(f"{ab}.patch_embed.proj.weight", E, 1, 4, 4), add(f"{ab}.patch_embed.proj.bias", E)
    add(f"{ab}.patch_embed.norm.weight", E), add(f"{ab}.patch_embed.norm.bias", E)
    if a.enable_fusion:
        add(f"{ab}.patch_embed.mel_conv2d.weight", E, 1, 4, 12), add(f"{ab}.patch_embed.mel_conv2d.bias", E)
        for att, (c1, b1, c2, b2) in {"local_att": (0, 1, 3, 4), "global_att": (1, 2, 4, 5)}.items():
            p = f"{ab}.patch_embed.fusion_model.{att}"
            add(f"{p}.{c1}.weight", E // 4, E, 1, 1), add(f"{p}.{c1}.bias", E // 4), bn(f"{p}.{b1}", E // 4)
            add(f"{p}.{c2}.weight", E, E // 4, 1, 1), add(f"{p}.{c2}.bias", E), bn(f"{p}.{b2}", E)
    for i, depth in enumerate(a.depths):
        d, res = E * 2**i, 64 // 2**i
        ws = min(a.window_size, res)
        for j in range(depth):
            p = f"{ab}.layers.{i}.blocks.{j}"
            add(f"{p}.norm1.weight", d), add(f"{p}.norm1.bias", d)
            add(f"{p}.attn.relative_position_bias_table", (2 * ws - 1) ** 2, a.num_attention_heads[i])
            sd[f"{p}.attn.relative_position_index"] = relative_position_index(ws)
            add(f"{p}.attn.qkv.weight", 3 * d, d), add(f"{p}.attn.qkv.bias", 3 * d)
            add(f"{p}.attn.proj.weight", d, d), add(f"{p}.attn.proj.bias", d)
            add(f"{p}.norm2.weight", d), add(f"{p}.norm2.bias", d)
            add(f"{p}.mlp.fc1.weight", 4 * d, d), add(f"{p}.mlp.fc1.bias", 4 * d)
            add(f"{p}.mlp.fc2.weight", d, 4 * d), add(f"{p}.mlp.fc2.bias", d)
            if j % 2 and res > ws:
                add(f"{p}.attn_mask", (res // ws) ** 2, ws * ws, ws * ws)
        if i < len(a.depths) - 1:
            add(f"{ab}.layers.{i}.downsample.reduction.weight", 2 * d, 4 * d)
            add(f"{ab}.layers.{i}.downsample.norm.weight", 4 * d), add(f"{ab}.layers.{i}.downsample.norm.bias", 4 * d)
    add(f"{ab}.norm.weight", a.hidden_size), add(f"{ab}.norm.bias", a.hidden_size)
    add(f"{ab}.tscam_conv.weight", 527, a.hidden_size, 2, 3), add(f"{ab}.tscam_conv.bias", 527)
    add(f"{ab}.head.weight", 527, 527), add(f"{ab}.head.bias", 527)
    H, tb = t.hidden_size, "text_branch"
    add(f"{tb}.embeddings.word_embeddings.weight", t.vocab_size, H)
    add(f"{tb}.embeddings.position_embeddings.weight", t.max_position_embeddings, H)
    add(f"{tb}.embeddings.token_type_embeddings.weight", 1, H)
    add(f"{tb}.embeddings.LayerNorm.weight", H), add(f"{tb}.embeddings.LayerNorm.bias", H)
    sd[f"{tb}.embeddings.position_ids"] = torch.arange(t.max_position_embeddings)[None]
    for n in range(t.num_hidden_layers):
        p = f"{tb}.encoder.layer.{n}"
        for name, shape in [("attention.self.query", (H, H)), ("attention.self.key", (H, H))]:
            add(f"{p}.{name}.weight", *shape), add(f"{p}.{name}.bias", shape[0])
        for name, shape in [("attention.self.value", (H, H)), ("attention.output.dense", (H, H))]:
            add(f"{p}.{name}.weight", *shape), add(f"{p}.{name}.bias", shape[0])
        for name, shape in [
            ("intermediate.dense", (t.intermediate_size, H)),
            ("output.dense", (H, t.intermediate_size)),
        ]:
            add(f"{p}.{name}.weight", *shape), add(f"{p}.{name}.bias", shape[0])
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            add(f"{p}.{name}.weight", H), add(f"{p}.{name}.bias", H)
    add(f"{tb}.pooler.dense.weight", H, H), add(f"{tb}.pooler.dense.bias", H)
    for branch, width in (("text", H), ("audio", a.hidden_size)):
        add(f"{branch}_projection.0.weight", P, width), add(f"{branch}_projection.0.bias", P)
        add(f"{branch}_projection.2.weight", P, P), add(f"{branch}_projection.2.bias", P)
        for k in (0, 3):  # MLPLayers: Linear, ReLU, Dropout, Linear
            add(f"{branch}_transform.sequential.{k}.weight", P, P), add(f"{branch}_transform.sequential.{k}.bias", P)
    sd["logit_scale_a"], sd["logit_scale_t"] = torch.tensor(2.5), torch.tensor(3.5)
    return sd


class LegacyNumpyPickler(pickle._Pickler):
    """Writes numpy scalars under numpy 1.x's module path, as the 2022-23 LAION checkpoints were written."""

    def save_global(self, obj, name=None):
        if obj is np._core.multiarray.scalar:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\nscalar\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def save_training_checkpoint(path, state_dict):
    ckpt = {
        "epoch": np.int64(15),
        "name": "laion-clap",
        "state_dict": {f"module.{k}": v for k, v in state_dict.items()},
    }
    legacy = types.ModuleType("legacy_pickle")
    legacy.Pickler = LegacyNumpyPickler
    torch.save(ckpt, path, pickle_module=legacy, pickle_protocol=2)
    assert b"numpy.core.multiarray" in path.read_bytes()
    return path


#: transformers ClapModel name -> laion_clap name for the Swin block parts (htsat.py SwinTransformerBlock).
_ORIGINAL_BLOCK = {
    "layernorm_before": "norm1",
    "attention.output.dense": "attn.proj",
    "attention.self.relative_position_bias_table": "attn.relative_position_bias_table",
    "attention.self.relative_position_index": "attn.relative_position_index",
    "layernorm_after": "norm2",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}


def to_original(hf_state, cfg, seed=0):
    """The laion_clap checkpoint of a ClapModel state dict: written as the inverse of the documented key map, with
    the tensors the converter drops (front end, tagging head, loss MLPs, masks) taken from original_state_dict."""
    out = {k: v for k, v in original_state_dict(cfg, seed).items() if not re.search(KEPT, k)}
    a = "audio_model.audio_encoder."
    for key, value in hf_state.items():
        if re.fullmatch(r"text_model\.embeddings\.(position_ids|token_type_ids)", key):
            continue
        if m := re.fullmatch(rf"{re.escape(a)}layers\.(\d+)\.blocks\.(\d+)\.(.+)\.(weight|bias)", key):
            i, j, name, leaf = m.groups()
            p = f"audio_branch.layers.{i}.blocks.{j}"
            if name in ("attention.self.query", "attention.self.key", "attention.self.value"):
                if name.endswith("query"):
                    parts = [hf_state[key.replace("query", n)] for n in ("query", "key", "value")]
                    out[f"{p}.attn.qkv.{leaf}"] = torch.cat(parts)  # rows q, k, v
                continue
            out[f"{p}.{_ORIGINAL_BLOCK[name]}.{leaf}"] = value
        elif m := re.fullmatch(rf"{re.escape(a)}layers\.(\d+)\.blocks\.(\d+)\.(.+)", key):
            out[f"audio_branch.layers.{m[1]}.blocks.{m[2]}.{_ORIGINAL_BLOCK[m[3]]}"] = value
        elif key.startswith(f"{a}batch_norm."):
            out[key.replace(f"{a}batch_norm.", "audio_branch.bn0.")] = value
        elif key.startswith(a):
            out[key.replace(a, "audio_branch.")] = value
        elif key.startswith("text_model."):
            out[key.replace("text_model.", "text_branch.", 1)] = value
        else:
            out[re.sub(r"_projection\.linear([12])", lambda m: f"_projection.{2 * int(m[1]) - 2}", key)] = value
    return out


#: original_state_dict keys that carry network weights (the rest is dropped on conversion).
KEPT = (
    r"^(text_branch\.(?!embeddings\.position_ids)|(text|audio)_projection\.|logit_scale|"
    r"audio_branch\.(bn0|patch_embed|norm|layers\.\d+\.(downsample|blocks\.\d+\.(?!attn_mask))))"
)
