"""Noise schedules: the cosine v-diffusion time map and the sigma grids that samplers step through.

Two parametrisations of the same process (see docs/diffusion.md):

- training, cosine "variance preserving": x_t = alpha_t x0 + sigma_t eps with alpha_t = cos(pi t / 2),
  sigma_t = sin(pi t / 2), t in [0, 1] (Nichol & Dhariwal 2021; Salimans & Ho 2022);
- sampling, k-diffusion "variance exploding": x = x0 + sigma eps with sigma = sigma_t / alpha_t = tan(pi t / 2)
  (Karras et al. 2022), so x = x_t / alpha_t.

Sigma grids are descending 1-D tensors of ``n + 1`` values: ``sigma_max``, ..., ``sigma_min``, then 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "SIGMA_SCHEDULES",
    "alpha_sigma",
    "get_sigmas",
    "sigma_to_t",
    "sigmas_karras",
    "sigmas_loglinear",
    "sigmas_polyexponential",
    "t_to_sigma",
]


def alpha_sigma(t: Tensor | float) -> tuple[Tensor, Tensor]:
    """Cosine schedule: (alpha_t, sigma_t) = (cos(pi t / 2), sin(pi t / 2)), so alpha^2 + sigma^2 = 1.

    Args:
        t: diffusion time in [0, 1], any shape (a float becomes a 0-dim float32 tensor).

    Returns:
        alpha, sigma: tensors of the shape of ``t``.
    """
    t = torch.as_tensor(t, dtype=None if isinstance(t, Tensor) else torch.float32)
    angle = t * (math.pi / 2)
    return torch.cos(angle), torch.sin(angle)


def t_to_sigma(t: Tensor | float) -> Tensor:
    """k-diffusion noise level of cosine time t: sigma = sigma_t / alpha_t = tan(pi t / 2) (infinite at t = 1)."""
    t = torch.as_tensor(t, dtype=None if isinstance(t, Tensor) else torch.float32)
    return torch.tan(t * (math.pi / 2))


def sigma_to_t(sigma: Tensor | float) -> Tensor:
    """Cosine time of a k-diffusion noise level: t = atan(sigma) * 2 / pi, the inverse of :func:`t_to_sigma`."""
    sigma = torch.as_tensor(sigma, dtype=None if isinstance(sigma, Tensor) else torch.float32)
    return torch.atan(sigma) * (2 / math.pi)


def _check_grid(n: int, sigma_min: float, sigma_max: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of sampling steps must be an integer >= 1, got {n!r}")
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max) and 0 < sigma_min < sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max (finite), got sigma_min={sigma_min}, sigma_max={sigma_max}")


def _check_rho(rho: float) -> None:
    if not (math.isfinite(rho) and rho > 0):
        raise ValueError(f"rho must be a finite number > 0, got {rho}")


def _append_zero(sigmas: Tensor, dtype: torch.dtype) -> Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(dtype)


def sigmas_polyexponential(
    n: int, sigma_min: float, sigma_max: float, rho: float = 1.0, *, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Polynomial ramp in log sigma: log sigma_i = log s_min + (1 - i / (n - 1))^rho (log s_max - log s_min).

    rho = 1 is log-linear (Stable Audio Open samples with it, sigma_min 0.3, sigma_max 500); rho > 1 spends more
    steps at low noise. Computed in float64, returned in ``dtype``.

    Args:
        n: number of sampling steps (>= 1); n = 1 gives [sigma_max, 0].
        sigma_min, sigma_max: the smallest and largest non-zero sigma, 0 < sigma_min < sigma_max.
        rho: ramp exponent (> 0).
        dtype: dtype of the result.

    Returns:
        (n + 1,) descending sigmas ending with 0.
    """
    _check_grid(n, sigma_min, sigma_max)
    _check_rho(rho)
    ramp = torch.linspace(1, 0, n, dtype=torch.float64) ** rho
    log_min, log_max = math.log(sigma_min), math.log(sigma_max)
    return _append_zero(torch.exp(log_min + ramp * (log_max - log_min)), dtype)


def sigmas_loglinear(n: int, sigma_min: float, sigma_max: float, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """Sigmas equally spaced in log sigma from sigma_max to sigma_min, then 0: (n + 1,) descending."""
    return sigmas_polyexponential(n, sigma_min, sigma_max, rho=1.0, dtype=dtype)


def sigmas_karras(
    n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, *, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Karras et al. 2022 (EDM, eq. 5): sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) -
    sigma_max^(1/rho)))^rho, then 0.

    Args:
        n: number of sampling steps (>= 1); n = 1 gives [sigma_max, 0].
        sigma_min, sigma_max: the smallest and largest non-zero sigma, 0 < sigma_min < sigma_max.
        rho: 7 in EDM; rho = 1 is linear in sigma, rho -> inf tends to log-linear.
        dtype: dtype of the result.

    Returns:
        (n + 1,) descending sigmas ending with 0.
    """
    _check_grid(n, sigma_min, sigma_max)
    _check_rho(rho)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    inv_min, inv_max = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((inv_max + ramp * (inv_min - inv_max)) ** rho, dtype)


SIGMA_SCHEDULES: dict[str, Callable[..., Tensor]] = {
    "polyexponential": sigmas_polyexponential,
    "log-linear": sigmas_loglinear,
    "karras": sigmas_karras,
}


def get_sigmas(name: str, n: int, sigma_min: float, sigma_max: float, **kw) -> Tensor:
    """Resolve a schedule by name and build its grid: ``get_sigmas("log-linear", 50, 0.3, 500.0)``.

    Args:
        name: a key of :data:`SIGMA_SCHEDULES`.
        n, sigma_min, sigma_max: as in the schedule functions.
        **kw: schedule options (``rho`` for polyexponential and karras; ``dtype``).

    Returns:
        (n + 1,) descending sigmas ending with 0.

    Raises:
        ValueError: unknown name (listing the valid ones), n < 1, or a bad sigma range.
    """
    if name not in SIGMA_SCHEDULES:
        raise ValueError(f"unknown sigma schedule {name!r}; valid: {', '.join(SIGMA_SCHEDULES)}")
    return SIGMA_SCHEDULES[name](n, sigma_min, sigma_max, **kw)
