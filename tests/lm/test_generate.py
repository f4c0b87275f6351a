"""Generation through the KV cache and the sampling helpers: greedy parity with transformers' generate, top-k/top-p
sets, seeded reproducibility, allowed-id masks, EOS handling, left padding and bad requests."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.lm.qwen3_fixtures import MICRO, hf_pair
from wavefoundry.lm.generate import filter_logits, generate, sample_next


def _prompt(batch: int = 2, length: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, MICRO.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))


# --- generation ------------------------------------------------------------------------------------------------


def test_greedy_equals_transformers_generate():
    ref, ours = hf_pair(MICRO)
    prompt = _prompt(3, 7)
    expected = ref.generate(prompt, max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0)
    got = generate(ours, prompt, max_new_tokens=20, temperature=0)
    assert got.shape == (3, 27)
    assert torch.equal(got, expected)
    assert len(set(got[:, 7:].flatten().tolist())) > 3  # not a constant continuation


def test_cached_greedy_steps_equal_full_recomputation():
    _, ours = hf_pair(MICRO)
    out = generate(ours, _prompt(), max_new_tokens=12, temperature=0)
    with torch.no_grad():
        full = ours(out)  # (B, L + n, V), no cache
    # Every new id is the argmax of the logits the uncached model gives at the position before it.
    assert torch.equal(out[:, 6:], full[:, 5:-1].argmax(-1))


def test_left_padded_generation_equals_single_rows():
    _, ours = hf_pair(MICRO)
    rows = [_prompt(1, n, seed=n)[0] for n in (3, 8, 5)]
    L = max(len(r) for r in rows)
    prompt = torch.zeros(3, L, dtype=torch.int64)
    mask = torch.zeros(3, L, dtype=torch.bool)
    for i, r in enumerate(rows):
        prompt[i, L - len(r) :], mask[i, L - len(r) :] = r, True
    batched = generate(ours, prompt, max_new_tokens=10, temperature=0, prompt_mask=mask)
    for i, r in enumerate(rows):
        alone = generate(ours, r[None], max_new_tokens=10, temperature=0)
        assert torch.equal(batched[i, L:], alone[0, len(r) :])


def test_seeded_sampling_is_reproducible():
    _, ours = hf_pair(MICRO)
    kw = {"max_new_tokens": 15, "temperature": 1.0, "top_k": 20, "top_p": 0.9}
    a = generate(ours, _prompt(), generator=torch.Generator().manual_seed(3), **kw)
    b = generate(ours, _prompt(), generator=torch.Generator().manual_seed(3), **kw)
    c = generate(ours, _prompt(), generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_allowed_mask_and_callable_restrict_every_step():
    _, ours = hf_pair(MICRO)
    allowed = torch.zeros(MICRO.vocab_size, dtype=torch.bool)
    allowed[10:20] = True
    out = generate(ours, _prompt(), max_new_tokens=10, allowed=allowed, generator=torch.Generator().manual_seed(0))
    assert ((out[:, 6:] >= 10) & (out[:, 6:] < 20)).all()

    seen = []

    def per_step(step, ids):  # alternate two disjoint id ranges, as TTS alternates codebooks
        seen.append((step, ids.shape[1]))
        mask = torch.zeros(MICRO.vocab_size, dtype=torch.bool)
        mask[(step % 2) * 50 : (step % 2) * 50 + 5] = True
        return mask

    out = generate(ours, _prompt(), max_new_tokens=6, allowed=per_step, temperature=0)
    assert seen == [(s, 6 + s) for s in range(6)]
    for s in range(6):
        lo = (s % 2) * 50
        assert ((out[:, 6 + s] >= lo) & (out[:, 6 + s] < lo + 5)).all()


def test_eos_finishes_rows_and_stops_early():
    _, ours = hf_pair(MICRO)
    prompt = _prompt()
    free = generate(ours, prompt, max_new_tokens=10, temperature=0)
    eos = int(free[0, 8])  # row 0 draws it at its third new id
    out = generate(ours, prompt, max_new_tokens=10, temperature=0, eos_id=eos)
    first = [int((row[6:] == eos).nonzero()[0]) if (row[6:] == eos).any() else None for row in free]
    assert first[0] <= 2
    row0 = out[0, 6:]
    assert (row0[first[0] :] == eos).all() and torch.equal(row0[: first[0]], free[0, 6 : 6 + first[0]])
    only = torch.zeros(MICRO.vocab_size, dtype=torch.bool)
    only[eos] = True
    stopped = generate(ours, prompt, max_new_tokens=10, eos_id=eos, allowed=only)
    assert stopped.shape == (2, 7)  # every row finished at once: no further steps


def test_bad_requests_raise_clear_errors():
    _, ours = hf_pair(MICRO)
    with pytest.raises(ValueError, match=r"prompt of 60 tokens \+ max_new_tokens=5 = 65 exceeds .*max_seq_len=64"):
        generate(ours, _prompt(1, 60), max_new_tokens=5)
    with pytest.raises(ValueError, match="int64"):
        generate(ours, _prompt().int(), max_new_tokens=2)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
        generate(ours, _prompt(), max_new_tokens=-1)
    with pytest.raises(ValueError, match="token ids must be in"):
        generate(ours, torch.full((1, 3), MICRO.vocab_size), max_new_tokens=2)
    with pytest.raises(ValueError, match="masks out every id"):
        generate(ours, _prompt(), max_new_tokens=2, allowed=torch.zeros(MICRO.vocab_size, dtype=torch.bool))
    assert torch.equal(generate(ours, _prompt(), max_new_tokens=0), _prompt())


# --- sampling helpers ------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 40), v=st.integers(2, 40))
def test_top_k_keeps_exactly_k(seed, k, v):
    logits = torch.randn(3, v, generator=torch.Generator().manual_seed(seed))
    kept = torch.isfinite(filter_logits(logits, top_k=k))
    assert (kept.sum(-1) == min(k, v)).all()
    # The kept ids are the largest ones.
    assert (
        logits.masked_fill(~kept, float("inf")).min(-1).values >= logits.masked_fill(kept, -1e9).max(-1).values
    ).all()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), p=st.floats(0.01, 0.99), v=st.integers(2, 30))
def test_top_p_keeps_the_smallest_set_reaching_p(seed, p, v):
    logits = 3 * torch.randn(2, v, generator=torch.Generator().manual_seed(seed))
    kept = torch.isfinite(filter_logits(logits, top_p=p))
    probs = logits.softmax(-1)
    for row in range(2):
        mass = probs[row][kept[row]].sum().item()
        assert mass >= p - 1e-6
        # Without its least probable member the kept set falls short of p: it is the smallest such set...
        assert mass - probs[row][kept[row]].min().item() < p + 1e-6
        # ...and it holds the most probable ids.
        dropped = probs[row][~kept[row]]
        assert dropped.numel() == 0 or probs[row][kept[row]].min() >= dropped.max()


def test_top_p_closed_form():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert torch.isfinite(filter_logits(logits, top_p=0.8)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.81)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.1)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=1.0)).all()


def test_temperature_zero_is_argmax_and_sampling_follows_softmax():
    logits = torch.randn(4, 9)
    assert torch.equal(sample_next(logits, temperature=0), logits.argmax(-1))
    row = torch.tensor([0.0, 1.0, 2.0, -1.0])
    draws = sample_next(row.expand(20000, 4), temperature=2.0, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4) / 20000
    expected = (row / 2.0).softmax(-1)
    assert (freq - expected).abs().max() < 4 * math.sqrt(0.25 / 20000)  # within 4 standard errors


def test_sampling_arguments_are_checked():
    logits = torch.randn(1, 5)
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, temperature=-1)
    with pytest.raises(ValueError, match="top_k"):
        filter_logits(logits, top_k=0)
    with pytest.raises(ValueError, match="top_p"):
        filter_logits(logits, top_p=1.5)
    with pytest.raises(ValueError, match="bool mask"):
        filter_logits(logits, allowed=torch.ones(4, dtype=torch.bool))
