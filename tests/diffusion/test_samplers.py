"""Samplers against closed forms: with the exact denoiser of Gaussian data x0 ~ N(MU, S0^2), every sampler must
produce N(MU, S0^2) and the deterministic ones must follow the exact probability-flow ODE
x0(x_T) = MU + (x_T - MU) S0 / sqrt(S0^2 + sigma_max^2). Plus diffusers parity, seeding, callbacks, NaN handling."""

import math

import pytest
import torch

from wavefoundry.diffusion.denoisers import VDenoiser
from wavefoundry.diffusion.samplers import (
    SAMPLERS,
    SamplingError,
    get_sampler,
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_euler,
    sample_heun,
)
from wavefoundry.diffusion.schedules import get_sigmas, sigma_to_t

MU, S0 = 0.5, 0.8
SIGMA_MIN, SIGMA_MAX = 1e-3, 80.0
SDE = ("dpmpp-2m-sde", "dpmpp-3m-sde")
# (sampler, keyword arguments) pairs that are deterministic ODE solvers; eta = 0 turns the SDE samplers into ODE ones.
ODE = [
    ("euler", {}),
    ("heun", {}),
    ("dpmpp-2m", {}),
    ("dpmpp-2m-sde", {"eta": 0.0}),
    ("dpmpp-3m-sde", {"eta": 0.0}),
]


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """E[x0 | x = x0 + sigma eps] for x0 ~ N(MU, S0^2 I)."""
    s = sigma.view(-1, *[1] * (x.ndim - 1)).to(x.dtype)
    return (S0**2 * x + s**2 * MU) / (S0**2 + s**2)


