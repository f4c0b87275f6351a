"""VDenoiser: an exact v-model of Gaussian data gives the exact denoiser; sigma handling; diffusers parity."""

import math

import pytest
import torch

from wavefoundry.diffusion.denoisers import VDenoiser
from wavefoundry.diffusion.objectives import diffuse, v_target
from wavefoundry.diffusion.schedules import alpha_sigma, sigma_to_t

MU, S0 = 0.5, 0.8  # data x0 ~ N(MU, S0^2 I)


def exact_v_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[v | x_t] for x0 ~ N(MU, S0^2) on the cosine schedule, with no division by sigma_t (finite at t = 0)."""
    alpha, sigma = alpha_sigma(t.view(-1, *[1] * (x_t.ndim - 1)).to(x_t.dtype))
    var = alpha**2 * S0**2 + sigma**2  # Var[x_t]
    x0_hat = MU + alpha * S0**2 / var * (x_t - alpha * MU)
    eps_hat = sigma / var * (x_t - alpha * MU)
    return alpha * eps_hat - sigma * x0_hat


def exact_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """E[x0 | x] for x = x0 + sigma eps, x0 ~ N(MU, S0^2)."""
    s = sigma.view(-1, *[1] * (x.ndim - 1)).to(x.dtype)
    return (S0**2 * x + s**2 * MU) / (S0**2 + s**2)


def test_exact_v_model_is_the_conditional_mean_of_v():
    # Sanity of the test's own closed form: regressing v_target on x_t over many draws recovers the model.
    g = torch.Generator().manual_seed(0)
    x0 = MU + S0 * torch.randn(200000, dtype=torch.float64, generator=g)
    eps = torch.randn(200000, dtype=torch.float64, generator=g)
    t = torch.tensor(0.4, dtype=torch.float64)
    x_t, v = diffuse(x0, eps, t), v_target(x0, eps, t)
    slope, icpt = torch.linalg.lstsq(torch.stack([x_t, torch.ones_like(x_t)], 1), v[:, None]).solution[:, 0]
    probe = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(slope * probe + icpt, exact_v_model(probe, t.expand(2)), rtol=0, atol=1e-2)


@pytest.mark.parametrize("sigma", [0.0, 1e-3, 0.3, 1.0, 5.0, 80.0, 500.0])
def test_vdenoiser_of_exact_v_model_is_exact_denoiser(sigma):
    x = torch.randn(3, 2, 5, dtype=torch.float64) * math.sqrt(S0**2 + sigma**2) + MU
    out = VDenoiser(exact_v_model)(x, torch.tensor(sigma, dtype=torch.float64))
    torch.testing.assert_close(
        out, exact_denoiser(x, torch.full((3,), sigma, dtype=torch.float64)), rtol=1e-12, atol=1e-12
    )


def test_per_sample_sigma_matches_scalar_calls():
    sigma = torch.tensor([0.0, 0.5, 7.0, 300.0], dtype=torch.float64)
    x = torch.randn(4, 3, 6, dtype=torch.float64) * 10
    den = VDenoiser(exact_v_model)
    out = den(x, sigma)
    for i in range(4):
        torch.testing.assert_close(out[i : i + 1], den(x[i : i + 1], sigma[i]), rtol=0, atol=1e-14)
    torch.testing.assert_close(out, exact_denoiser(x, sigma), rtol=1e-12, atol=1e-12)


def test_model_sees_scaled_input_cosine_time_and_keywords():
    seen = {}

    def model(x_t, t, *, cond):
        seen.update(x_t=x_t, t=t, cond=cond)
        return torch.zeros_like(x_t)

    x, sigma = torch.randn(2, 3, 4), torch.tensor([0.5, 2.0])
    out = VDenoiser(model)(x, sigma, cond="c")
    torch.testing.assert_close(seen["x_t"], x / torch.sqrt(sigma**2 + 1)[:, None, None])
    torch.testing.assert_close(seen["t"], sigma_to_t(sigma))
    assert seen["t"].shape == (2,) and seen["cond"] == "c"
    torch.testing.assert_close(out, x / (sigma**2 + 1)[:, None, None])  # v = 0 leaves c_skip x


def test_sigma_zero_returns_x_exactly_without_calling_the_model():
    calls = []

    def nan_model(x_t, t):
        calls.append(t)
        return torch.full_like(x_t, float("nan"))

    x = torch.randn(2, 3, 4)
    assert torch.equal(VDenoiser(nan_model)(x, 0.0), x)
    assert torch.equal(VDenoiser(nan_model)(x, torch.zeros(2)), x)
    assert calls == []
    finite = VDenoiser(lambda x_t, t: torch.randn_like(x_t))
    out = finite(x, torch.tensor([0.0, 1.0]))
    assert torch.equal(out[0], x[0]) and not torch.equal(out[1], x[1])


def test_low_precision_input_keeps_its_dtype_and_float32_time():
    seen = {}

    def model(x_t, t):
        seen.update(dtype=x_t.dtype, t_dtype=t.dtype)
        return x_t

    out = VDenoiser(model)(torch.randn(2, 3, 4, dtype=torch.bfloat16), 3.0)
    assert out.dtype == torch.bfloat16 and seen == {"dtype": torch.bfloat16, "t_dtype": torch.float32}


def test_bad_sigma_shape():
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        VDenoiser(exact_v_model)(torch.randn(2, 3, 4), torch.ones(3))


def test_preconditioning_matches_diffusers_edm_v_prediction():
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.EDMDPMSolverMultistepScheduler(sigma_data=1.0, prediction_type="v_prediction")
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    v = torch.randn(2, 3, 4, dtype=torch.float64)
    for sigma in (0.3, 1.0, 42.0):
        ours = VDenoiser(lambda x_t, t, v=v: v)(x, sigma)
        theirs = sched.precondition_outputs(x, v, torch.tensor(sigma, dtype=torch.float64))
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            sched.precondition_inputs(x, torch.tensor(sigma, dtype=torch.float64)), x / math.sqrt(sigma**2 + 1)
        )
