"""CFG wrapper (scale, interval, rescale, key checks, call counting) and condition dropout."""

import math

import pytest
import torch

from wavefoundry.diffusion.guidance import CFG, drop_condition, rescale_guided

B = 4


class ToyDenoiser:
    """Row-independent x0 estimate that depends on x, sigma and both conditioning tensors; records batch sizes."""

    def __init__(self):
        self.batches = []

    def __call__(self, x, sigma, *, cross, global_cond, cross_mask=None):
        self.batches.append(x.shape[0])
        sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0])[:, None, None]  # (B, 1, 1)
        text = cross.sum(1).mean(-1)[:, None, None]  # (B, 1, 1)
        if cross_mask is not None:
            text = text + cross_mask.sum(1)[:, None, None]
        return x / (1 + sigma**2) + text * torch.linspace(-1, 1, x.shape[-1], dtype=x.dtype) + global_cond[:, :1, None]


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 2, 8, generator=g, dtype=torch.float64)
    cond = {
        "cross": torch.randn(B, 5, 3, generator=g, dtype=torch.float64),
        "global_cond": torch.randn(B, 6, generator=g, dtype=torch.float64),
    }
    uncond = {"cross": torch.zeros(B, 5, 3, dtype=torch.float64), "global_cond": cond["global_cond"].clone()}
    return x, cond, uncond


def test_scale_one_is_the_conditional_output_in_one_call():
    x, cond, uncond = _inputs()
    den = ToyDenoiser()
    out = CFG(den, 1.0, uncond)(x, 2.0, **cond)
    assert torch.equal(out, ToyDenoiser()(x, 2.0, **cond))
    assert den.batches == [B]


def test_scale_zero_is_unconditional_and_general_scale_is_batched_cfg():
    x, cond, uncond = _inputs()
    sigma = torch.full((B,), 3.0, dtype=torch.float64)
    ref_c, ref_u = ToyDenoiser()(x, sigma, **cond), ToyDenoiser()(x, sigma, **uncond)
    torch.testing.assert_close(CFG(ToyDenoiser(), 0.0, uncond)(x, sigma, **cond), ref_u, rtol=0, atol=1e-14)
    den = ToyDenoiser()
    out = CFG(den, 7.0, uncond)(x, sigma, **cond)
    torch.testing.assert_close(out, ref_u + 7.0 * (ref_c - ref_u), rtol=0, atol=1e-12)
    assert den.batches == [2 * B]
    assert not torch.allclose(out, ref_c)


def test_uncond_with_batch_one_is_repeated():
    x, cond, uncond = _inputs()
    one = {k: v[:1] for k, v in uncond.items()}
    one["global_cond"] = cond["global_cond"][:1]
    full = {k: v.expand(B, *v.shape[1:]) for k, v in one.items()}
    torch.testing.assert_close(
        CFG(ToyDenoiser(), 4.0, one)(x, 1.0, **cond), CFG(ToyDenoiser(), 4.0, full)(x, 1.0, **cond)
    )


def test_interval_outside_returns_conditional_without_the_uncond_half():
    x, cond, uncond = _inputs()
    den = ToyDenoiser()
    guide = CFG(den, 6.0, uncond, interval=(0.5, 10.0))
    assert torch.equal(guide(x, 50.0, **cond), ToyDenoiser()(x, 50.0, **cond))
    assert torch.equal(guide(x, torch.full((B,), 0.1, dtype=torch.float64), **cond), ToyDenoiser()(x, 0.1, **cond))
    assert den.batches == [B, B]
    inside = guide(x, 2.0, **cond)
    torch.testing.assert_close(inside, CFG(ToyDenoiser(), 6.0, uncond)(x, 2.0, **cond), rtol=0, atol=0)
    assert den.batches[-1] == 2 * B


def test_interval_with_per_sample_sigma_guides_only_rows_inside():
    x, cond, uncond = _inputs()
    sigma = torch.tensor([0.1, 2.0, 50.0, 10.0], dtype=torch.float64)
    out = CFG(ToyDenoiser(), 6.0, uncond, interval=(0.5, 10.0))(x, sigma, **cond)
    plain = CFG(ToyDenoiser(), 6.0, uncond)(x, sigma, **cond)
    ref_c = ToyDenoiser()(x, sigma, **cond)
    for i, guided in enumerate([False, True, False, True]):
        assert torch.equal(out[i], plain[i] if guided else ref_c[i])


