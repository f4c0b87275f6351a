"""v-objective: forward process, round trips, v as the time derivative of x_t, masked loss, timestep samplers."""

import math

import pytest
import torch
import torch.nn.functional as F

from wavefoundry.diffusion.objectives import (
    T_EPS,
    TIMESTEP_SAMPLERS,
    diffuse,
    get_timestep_sampler,
    sample_t_logit_normal,
    sample_t_uniform,
    v_loss,
    v_target,
    v_to_eps,
    v_to_x0,
)
from wavefoundry.diffusion.schedules import t_to_sigma


def _data(b=4, c=3, t=10, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, c, t, generator=g, dtype=dtype), torch.randn(b, c, t, generator=g, dtype=dtype)


@pytest.mark.parametrize("t", [torch.tensor([0.0, 0.1, 0.5, 0.97], dtype=torch.float64), 0.3])
def test_round_trips_recover_x0_and_eps(t):
    x0, eps = _data()
    x_t = diffuse(x0, eps, t)
    v = v_target(x0, eps, t)
    torch.testing.assert_close(v_to_x0(x_t, v, t), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(v_to_eps(x_t, v, t), eps, rtol=0, atol=1e-12)


def test_diffuse_endpoints_and_per_sample_time():
    x0, eps = _data()
    assert torch.equal(diffuse(x0, eps, 0.0), x0)
    torch.testing.assert_close(diffuse(x0, eps, torch.ones(4, dtype=torch.float64)), eps, rtol=0, atol=1e-15)
    t = torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=torch.float64)
    rows = torch.stack([diffuse(x0[i], eps[i], t[i]) for i in range(4)])
    torch.testing.assert_close(diffuse(x0, eps, t), rows)


def test_v_is_the_derivative_of_x_t_in_the_angle():
    # Salimans & Ho 2022: with phi = pi t / 2, x_t = cos(phi) x0 + sin(phi) eps and v = d x_t / d phi.
    x0, eps = _data()
    t, dt = torch.full((4,), 0.37, dtype=torch.float64), 1e-6
    fd = (diffuse(x0, eps, t + dt) - diffuse(x0, eps, t - dt)) / (2 * dt * math.pi / 2)
    torch.testing.assert_close(fd, v_target(x0, eps, t), rtol=0, atol=1e-8)


def test_float32_coefficients_follow_the_data_dtype():
    x0, eps = _data(dtype=torch.float32)
    assert diffuse(x0, eps, torch.rand(4, dtype=torch.float64)).dtype == torch.float32
    with pytest.raises(ValueError, match="shape"):
        diffuse(x0, eps, torch.rand(4, 1))


def test_v_loss_without_mask_is_mse():
    a, b = _data()
    torch.testing.assert_close(v_loss(a, b), F.mse_loss(a, b))
    assert torch.equal(v_loss(a, b, torch.ones(4, 10, dtype=torch.bool)), v_loss(a, b))


def test_v_loss_mask_averages_valid_frames_only_and_ignores_padding():
    a, b = _data()
    lengths = [10, 7, 3, 1]
    mask = torch.arange(10)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
    a = a.masked_fill(~mask[:, None, :], float("inf"))  # garbage in padded frames must not leak
    expected = torch.cat([(a[i, :, :n] - b[i, :, :n]).pow(2).flatten() for i, n in enumerate(lengths)]).mean()
    torch.testing.assert_close(v_loss(a, b, mask), expected)
    torch.testing.assert_close(v_loss(a, b, mask.float()), expected)
    pred = a.clone().requires_grad_(True)
    v_loss(pred, b, mask).backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[~mask[:, None, :].expand_as(pred)] == 0).all()
    assert v_loss(a, b, torch.zeros(4, 10, dtype=torch.bool)).item() == 0.0


def test_v_loss_bad_shapes():
    a, b = _data()
    with pytest.raises(ValueError, match="differ in shape"):
        v_loss(a, b[:, :2])
    with pytest.raises(ValueError, match=r"mask must be \(B, T\)"):
        v_loss(a, b, torch.ones(4, 9, dtype=torch.bool))


def test_timestep_samplers_range_median_and_determinism():
    n = 20000
    u = sample_t_uniform(n, generator=torch.Generator().manual_seed(0))
    assert u.shape == (n,) and u.dtype == torch.float32
    assert ((u > 0) & (u < 1)).all() and abs(u.mean().item() - 0.5) < 0.01
    ln = sample_t_logit_normal(n, mean=0.7, std=1.2, generator=torch.Generator().manual_seed(0))
    assert ((ln > 0) & (ln < 1)).all()
    assert abs(ln.median().item() - 1 / (1 + math.exp(-0.7))) < 0.01
    again = sample_t_logit_normal(n, mean=0.7, std=1.2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ln, again)
    assert torch.equal(u, sample_t_uniform(n, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(u, sample_t_uniform(n, generator=torch.Generator().manual_seed(1)))


def test_extreme_logit_normal_is_clamped_away_from_0_and_1():
    t = sample_t_logit_normal(5000, std=100.0, generator=torch.Generator().manual_seed(0))
    assert t.min().item() == pytest.approx(T_EPS) and t.max().item() == pytest.approx(1 - T_EPS)
    assert torch.isfinite(t_to_sigma(t)).all() and (t_to_sigma(t) > 0).all()


def test_timestep_sampler_registry_and_bad_input():
    assert set(TIMESTEP_SAMPLERS) == {"uniform", "logit-normal"}
    assert get_timestep_sampler("logit-normal") is sample_t_logit_normal
    with pytest.raises(ValueError, match="uniform, logit-normal"):
        get_timestep_sampler("beta")
    with pytest.raises(ValueError, match=">= 1"):
        sample_t_uniform(0)
    with pytest.raises(ValueError, match="std"):
        sample_t_logit_normal(4, std=0.0)
