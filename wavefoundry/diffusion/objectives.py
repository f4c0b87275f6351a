"""The v-objective on the cosine schedule (Salimans & Ho 2022, "Progressive distillation", sec. 4), t samplers.

x_t = alpha_t x0 + sigma_t eps, v = alpha_t eps - sigma_t x0, with (alpha_t, sigma_t) = (cos(pi t / 2), sin(pi t / 2))
(:func:`wavefoundry.diffusion.schedules.alpha_sigma`). Since alpha^2 + sigma^2 = 1 the inverses need no division:
x0 = alpha x_t - sigma v and eps = sigma x_t + alpha v. Stable Audio Open trains its DiT on this objective.

Tensors are (B, ...) with t of shape (B,) (or a scalar); t broadcasts over the trailing dimensions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from wavefoundry.diffusion.schedules import alpha_sigma

__all__ = [
    "TIMESTEP_SAMPLERS",
    "T_EPS",
    "diffuse",
    "get_timestep_sampler",
    "sample_t_logit_normal",
    "sample_t_uniform",
    "v_loss",
    "v_target",
    "v_to_eps",
    "v_to_x0",
]

#: Sampled t lies in [T_EPS, 1 - T_EPS]: t = 0 has sigma = 0 (log sigma = -inf) and t = 1 has
#: tan(pi t / 2) = inf, both of which turn a k-diffusion conversion of the training time into inf or NaN.
T_EPS = 1e-5


def _coefficients(t: Tensor | float, like: Tensor) -> tuple[Tensor, Tensor]:
    """(alpha_t, sigma_t) of t (B,) or scalar, shaped to broadcast against ``like`` (B, ...) in its dtype."""
    if not isinstance(t, Tensor):
        t = torch.tensor(t, dtype=torch.promote_types(like.dtype, torch.float32))
    alpha, sigma = alpha_sigma(t.to(like.device))
    if alpha.ndim == 1:
        shape = (alpha.shape[0],) + (1,) * (like.ndim - 1)
        alpha, sigma = alpha.view(shape), sigma.view(shape)  # (B, 1, ..., 1)
    elif alpha.ndim != 0:
        raise ValueError(f"t must be a scalar or have shape (B,), got {tuple(alpha.shape)}")
    return alpha.to(like.dtype), sigma.to(like.dtype)


def diffuse(x0: Tensor, noise: Tensor, t: Tensor | float) -> Tensor:
    """Forward process x_t = alpha_t x0 + sigma_t eps.

    Args:
        x0: clean data (B, ...), e.g. latents (B, C, T).
        noise: eps ~ N(0, I), same shape as ``x0``.
        t: (B,) or scalar diffusion time in [0, 1].

    Returns:
        x_t, same shape as ``x0``.
    """
    alpha, sigma = _coefficients(t, x0)
    return alpha * x0 + sigma * noise


def v_target(x0: Tensor, noise: Tensor, t: Tensor | float) -> Tensor:
    """Velocity target v = alpha_t eps - sigma_t x0 (Salimans & Ho 2022, eq. 8 / appendix D); shape of ``x0``."""
    alpha, sigma = _coefficients(t, x0)
    return alpha * noise - sigma * x0


def v_to_x0(x_t: Tensor, v: Tensor, t: Tensor | float) -> Tensor:
    """Clean-data estimate from a velocity: x0 = alpha_t x_t - sigma_t v; shape of ``x_t``."""
    alpha, sigma = _coefficients(t, x_t)
    return alpha * x_t - sigma * v


def v_to_eps(x_t: Tensor, v: Tensor, t: Tensor | float) -> Tensor:
    """Noise estimate from a velocity: eps = sigma_t x_t + alpha_t v; shape of ``x_t``."""
    alpha, sigma = _coefficients(t, x_t)
    return sigma * x_t + alpha * v


def v_loss(v_pred: Tensor, v_target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error between predicted and target velocity, optionally over valid frames only.

    Args:
        v_pred, v_target: (B, C, T) (any (B, ..., T) works with a mask; any shape without one).
        mask: (B, T), True (or 1) for real frames and False (0) for padding. The loss is the mean over the
            valid frames and all channels; an all-padding batch gives 0.

    Returns:
        Scalar loss.
    """
    if v_pred.shape != v_target.shape:
        raise ValueError(f"v_pred {tuple(v_pred.shape)} and v_target {tuple(v_target.shape)} differ in shape")
    diff = v_pred - v_target
    if mask is None:
        return diff.pow(2).mean()
    if mask.ndim != 2 or mask.shape != (diff.shape[0], diff.shape[-1]):
        raise ValueError(f"mask must be (B, T) = {(diff.shape[0], diff.shape[-1])}, got {tuple(mask.shape)}")
    keep = mask.to(torch.bool).view(mask.shape[0], *([1] * (diff.ndim - 2)), mask.shape[1])  # (B, 1, ..., T)
    per_frame = diff[0].numel() // diff.shape[-1]  # channel entries per frame
    # Select before squaring (a product with the mask would not do): whatever sits in padded frames, even inf or NaN,
    # must reach neither the loss nor its gradient.
    diff = torch.where(keep, diff, 0.0)
    return diff.pow(2).sum() / (keep.sum() * per_frame).clamp_min(1)


def _draw_normal_or_uniform(n: int, normal: bool, generator: torch.Generator | None, device) -> Tensor:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of timesteps must be an integer >= 1, got {n!r}")
    # Draw on the generator's device so one seed gives the same t wherever the batch lives.
    where = generator.device if generator is not None else device
    draw = torch.randn if normal else torch.rand
    return draw(n, generator=generator, device=where).to(device)


def sample_t_uniform(n: int, *, generator: torch.Generator | None = None, device=None) -> Tensor:
    """t ~ U(0, 1), clamped to [T_EPS, 1 - T_EPS]. Returns (n,) float32 (on ``device``, default CPU)."""
    t = _draw_normal_or_uniform(n, False, generator, device)
    return t.clamp(T_EPS, 1 - T_EPS)


def sample_t_logit_normal(
    n: int, *, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None, device=None
) -> Tensor:
    """t = sigmoid(mean + std z), z ~ N(0, 1) (logit-normal; Esser et al. 2024, SD3, sec. 3.1).

    The median is sigmoid(mean); ``mean`` > 0 puts more training on high noise. Clamped to
    [T_EPS, 1 - T_EPS] because sigmoid rounds to exactly 0 or 1 in float32 for |logit| > ~17.

    Returns:
        (n,) float32 on ``device`` (default CPU).
    """
    if not std > 0:
        raise ValueError(f"logit-normal std must be > 0, got {std}")
    z = _draw_normal_or_uniform(n, True, generator, device)
    return torch.sigmoid(mean + std * z).clamp(T_EPS, 1 - T_EPS)


TIMESTEP_SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "uniform": sample_t_uniform,
    "logit-normal": sample_t_logit_normal,
}


def get_timestep_sampler(name: str) -> Callable[..., Tensor]:
    """Resolve a timestep sampler by name; ``ValueError`` lists the valid names."""
    if name not in TIMESTEP_SAMPLERS:
        raise ValueError(f"unknown timestep sampler {name!r}; valid: {', '.join(TIMESTEP_SAMPLERS)}")
    return TIMESTEP_SAMPLERS[name]
