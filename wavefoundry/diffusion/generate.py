"""Latent generation: noise -> sigma grid -> sampler over a (guided) v-denoiser. Shared by the pipeline and the
training task's demo generations.

Stable Audio Open samples with DPM-Solver++(3M) SDE on a polyexponential (rho = 1, i.e. log-linear) grid from
sigma_max = 500 down to sigma_min = 0.3 (the Stable Audio Open 1.0 model card's example) with CFG scale 7.
Audio-to-audio ("init audio") starts from the encoded init latents noised to ``init_sigma`` instead of pure noise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import Tensor

from wavefoundry.diffusion.denoisers import VDenoiser
from wavefoundry.diffusion.guidance import CFG
from wavefoundry.diffusion.samplers import Generators, get_sampler
from wavefoundry.diffusion.schedules import get_sigmas


@dataclass(kw_only=True)
class SamplingConfig:
    """How to sample: solver, grid and guidance (Stable Audio Open's defaults)."""

    sampler: str = "dpmpp-3m-sde"
    steps: int = 100
    schedule: str = "polyexponential"
    sigma_min: float = 0.3
    sigma_max: float = 500.0
    cfg_scale: float = 7.0
    cfg_rescale: float = 0.0
    cfg_interval: tuple[float, float] = (0.0, float("inf"))

    def __post_init__(self) -> None:
        get_sampler(self.sampler)  # ValueError listing the valid names
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")


def sample_latents(
    v_model: Callable[..., Tensor],
    noise: Tensor,
    cond: Mapping[str, Tensor | None],
    uncond: Mapping[str, Tensor | None] | None,
    cfg: SamplingConfig,
    *,
    init: Tensor | None = None,
    init_sigma: float | None = None,
    generator: Generators = None,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """Draw latents x0 from a v-prediction model.

    Args:
        v_model: ``v_model(x_t, t, **cond) -> v`` (e.g. a DiT).
        noise: (B, C, T) standard normal noise (seeded by the caller).
        cond: the conditional keyword arguments of ``v_model``.
        uncond: their unconditional counterparts for CFG (None: no guidance).
        cfg: sampler, grid and guidance settings.
        init: (B, C, T) latents to start from (audio-to-audio); noised to ``init_sigma`` (<= ``cfg.sigma_max``).
        generator: RNG of the SDE samplers' noise.
        callback: called after every step with the sampler's info dict.

    Returns:
        (B, C, T) denoised latents.
    """
    denoiser: Callable[..., Tensor] = VDenoiser(v_model)
    if uncond is not None and cfg.cfg_scale != 1.0:
        denoiser = CFG(denoiser, cfg.cfg_scale, uncond, rescale=cfg.cfg_rescale, interval=cfg.cfg_interval)
    sigma_max = cfg.sigma_max
    if init is not None:
        if init.shape != noise.shape:
            raise ValueError(f"init latents {tuple(init.shape)} do not match the noise {tuple(noise.shape)}")
        sigma_max = init_sigma if init_sigma is not None else cfg.sigma_max
        if not cfg.sigma_min < sigma_max <= cfg.sigma_max:
            raise ValueError(f"init noise level must be in ({cfg.sigma_min}, {cfg.sigma_max}], got {sigma_max}")
    sigmas = get_sigmas(cfg.schedule, cfg.steps, cfg.sigma_min, sigma_max).to(noise.device)
    x = noise * sigmas[0] if init is None else init + noise * sigmas[0]
    sampler = get_sampler(cfg.sampler)
    return sampler(denoiser, x, sigmas, extra_args=dict(cond), callback=callback, generator=generator)
