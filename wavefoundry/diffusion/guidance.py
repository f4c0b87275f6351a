"""Classifier-free guidance (Ho & Salimans 2022) as a denoiser wrapper, and the condition dropout that trains it.

``CFG(denoiser, scale, uncond)`` is itself a denoiser ``(x, sigma, **cond) -> x0``, so every sampler runs guided
without knowing about it: ``sample_dpmpp_3m_sde(CFG(VDenoiser(dit), 6.0, uncond), x, sigmas, extra_args=cond)``.
Guidance is applied to the x0 estimate; since x0 = c_skip x + c_out v is affine in v with the same coefficients for
both halves, plain CFG on x0 equals CFG on v (as stable-audio-tools applies it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from wavefoundry.diffusion.denoisers import broadcast_sigma

__all__ = ["CFG", "drop_condition", "rescale_guided"]


def rescale_guided(guided: Tensor, cond: Tensor, phi: float) -> Tensor:
    """Guidance rescale (Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed", alg. 2).

    Scales each sample of ``guided`` to the standard deviation of ``cond`` (over all non-batch dims) and mixes:
    phi * rescaled + (1 - phi) * guided. Counters the over-saturation of large guidance scales.

    Args:
        guided: CFG output (B, ...).
        cond: conditional output (B, ...).
        phi: mixing weight in [0, 1]; 0 returns ``guided``.

    Returns:
        (B, ...) like ``guided``.
    """
    shape = (guided.shape[0],) + (1,) * (guided.ndim - 1)
    std_cond = cond.flatten(1).std(dim=1).view(shape)  # (B, 1, ..., 1)
    std_guided = guided.flatten(1).std(dim=1).view(shape).clamp_min(torch.finfo(guided.dtype).tiny)
    rescaled = guided * (std_cond / std_guided)
    return phi * rescaled + (1 - phi) * guided


def _pair(key: str, cond: Tensor | None, uncond: Tensor | None) -> Tensor | None:
    """cat([cond, uncond]) along the batch; an uncond with batch 1 is repeated to the batch of cond."""
    if cond is None and uncond is None:
        return None
    if cond is None or uncond is None:
        raise ValueError(f"CFG: {key!r} is None in only one of cond and uncond")
    if uncond.shape[0] == 1 and cond.shape[0] != 1:
        uncond = uncond.expand(cond.shape[0], *uncond.shape[1:])
    if uncond.shape != cond.shape:
        raise ValueError(f"CFG: uncond[{key!r}] has shape {tuple(uncond.shape)}, cond has {tuple(cond.shape)}")
    return torch.cat([cond, uncond.to(device=cond.device, dtype=cond.dtype)])  # (2B, ...)


class CFG:
    """Classifier-free guidance around a denoiser: x0 = x0_u + scale (x0_c - x0_u), in one batched call.

    Args:
        denoiser: ``denoiser(x, sigma, **cond) -> x0`` (e.g. a :class:`~wavefoundry.diffusion.denoisers.VDenoiser`);
            must treat batch rows independently.
        scale: guidance scale w (Stable Audio Open uses 7). 1 is the conditional model alone (one call of batch B);
            0 is the unconditional model.
        uncond: the unconditional counterpart of every conditioning keyword, with the same keys as the ``cond``
            given at call time; batch B or 1 (repeated). A value may be None if it is None in ``cond`` too.
        rescale: phi of :func:`rescale_guided` in [0, 1]; 0 (default) is plain CFG.
        interval: guide only for sigma in [lo, hi] (Kynkäänniemi et al. 2024, "Applying guidance in a limited
            interval improves sample and distribution quality"); outside it the conditional output is returned and
            the unconditional half is not computed.
    """

    def __init__(
        self,
        denoiser: Callable[..., Tensor],
        scale: float,
        uncond: Mapping[str, Tensor | None],
        *,
        rescale: float = 0.0,
        interval: tuple[float, float] = (0.0, math.inf),
    ) -> None:
        if not math.isfinite(scale):
            raise ValueError(f"CFG scale must be finite, got {scale}")
        if not 0.0 <= rescale <= 1.0:
            raise ValueError(f"CFG rescale must be in [0, 1], got {rescale}")
        lo, hi = interval
        if not 0.0 <= lo <= hi:
            raise ValueError(f"CFG interval must satisfy 0 <= lo <= hi, got {interval}")
        self.denoiser = denoiser
        self.scale = float(scale)
        self.uncond = dict(uncond)
        self.rescale = float(rescale)
        self.interval = (float(lo), float(hi))

    def _check_keys(self, cond: Mapping[str, object]) -> None:
        if set(cond) != set(self.uncond):
            missing = sorted(set(self.uncond) - set(cond))
            extra = sorted(set(cond) - set(self.uncond))
            raise ValueError(
                f"CFG: cond and uncond must have the same keys; uncond has {sorted(self.uncond)}, "
                f"cond lacks {missing} and has extra {extra}"
            )

    def __call__(self, x: Tensor, sigma: Tensor | float, **cond: Tensor | None) -> Tensor:
        """Guided x0 estimate.

        Args:
            x: (B, ...) noisy sample at noise level sigma.
            sigma: scalar or (B,).
            **cond: conditioning keywords of the denoiser, each (B, ...) or None.

        Returns:
            (B, ...) x0 estimate.
        """
        self._check_keys(cond)
        if self.scale == 1.0:
            return self.denoiser(x, sigma, **cond)
        sigma_b = broadcast_sigma(sigma, x)  # (B,)
        inside = None
        if self.interval != (0.0, math.inf):
            inside = (sigma_b >= self.interval[0]) & (sigma_b <= self.interval[1])  # (B,)
            if not bool(inside.any()):
                return self.denoiser(x, sigma, **cond)
        both = {k: _pair(k, v, self.uncond[k]) for k, v in cond.items()}
        out_c, out_u = self.denoiser(torch.cat([x, x]), torch.cat([sigma_b, sigma_b]), **both).chunk(2)  # (B, ...)
        guided = out_u + self.scale * (out_c - out_u)
        if self.rescale > 0:
            guided = rescale_guided(guided, out_c, self.rescale)
        if inside is not None:
            guided = torch.where(inside.view((-1,) + (1,) * (x.ndim - 1)), guided, out_c)
        return guided


def drop_condition(
    cond: Tensor, p: float, *, generator: torch.Generator | None = None, keep: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Condition dropout for CFG training: replace each batch row by zeros with probability p.

    Stable Audio Open drops the text conditioning of 10% of the samples (p = 0.1). To drop the same rows of several
    tensors, pass the ``keep`` returned by the first call to the next ones. The zeros must be what the pipeline gives
    CFG as ``uncond`` at inference.

    Args:
        cond: (B, ...) conditioning (zeros means False for a bool tensor).
        p: drop probability in [0, 1].
        generator: RNG for the draw (drawn on its device); None uses torch's global RNG.
        keep: (B,) bool mask to apply instead of drawing one.

    Returns:
        (dropped (B, ...), keep (B,) bool, True for rows kept).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"condition dropout probability must be in [0, 1], got {p}")
    if keep is None:
        where = generator.device if generator is not None else cond.device
        keep = (torch.rand(cond.shape[0], generator=generator, device=where) >= p).to(cond.device)  # (B,)
    elif keep.shape != (cond.shape[0],):
        raise ValueError(f"keep must have shape (B,) = ({cond.shape[0]},), got {tuple(keep.shape)}")
    mask = keep.to(torch.bool).view((-1,) + (1,) * (cond.ndim - 1))  # (B, 1, ..., 1)
    return torch.where(mask, cond, torch.zeros_like(cond)), keep
