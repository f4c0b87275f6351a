"""MS-STFT discriminator: shapes, the spectrogram it sees, parameter count, gradients, bad input."""

from __future__ import annotations

import pytest
import torch

from wavefoundry.codecs.discriminators import DiscriminatorConfig, MultiScaleSTFTDiscriminator
from wavefoundry.codecs.losses import ADV_LOSSES, feature_matching_loss
from wavefoundry.config import ConfigError, from_dict, to_dict


def conv_out(n: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    return (n + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


@pytest.fixture(scope="module")
def small() -> MultiScaleSTFTDiscriminator:
    torch.manual_seed(0)
    return MultiScaleSTFTDiscriminator(DiscriminatorConfig(audio_channels=2, channels=4, n_ffts=(256, 128, 64)))


def test_logit_and_feature_shapes(small):
    T = 1000
    logits, features = small(torch.randn(3, 2, T))
    assert len(small.blocks) == len(logits) == len(features) == 3
    for n_fft, logit, feats in zip((256, 128, 64), logits, features):
        frames = 1 + (T - n_fft) // (n_fft // 4)  # center=False
        freqs = [n_fft // 2 + 1]
        for _ in range(3):  # three stride-2 convs over frequency, kernel 9, padding 4
            freqs.append(conv_out(freqs[-1], 9, 2, 4))
        expected = [(3, 4, frames, f) for f in freqs] + [(3, 4, frames, freqs[-1])]
        assert [tuple(f.shape) for f in feats] == expected
        assert tuple(logit.shape) == (3, 1, frames, freqs[-1])


def test_spectrogram_is_the_normalised_complex_stft(small):
    x = torch.randn(1, 2, 700, dtype=torch.float64)
    block = small.blocks[2]  # n_fft 64, hop 16
    z = block.spectrogram(x)  # (B, 2C, frames, freqs)
    window = torch.hann_window(64, dtype=torch.float64)
    frame = x[0, 1, 5 * 16 : 5 * 16 + 64] * window  # channel 1, frame 5
    expected = torch.fft.rfft(frame) / window.square().sum().sqrt()
    torch.testing.assert_close(z[0, 1, 5], expected.real)  # real parts: channels 0..C-1
    torch.testing.assert_close(z[0, 3, 5], expected.imag)  # imaginary parts: channels C..2C-1


def test_parameter_count_and_weight_norm_layout():
    d = MultiScaleSTFTDiscriminator(DiscriminatorConfig(audio_channels=2))
    # Per scale (32 filters, (3, 9) kernels): first conv 4->32, three dilated 32->32, a 3x3 32->32 and a 3x3
    # 32->1 post conv, plus the weight-norm gains of all but the first conv.
    per_scale = (4 * 32 * 27 + 32) + 3 * (32 * 32 * 27 + 32) + (32 * 32 * 9 + 32) + (32 * 9 + 1) + (3 * 32 + 32 + 1)
    assert sum(p.numel() for p in d.parameters()) == 5 * per_scale
    names = {n for n, _ in d.blocks[0].named_parameters()}
    assert "convs.0.weight" in names  # the first conv has no weight norm, as in audiocraft
    assert {f"convs.{i}.parametrizations.weight.original0" for i in range(1, 5)} <= names
    assert "conv_post.parametrizations.weight.original1" in names


def test_gradients_reach_input_and_every_parameter(small):
    x = torch.randn(2, 2, 512, requires_grad=True)
    logits, features = small(x)
    real_logits, real_feats = small(torch.randn(2, 2, 512))
    hinge = ADV_LOSSES["hinge"]
    loss = (
        hinge.generator(logits) + hinge.discriminator(real_logits, logits) + feature_matching_loss(real_feats, features)
    )
    loss.backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0
    for name, p in small.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    small.zero_grad()


def test_hinge_loss_on_known_logits_per_scale():
    # Logits shaped like the discriminator's (B, 1, frames, freqs), two scales.
    real = [torch.full((2, 1, 3, 4), 2.0), torch.full((2, 1, 5, 2), 0.5)]
    fake = [torch.full((2, 1, 3, 4), -0.25), torch.full((2, 1, 5, 2), 1.0)]
    hinge = ADV_LOSSES["hinge"]
    # scale 0: relu(1 - 2) + relu(1 - 0.25) = 0.75; scale 1: relu(0.5) + relu(2) = 2.5.
    assert float(hinge.discriminator(real, fake)) == pytest.approx(0.75 + 2.5)
    assert float(hinge.generator(fake)) == pytest.approx(0.25 - 1.0)


def test_channel_growth_caps_widths():
    d = MultiScaleSTFTDiscriminator(
        DiscriminatorConfig(audio_channels=1, channels=2, channel_growth=2, max_channels=8, n_ffts=(64,))
    )
    _, features = d(torch.randn(1, 1, 256))
    assert [f.shape[1] for f in features[0]] == [2, 4, 8, 8, 8]


def test_bad_input_and_config():
    d = MultiScaleSTFTDiscriminator(DiscriminatorConfig(audio_channels=1, channels=2, n_ffts=(128,)))
    with pytest.raises(ValueError, match="expected \\(B, 1, T\\)"):
        d(torch.randn(1, 2, 512))
    with pytest.raises(ValueError, match="at least 128 samples"):
        d(torch.randn(1, 1, 100))
    config = DiscriminatorConfig(audio_channels=1)
    assert config.hops == (512, 256, 128, 64, 32) and config.windows == config.n_ffts
    assert from_dict(DiscriminatorConfig, to_dict(config)) == config
    for bad in ({"n_ffts": []}, {"hop_lengths": [1]}, {"channels": 0}, {"dilations": []}, {"win_lengths": [4096] * 5}):
        with pytest.raises((ValueError, ConfigError)):
            from_dict(DiscriminatorConfig, bad)
