"""An audio autoencoder: Oobleck encoder -> bottleneck (VAE, RVQ or FSQ) -> Oobleck decoder.

Continuous (VAE) models give latents for diffusion; discrete (RVQ/FSQ) models give integer codes (B, K, L) for the
language models. Long audio is coded in overlapping chunks whose context is derived from the config, so the result
equals a full pass while memory stays bounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from wavefoundry.codecs.bottlenecks import (
    BottleneckConfig,
    BottleneckOutput,
    VAEConfig,
    build_bottleneck,
    scale_bias_for_std,
)
from wavefoundry.codecs.chunked import decode_chunked, encode_chunked
from wavefoundry.codecs.oobleck import OobleckConfig, OobleckDecoder, OobleckEncoder
from wavefoundry.codecs.receptive import decoder_context, encoder_context


@dataclass(kw_only=True)
class AutoencoderConfig:
    """Encoder/decoder shape and bottleneck; their widths must agree (checked here)."""

    oobleck: OobleckConfig = field(default_factory=OobleckConfig)
    bottleneck: BottleneckConfig = field(default_factory=lambda: BottleneckConfig(kind="vae", vae=VAEConfig()))

    def __post_init__(self) -> None:
        section = self.bottleneck.section
        if self.bottleneck.kind == "vae":
            want_in, want_latent = 2 * section.latent_dim, section.latent_dim
        else:
            want_in = want_latent = section.dim
        if (self.oobleck.encoder_out_dim, self.oobleck.latent_dim) != (want_in, want_latent):
            raise ValueError(
                f"oobleck.encoder_out_dim/latent_dim are {self.oobleck.encoder_out_dim}/{self.oobleck.latent_dim} "
                f"but the {self.bottleneck.kind} bottleneck needs {want_in}/{want_latent}"
            )


class Autoencoder(nn.Module):
    """``encode(audio (B, C, T)) -> BottleneckOutput`` (latents (B, D, L), codes (B, K, L) or None);
    ``decode(latents (B, D, L)) -> audio (B, C, L * hop)``."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = OobleckEncoder(cfg.oobleck)
        self.bottleneck = build_bottleneck(cfg.bottleneck)
        self.decoder = OobleckDecoder(cfg.oobleck)
        if cfg.bottleneck.kind == "vae" and cfg.bottleneck.vae.init_std is not None:
            with torch.no_grad():  # the scale half of the encoder output (mean first, then scale)
                self.encoder.proj.bias[cfg.oobleck.latent_dim :] = scale_bias_for_std(cfg.bottleneck.vae.init_std)

    @property
    def sample_rate(self) -> int:
        return self.cfg.oobleck.sample_rate

    @property
    def audio_channels(self) -> int:
        return self.cfg.oobleck.audio_channels

    @property
    def hop_length(self) -> int:
        return self.cfg.oobleck.hop_length

    @property
    def is_discrete(self) -> bool:
        return self.cfg.bottleneck.kind != "vae"

    def check_input(self, audio: Tensor, sample_rate: int | None = None) -> None:
        """Raise a ValueError naming expected and actual rate / channel count."""
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise ValueError(f"audio is {sample_rate} Hz but this model expects {self.sample_rate} Hz (resample)")
        if audio.dim() != 3 or audio.shape[1] != self.audio_channels:
            raise ValueError(
                f"expected audio (B, {self.audio_channels}, T) for this {self.audio_channels}-channel model, "
                f"got shape {tuple(audio.shape)}"
            )

    def pad(self, audio: Tensor) -> Tensor:
        """Zero-pad (B, C, T) to a multiple of the hop length."""
        return nn.functional.pad(audio, (0, -audio.shape[-1] % self.hop_length))

    def encode(self, audio: Tensor, *, chunk_seconds: float | None = None, sample: bool = True) -> BottleneckOutput:
        """Audio (B, C, T) -> bottleneck output; T is zero-padded to a multiple of the hop.

        Args:
            chunk_seconds: encode in chunks of about this length (exact; bounded memory); None: one pass.
            sample: draw VAE latents from the posterior (as in training); False gives the posterior mean.
                Quantizers are deterministic and ignore it.
        """
        self.check_input(audio)
        if chunk_seconds is None:
            z = self.encoder(self.pad(audio))  # (B, encoder_out_dim, L)
        else:
            hop = self.hop_length
            z = encode_chunked(
                self.encoder,
                audio,
                hop=hop,
                chunk_frames=self._chunk_frames(chunk_seconds),
                context_frames=math.ceil(encoder_context(self.cfg.oobleck) / hop),
            )
        return self.bottleneck.encode(z, sample=sample)

    def decode(self, latents: Tensor, *, chunk_seconds: float | None = None) -> Tensor:
        """Latents (B, D, L) -> audio (B, C, L * hop)."""
        if latents.dim() != 3 or latents.shape[1] != self.cfg.oobleck.latent_dim:
            raise ValueError(f"expected latents (B, {self.cfg.oobleck.latent_dim}, L), got {tuple(latents.shape)}")
        if not torch.isfinite(latents).all():
            raise ValueError("latents contain NaN or inf")
        x = self.bottleneck.decode(latents)
        if chunk_seconds is None:
            return self.decoder(x)
        return decode_chunked(
            self.decoder,
            x,
            hop=self.hop_length,
            chunk_frames=self._chunk_frames(chunk_seconds),
            context_frames=decoder_context(self.cfg.oobleck),
        )

    def decode_codes(self, codes: Tensor, *, chunk_seconds: float | None = None) -> Tensor:
        """Integer codes (B, K, L) -> audio (discrete bottlenecks only)."""
        if not self.is_discrete:
            raise ValueError("this autoencoder is continuous (VAE); it has latents, not codes")
        return self.decode(self.bottleneck.codes_to_latents(codes), chunk_seconds=chunk_seconds)

    def _chunk_frames(self, seconds: float) -> int:
        if seconds <= 0:
            raise ValueError(f"chunk_seconds must be positive, got {seconds}")
        return max(1, round(seconds * self.sample_rate / self.hop_length))

    def forward(self, audio: Tensor) -> tuple[Tensor, BottleneckOutput]:
        """Reconstruct (B, C, T): returns (audio (B, C, T), bottleneck output)."""
        out = self.encode(audio)
        return self.decoder(self.bottleneck.decode(out.latents))[..., : audio.shape[-1]], out

    def remove_weight_norm(self) -> Autoencoder:
        """Fold weight norm for inference (outputs unchanged); returns self."""
        self.encoder.remove_weight_norm()
        self.decoder.remove_weight_norm()
        return self
