"""Autoencoder bottlenecks: VAE (continuous), residual VQ and FSQ (discrete), built from one tagged config.

Every bottleneck is an ``nn.Module`` with ``encode(z (B, input_dim, T)) -> BottleneckOutput`` and
``decode(latents (B, latent_dim, T)) -> (B, latent_dim, T)`` (the identity for all three: ``encode`` already returns
the decoder input). Discrete ones add ``codes_to_latents``, ``num_quantizers`` and ``codebook_size``.
See docs/bottlenecks.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavefoundry.codecs.quantizers import (
    FSQ,
    BottleneckOutput,
    CodebookUsage,
    FSQConfig,
    ResidualVQ,
    RVQConfig,
    VectorQuantizer,
    check_codes,
    check_latent_input,
    codebook_usage,
    kmeans,
    usage_from_counts,
)

__all__ = [
    "BOTTLENECKS",
    "FSQ",
    "BottleneckConfig",
    "BottleneckOutput",
    "CodebookUsage",
    "FSQConfig",
    "RVQConfig",
    "ResidualVQ",
    "VAEBottleneck",
    "VAEConfig",
    "VectorQuantizer",
    "build_bottleneck",
    "check_codes",
    "check_latent_input",
    "codebook_usage",
    "kmeans",
    "scale_bias_for_std",
    "usage_from_counts",
    "vae_sample",
]

#: Floor on the posterior standard deviation (stable-audio-tools ``vae_sample``).
MIN_STD = 1e-4


@dataclass(kw_only=True)
class VAEConfig:
    """Diagonal-Gaussian VAE bottleneck; the encoder outputs ``2 * latent_dim`` channels (mean, scale).

    ``init_std``: when set, the encoder's scale channels start with a bias that makes the posterior std about this
    value (an initialisation only; loaded weights override it). Small codecs on quiet audio need it: at torch's
    default init the input-dependent part of the latent mean is ~100x smaller than the posterior std (~0.7), the
    decoder learns to ignore the latents and training stalls at the zero-output loss (docs/bottlenecks.md).
    """

    latent_dim: int = 64
    init_std: float | None = None

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ValueError(f"vae.latent_dim must be >= 1, got {self.latent_dim}")
        if self.init_std is not None and not self.init_std > MIN_STD:
            raise ValueError(f"vae.init_std must be > {MIN_STD} (the std floor), got {self.init_std}")


def scale_bias_for_std(std: float) -> float:
    """The pre-softplus scale whose posterior std ``softplus(scale) + MIN_STD`` equals ``std``."""
    y = std - MIN_STD
    return y + math.log(-math.expm1(-y))  # inverse softplus, stable for small y


def vae_sample(mean: Tensor, scale: Tensor, *, sample: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Reparameterised posterior sample and KL to N(0, I), as stable-audio-tools' ``vae_sample``.

    sigma = softplus(scale) + 1e-4; latents = mean + sigma * eps (eps ~ N(0, I), or 0 when ``sample`` is False);
    KL = (mean^2 + sigma^2 - log sigma^2 - 1) summed over channels, averaged over batch and time. This is twice the
    analytic KL(N(mean, sigma^2) || N(0, 1)); stable-audio-tools trains with this form, so we keep it.

    Args:
        mean, scale: (B, D, T).
        sample: draw eps from torch's global RNG; False returns the mean.

    Returns:
        latents (B, D, T), KL (scalar), sigma (B, D, T).
    """
    stdev = F.softplus(scale) + MIN_STD
    var = stdev * stdev
    kl = (mean * mean + var - torch.log(var) - 1).sum(1).mean()
    latents = mean + torch.randn_like(mean) * stdev if sample else mean
    return latents, kl, stdev


class VAEBottleneck(nn.Module):
    """Split the encoder output into (mean, scale) along channels and sample the latent (Stable Audio's Oobleck VAE).

    ``losses["kl"]`` is unweighted (the task applies its weight, 1e-4 for Stable Audio Open).
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_dim = cfg.latent_dim
        self.input_dim = 2 * cfg.latent_dim

    def encode(self, z: Tensor, *, sample: bool = True) -> BottleneckOutput:
        """z (B, 2D, T) -> latents (B, D, T).

        Args:
            z: encoder output, mean in the first D channels and pre-softplus scale in the last D.
            sample: as in stable-audio-tools, sample in train and eval alike (True); False gives the posterior mean
                (deterministic encoding, e.g. for caching latents).
        """
        check_latent_input(z, self.input_dim)
        mean, scale = z.chunk(2, dim=1)  # (B, D, T) each
        latents, kl, stdev = vae_sample(mean, scale, sample=sample)
        metrics = {"posterior_std": stdev.detach().mean(), "posterior_mean_rms": mean.detach().pow(2).mean().sqrt()}
        return BottleneckOutput(latents=latents, losses={"kl": kl}, metrics=metrics)

    def decode(self, latents: Tensor) -> Tensor:
        """Identity: latents (B, D, T) -> (B, D, T)."""
        check_latent_input(latents, self.latent_dim, name="latents", finite=False)
        return latents


BOTTLENECKS: dict[str, type[nn.Module]] = {"vae": VAEBottleneck, "rvq": ResidualVQ, "fsq": FSQ}
_SECTIONS: dict[str, type] = {"vae": VAEConfig, "rvq": RVQConfig, "fsq": FSQConfig}


@dataclass(kw_only=True)
class BottleneckConfig:
    """Tagged bottleneck config: ``kind`` picks the section that is used.

    The chosen section is created with defaults when missing; sections of other kinds are dropped (set to None), so
    a saved config holds only what is built and ``--set model.bottleneck.kind=rvq`` switches kinds cleanly.
    """

    kind: Literal["vae", "rvq", "fsq"] = "vae"
    vae: VAEConfig | None = None
    rvq: RVQConfig | None = None
    fsq: FSQConfig | None = None

    def __post_init__(self) -> None:
        if self.kind not in BOTTLENECKS:
            raise ValueError(f"unknown bottleneck kind {self.kind!r}; valid kinds: {', '.join(sorted(BOTTLENECKS))}")
        for kind, section_cls in _SECTIONS.items():
            section = getattr(self, kind)
            if kind != self.kind:
                setattr(self, kind, None)
            elif section is None:
                setattr(self, kind, section_cls())
            elif not isinstance(section, section_cls):
                raise ValueError(f"bottleneck.{kind} must be a {section_cls.__name__}, got {type(section).__name__}")

    @property
    def section(self) -> VAEConfig | RVQConfig | FSQConfig:
        """The config of the chosen kind."""
        return getattr(self, self.kind)


def build_bottleneck(cfg: BottleneckConfig) -> nn.Module:
    """Build the bottleneck named by ``cfg.kind`` from its section."""
    if not isinstance(cfg, BottleneckConfig):
        raise TypeError(f"build_bottleneck expects a BottleneckConfig, got {type(cfg).__name__}")
    return BOTTLENECKS[cfg.kind](cfg.section)
