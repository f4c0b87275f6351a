"""Training losses: auraloss 0.4.0 as the reference for the spectral losses, closed forms for the GAN losses."""

from __future__ import annotations

import auraloss
import pytest
import torch
from auraloss.perceptual import FIRFilter

from wavefoundry.codecs.losses import (
    ADV_LOSSES,
    LossWeights,
    MultiResolutionSTFTLoss,
    StereoSTFTLoss,
    STFTLossConfig,
    a_weighting_fir,
    adversarial_loss,
    feature_matching_loss,
)
from wavefoundry.config import ConfigError, from_dict, to_dict

SAO_FFTS = [2048, 1024, 512, 256, 128, 64, 32]


def sao_auraloss_args(sample_rate: int) -> dict:
    """stable-audio-tools' sao spectral loss config, as passed to auraloss."""
    return dict(
        fft_sizes=SAO_FFTS,
        hop_sizes=[f // 4 for f in SAO_FFTS],
        win_lengths=SAO_FFTS,
        perceptual_weighting=True,
        sample_rate=sample_rate,
    )


@pytest.fixture(scope="module")
def stereo_pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ref = 0.3 * torch.randn(2, 2, 4096, generator=g)
    est = 0.8 * ref + 0.05 * torch.randn(2, 2, 4096, generator=g)
    return est, ref


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return abs(float(a) - float(b)) / abs(float(b))


@pytest.mark.parametrize("sample_rate", [16000, 44100])
def test_a_weighting_fir_matches_auraloss(sample_rate):
    ref = FIRFilter(filter_type="aw", fs=sample_rate).fir.weight.data.flatten()
    ours = a_weighting_fir(sample_rate)
    assert ours.shape == (101,)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours, ours.flip(0))  # linear phase


def test_mrstft_sao_config_matches_auraloss(stereo_pair):
    est, ref = stereo_pair
    ours = MultiResolutionSTFTLoss(STFTLossConfig(sample_rate=44100))(est, ref)
    theirs = auraloss.freq.MultiResolutionSTFTLoss(**sao_auraloss_args(44100))(est, ref)
    assert rel(ours, theirs) < 1e-5


def test_stereo_loss_is_sum_diff_plus_half_left_right(stereo_pair):
    est, ref = stereo_pair
    loss = StereoSTFTLoss(STFTLossConfig(sample_rate=44100))
    args = sao_auraloss_args(44100)
    sd = auraloss.freq.SumAndDifferenceSTFTLoss(**args)(est, ref)
    lr = auraloss.freq.MultiResolutionSTFTLoss(**args)
    left, right = lr(est[:, :1], ref[:, :1]), lr(est[:, 1:], ref[:, 1:])
    terms = loss.terms(est, ref)
    assert set(terms) == {"sum_diff", "left", "right"}
    assert rel(terms["sum_diff"], sd) < 1e-5
    assert rel(terms["left"], left) < 1e-5 and rel(terms["right"], right) < 1e-5
    assert rel(loss(est, ref), sd + (left + right) / 2) < 1e-5


def test_stereo_loss_falls_back_to_plain_loss_for_mono(stereo_pair):
    est, ref = (x[:, :1] for x in stereo_pair)
    config = STFTLossConfig(sample_rate=16000)
    assert set(StereoSTFTLoss(config).terms(est, ref)) == {"mrstft"}
    torch.testing.assert_close(StereoSTFTLoss(config)(est, ref), MultiResolutionSTFTLoss(config)(est, ref))


def test_mel_scaled_linear_magnitude_variant_matches_auraloss(stereo_pair):
    est, ref = stereo_pair
    config = STFTLossConfig(
        sample_rate=16000, fft_sizes=(512, 256), mel_bins=32, w_lin_mag=0.5, perceptual_weighting=False
    )
    theirs = auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[512, 256],
        hop_sizes=[128, 64],
        win_lengths=[512, 256],
        sample_rate=16000,
        scale="mel",
        n_bins=32,
        w_lin_mag=0.5,
    )(est, ref)
    assert rel(MultiResolutionSTFTLoss(config)(est, ref), theirs) < 1e-5


def test_loss_is_zero_for_identical_signals_and_has_finite_gradients(stereo_pair):
    est, ref = stereo_pair
    loss = StereoSTFTLoss(STFTLossConfig(sample_rate=44100))
    assert float(loss(ref, ref)) == pytest.approx(0.0, abs=1e-6)
    x = est.clone().requires_grad_(True)
    loss(x, ref).backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0


def test_loss_rejects_mismatched_shapes(stereo_pair):
    est, ref = stereo_pair
    loss = MultiResolutionSTFTLoss(STFTLossConfig())
    with pytest.raises(ValueError, match="one \\(B, C, T\\) shape"):
        loss(est[..., :-1], ref)
    with pytest.raises(ValueError, match="one \\(B, C, T\\) shape"):
        loss(est[0], ref[0])


