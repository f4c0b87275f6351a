"""Preconditioning: turn a v-prediction network into a k-diffusion denoiser D(x, sigma) -> x0.

Samplers work with x = x0 + sigma eps (Karras et al. 2022); the network was trained on the cosine schedule
x_t = alpha_t x0 + sigma_t eps with v = alpha_t eps - sigma_t x0 (Salimans & Ho 2022). With sigma = tan(pi t / 2),
alpha_t = 1 / sqrt(sigma^2 + 1) and x_t = alpha_t x, so (k-diffusion ``VDenoiser``, sigma_data = 1):

    D(x, sigma) = c_skip x + c_out v(c_in x, t),  c_skip = 1 / (sigma^2 + 1),  c_out = -sigma / sqrt(sigma^2 + 1),
    c_in = 1 / sqrt(sigma^2 + 1),  t = atan(sigma) * 2 / pi.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from wavefoundry.diffusion.schedules import sigma_to_t

__all__ = ["VDenoiser", "broadcast_sigma"]


def broadcast_sigma(sigma: Tensor | float, x: Tensor) -> Tensor:
    """A scalar or (B,) noise level as a (B,) tensor on ``x``'s device, float32 (float64 if ``x`` is float64).

    Raises:
        ValueError: sigma has another shape.
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    sigma = sigma.to(device=x.device, dtype=dtype) if isinstance(sigma, Tensor) else x.new_tensor(sigma, dtype=dtype)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    elif sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or have shape (B,) = ({x.shape[0]},), got {tuple(sigma.shape)}")
    return sigma


class VDenoiser(nn.Module):
    """Wrap ``model(x_t, t, **kw) -> v`` as ``denoiser(x, sigma, **kw) -> x0`` (see the module docstring).

    Args:
        model: v-prediction network; receives x_t (B, ...) in ``x``'s dtype and t (B,) in [0, 1] as float32
            (float64 for float64 ``x``), plus the keyword arguments given to ``forward`` (conditioning).
    """

    def __init__(self, model: nn.Module | Callable[..., Tensor]) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, sigma: Tensor | float, **kw) -> Tensor:
        """Denoise.

        Args:
            x: noisy sample x0 + sigma eps, (B, C, T) (any (B, ...)).
            sigma: scalar or (B,) noise level >= 0. sigma = 0 returns ``x`` exactly (without calling the model when
                the whole batch is at sigma = 0).
            **kw: passed to the model (e.g. ``cross``, ``cross_mask``, ``global_cond``).

        Returns:
            x0 estimate, shape and dtype of ``x``.
        """
        sigma = broadcast_sigma(sigma, x)  # (B,)
        if bool((sigma == 0).all()):
            return x
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        s = sigma.view(shape)  # (B, 1, ..., 1)
        c_skip = 1 / (s * s + 1)
        c_out = -s * torch.rsqrt(s * s + 1)
        c_in = torch.rsqrt(s * s + 1)
        # Coefficients stay in float32 (float64): in bf16, c_skip x and c_out v would round before they are summed.
        v = self.model((x * c_in).to(x.dtype), sigma_to_t(sigma), **kw)
        return (x * c_skip + v * c_out).to(x.dtype)