def test_rescale_zero_is_plain_cfg_and_one_matches_conditional_std():
    x, cond, uncond = _inputs()
    plain = CFG(ToyDenoiser(), 5.0, uncond)(x, 1.5, **cond)
    assert torch.equal(CFG(ToyDenoiser(), 5.0, uncond, rescale=0.0)(x, 1.5, **cond), plain)
    ref_c = ToyDenoiser()(x, 1.5, **cond)
    full = CFG(ToyDenoiser(), 5.0, uncond, rescale=1.0)(x, 1.5, **cond)
    torch.testing.assert_close(full.flatten(1).std(1), ref_c.flatten(1).std(1), rtol=1e-12, atol=0)
    torch.testing.assert_close(full / plain, (full / plain)[:, :1, :1].expand_as(full))  # a per-sample scale
    half = CFG(ToyDenoiser(), 5.0, uncond, rescale=0.3)(x, 1.5, **cond)
    torch.testing.assert_close(half, 0.3 * full + 0.7 * plain, rtol=0, atol=1e-12)


def test_rescale_guided_of_constant_rows_is_finite():
    out = rescale_guided(torch.ones(2, 3, 4), torch.ones(2, 3, 4), 0.7)
    assert torch.isfinite(out).all()


def test_none_and_bool_conditioning_pass_through():
    x, cond, uncond = _inputs()
    mask = torch.ones(B, 5, dtype=torch.bool)
    den = ToyDenoiser()
    out = CFG(den, 2.0, {**uncond, "cross_mask": mask})(x, 1.0, **cond, cross_mask=mask)
    ref = CFG(ToyDenoiser(), 2.0, uncond)(x, 1.0, **cond)
    torch.testing.assert_close(out, ref + 5 * torch.linspace(-1, 1, 8, dtype=torch.float64))
    none = CFG(ToyDenoiser(), 2.0, {**uncond, "cross_mask": None})(x, 1.0, **cond, cross_mask=None)
    torch.testing.assert_close(none, ref)


@pytest.mark.parametrize(
    ("uncond_edit", "cond_edit", "match"),
    [
        ({"global_cond": None}, {}, "only one"),
        ({}, {"extra": torch.zeros(B)}, "extra"),
        ({"cross": torch.zeros(B, 4, 3)}, {}, "shape"),
    ],
)
def test_mismatched_conditioning_is_a_clear_error(uncond_edit, cond_edit, match):
    x, cond, uncond = _inputs()
    with pytest.raises(ValueError, match=match):
        CFG(ToyDenoiser(), 3.0, {**uncond, **uncond_edit})(x, 1.0, **cond, **cond_edit)
    missing = dict(cond)
    missing.pop("cross")
    with pytest.raises(ValueError, match="lacks \\['cross'\\]"):
        CFG(ToyDenoiser(), 3.0, uncond)(x, 1.0, **missing)


@pytest.mark.parametrize(
    "kw", [{"scale": math.nan}, {"rescale": 1.5}, {"rescale": -0.1}, {"interval": (2.0, 1.0)}, {"interval": (-1, 1)}]
)
def test_bad_cfg_arguments(kw):
    args = {"scale": 3.0, **kw}
    with pytest.raises(ValueError, match="CFG"):
        CFG(ToyDenoiser(), args.pop("scale"), {}, **args)


def test_drop_condition_probabilities_rows_and_determinism():
    cond = torch.randn(20000, 3, 2) + 5
    dropped, keep = drop_condition(cond, 0.1, generator=torch.Generator().manual_seed(0))
    assert keep.shape == (20000,) and keep.dtype == torch.bool
    assert abs((~keep).float().mean().item() - 0.1) < 0.01
    assert torch.equal(dropped[keep], cond[keep]) and (dropped[~keep] == 0).all()
    again, keep2 = drop_condition(cond, 0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(keep, keep2) and torch.equal(dropped, again)
    kept, all_keep = drop_condition(cond, 0.0)
    assert all_keep.all() and torch.equal(kept, cond)
    gone, none_keep = drop_condition(cond, 1.0)
    assert not none_keep.any() and (gone == 0).all()


def test_drop_condition_reuses_keep_across_tensors_and_handles_bool():
    mask = torch.ones(6, 4, dtype=torch.bool)
    keep = torch.tensor([True, False, True, True, False, True])
    dropped, same = drop_condition(mask, 0.5, keep=keep)
    assert same is keep and dropped.dtype == torch.bool
    assert torch.equal(dropped.any(1), keep)
    with pytest.raises(ValueError, match="keep"):
        drop_condition(mask, 0.5, keep=keep[:3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        drop_condition(mask, 1.5)
