"""Learned text encoder: parity with torch's TransformerEncoderLayer, zeroed padding, padding invariance."""

import pytest
import torch
from torch import nn

from wavefoundry.conditioning.text import (
    EncoderBlock,
    LearnedPromptEncoder,
    LearnedTextEncoder,
    LearnedTextEncoderConfig,
)
from wavefoundry.conditioning.tokenizer import WordTokenizer
from wavefoundry.config import ConfigError

CFG = LearnedTextEncoderConfig(vocab_size=40, dim=32, depth=2, heads=4, max_length=16, out_dim=24)
CAPTIONS = ["a rock drum beat at 97 BPM", "a C#4 note", "pink noise, quiet", "an E minor chord on an organ"]


def test_block_matches_torch_transformer_encoder_layer():
    torch.manual_seed(1)
    ours = EncoderBlock(32, 4).eval()
    ref = nn.TransformerEncoderLayer(32, 4, 128, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(ours.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(ours.qkv.bias)
        ref.self_attn.out_proj.load_state_dict(ours.out.state_dict())
        ref.linear1.load_state_dict(ours.mlp[0].state_dict())
        ref.linear2.load_state_dict(ours.mlp[2].state_dict())
        ref.norm1.load_state_dict(ours.norm1.state_dict())
        ref.norm2.load_state_dict(ours.norm2.state_dict())
    ref.train()  # the training path (no nested-tensor fast path) keeps every position
    x = torch.randn(2, 7, 32)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    with torch.no_grad():
        got, want = ours(x, mask), ref(x, src_key_padding_mask=~mask)
    assert torch.allclose(got[mask], want[mask], atol=1e-5)


def test_output_shape_and_zero_padding():
    enc = LearnedTextEncoder(CFG)
    ids = torch.randint(2, 40, (3, 16))
    mask = torch.arange(16)[None] < torch.tensor([16, 5, 1])[:, None]
    out = enc(ids, mask)
    assert out.shape == (3, 16, 24)
    assert (out[~mask] == 0).all() and (out[mask].abs().sum(-1) > 0).all()
    with pytest.raises(ValueError, match="max_length=16"):
        enc(torch.zeros(1, 17, dtype=torch.long), torch.ones(1, 17, dtype=torch.bool))


def test_padding_does_not_change_valid_outputs():
    tok = WordTokenizer.build(CAPTIONS)
    enc = LearnedPromptEncoder(CFG, tok).eval()
    short = "a C#4 note"
    alone_ids, alone_mask = tok.encode([short], pad_to_max=False)  # (1, 4): no padding at all
    alone = enc.encoder(alone_ids, alone_mask)
    batch, mask = enc([CAPTIONS[0], short])  # padded to max_length next to a longer prompt
    n = int(alone_mask.sum())
    assert mask[1].sum() == n and batch.shape == (2, 16, 24)
    assert torch.allclose(batch[1, :n], alone[0], atol=1e-5)


def test_padding_gets_no_gradient():
    tok = WordTokenizer.build(CAPTIONS)
    enc = LearnedPromptEncoder(CFG, tok)
    out, _ = enc(["a rock drum beat", "noise"])
    out.square().sum().backward()
    grad = enc.encoder.tok_emb.weight.grad
    assert grad[0].abs().sum() == 0  # <pad> never influences an output
    assert grad[tok.index["rock"]].abs().sum() > 0


def test_config_and_vocab_checks():
    with pytest.raises(ConfigError, match="not divisible by heads"):
        LearnedTextEncoderConfig(dim=30, heads=4)
    with pytest.raises(ConfigError, match="depth must be >= 1"):
        LearnedTextEncoderConfig(depth=0)
    tok = WordTokenizer.build(CAPTIONS)
    with pytest.raises(ValueError, match=f"vocab_size >= {tok.vocab_size}"):
        LearnedPromptEncoder(LearnedTextEncoderConfig(vocab_size=8, dim=32, heads=4), tok)
