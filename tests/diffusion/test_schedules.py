"""Schedules: cosine alpha/sigma, the t <-> sigma map, sigma grids (closed forms, diffusers parity), bad input."""

import math

import pytest
import torch

from wavefoundry.diffusion.schedules import (
    SIGMA_SCHEDULES,
    alpha_sigma,
    get_sigmas,
    sigma_to_t,
    sigmas_karras,
    sigmas_loglinear,
    sigmas_polyexponential,
    t_to_sigma,
)


def test_alpha_sigma_endpoints_and_unit_norm():
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    alpha, sigma = alpha_sigma(t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t), rtol=0, atol=1e-15)
    assert alpha[0] == 1 and sigma[0] == 0
    assert abs(alpha[-1].item()) < 1e-15 and sigma[-1] == 1
    assert (alpha.diff() < 0).all() and (sigma.diff() > 0).all()
    a, s = alpha_sigma(0.5)
    assert math.isclose(s.item(), math.sqrt(0.5), rel_tol=1e-6)
    assert a.dtype == torch.float32 and math.isclose(a.item(), math.sqrt(0.5), rel_tol=1e-6)


def test_t_sigma_map_is_tan_and_inverse():
    t = torch.linspace(0, 0.999, 200, dtype=torch.float64)
    alpha, sigma = alpha_sigma(t)
    torch.testing.assert_close(t_to_sigma(t), sigma / alpha, rtol=1e-12, atol=0)
    torch.testing.assert_close(sigma_to_t(t_to_sigma(t)), t, rtol=0, atol=1e-12)
    s = torch.tensor([0.0, 0.3, 1.0, 80.0, 500.0], dtype=torch.float64)
    torch.testing.assert_close(t_to_sigma(sigma_to_t(s)), s, rtol=1e-12, atol=0)
    assert math.isclose(t_to_sigma(0.5).item(), 1.0, rel_tol=1e-6)
    assert sigma_to_t(0.0).item() == 0.0
    assert sigma_to_t(float("inf")).item() == 1.0


@pytest.mark.parametrize("name", list(SIGMA_SCHEDULES))
@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_grid_endpoints_length_and_order(name, n):
    sigmas = get_sigmas(name, n, 0.3, 500.0)
    assert sigmas.shape == (n + 1,) and sigmas.dtype == torch.float32
    assert sigmas[-1] == 0
    assert math.isclose(sigmas[0].item(), 500.0, rel_tol=1e-6)
    if n > 1:
        assert math.isclose(sigmas[-2].item(), 0.3, rel_tol=1e-6)
    assert (sigmas.diff() < 0).all()


def test_loglinear_is_equally_spaced_in_log_sigma_and_polyexponential_rho_1():
    sigmas = sigmas_loglinear(10, 0.3, 500.0, dtype=torch.float64)
    steps = sigmas[:-1].log().diff()
    torch.testing.assert_close(steps, torch.full_like(steps, math.log(0.3 / 500.0) / 9), rtol=1e-12, atol=0)
    assert torch.equal(sigmas, sigmas_polyexponential(10, 0.3, 500.0, rho=1.0, dtype=torch.float64))


def test_polyexponential_rho_closed_form():
    n, lo, hi, rho = 6, 0.01, 100.0, 2.0
    sigmas = sigmas_polyexponential(n, lo, hi, rho=rho, dtype=torch.float64)
    for i in range(n):
        expected = math.exp(math.log(lo) + (1 - i / (n - 1)) ** rho * (math.log(hi) - math.log(lo)))
        assert math.isclose(sigmas[i].item(), expected, rel_tol=1e-12)


def test_karras_closed_form():
    n, lo, hi = 5, 0.002, 80.0
    sigmas = sigmas_karras(n, lo, hi, dtype=torch.float64)
    mid = (hi ** (1 / 7) + 0.5 * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7
    assert math.isclose(sigmas[2].item(), mid, rel_tol=1e-12)
    linear = sigmas_karras(n, lo, hi, rho=1.0, dtype=torch.float64)[:-1]
    torch.testing.assert_close(linear.diff(), torch.full((n - 1,), (lo - hi) / (n - 1), dtype=torch.float64))


def test_grids_match_diffusers_edm_scheduler():
    diffusers = pytest.importorskip("diffusers")
    for ours, theirs in (("log-linear", "exponential"), ("karras", "karras")):
        sched = diffusers.EDMDPMSolverMultistepScheduler(sigma_min=0.3, sigma_max=500.0, sigma_schedule=theirs)
        sched.set_timesteps(25)
        torch.testing.assert_close(get_sigmas(ours, 25, 0.3, 500.0), sched.sigmas, rtol=2e-6, atol=0)


def test_get_sigmas_forwards_options():
    assert torch.equal(get_sigmas("karras", 8, 0.1, 10.0, rho=3.0), sigmas_karras(8, 0.1, 10.0, rho=3.0))
    assert get_sigmas("polyexponential", 4, 0.1, 10.0, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize(
    ("args", "kw", "match"),
    [
        (("nope", 10, 0.3, 500.0), {}, "polyexponential, log-linear, karras"),
        (("karras", 0, 0.3, 500.0), {}, ">= 1"),
        (("karras", -3, 0.3, 500.0), {}, ">= 1"),
        (("karras", 2.5, 0.3, 500.0), {}, ">= 1"),
        (("log-linear", 10, 0.0, 500.0), {}, "sigma_min"),
        (("log-linear", 10, -1.0, 500.0), {}, "sigma_min"),
        (("log-linear", 10, 500.0, 0.3), {}, "sigma_min"),
        (("log-linear", 10, 0.3, 0.3), {}, "sigma_min"),
        (("karras", 10, 0.3, float("nan")), {}, "sigma_min"),
        (("karras", 10, 0.3, float("inf")), {}, "sigma_min"),
        (("karras", 10, 0.3, 500.0), {"rho": 0.0}, "rho"),
        (("polyexponential", 10, 0.3, 500.0), {"rho": -1.0}, "rho"),
    ],
)
def test_bad_schedule_arguments(args, kw, match):
    with pytest.raises(ValueError, match=match):
        get_sigmas(*args, **kw)
