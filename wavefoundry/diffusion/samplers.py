"""Samplers: pure functions that integrate the diffusion ODE / SDE from sigmas[0] down to sigmas[-1].

All work in the k-diffusion parametrisation x = x0 + sigma eps (Karras et al. 2022) over a denoiser
``denoiser(x, sigma (B,), **extra_args) -> x0`` (a :class:`~wavefoundry.diffusion.denoisers.VDenoiser`, maybe wrapped
in :class:`~wavefoundry.diffusion.guidance.CFG`). Shared signature::

    sample_x(denoiser, x, sigmas, *, extra_args=None, callback=None, generator=None) -> x

``x`` (B, ...) starts at noise level sigmas[0] (``x = sigmas[0] * randn`` for generation); ``sigmas`` is a descending
1-D grid, usually ending with 0 (:mod:`wavefoundry.diffusion.schedules`). Step coefficients are computed in float64
Python floats from the grid; ``x`` keeps its dtype. The DPM-Solver++ samplers (Lu et al. 2022, "DPM-Solver++: Fast
solver for guided sampling of diffusion probabilistic models") step in lambda = -log sigma with h = lambda_next -
lambda = log(sigma / sigma_next); the final step to sigma = 0 returns the denoised estimate. SDE noise is fresh
Gaussian noise per step, drawn with ``generator`` (or one generator per batch row: see :data:`Generators`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

#: RNG of the SDE noise: one generator for the batch, one per batch row (row b's noise then depends on its own
#: seed only, as in a batch of one), or None (torch's global RNG).
Generators = torch.Generator | Sequence[torch.Generator] | None

__all__ = [
    "SAMPLERS",
    "Denoiser",
    "Generators",
    "SamplingError",
    "get_sampler",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_3m_sde",
    "sample_euler",
    "sample_heun",
]

Denoiser = Callable[..., Tensor]
Callback = Callable[[dict[str, Any]], None]


class SamplingError(RuntimeError):
    """The denoiser returned NaN or Inf during sampling."""


class _Run:
    """Validated grid plus the per-call bookkeeping shared by all samplers (denoise, check, report)."""

    def __init__(self, denoiser: Denoiser, x: Tensor, sigmas: Tensor, extra_args, callback, generator) -> None:
        if sigmas.ndim != 1 or sigmas.numel() < 2:
            raise ValueError(f"sigmas must be a 1-D tensor of at least 2 values, got shape {tuple(sigmas.shape)}")
        self.s = [float(v) for v in sigmas.detach().to("cpu", torch.float64)]
        # Strictly decreasing and >= 0, so only the last value may be 0 (a zero step size would divide by zero).
        if not all(math.isfinite(v) and v >= 0 for v in self.s) or any(b >= a for a, b in zip(self.s, self.s[1:])):
            shown = ", ".join(f"{v:.4g}" for v in self.s[:8]) + (", ..." if len(self.s) > 8 else "")
            raise ValueError(f"sigmas must be finite, >= 0 and strictly decreasing, got [{shown}]")
        self.n = len(self.s) - 1
        self.denoiser, self.extra_args = denoiser, extra_args or {}
        self.callback, self.generator = callback, generator
        self.sigma_dtype = torch.promote_types(x.dtype, torch.float32)

    def denoise(self, x: Tensor, sigma: float, i: int) -> Tensor:
        """D(x, sigma) with sigma as (B,); raise SamplingError on non-finite output of step i (0-based)."""
        sig = torch.full((x.shape[0],), sigma, dtype=self.sigma_dtype, device=x.device)  # (B,)
        denoised = self.denoiser(x, sig, **self.extra_args)
        if not bool(torch.isfinite(denoised).all()):
            raise SamplingError(f"non-finite values at step {i + 1} of {self.n} (sigma={sigma:.6g})")
        return denoised

    def report(self, i: int, x: Tensor, denoised: Tensor) -> None:
        if self.callback is not None:
            s = self.s
            self.callback({"i": i, "n": self.n, "x": x, "sigma": s[i], "sigma_next": s[i + 1], "denoised": denoised})

    def noise(self, x: Tensor) -> Tensor:
        """N(0, I) like x, drawn on the generator's device (so a CPU seed gives the same noise on any device).

        A sequence of generators draws row b of the batch from generator b, so each row's noise depends on its
        own seed only (the same as a batch of one with that generator).
        """
        if self.generator is None:
            return torch.randn_like(x)
        if isinstance(self.generator, torch.Generator):
            where = self.generator.device
            eps = torch.randn(x.shape, generator=self.generator, device=where, dtype=self.sigma_dtype)
        else:
            if len(self.generator) != x.shape[0]:
                raise ValueError(f"{len(self.generator)} generators for a batch of {x.shape[0]}")
            eps = torch.stack([torch.randn(x.shape[1:], generator=g, device=g.device, dtype=self.sigma_dtype)
                               for g in self.generator])  # fmt: skip
        return eps.to(device=x.device, dtype=x.dtype)


def sample_euler(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    generator: Generators = None,
) -> Tensor:
    """Euler on the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al. 2022, alg. 1).

    One denoiser call per step. Written as x_next = D + (sigma_next / sigma)(x - D), which is the Euler step exactly
    (and DDIM, and first-order DPM-Solver++). ``generator`` is unused (deterministic).

    Args:
        denoiser: ``(x, sigma (B,), **extra_args) -> x0``.
        x: (B, ...) sample at noise level sigmas[0].
        sigmas: (n + 1,) descending noise levels.
        extra_args: keyword arguments for every denoiser call (conditioning).
        callback: called after every step with {"i", "n", "x", "sigma", "sigma_next", "denoised"}.
        generator: unused.

    Returns:
        (B, ...) sample at sigmas[-1].

    Raises:
        SamplingError: the denoiser returned NaN or Inf.
    """
    run = _Run(denoiser, x, sigmas, extra_args, callback, generator)
    s = run.s
    for i in range(run.n):
        denoised = run.denoise(x, s[i], i)
        run.report(i, x, denoised)
        x = denoised + (s[i + 1] / s[i]) * (x - denoised)
    return x


def sample_heun(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    generator: Generators = None,
) -> Tensor:
    """Heun's second-order method on the probability-flow ODE (Karras et al. 2022, alg. 1, without churn).

    Two denoiser calls per step, one for the final step to sigma = 0 (plain Euler there). Arguments as in
    :func:`sample_euler`; ``generator`` is unused.
    """
    run = _Run(denoiser, x, sigmas, extra_args, callback, generator)
    s = run.s
    for i in range(run.n):
        denoised = run.denoise(x, s[i], i)
        run.report(i, x, denoised)
        d = (x - denoised) / s[i]
        x_euler = x + (s[i + 1] - s[i]) * d
        if s[i + 1] == 0:
            x = x_euler
            continue
        d_next = (x_euler - run.denoise(x_euler, s[i + 1], i)) / s[i + 1]
        x = x + (s[i + 1] - s[i]) * (0.5 * (d + d_next))
    return x


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    generator: Generators = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, alg. 2): second-order multistep, one denoiser call per step.

    x_next = (sigma_next / sigma) x - expm1(-h) D_hat, with D_hat = D + (D - D_prev) / (2 r), r = h_prev / h (first
    step: D_hat = D). Arguments as in :func:`sample_euler`; ``generator`` is unused.
    """
    run = _Run(denoiser, x, sigmas, extra_args, callback, generator)
    s = run.s
    prev, h_prev = None, None
    for i in range(run.n):
        denoised = run.denoise(x, s[i], i)
        run.report(i, x, denoised)
        if s[i + 1] == 0:
            x = denoised
        else:
            h = math.log(s[i] / s[i + 1])
            d_hat = denoised if prev is None else denoised + (h / (2 * h_prev)) * (denoised - prev)
            x = (s[i + 1] / s[i]) * x - math.expm1(-h) * d_hat
            h_prev = h
        prev = denoised
    return x