def test_stft_loss_config_defaults_roundtrip_and_validation():
    config = STFTLossConfig()
    assert config.fft_sizes == tuple(SAO_FFTS)
    assert config.hops == tuple(f // 4 for f in SAO_FFTS) and config.windows == tuple(SAO_FFTS)
    assert config.perceptual_weighting and config.sample_rate == 44100
    assert from_dict(STFTLossConfig, to_dict(config)) == config
    bad = [
        {"hop_sizes": [1, 2]},
        {"fft_sizes": [64], "win_lengths": [128]},
        {"window": "kaiser"},
        {"fir_taps": 100},
        {"w_sc": 0, "w_log_mag": 0},
        {"mel_bins": 64, "fft_sizes": [32]},
        {"eps": 0},
    ]
    for overrides in bad:
        with pytest.raises((ValueError, ConfigError)):
            from_dict(STFTLossConfig, overrides)


def test_hinge_and_lsgan_closed_forms():
    real = [torch.tensor([2.0, 0.5, -1.0]), torch.tensor([[0.0]])]
    fake = [torch.tensor([-2.0, 0.0, 1.0]), torch.tensor([[-0.5]])]
    hinge, lsgan = adversarial_loss("hinge"), adversarial_loss("lsgan")
    # scale 0: relu(1 - real) = [0, .5, 2] -> 5/6; relu(1 + fake) = [0, 1, 2] -> 1. scale 1: 1 + 0.5.
    assert float(hinge.discriminator(real, fake)) == pytest.approx(5 / 6 + 1 + 1 + 0.5)
    assert float(hinge.generator(fake)) == pytest.approx(1 / 3 + 0.5)  # -mean(fake) per scale
    # lsgan: (1 - real)^2 = [1, .25, 4] -> 5.25/3; fake^2 = [4, 0, 1] -> 5/3; scale 1: 1 + 0.25.
    assert float(lsgan.discriminator(real, fake)) == pytest.approx(5.25 / 3 + 5 / 3 + 1.25)
    assert float(lsgan.generator(fake)) == pytest.approx((9 + 1 + 0) / 3 + 2.25)
    assert set(ADV_LOSSES) == {"hinge", "lsgan"}
    with pytest.raises(ValueError, match="valid: hinge, lsgan"):
        adversarial_loss("wgan")
    with pytest.raises(ValueError, match="scales"):
        hinge.discriminator(real, fake[:1])
    with pytest.raises(ValueError, match="at least one scale"):
        hinge.generator([])


def test_feature_matching_closed_forms_and_detached_real():
    real = [[torch.tensor([1.0, -3.0]), torch.tensor([2.0])], [torch.tensor([4.0, 4.0])]]
    fake_leaf = torch.tensor([0.0, -1.0], requires_grad=True)
    real[0][0].requires_grad_(True)
    fake = [[fake_leaf, torch.tensor([1.0])], [torch.tensor([1.0, 5.0])]]
    # scale 0: layer L1 means 1.5 and 1 -> mean 1.25; scale 1: (3 + 1) / 2 = 2.
    assert feature_matching_loss(real, fake).item() == pytest.approx(1.25 + 2.0)
    # relative: 1.5 / 2, 1 / 2 -> 0.625; scale 1: 2 / 4 = 0.5.
    loss = feature_matching_loss(real, fake, normalize=True)
    assert loss.item() == pytest.approx(0.625 + 0.5, rel=1e-6)
    loss.backward()
    assert real[0][0].grad is None and fake_leaf.grad is not None
    with pytest.raises(ValueError, match="scales"):
        feature_matching_loss(real, fake[:1])
    with pytest.raises(ValueError, match="layer counts"):
        feature_matching_loss([real[0]], [fake[0][:1]])


def test_loss_weights_are_the_sao_values_and_validate():
    w = LossWeights()
    assert (w.stft, w.kl, w.adversarial, w.feature_matching, w.adversarial_warmup_steps) == (1.0, 1e-4, 0.1, 5.0, 0)
    warm = LossWeights(adversarial_warmup_steps=10)
    assert not warm.adversarial_active(9) and warm.adversarial_active(10)
    with pytest.raises(ValueError, match="kl"):
        LossWeights(kl=-1.0)
    with pytest.raises(ValueError, match="warmup"):
        LossWeights(adversarial_warmup_steps=-1)


def test_loss_runs_in_full_precision_under_autocast(stereo_pair):
    est, ref = stereo_pair
    loss = StereoSTFTLoss(STFTLossConfig(sample_rate=44100))
    full = loss(est, ref)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = loss(est, ref)
    assert auto.dtype == torch.float32 and rel(auto, full) < 1e-6
    half = loss(est.bfloat16(), ref.bfloat16())  # bf16 signals are scored in float32
    assert half.dtype == torch.float32 and rel(half, full) < 1e-2
