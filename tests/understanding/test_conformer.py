"""Conformer encoder: parity with transformers' Wav2Vec2Conformer layers, relative-position shift, padding, lengths."""

import math

import pytest
import torch

from wavefoundry.understanding.conformer import (
    ConformerConfig,
    ConformerEncoder,
    RelPositionAttention,
    rel_positions,
    rel_shift,
    subsampled_lengths,
)

CFG = dict(n_mels=16, n_fft=64, hop_length=16, dim=32, n_layers=2, n_heads=4, conv_kernel=5, dropout=0.0)


def _hf_key(key: str) -> str:
    """Our block key -> transformers' Wav2Vec2ConformerEncoderLayer key (explicit map)."""
    renames = {
        "ffn1.norm.": "ffn1_layer_norm.",
        "ffn2.norm.": "ffn2_layer_norm.",
        "attn_norm.": "self_attn_layer_norm.",
        "attn.": "self_attn.",
        "conv.": "conv_module.",
        "final_norm.": "final_layer_norm.",
    }
    for ours, theirs in renames.items():
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    return key


def test_blocks_match_transformers_wav2vec2_conformer_layers():
    from transformers import Wav2Vec2ConformerConfig
    from transformers.models.wav2vec2_conformer import modeling_wav2vec2_conformer as hf

    torch.manual_seed(0)
    cfg = ConformerConfig(**CFG)
    hcfg = Wav2Vec2ConformerConfig(
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=128,
        conv_depthwise_kernel_size=5,
        position_embeddings_type="relative",
        hidden_act="swish",
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        conformer_conv_dropout=0.0,
        max_source_positions=64,
    )
    hcfg._attn_implementation = "eager"
    ours = ConformerEncoder(cfg).eval()
    layers = [hf.Wav2Vec2ConformerEncoderLayer(hcfg).eval() for _ in range(2)]
    for block, layer in zip(ours.blocks, layers, strict=True):
        for p in block.parameters():  # random values everywhere (u, v biases start at zero)
            torch.nn.init.normal_(p, std=0.2)
        block.conv.batch_norm.running_mean.normal_()
        block.conv.batch_norm.running_var.uniform_(0.5, 2.0)
        theirs = {_hf_key(k): v for k, v in block.state_dict().items()}
        missing = layer.load_state_dict(theirs, strict=True)
        assert not missing.missing_keys
    x = torch.randn(2, 11, 32)
    pos_hf = hf.Wav2Vec2ConformerRelPositionalEmbedding(hcfg)(x)  # (1, 2T - 1, D)
    pos = rel_positions(11, 32)
    torch.testing.assert_close(pos, pos_hf[0], atol=1e-6, rtol=0)
    h_ours, h_hf = x, x
    with torch.no_grad():
        for block, layer in zip(ours.blocks, layers, strict=True):
            h_ours = block(h_ours, pos, None)
            h_hf = layer(h_hf, relative_position_embeddings=pos_hf)
    torch.testing.assert_close(h_ours, h_hf, atol=1e-5, rtol=1e-5)


def test_rel_shift_matches_naive_loop():
    torch.manual_seed(1)
    T = 6
    scores = torch.randn(2, 3, T, 2 * T - 1)  # column k is relative position T - 1 - k
    shifted = rel_shift(scores)
    naive = torch.empty(2, 3, T, T)
    for i in range(T):
        for j in range(T):
            naive[:, :, i, j] = scores[:, :, i, T - 1 - (i - j)]
    torch.testing.assert_close(shifted, naive, atol=0, rtol=0)


def test_relative_attention_matches_naive_formula():
    torch.manual_seed(2)
    attn = RelPositionAttention(16, 2, 0.0).eval()
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.3)
    T, Dh = 5, 8
    x = torch.randn(1, T, 16)
    pos = rel_positions(T, 16)
    out = attn(x, pos, None)
    q = attn.linear_q(x).view(T, 2, Dh)
    k = attn.linear_k(x).view(T, 2, Dh)
    v = attn.linear_v(x).view(T, 2, Dh)
    heads = []
    for h in range(2):
        s = torch.empty(T, T)
        for i in range(T):
            for j in range(T):
                p_ij = attn.linear_pos(pos[T - 1 - (i - j)]).view(2, Dh)[h]  # W_p p(i - j)
                s[i, j] = (q[i, h] + attn.pos_bias_u[h]) @ k[j, h] + (q[i, h] + attn.pos_bias_v[h]) @ p_ij
        heads.append((s / math.sqrt(Dh)).softmax(-1) @ v[:, h])
    naive = attn.linear_out(torch.cat(heads, -1))
    torch.testing.assert_close(out[0], naive, atol=1e-5, rtol=1e-5)


def test_subsampled_length_and_output_shape():
    enc = ConformerEncoder(ConformerConfig(**CFG)).eval()
    for frames in (7, 8, 9, 30, 31):
        tokens, mask = enc.encode_features(torch.randn(1, frames, 16))
        assert tokens.shape == (1, ((frames - 1) // 2 - 1) // 2, 32)
        assert int(subsampled_lengths(torch.tensor([frames]))) == tokens.shape[1]
        assert bool(mask.all())


def test_padding_does_not_change_valid_outputs():
    torch.manual_seed(3)
    enc = ConformerEncoder(ConformerConfig(**CFG)).eval()
    short, long = torch.randn(1, 300), torch.randn(1, 520)
    padded = torch.cat((torch.cat((short, torch.randn(1, 220) * 5), 1), long))  # garbage after the short row
    with torch.no_grad():
        tok_b, mask_b = enc(padded, torch.tensor([300, 520]))
        tok_s, mask_s = enc(short)
        tok_l, _ = enc(long)
    n = int(mask_s.sum())
    assert int(mask_b[0].sum()) == n and not bool(mask_b[0, n:].any())
    torch.testing.assert_close(tok_b[0, :n], tok_s[0, :n], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tok_b[1], tok_l[0], atol=1e-5, rtol=1e-5)


def test_bad_audio_and_config():
    enc = ConformerEncoder(ConformerConfig(**CFG))
    with pytest.raises(ValueError, match="too short"):
        enc(torch.randn(1, 50))
    with pytest.raises(ValueError, match="mono"):
        enc(torch.randn(1, 2, 400))
    silent, _ = enc.features(torch.zeros(1, 400))
    assert torch.isfinite(silent).all() and float(silent.abs().max()) == 0.0
    with pytest.raises(ValueError, match="conv_kernel"):
        ConformerConfig(conv_kernel=32)