def sample_dpmpp_2m_sde(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    generator: Generators = None,
    eta: float = 1.0,
) -> Tensor:
    """DPM-Solver++(2M) SDE, midpoint form (Lu et al. 2022, sec. 5 / k-diffusion ``sample_dpmpp_2m_sde``).

    With eta_h = eta h:
    x_next = (sigma_next / sigma) e^(-eta_h) x - expm1(-h - eta_h) D - 0.5 expm1(-h - eta_h) (D - D_prev) / r
    + sigma_next sqrt(-expm1(-2 eta_h)) z. eta = 1 is the SDE, eta = 0 reduces exactly to :func:`sample_dpmpp_2m`.

    Args:
        generator: draws z; the same seed gives the same output. None uses torch's global RNG.
        eta: amount of noise injected, in [0, 1].

    Other arguments as in :func:`sample_euler`.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    run = _Run(denoiser, x, sigmas, extra_args, callback, generator)
    s = run.s
    prev, h_prev = None, None
    for i in range(run.n):
        denoised = run.denoise(x, s[i], i)
        run.report(i, x, denoised)
        if s[i + 1] == 0:
            x = denoised
        else:
            h = math.log(s[i] / s[i + 1])
            weight = -math.expm1(-h - eta * h)  # 1 - e^(-(1 + eta) h)
            x = (s[i + 1] / s[i]) * math.exp(-eta * h) * x + weight * denoised
            if prev is not None:
                x = x + (0.5 * weight * h / h_prev) * (denoised - prev)
            if eta > 0:
                x = x + (s[i + 1] * math.sqrt(-math.expm1(-2 * eta * h))) * run.noise(x)
            h_prev = h
        prev = denoised
    return x


def sample_dpmpp_3m_sde(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    generator: Generators = None,
    eta: float = 1.0,
) -> Tensor:
    """DPM-Solver++(3M) SDE (k-diffusion ``sample_dpmpp_3m_sde``): third-order multistep with noise.

    With g = (1 + eta) h, phi_2 = expm1(-g) / g + 1, phi_3 = phi_2 / g - 0.5 and divided differences d1, d2 of the
    last three denoised estimates: x_next = e^(-g) x - expm1(-g) D + phi_2 d1 - phi_3 d2 + sigma_next
    sqrt(-expm1(-2 eta h)) z (lower order on the first two steps). eta = 0 gives the deterministic 3M solver.
    Stable Audio Open samples with this (100 steps, CFG 7).

    Args:
        generator: draws z; the same seed gives the same output. None uses torch's global RNG.
        eta: amount of noise injected, in [0, 1].

    Other arguments as in :func:`sample_euler`.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    run = _Run(denoiser, x, sigmas, extra_args, callback, generator)
    s = run.s
    d_1, d_2, h_1, h_2 = None, None, None, None  # the last two denoised estimates and step sizes
    for i in range(run.n):
        denoised = run.denoise(x, s[i], i)
        run.report(i, x, denoised)
        if s[i + 1] == 0:
            x = denoised
        else:
            h = math.log(s[i] / s[i + 1])
            g = (1 + eta) * h
            phi_2 = math.expm1(-g) / g + 1
            x = math.exp(-g) * x - math.expm1(-g) * denoised
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0, d1_1 = (denoised - d_1) / r0, (d_1 - d_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x + phi_2 * d1 - (phi_2 / g - 0.5) * d2
            elif h_1 is not None:
                x = x + (phi_2 / (h_1 / h)) * (denoised - d_1)
            if eta > 0:
                x = x + (s[i + 1] * math.sqrt(-math.expm1(-2 * eta * h))) * run.noise(x)
            h_1, h_2 = h, h_1
        d_1, d_2 = denoised, d_1
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp-2m": sample_dpmpp_2m,
    "dpmpp-2m-sde": sample_dpmpp_2m_sde,
    "dpmpp-3m-sde": sample_dpmpp_3m_sde,
}


def get_sampler(name: str) -> Callable[..., Tensor]:
    """Resolve a sampler by name; ``ValueError`` lists the valid names."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
