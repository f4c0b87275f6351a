"""Iterative decoding: nothing left masked, the re-masking follows the cosine schedule over spans, a prefix and the
kept part of an inpainting come back exactly, an oracle model is decoded exactly, CFG combines the two branches as
``l_u + w (l_c - l_u)``, and bad schedules fail clearly."""

import math

import pytest
import torch

from wavefoundry.config import ConfigError
from wavefoundry.lm.masked import MaskedTransformer, masked_micro
from wavefoundry.lm.masked_decode import DecodeConfig, GuidedLogits, decode

V, K = 17, 3


def _model():
    torch.manual_seed(0)
    return MaskedTransformer(masked_micro()).eval()


def _guided(model, b=2):
    ctx = torch.randn(b, 5, 16, generator=torch.Generator().manual_seed(3))
    return GuidedLogits(model, ctx, None, torch.zeros_like(ctx), None)


def test_every_position_unmasked_and_values_in_range():
    model = _model()
    codes = torch.zeros(2, K, 20, dtype=torch.long)
    known = torch.zeros_like(codes, dtype=torch.bool)
    out = decode(_guided(model), codes, known, DecodeConfig(steps=(5, 3, 2)), mask_id=V,
                 generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert out.shape == (2, K, 20) and int(out.min()) >= 0 and int(out.max()) < V


def test_remasking_follows_the_schedule_over_spans():
    T, span, S = 24, 3, 6
    seen = []

    def fn(codes, stage, scale):
        seen.append((stage, int((codes[:, stage] == V).sum()), scale))
        return torch.randn(codes.shape[0], T, V, generator=torch.Generator().manual_seed(len(seen)))

    cfg = DecodeConfig(steps=(S, 2, 1), span=span, cfg_max=7.0, cfg_min=1.0)
    decode(fn, torch.zeros(1, K, T, dtype=torch.long), torch.zeros(1, K, T, dtype=torch.bool), cfg, mask_id=V)
    n_spans = T // span
    expect = []
    for s in range(S):
        gamma = math.cos(math.pi / 2 * s / (S - 1))
        expect.append(T if s == 0 else span * min(n_spans, max(1, math.floor(gamma * n_spans))))
    assert [m for st, m, _ in seen if st == 0] == expect
    scales = [w for st, _, w in seen if st == 0]
    assert scales[0] == pytest.approx(7.0) and scales[-1] == pytest.approx(1.0)  # annealed with the mask rate
    assert [st for st, _, _ in seen] == [0] * S + [1, 1, 2]


def test_oracle_model_is_decoded_exactly():
    target = torch.randint(0, V, (2, K, 15), generator=torch.Generator().manual_seed(0))

    def oracle(codes, stage, scale):
        return torch.nn.functional.one_hot(target[:, stage], V).float() * 50.0  # (B, T, V)

    out = decode(oracle, torch.zeros_like(target), torch.zeros_like(target, dtype=torch.bool),
                 DecodeConfig(steps=(4, 3, 2), temperature=1.0, top_p=0.9), mask_id=V)  # fmt: skip
    assert torch.equal(out, target)


def test_prefix_and_inpainting_are_kept_exactly():
    model = _model()
    g = torch.Generator().manual_seed(5)
    given = torch.randint(0, V, (2, K, 18), generator=g)
    prefix = torch.zeros_like(given, dtype=torch.bool)
    prefix[:, :, :7] = True
    inpaint = torch.ones_like(prefix)
    inpaint[:, :, 6:11] = False
    for known in (prefix, inpaint):
        out = decode(_guided(model), given.clone(), known, DecodeConfig(steps=(4, 2, 2)), mask_id=V, generator=g)
        assert torch.equal(out[known], given[known])
        assert not (out == V).any()
        assert not torch.equal(out, given)  # the free frames were regenerated


def test_guided_logits_combine_the_branches():
    model = _model()
    codes = torch.randint(0, V, (2, K, 10), generator=torch.Generator().manual_seed(0))
    guided = _guided(model)
    cond = model(codes, 1, context=guided.context)
    uncond = model(codes, 1, context=torch.zeros_like(guided.context))
    torch.testing.assert_close(guided(codes, 1, 3.0), uncond + 3.0 * (cond - uncond), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(guided(codes, 1, 1.0), cond, atol=1e-5, rtol=1e-5)


def test_span_mean_scoring_runs_and_seeds_reproduce():
    model = _model()
    codes = torch.zeros(2, K, 16, dtype=torch.long)
    known = torch.zeros_like(codes, dtype=torch.bool)
    cfg = DecodeConfig(steps=(3, 2, 2), span_score="mean")
    a = decode(_guided(model), codes, known, cfg, mask_id=V, generator=torch.Generator().manual_seed(1))
    b = decode(_guided(model), codes, known, cfg, mask_id=V, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_bad_schedules():
    codes = torch.zeros(1, K, 8, dtype=torch.long)
    known = torch.zeros_like(codes, dtype=torch.bool)
    with pytest.raises(ValueError, match="has 2 stages; the model has 3 codebooks"):
        decode(lambda c, s, w: torch.zeros(1, 8, V), codes, known, DecodeConfig(steps=(2, 2)), mask_id=V)
    with pytest.raises(ConfigError, match="one count >= 1 per codebook"):
        DecodeConfig(steps=(4, 0, 2))
    with pytest.raises(ConfigError, match="one count >= 1 per codebook"):
        DecodeConfig(steps=())
    with pytest.raises(ConfigError, match="span_score"):
        DecodeConfig(span_score="min")
    with pytest.raises(ValueError, match="known must be a"):
        decode(lambda c, s, w: torch.zeros(1, 8, V), codes, known[:, 0], DecodeConfig(steps=(1, 1, 1)), mask_id=V)
