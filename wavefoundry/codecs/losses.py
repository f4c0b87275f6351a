"""Training losses of audio autoencoders: multi-resolution STFT, the stereo scheme of Stable Audio Open, GAN losses.

The spectral losses reproduce auraloss 0.4.0 (``STFTLoss``, ``MultiResolutionSTFTLoss``,
``SumAndDifferenceSTFTLoss``) as stable-audio-tools uses them for Stable Audio Open's VAE; the weights in
:class:`LossWeights` come from stable-audio-tools' ``stable_audio_2_0_vae.json``. See docs/recon.md.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavefoundry.audio.features import WINDOWS, mel_filterbank, stft

# A-weighting (IEC 61672) analog pole frequencies in Hz and the gain that makes 0 dB at 1 kHz, as in auraloss.
_A_WEIGHT_F1, _A_WEIGHT_F2, _A_WEIGHT_F3, _A_WEIGHT_F4 = 20.598997, 107.65265, 737.86223, 12194.217
_A_WEIGHT_A1000 = 1.9997
_FREQZ_POINTS = 512  # scipy.signal.freqz default grid that auraloss fits the FIR to


def _a_weighting_response(freqs: Tensor, sample_rate: int) -> Tensor:
    """|H(f)| of the bilinear-transformed analog A-weighting filter (``scipy.signal.bilinear`` + ``freqz``)."""
    # The bilinear transform maps z = e^{j 2 pi f / fs} to s = j 2 fs tan(pi f / fs).
    s = 1j * 2 * sample_rate * torch.tan(math.pi * freqs / sample_rate).to(torch.complex128)
    w1, w2, w3, w4 = (2 * math.pi * f for f in (_A_WEIGHT_F1, _A_WEIGHT_F2, _A_WEIGHT_F3, _A_WEIGHT_F4))
    gain = w4**2 * 10 ** (_A_WEIGHT_A1000 / 20)
    h = gain * s**4 / ((s + w4) ** 2 * (s + w1) ** 2 * (s + w3) * (s + w2))
    return h.abs()


def _firls(num_taps: int, bands: Tensor, desired: Tensor) -> Tensor:
    """Least-squares linear-phase FIR (``scipy.signal.firls`` with unit weights), float64.

    Args:
        num_taps: odd filter length.
        bands: (K, 2) band edges as fractions of Nyquist; gaps between bands are "don't care".
        desired: (K, 2) gains at the band edges, linear inside each band.
    """
    M = (num_taps - 1) // 2
    n = torch.arange(num_taps, dtype=torch.float64)[:, None, None]  # (N, 1, 1)
    # q(n) = sum over bands of the integral of cos(pi n f) df; Q = Toeplitz(q) + Hankel(q).
    q = (torch.sinc(bands * n) * bands).diff(dim=2)[:, :, 0].sum(dim=1)  # (N,)
    k = torch.arange(M + 1)
    Q = q[(k[:, None] - k[None, :]).abs()] + q[k[:, None] + k[None, :]]  # (M + 1, M + 1)
    # b(n) = sum over bands of the integral of (m f + c) cos(pi n f) df.
    m = desired.diff(dim=1) / bands.diff(dim=1)  # (K, 1)
    c = desired[:, :1] - bands[:, :1] * m
    n = n[: M + 1]
    b = bands * (m * bands + c) * torch.sinc(bands * n)  # (M + 1, K, 2)
    b[0] -= m * bands * bands / 2  # the n = 0 limit of the cosine term
    b[1:] += m * torch.cos(n[1:] * math.pi * bands) / (math.pi * n[1:]) ** 2
    a = torch.linalg.solve(Q, b.diff(dim=2)[:, :, 0].sum(dim=1))  # (M + 1,)
    return torch.cat([a.flip(0)[:-1], 2 * a[:1], a[1:]])  # symmetric (num_taps,)


@functools.lru_cache(maxsize=8)
def a_weighting_fir(sample_rate: int, num_taps: int = 101) -> Tensor:
    """A-weighting pre-emphasis FIR of auraloss' ``FIRFilter("aw")`` (Wright & Välimäki 2019).

    The analog A-weighting filter is mapped to digital by the bilinear transform, its magnitude sampled on a
    512-point grid, and a linear-phase FIR fitted to it by least squares over consecutive grid-point pairs.

    Returns:
        (num_taps,) float32 taps, symmetric.
    """
    if num_taps < 1 or num_taps % 2 == 0:
        raise ValueError(f"num_taps must be odd and positive, got {num_taps}")
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    freqs = torch.arange(_FREQZ_POINTS, dtype=torch.float64) * (sample_rate / 2 / _FREQZ_POINTS)
    gains = _a_weighting_response(freqs, sample_rate)
    bands = (freqs / (sample_rate / 2)).view(-1, 2)  # (256, 2)
    return _firls(num_taps, bands, gains.view(-1, 2)).float()


@dataclass(kw_only=True)
class STFTLossConfig:
    """Multi-resolution STFT loss settings; the defaults are Stable Audio Open's (stable-audio-tools sao configs).

    ``hop_sizes`` / ``win_lengths`` of None mean ``fft // 4`` / ``fft``.
    """

    fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64, 32)
    hop_sizes: tuple[int, ...] | None = None
    win_lengths: tuple[int, ...] | None = None
    window: str = "hann"
    w_sc: float = 1.0  # spectral convergence
    w_log_mag: float = 1.0  # L1 of log magnitudes
    w_lin_mag: float = 0.0  # L1 of linear magnitudes
    eps: float = 1e-8  # floor of |X|^2 before the sqrt and the log
    sample_rate: int = 44100
    perceptual_weighting: bool = True
    fir_taps: int = 101
    mel_bins: int | None = None  # mel-scale the magnitudes (Slaney filters) when set

    def __post_init__(self) -> None:
        n = len(self.fft_sizes)
        if n == 0 or any(f < 2 for f in self.fft_sizes):
            raise ValueError(f"STFTLossConfig: fft_sizes must be non-empty, each >= 2, got {self.fft_sizes}")
        for name in ("hop_sizes", "win_lengths"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"STFTLossConfig: {name} has {len(value)} entries, fft_sizes has {n}")
        if any(h < 1 for h in self.hops):
            raise ValueError(f"STFTLossConfig: hop sizes must be >= 1, got {self.hops}")
        if any(not 1 <= w <= f for w, f in zip(self.windows, self.fft_sizes)):
            raise ValueError(f"STFTLossConfig: need 1 <= win_length <= fft_size, got {self.windows}")
        if self.window not in WINDOWS:
            raise ValueError(f"STFTLossConfig: unknown window {self.window!r}; valid: {', '.join(WINDOWS)}")
        if min(self.w_sc, self.w_log_mag, self.w_lin_mag) < 0 or self.w_sc + self.w_log_mag + self.w_lin_mag == 0:
            raise ValueError("STFTLossConfig: term weights must be >= 0 and not all zero")
        if self.eps <= 0 or self.sample_rate < 1:
            raise ValueError(f"STFTLossConfig: need eps > 0 and sample_rate >= 1, got {self.eps}, {self.sample_rate}")
        if self.fir_taps < 1 or self.fir_taps % 2 == 0:
            raise ValueError(f"STFTLossConfig: fir_taps must be odd and positive, got {self.fir_taps}")
        if self.mel_bins is not None and not 1 <= self.mel_bins <= min(self.fft_sizes):
            raise ValueError(f"STFTLossConfig: mel_bins must be in [1, min(fft_sizes)], got {self.mel_bins}")

    @property
    def hops(self) -> tuple[int, ...]:
        return self.hop_sizes if self.hop_sizes is not None else tuple(f // 4 for f in self.fft_sizes)

    @property
    def windows(self) -> tuple[int, ...]:
        return self.win_lengths if self.win_lengths is not None else self.fft_sizes


class MultiResolutionSTFTLoss(nn.Module):
    """auraloss ``MultiResolutionSTFTLoss``: mean over resolutions of w_sc SC + w_log log-mag L1 + w_lin lin-mag L1.

    Channels are folded into the batch; SC is one norm ratio over the whole batch, the L1 terms are means.
    """

    fir: Tensor

    def __init__(self, config: STFTLossConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.register_buffer("fir", a_weighting_fir(c.sample_rate, c.fir_taps).view(1, 1, -1), persistent=False)
        # Plain tensors, not buffers: rebuilt from the config and moved to the signal's device when used.
        self._mel: list[Tensor | None] = [
            mel_filterbank(f // 2 + 1, c.mel_bins, c.sample_rate) if c.mel_bins else None for f in c.fft_sizes
        ]

    def weight(self, x: Tensor) -> Tensor:
        """Perceptual (A-weighting) pre-emphasis of (..., T) audio when enabled; zero-padded, same length.

        Returns float32 (float64 for float64 input), also under autocast: the losses need full precision.
        """
        x = x if x.dtype in (torch.float32, torch.float64) else x.float()
        if not self.config.perceptual_weighting:
            return x
        T = x.shape[-1]
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = F.conv1d(x.reshape(-1, 1, T), self.fir.to(x.dtype), padding=self.fir.shape[-1] // 2)  # (B*C, 1, T)
        return y.reshape(x.shape)

    def _magnitude(self, x: Tensor, i: int) -> Tensor:
        c = self.config
        spec = stft(x, c.fft_sizes[i], c.hops[i], c.windows[i], c.window)  # (B, F, N)
        mag = torch.sqrt(torch.clamp(spec.real.square() + spec.imag.square(), min=c.eps))
        fb = self._mel[i]
        return mag if fb is None else torch.matmul(mag.mT, fb.to(mag)).mT  # (B, M, N)

    def _resolution(self, est: Tensor, ref: Tensor, i: int) -> Tensor:
        c = self.config
        x, y = self._magnitude(est, i), self._magnitude(ref, i)
        loss = x.new_zeros(())
        if c.w_sc:
            loss = loss + c.w_sc * torch.linalg.vector_norm(y - x) / torch.linalg.vector_norm(y)
        if c.w_log_mag:
            loss = loss + c.w_log_mag * (torch.log(y) - torch.log(x)).abs().mean()
        if c.w_lin_mag:
            loss = loss + c.w_lin_mag * (y - x).abs().mean()
        return loss

    def forward_weighted(self, estimate: Tensor, reference: Tensor) -> Tensor:
        """The loss of signals that :meth:`weight` already filtered (saves the filter for shared inputs)."""
        est = estimate.reshape(-1, estimate.shape[-1])  # (B*C, T)
        ref = reference.reshape(-1, reference.shape[-1])
        with torch.autocast(device_type=est.device.type, enabled=False):
            total = sum(self._resolution(est, ref, i) for i in range(len(self.config.fft_sizes)))
        return total / len(self.config.fft_sizes)

    def forward(self, estimate: Tensor, reference: Tensor) -> Tensor:
        """Loss of (B, C, T) ``estimate`` against ``reference`` (SC divides by the reference); a scalar."""
        _check_pair(estimate, reference)
        return self.forward_weighted(self.weight(estimate), self.weight(reference))


def _check_pair(estimate: Tensor, reference: Tensor) -> None:
    if estimate.shape != reference.shape or estimate.ndim != 3:
        raise ValueError(
            f"expected estimate and reference of one (B, C, T) shape, got {tuple(estimate.shape)} "
            f"and {tuple(reference.shape)}"
        )


class StereoSTFTLoss(nn.Module):
    """Stable Audio Open's spectral loss: sum-and-difference plus half-weight left and right losses.

    For stereo (B, 2, T): ``(MR(L+R) + MR(L-R)) / 2 + MR(L) / 2 + MR(R) / 2`` with MR the
    :class:`MultiResolutionSTFTLoss`, the auraloss ``SumAndDifferenceSTFTLoss`` plus stable-audio-tools'
    ``stft_loss_left/right`` terms at weight 1/2. Any other channel count uses MR alone.
    """

    def __init__(self, config: STFTLossConfig) -> None:
        super().__init__()
        self.mrstft = MultiResolutionSTFTLoss(config)

    def terms(self, estimate: Tensor, reference: Tensor) -> dict[str, Tensor]:
        """Unweighted terms: ``{"sum_diff", "left", "right"}`` for stereo, ``{"mrstft"}`` otherwise."""
        _check_pair(estimate, reference)
        mr = self.mrstft
        est, ref = mr.weight(estimate), mr.weight(reference)  # linear filter: weight(L + R) = weight(L) + weight(R)
        if estimate.shape[1] != 2:
            return {"mrstft": mr.forward_weighted(est, ref)}
        mid = mr.forward_weighted(est[:, :1] + est[:, 1:], ref[:, :1] + ref[:, 1:])  # (B, 1, T) sums
        side = mr.forward_weighted(est[:, :1] - est[:, 1:], ref[:, :1] - ref[:, 1:])
        return {
            "sum_diff": (mid + side) / 2,
            "left": mr.forward_weighted(est[:, :1], ref[:, :1]),
            "right": mr.forward_weighted(est[:, 1:], ref[:, 1:]),
        }

    def forward(self, estimate: Tensor, reference: Tensor) -> Tensor:
        """Weighted total of :meth:`terms` for (B, C, T) signals; a scalar."""
        t = self.terms(estimate, reference)
        return t["mrstft"] if "mrstft" in t else t["sum_diff"] + (t["left"] + t["right"]) / 2


# Adversarial losses over lists of per-scale logits, summed over scales as in stable-audio-tools'
# EncodecDiscriminator.loss (the SAO weights were tuned for that sum).
def _sum_scales(terms: list[Tensor]) -> Tensor:
    if not terms:
        raise ValueError("adversarial losses need at least one scale of logits")
    return torch.stack(terms).sum()


def _pairs(real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor]) -> zip:
    if len(real_logits) != len(fake_logits):
        raise ValueError(f"{len(real_logits)} real scales but {len(fake_logits)} fake scales")
    return zip(real_logits, fake_logits)


def hinge_discriminator_loss(real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor]) -> Tensor:
    """Sum over scales of ``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``."""
    return _sum_scales([F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in _pairs(real_logits, fake_logits)])


def hinge_generator_loss(fake_logits: Sequence[Tensor]) -> Tensor:
    """Sum over scales of ``-mean(D(G(z)))``."""
    return _sum_scales([-f.mean() for f in fake_logits])


def lsgan_discriminator_loss(real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor]) -> Tensor:
    """Sum over scales of ``mean((1 - D(x))^2) + mean(D(G(z))^2)`` (Mao et al. 2017)."""
    return _sum_scales([(1 - r).square().mean() + f.square().mean() for r, f in _pairs(real_logits, fake_logits)])


def lsgan_generator_loss(fake_logits: Sequence[Tensor]) -> Tensor:
    """Sum over scales of ``mean((1 - D(G(z)))^2)``."""
    return _sum_scales([(1 - f).square().mean() for f in fake_logits])


@dataclass(frozen=True)
class AdversarialLoss:
    """Discriminator loss ``(real_logits, fake_logits) -> Tensor`` and generator loss ``(fake_logits) -> Tensor``."""

    discriminator: Callable[[Sequence[Tensor], Sequence[Tensor]], Tensor]
    generator: Callable[[Sequence[Tensor]], Tensor]


ADV_LOSSES: dict[str, AdversarialLoss] = {
    "hinge": AdversarialLoss(hinge_discriminator_loss, hinge_generator_loss),
    "lsgan": AdversarialLoss(lsgan_discriminator_loss, lsgan_generator_loss),
}


def adversarial_loss(name: str) -> AdversarialLoss:
    """Look up :data:`ADV_LOSSES`; an unknown name raises ``ValueError`` listing the valid ones."""
    if name not in ADV_LOSSES:
        raise ValueError(f"unknown adversarial loss {name!r}; valid: {', '.join(ADV_LOSSES)}")
    return ADV_LOSSES[name]


def feature_matching_loss(
    real_feats: Sequence[Sequence[Tensor]],
    fake_feats: Sequence[Sequence[Tensor]],
    *,
    normalize: bool = False,
    eps: float = 1e-8,
) -> Tensor:
    """L1 distance between discriminator features: mean over layers, summed over scales.

    Args:
        real_feats, fake_feats: per scale, per layer feature maps (as returned by the discriminator).
            Real features are detached: the loss trains the generator only.
        normalize: divide each layer's L1 by ``mean(|real|) + eps`` as in EnCodec (Défossez et al. 2022);
            False (default) is the plain L1 of stable-audio-tools, which the SAO weight 5.0 goes with.
    """
    if len(real_feats) != len(fake_feats):
        raise ValueError(f"{len(real_feats)} real scales but {len(fake_feats)} fake scales")
    total = None
    for real_scale, fake_scale in zip(real_feats, fake_feats):
        if len(real_scale) != len(fake_scale) or not real_scale:
            raise ValueError(f"layer counts differ or are zero: {len(real_scale)} real, {len(fake_scale)} fake")
        layers = []
        for real, fake in zip(real_scale, fake_scale):
            real = real.detach()
            dist = (real - fake).abs().mean()
            layers.append(dist / (real.abs().mean() + eps) if normalize else dist)
        scale = torch.stack(layers).mean()
        total = scale if total is None else total + scale
    if total is None:
        raise ValueError("feature_matching_loss needs at least one scale")
    return total


@dataclass(kw_only=True)
class LossWeights:
    """Generator loss weights; defaults from stable-audio-tools ``stable_audio_2_0_vae.json`` (the SAO VAE).

    The discriminator loss has weight 1. Adversarial and feature-matching terms (and discriminator updates)
    start at step ``adversarial_warmup_steps`` (stable-audio-tools ``warmup_steps``, 0 for SAO). ``waveform`` weights
    an L1 loss on the samples (0 in SAO): the STFT loss ignores phase, and small CPU codecs trained with it alone
    are slow to produce periodic output (see ``docs/recon.md``).
    """

    stft: float = 1.0
    waveform: float = 0.0
    kl: float = 1e-4
    adversarial: float = 0.1
    feature_matching: float = 5.0
    adversarial_warmup_steps: int = 0

    def __post_init__(self) -> None:
        for name in ("stft", "waveform", "kl", "adversarial", "feature_matching"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"LossWeights: {name} must be finite and >= 0, got {value}")
        if self.adversarial_warmup_steps < 0:
            raise ValueError(f"LossWeights: adversarial_warmup_steps must be >= 0, got {self.adversarial_warmup_steps}")

    def adversarial_active(self, step: int) -> bool:
        """Whether the GAN terms are on at optimizer step ``step`` (0-based)."""
        return step >= self.adversarial_warmup_steps
