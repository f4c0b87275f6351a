"""Autoencoder: shapes, bad input, continuous and discrete round trips, chunked == full on Oobleck."""

import pytest
import torch

from wavefoundry.codecs.autoencoder import Autoencoder, AutoencoderConfig
from wavefoundry.codecs.bottlenecks import BottleneckConfig, FSQConfig, RVQConfig, VAEConfig
from wavefoundry.codecs.oobleck import OobleckConfig


def _oobleck(latent: int, enc_out: int, channels: int = 2) -> OobleckConfig:
    return OobleckConfig(
        sample_rate=8000, audio_channels=channels, channels=4, c_mults=(1, 2), strides=(2, 4),
        latent_dim=latent, encoder_out_dim=enc_out,
    )  # fmt: skip


def _vae() -> Autoencoder:
    torch.manual_seed(0)
    cfg = AutoencoderConfig(
        oobleck=_oobleck(3, 6), bottleneck=BottleneckConfig(kind="vae", vae=VAEConfig(latent_dim=3))
    )
    model = Autoencoder(cfg).eval()
    with torch.no_grad():  # non-trivial snake parameters so the receptive field is exercised
        for name, p in model.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.uniform_(-0.5, 0.5)
    return model


def test_shapes_and_bad_input():
    model = _vae()
    audio = torch.randn(2, 2, 100)
    recon, out = model(audio)
    assert recon.shape == audio.shape and out.latents.shape == (2, 3, 13)  # ceil(100 / 8)
    assert not model.is_discrete and out.codes is None
    with pytest.raises(ValueError, match="expects 8000 Hz"):
        model.check_input(audio, sample_rate=16000)
    with pytest.raises(ValueError, match="2-channel model"):
        model.encode(torch.randn(1, 1, 80))
    with pytest.raises(ValueError, match="NaN"):
        model.decode(torch.full((1, 3, 4), float("nan")))
    with pytest.raises(ValueError, match="continuous"):
        model.decode_codes(torch.zeros(1, 1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="bottleneck needs"):
        AutoencoderConfig(oobleck=_oobleck(3, 3), bottleneck=BottleneckConfig(kind="vae", vae=VAEConfig(latent_dim=3)))


@pytest.mark.parametrize("length", [8 * 50, 8 * 50 + 3])
def test_chunked_equals_full(length):
    model = _vae()
    audio = torch.randn(1, 2, length)
    with torch.no_grad():
        torch.manual_seed(1)
        full = model.encode(audio).latents
        torch.manual_seed(1)
        chunked = model.encode(audio, chunk_seconds=7 * 8 / 8000).latents
        torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            model.decode(full, chunk_seconds=5 * 8 / 8000), model.decode(full), rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize(
    "bottleneck",
    [
        BottleneckConfig(kind="rvq", rvq=RVQConfig(dim=4, codebook_size=16, num_quantizers=3, init="random")),
        BottleneckConfig(kind="fsq", fsq=FSQConfig(dim=4, levels=(5, 5, 5, 5))),
    ],
)
def test_discrete_codes_round_trip(bottleneck):
    torch.manual_seed(0)
    model = Autoencoder(AutoencoderConfig(oobleck=_oobleck(4, 4, channels=1), bottleneck=bottleneck)).eval()
    audio = torch.randn(2, 1, 160)
    with torch.no_grad():
        out = model.encode(audio)
        assert model.is_discrete and out.codes.dtype == torch.long and out.codes.shape[-1] == 20
        torch.testing.assert_close(model.decode_codes(out.codes), model.decode(out.latents))
        with pytest.raises(ValueError):
            model.decode_codes(out.codes + 1000)
