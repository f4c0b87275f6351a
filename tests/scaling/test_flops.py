"""FLOP conventions: hand counts, the parameter counts, and torch's FlopCounterMode on real Decoder passes."""

import dataclasses

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from wavefoundry.lm.decoder import Decoder, decoder_preset, lm_micro, soda_600m
from wavefoundry.scaling.flops import (
    CONVENTIONS,
    all_conventions,
    convention_fn,
    forward_flops_breakdown,
    forward_flops_per_token,
    train_flops_per_token,
    training_flops,
)


def test_lm_micro_by_hand():
    # lm_micro: V 97, D 32, 2 layers, H 4, H_kv 2, Dh 8, F 64; rows of L = 16.
    b = forward_flops_breakdown(lm_micro(), 16)
    assert b["qkv"] == 2 * 32 * (4 + 2 * 2) * 8 == 4096
    assert b["out"] == 2 * 4 * 8 * 32 == 2048
    assert b["mlp"] == 6 * 32 * 64 == 12288
    assert b["attn_scores"] == b["attn_values"] == 2 * 16 * 4 * 8 == 1024
    assert b["attn_softmax"] == 3 * 16 * 4 == 192
    assert b["layers"] == 2 * (4096 + 2048 + 12288 + 1024 + 192 + 1024) == 41344
    assert b["lm_head"] == 2 * 32 * 97 == 6208
    assert b["total"] == forward_flops_per_token(lm_micro(), 16) == 47552
    # Parameters by hand: attention 32*64 + 32*32 + 16 (q/k norms), FFN 3*32*64, 2 norms of 32; final norm 32.
    n_nonemb = 2 * (32 * 64 + 32 * 32 + 16 + 3 * 32 * 64 + 64) + 32
    assert n_nonemb == 18624
    assert all_conventions(lm_micro(), 16) == {
        "chinchilla": 6 * (n_nonemb + 2 * 97 * 32),
        "kaplan": 6 * n_nonemb,
        "levanter": 3 * 47552,
    }


def test_parameter_conventions_match_the_model():
    cfg = lm_micro()
    model = Decoder(cfg)
    n = sum(p.numel() for p in model.parameters())
    n_emb = model.embed.weight.numel() + model.lm_head.weight.numel()
    assert train_flops_per_token(cfg, 8, "chinchilla") == 6 * n
    assert train_flops_per_token(cfg, 8, "kaplan") == 6 * (n - n_emb)
    tied = dataclasses.replace(cfg, tie_embeddings=True)
    assert train_flops_per_token(tied, 8, "chinchilla") == 6 * sum(p.numel() for p in Decoder(tied).parameters())
    # Tied or not, the head is one matmul per token: the analytic count does not change.
    assert forward_flops_per_token(tied, 8) == forward_flops_per_token(cfg, 8)


def test_head_dim_wider_than_dim_uses_heads_times_head_dim():
    cfg = soda_600m()  # 16 x 128 heads on width 1024
    b = forward_flops_breakdown(cfg, 4096)
    assert b["qkv"] == 2 * 1024 * (16 + 16) * 128
    assert b["out"] == 2 * 16 * 128 * 1024  # not 2 D^2
    assert b["attn_scores"] == 2 * 4096 * 16 * 128


def test_attention_grows_linearly_in_seq_len_the_rest_does_not():
    cfg = decoder_preset("soda_135m")
    a, b = forward_flops_breakdown(cfg, 1024), forward_flops_breakdown(cfg, 2048)
    for key in ("attn_scores", "attn_softmax", "attn_values"):
        assert b[key] == 2 * a[key]
    for key in ("qkv", "out", "mlp", "lm_head"):
        assert b[key] == a[key]
    assert train_flops_per_token(cfg, 1024, "chinchilla") == train_flops_per_token(cfg, 2048, "chinchilla")


def test_soda_135m_ordering_of_conventions():
    # Analytic > 6 N_nonemb always here (head + attention); vs 6 N it depends on how big the embedding is.
    c = all_conventions(decoder_preset("soda_135m"), 4096)
    assert c["levanter"] > c["kaplan"] and c["chinchilla"] > c["kaplan"]
    assert training_flops(decoder_preset("soda_135m"), 4096, 10**6, "kaplan") == c["kaplan"] * 10**6


def _counted(model, ids, backward):
    with FlopCounterMode(display=False) as counter:
        logits = model(ids)
        if backward:
            logits.float().square().mean().backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
def test_flop_counter_agrees_with_the_analytic_count(backward):
    """FlopCounterMode counts matmuls only, over the full L x L score map (it ignores causality), so it must equal
    the analytic count less the 3 FLOPs/score softmax term; training is exactly 3x the forward."""
    cfg = dataclasses.replace(lm_micro(), n_layers=3, tie_embeddings=True)
    model = Decoder(cfg)
    B, L = 2, 24
    ids = torch.randint(0, cfg.vocab_size, (B, L))
    b = forward_flops_breakdown(cfg, L)
    matmuls = b["total"] - cfg.n_layers * b["attn_softmax"]
    # torch 2.13 has no FLOP formula for the CPU flash kernel (_scaled_dot_product_flash_attention_for_cpu): with
    # the math backend SDPA runs as counted bmm ops.
    with sdpa_kernel(SDPBackend.MATH):
        counted = _counted(model, ids, backward)
    assert counted == (3 if backward else 1) * B * L * matmuls


def test_flop_counter_misses_cpu_flash_attention():
    # What a user of FlopCounterMode sees with the default CPU kernel: the attention matmuls are not counted.
    cfg = lm_micro()
    model = Decoder(cfg)
    B, L = 2, 16
    b = forward_flops_breakdown(cfg, L)
    no_attention = b["total"] - cfg.n_layers * (b["attn_scores"] + b["attn_softmax"] + b["attn_values"])
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        counted = _counted(model, torch.randint(0, cfg.vocab_size, (B, L)), backward=False)
    assert counted == B * L * no_attention


@pytest.mark.parametrize("seq_len", [0, -3, 1.5, 65])
def test_bad_seq_len(seq_len):
    with pytest.raises(ValueError, match="seq_len"):
        forward_flops_per_token(lm_micro(), seq_len)  # lm_micro: max_seq_len 64
    with pytest.raises(ValueError, match="seq_len"):
        train_flops_per_token(lm_micro(), seq_len, "chinchilla")


def test_bad_convention_and_tokens():
    with pytest.raises(ValueError, match="unknown FLOP convention 'palm'; valid: chinchilla, kaplan, levanter"):
        convention_fn("palm")
    with pytest.raises(ValueError, match="tokens"):
        training_flops(lm_micro(), 8, -1)
    assert set(CONVENTIONS) == {"chinchilla", "kaplan", "levanter"}
