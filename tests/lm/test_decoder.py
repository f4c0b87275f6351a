"""Qwen3-style decoder: parity with transformers' Qwen3ForCausalLM, KV cache, padding, loss, presets, bad input."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from tests.lm.qwen3_fixtures import MICRO, TIED, WIDE_HEADS, hf_pair
from wavefoundry.config import ConfigError
from wavefoundry.formats.qwen3 import hf_key_map
from wavefoundry.lm.decoder import PRESETS, Decoder, DecoderConfig, decoder_preset, next_token_loss, param_count
from wavefoundry.nn.attention import causal_attention, causal_mask
from wavefoundry.nn.rope import apply_rope, rope_tables, rotate


def _ids(cfg: DecoderConfig, batch: int = 2, length: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, cfg.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))


# --- parity with transformers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [MICRO, WIDE_HEADS, TIED], ids=["gqa", "wide-heads", "tied"])
def test_logits_match_transformers(cfg):
    ref, ours = hf_pair(cfg)
    ids = _ids(cfg)
    with torch.no_grad():
        expected = ref(ids).logits
        got = ours(ids)
    assert expected.abs().max() > 1  # the random weights give logits well away from zero
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_gradients_match_transformers():
    ref, ours = hf_pair(WIDE_HEADS)
    ref.train(), ours.train()
    ids = _ids(WIDE_HEADS, length=16)
    F.cross_entropy(ref(ids).logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    loss, _ = next_token_loss(ours(ids)[:, :-1], ids[:, 1:], z_loss=0.0)
    loss.backward()
    theirs = dict(ref.named_parameters())
    for key, hf_keys in hf_key_map(WIDE_HEADS).items():
        grad = ours.get_parameter(key).grad
        assert grad is not None and grad.abs().max() > 0, key
        torch.testing.assert_close(grad, torch.cat([theirs[k].grad for k in hf_keys]), atol=1e-5, rtol=1e-4)


def test_bf16_autocast_stays_close_to_fp32():
    _, ours = hf_pair(MICRO, std=0.1)
    ids = _ids(MICRO)
    with torch.no_grad():
        full = ours(ids)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = ours(ids)
    assert half.dtype == torch.bfloat16
    assert (half.float() - full).abs().max() < 0.05 * full.abs().max()


def test_bf16_weights_run_and_stay_close_to_fp32():
    _, ours = hf_pair(MICRO, std=0.1)
    ids = _ids(MICRO)
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(p.bfloat16().float())  # the same weights in both precisions: only the compute differs
        full = ours(ids)
        half = ours.to(torch.bfloat16)(ids)
        cache = ours.new_cache(2, 24)
        steps = [ours(ids[:, :20], cache=cache)] + [ours(ids[:, i : i + 1], cache=cache) for i in range(20, 24)]
    assert half.dtype == torch.bfloat16 and cache.k[0].dtype == torch.bfloat16
    assert (half.float() - full).abs().max() < 0.05 * full.abs().max()
    assert (torch.cat(steps, dim=1).float() - full).abs().max() < 0.05 * full.abs().max()


# --- KV cache and padding --------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [[24], [7, 1, 1, 15], [1] * 24], ids=["one", "mixed", "token-by-token"])
def test_cached_forward_equals_full_recomputation(chunks):
    _, ours = hf_pair(MICRO)
    ids = _ids(MICRO)
    cache = ours.new_cache(2, 30)
    with torch.no_grad():
        full = ours(ids)
        pieces, start = [], 0
        for n in chunks:
            pieces.append(ours(ids[:, start : start + n], cache=cache))
            start += n
    assert cache.length == 24
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_left_padded_batch_equals_unpadded_rows_and_transformers():
    ref, ours = hf_pair(MICRO)
    lengths = [9, 14, 5]
    rows = [_ids(MICRO, 1, n, seed=i)[0] for i, n in enumerate(lengths)]
    L = max(lengths)
    ids = torch.zeros(len(rows), L, dtype=torch.int64)
    mask = torch.zeros(len(rows), L, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, L - len(row) :], mask[i, L - len(row) :] = row, True
    with torch.no_grad():
        padded = ours(ids, key_mask=mask)
        theirs = ref(ids, attention_mask=mask.long()).logits
        assert torch.isfinite(padded).all()  # pad rows attend to themselves: no NaN
        for i, row in enumerate(rows):
            alone = ours(row[None])[0]
            torch.testing.assert_close(padded[i, L - len(row) :], alone, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(theirs[i, L - len(row) :], alone, atol=1e-5, rtol=1e-5)
        # The mask lives in the cache: padded prefill then cached steps equal the unpadded rows too.
        cache = ours.new_cache(3, L + 2)
        ours(ids, cache=cache, key_mask=mask)
        extra = _ids(MICRO, 3, 2, seed=9)
        steps = torch.cat([ours(extra[:, j : j + 1], cache=cache) for j in range(2)], dim=1)
        for i, row in enumerate(rows):
            torch.testing.assert_close(steps[i], ours(torch.cat((row, extra[i]))[None])[0, -2:], atol=1e-5, rtol=1e-5)


def test_last_only_returns_the_last_position():
    _, ours = hf_pair(MICRO)
    ids = _ids(MICRO)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, last_only=True), ours(ids)[:, -1:])


# --- the nn helpers the decoder uses --------------------------------------------------------------------------


@pytest.mark.parametrize("rotary", [16, 8], ids=["full", "partial"])
def test_rotate_matches_apply_rope_values_and_gradients(rotary):
    x = torch.randn(2, 5, 3, 16, requires_grad=True)  # (B, L, H, D)
    cos, sin = (t[:, None, :] for t in rope_tables(5, rotary, 1e6))  # (L, 1, r/2)
    g = torch.randn(2, 5, 3, 16)
    expected = apply_rope(x, cos, sin)
    (grad_expected,) = torch.autograd.grad(expected, x, g)
    got = rotate(x, cos, sin)
    (grad_got,) = torch.autograd.grad(got, x, g)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(grad_got, grad_expected)  # the inverse rotation is the exact backward


@pytest.mark.parametrize(("q_len", "padded"), [(6, False), (1, False), (3, False), (6, True), (1, True)])
def test_causal_attention_matches_explicit_softmax(q_len, padded):
    B, H, H_kv, Lk, D = 2, 4, 2, 6, 8
    q, k, v = torch.randn(B, H, q_len, D), torch.randn(B, H_kv, Lk, D), torch.randn(B, H_kv, Lk, D)
    key_mask = torch.ones(B, Lk, dtype=torch.bool)
    if padded:
        key_mask[0, :2] = False
    got = causal_attention(q, k, v, mask=causal_mask(q_len, Lk, key_mask if padded else None))
    kr, vr = k.repeat_interleave(H // H_kv, 1), v.repeat_interleave(H // H_kv, 1)  # query head h reads kv h // 2
    scores = q @ kr.transpose(-1, -2) / math.sqrt(D)  # (B, H, Lq, Lk)
    qi, ki = torch.arange(Lk - q_len, Lk)[:, None], torch.arange(Lk)[None, :]
    allowed = (ki <= qi) & (key_mask[:, None, None, :] | (ki == qi))
    expected = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ vr
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# --- loss ------------------------------------------------------------------------------------------------------


def test_next_token_loss_closed_form_on_uniform_logits():
    B, L, V, z = 2, 5, 11, 1e-3
    logits = torch.zeros(B, L, V)
    targets = torch.randint(0, V, (B, L))
    loss, metrics = next_token_loss(logits, targets, z_loss=z)
    # softmax of equal logits is uniform: nll = log V; logsumexp = log V, so the z-term is z * log(V)^2.
    assert metrics["nll"].item() == pytest.approx(math.log(V), rel=1e-6)
    assert metrics["z_loss"].item() == pytest.approx(z * math.log(V) ** 2, rel=1e-6)
    assert loss.item() == pytest.approx(math.log(V) + z * math.log(V) ** 2, rel=1e-6)
    assert metrics["tokens"].item() == B * L


def test_next_token_loss_matches_cross_entropy_and_ignores_masked_positions():
    logits = torch.randn(3, 7, 13, dtype=torch.bfloat16)
    targets = torch.randint(0, 13, (3, 7))
    mask = torch.rand(3, 7) > 0.4
    loss, metrics = next_token_loss(logits, targets, loss_mask=mask, z_loss=0.0)
    flat = logits.float()[mask]
    assert loss.item() == pytest.approx(F.cross_entropy(flat, targets[mask]).item(), rel=1e-6)
    assert metrics["tokens"].item() == mask.sum().item()
    noisy = logits.clone()
    noisy[~mask] = 100.0  # what happens at uncounted positions does not matter
    assert next_token_loss(noisy, targets, loss_mask=mask)[0] == next_token_loss(logits, targets, loss_mask=mask)[0]
    none = torch.zeros_like(mask)
    assert next_token_loss(logits, targets, loss_mask=none)[0].item() == 0.0


def test_z_loss_gradient_pushes_the_normaliser_to_zero():
    logits = torch.full((1, 1, 4), 3.0, requires_grad=True)  # logsumexp = 3 + log 4 > 0
    loss, _ = next_token_loss(logits, torch.zeros(1, 1, dtype=torch.int64), z_loss=1.0)
    loss.backward()
    lse = 3 + math.log(4)
    # d/dz_i [z_loss * lse^2] = 2 lse softmax_i; the nll adds softmax_i - [i == target].
    expected = torch.full((4,), 0.25 * (1 + 2 * lse))
    expected[0] -= 1
    torch.testing.assert_close(logits.grad[0, 0], expected)


# --- sizes and presets -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [MICRO, TIED, WIDE_HEADS, PRESETS["lm_tiny"]()], ids=["micro", "tied", "wide", "tiny"])
def test_param_count_matches_the_module(cfg):
    model = Decoder(cfg)
    assert param_count(cfg) == sum(p.numel() for p in model.parameters())  # a tied head is counted once
    embedding = model.embed.weight.numel() * (1 if cfg.tie_embeddings else 2)
    assert param_count(cfg, embeddings=False) == param_count(cfg) - embedding


@pytest.mark.parametrize("name", ["soda_135m", "soda_600m", "soda_1_7b", "soda_4b"])
def test_soda_presets_on_the_meta_device(name):
    cfg = decoder_preset(name)
    with torch.device("meta"):
        model = Decoder(cfg)
    assert cfg.vocab_size == 144_644 and not cfg.tie_embeddings
    assert param_count(cfg) == sum(p.numel() for p in model.parameters())
    assert len(model.blocks) == cfg.n_layers


def test_default_head_dim_follows_edited_fields():
    assert dataclasses.replace(MICRO, dim=64).dh == 16  # head_dim None: dim // n_heads, after the edit too
    assert WIDE_HEADS.dh == 16 and WIDE_HEADS.n_heads * WIDE_HEADS.dh != WIDE_HEADS.dim


def test_presets_and_unknown_name():
    for name, fn in PRESETS.items():
        assert isinstance(fn(), DecoderConfig), name
    with pytest.raises(ValueError, match="valid: soda_135m"):
        decoder_preset("soda_7b")


# --- bad input -------------------------------------------------------------------------------------------------


def test_bad_ids_and_lengths_raise_clear_errors():
    model = Decoder(MICRO)
    with pytest.raises(ValueError, match=r"in \[0, 97\), got min 0, max 97"):
        model(torch.tensor([[0, 97]]))
    with pytest.raises(ValueError, match="got min -1"):
        model(torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match="int64"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"65 tokens.*max_seq_len=64"):
        model(torch.zeros(1, 65, dtype=torch.int64))
    cache = model.new_cache(1, 4)
    with pytest.raises(ValueError, match=r"cannot take 1 rows at 0\.\.5"):
        model(torch.zeros(1, 5, dtype=torch.int64), cache=cache)
    with pytest.raises(ValueError, match="key_mask"):
        model(torch.zeros(1, 3, dtype=torch.int64), key_mask=torch.ones(1, 3))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_kv_heads": 3}, "must divide n_heads"),
        ({"dim": 0}, "dim must be >= 1"),
        ({"head_dim": 7}, "head_dim must be even"),
        ({"dim": 36, "n_heads": 4}, "head_dim must be even"),  # dim // n_heads = 9
        ({"rope_base": 1.0}, "rope_base > 1"),
    ],
)
def test_bad_configs_raise(change, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(MICRO, **change)