def start(b: int = 2048, seed: int = 1) -> torch.Tensor:
    """x_T ~ N(MU, S0^2 + SIGMA_MAX^2), the exact marginal at sigma_max; (b, 4) float64."""
    z = torch.randn(b, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return MU + math.sqrt(S0**2 + SIGMA_MAX**2) * z


def ode_error(name: str, kw: dict, n: int) -> float:
    x = start(256)
    exact = MU + (x - MU) * S0 / math.sqrt(S0**2 + SIGMA_MAX**2)
    sigmas = get_sigmas("log-linear", n, SIGMA_MIN, SIGMA_MAX, dtype=torch.float64)
    return (SAMPLERS[name](gaussian_denoiser, x, sigmas, **kw) - exact).abs().max().item()


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_produces_the_gaussian_target(name):
    x = start()  # 8192 values
    n = 400 if name == "euler" else 100  # first order: Euler's std is still 4% short at 100 steps
    sigmas = get_sigmas("log-linear", n, SIGMA_MIN, SIGMA_MAX, dtype=torch.float64)
    out = SAMPLERS[name](gaussian_denoiser, x, sigmas, generator=torch.Generator().manual_seed(0))
    assert abs(out.mean().item() - MU) < 0.03
    assert abs(out.std().item() / S0 - 1) < 0.03


@pytest.mark.parametrize(("name", "kw", "tol"), [(*p, t) for p, t in zip(ODE, [0.15, 1e-2, 5e-3, 5e-3, 2e-3])])
def test_deterministic_samplers_follow_the_exact_ode_and_converge(name, kw, tol):
    # x_T spans about +-300, so these are relative errors of ~1e-3 .. 1e-5.
    coarse, fine = ode_error(name, kw, 25), ode_error(name, kw, 100)
    assert fine < tol
    order = 1 if name == "euler" else 2  # multistep solvers start with a first-order step: global order 2
    assert fine < coarse / (4**order * 0.7)


def test_second_order_beats_euler_at_equal_steps():
    for n in (10, 25, 50):
        assert ode_error("dpmpp-2m", {}, n) < ode_error("euler", {}, n) / 4
    for n in (25, 50):  # Heun spends two calls per step; at 10 steps of h = 1.3 it is no better than Euler yet
        assert ode_error("heun", {}, n) < ode_error("euler", {}, n) / 2


def test_sde_with_eta_zero_is_the_ode_solver():
    x = start(64)
    sigmas = get_sigmas("karras", 20, SIGMA_MIN, SIGMA_MAX, dtype=torch.float64)
    ode = sample_dpmpp_2m(gaussian_denoiser, x, sigmas)
    torch.testing.assert_close(sample_dpmpp_2m_sde(gaussian_denoiser, x, sigmas, eta=0.0), ode, rtol=1e-12, atol=1e-12)


def test_sampling_through_vdenoiser_of_exact_v_model():
    def v_model(x_t, t):  # E[v | x_t] for the Gaussian data, cosine schedule
        a, s = torch.cos(t * math.pi / 2)[:, None], torch.sin(t * math.pi / 2)[:, None]
        var = a**2 * S0**2 + s**2
        return a * s / var * (x_t - a * MU) - s * (MU + a * S0**2 / var * (x_t - a * MU))

    x = start(256)
    sigmas = get_sigmas("log-linear", 50, SIGMA_MIN, SIGMA_MAX, dtype=torch.float64)
    ref = sample_dpmpp_2m(gaussian_denoiser, x, sigmas)
    torch.testing.assert_close(sample_dpmpp_2m(VDenoiser(v_model), x, sigmas), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", SDE)
def test_sde_noise_follows_the_generator(name):
    x, sigmas = start(8), get_sigmas("log-linear", 10, 0.3, SIGMA_MAX)
    run = lambda seed: SAMPLERS[name](gaussian_denoiser, x, sigmas, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(run(3), run(3))
    assert not torch.allclose(run(3), run(4))
    torch.manual_seed(5)
    a = SAMPLERS[name](gaussian_denoiser, x, sigmas)
    torch.manual_seed(5)
    assert torch.equal(a, SAMPLERS[name](gaussian_denoiser, x, sigmas))


@pytest.mark.parametrize("name", SDE)
def test_one_generator_per_row_gives_each_row_its_own_noise(name):
    x, sigmas = start(3), get_sigmas("log-linear", 10, 0.3, SIGMA_MAX)
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    batched = SAMPLERS[name](gaussian_denoiser, x, sigmas, generator=gens([7, 8, 9]))
    for b, seed in enumerate([7, 8, 9]):  # row b equals a batch of one with its own generator
        alone = SAMPLERS[name](gaussian_denoiser, x[b : b + 1], sigmas, generator=gens([seed]))
        torch.testing.assert_close(batched[b : b + 1], alone, rtol=1e-12, atol=1e-12)
    swapped = SAMPLERS[name](gaussian_denoiser, x, sigmas, generator=gens([9, 8, 7]))
    assert not torch.allclose(swapped[0], batched[0])
    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        SAMPLERS[name](gaussian_denoiser, x, sigmas, generator=gens([1, 2]))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_callback_once_per_step_and_dtype_kept(name):
    seen, calls = [], []

    def den(x, sigma):
        calls.append(sigma)
        return gaussian_denoiser(x, sigma)

    x = start(4).float()
    sigmas = get_sigmas("karras", 6, 0.3, SIGMA_MAX)
    out = SAMPLERS[name](den, x, sigmas, callback=seen.append)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert [e["i"] for e in seen] == list(range(6)) and all(e["n"] == 6 for e in seen)
    assert [e["sigma"] for e in seen] == pytest.approx(sigmas[:-1].tolist())
    assert all(e["denoised"].shape == x.shape for e in seen)
    assert len(calls) == (11 if name == "heun" else 6)
    assert all(c.shape == (4,) and c.dtype == torch.float32 for c in calls)


def test_euler_and_heun_final_step_returns_denoised():
    x = start(4)
    sigmas = torch.tensor([2.0, 0.0], dtype=torch.float64)
    expected = gaussian_denoiser(x, torch.full((4,), 2.0, dtype=torch.float64))
    for sampler in (sample_euler, sample_heun):
        torch.testing.assert_close(sampler(gaussian_denoiser, x, sigmas), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_denoiser_raises_naming_the_step(name, bad):
    sigmas = get_sigmas("log-linear", 10, 0.3, SIGMA_MAX)
    threshold = sigmas[4].item() * 1.0001  # denoiser breaks from the 5th noise level on

    def den(x, sigma):
        out = gaussian_denoiser(x, sigma)
        return out.fill_(bad) if sigma[0] < threshold else out

    # Heun evaluates sigmas[i + 1] inside step i, so it meets the bad level one step earlier.
    step = 4 if name == "heun" else 5
    with pytest.raises(SamplingError, match=rf"non-finite values at step {step} of 10 \(sigma=\d"):
        SAMPLERS[name](den, start(4), sigmas)


def test_registry_and_bad_grids():
    assert set(SAMPLERS) == {"euler", "heun", "dpmpp-2m", "dpmpp-2m-sde", "dpmpp-3m-sde"}
    assert get_sampler("heun") is sample_heun
    with pytest.raises(ValueError, match="euler, heun, dpmpp-2m, dpmpp-2m-sde, dpmpp-3m-sde"):
        get_sampler("ddim")
    x = start(2)
    for bad in ([1.0], [1.0, 2.0, 0.0], [1.0, 1.0, 0.0], [1.0, -0.5], [float("nan"), 0.0], [0.0, 0.0]):
        with pytest.raises(ValueError, match="sigmas"):
            sample_euler(gaussian_denoiser, x, torch.tensor(bad))
    with pytest.raises(ValueError, match="eta"):
        sample_dpmpp_2m_sde(gaussian_denoiser, x, torch.tensor([1.0, 0.0]), eta=2.0)


def test_grid_without_final_zero_stops_at_sigma_min():
    x = start(256)
    sigmas = get_sigmas("log-linear", 100, 0.3, SIGMA_MAX, dtype=torch.float64)[:-1]
    out = sample_dpmpp_2m(gaussian_denoiser, x, sigmas)
    exact = MU + (x - MU) * math.sqrt(S0**2 + 0.3**2) / math.sqrt(S0**2 + SIGMA_MAX**2)
    torch.testing.assert_close(out, exact, rtol=0, atol=1e-2)


@pytest.mark.parametrize(
    ("name", "algorithm", "order", "n"),
    [
        ("dpmpp-2m", "dpmsolver++", 2, 10),
        ("dpmpp-2m-sde", "sde-dpmsolver++", 2, 10),
        ("dpmpp-3m-sde", "dpmsolver++", 3, 20),
    ],
)
def test_parity_with_diffusers_edm_dpmsolver(name, algorithm, order, n):
    # Same v-model, same grid (Stable Audio Open's 0.3..500 log-linear) and same noise stream; 3M is compared at
    # eta = 0 (diffusers has no 3M SDE) with n >= 15 so diffusers does not lower the order near the end.
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.EDMDPMSolverMultistepScheduler(
        sigma_min=0.3,
        sigma_max=500.0,
        sigma_data=1.0,
        sigma_schedule="exponential",
        prediction_type="v_prediction",
        solver_order=order,
        algorithm_type=algorithm,
    )
    sched.set_timesteps(n)
    w = torch.randn(4, 4, generator=torch.Generator().manual_seed(0)) * 0.3

    def v_model(x_t, t):  # a fixed linear "network" with time dependence
        return torch.einsum("ij,bjt->bit", w, x_t) * torch.cos(t)[:, None, None] + t[:, None, None]

    x_T = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(3)) * sched.sigmas[0]
    x, g = x_T, torch.Generator().manual_seed(7)
    for c_noise in sched.timesteps:  # diffusers' EDM time is c_noise = log(sigma) / 4
        t = sigma_to_t(torch.exp(4 * c_noise.double())).float().expand(2)
        x = sched.step(v_model(sched.scale_model_input(x, c_noise), t), c_noise, x, generator=g).prev_sample
    kw = {"eta": 0.0} if name == "dpmpp-3m-sde" else {}
    ours = SAMPLERS[name](VDenoiser(v_model), x_T, sched.sigmas, generator=torch.Generator().manual_seed(7), **kw)
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)
