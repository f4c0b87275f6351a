"""The common tokenizer interface over our autoencoder: codes match the autoencoder's, decode round trips, errors."""

import pytest
import torch

from wavefoundry.audio.resample import resample
from wavefoundry.codecs.autoencoder import Autoencoder, AutoencoderConfig
from wavefoundry.codecs.bottlenecks import BottleneckConfig, FSQConfig, RVQConfig, VAEConfig
from wavefoundry.codecs.oobleck import OobleckConfig
from wavefoundry.codecs.tokenizer import AudioTokenizer, CodecTokenizer, resample_batch


def _oobleck(dim: int, enc: int | None = None) -> OobleckConfig:
    return OobleckConfig(sample_rate=16000, audio_channels=1, channels=4, c_mults=(1, 2), strides=(2, 4),
                         latent_dim=dim, encoder_out_dim=enc or dim)  # fmt: skip


def _rvq_codec() -> Autoencoder:
    torch.manual_seed(0)
    rvq = RVQConfig(dim=8, codebook_size=16, num_quantizers=3, init="random")
    return Autoencoder(AutoencoderConfig(oobleck=_oobleck(8), bottleneck=BottleneckConfig(kind="rvq", rvq=rvq)))


def test_rvq_adapter_matches_the_autoencoder():
    ae = _rvq_codec()
    tok = CodecTokenizer(ae, n_codebooks=2)
    assert isinstance(tok, AudioTokenizer) and not ae.training
    assert (tok.sample_rate, tok.frame_rate, tok.n_codebooks, tok.codebook_size) == (16000, 2000.0, 2, 16)
    x = 0.1 * torch.randn(2, 1, 100, generator=torch.Generator().manual_seed(1))
    codes = tok.encode(x)
    with torch.no_grad():
        full = ae.encode(x).codes
        want_audio = ae.decode(ae.bottleneck.codes_to_latents(full[:, :2]))
    assert codes.shape == (2, 2, 13)  # ceil(100 / 8) frames
    assert torch.equal(codes, full[:, :2])
    audio = tok.decode(codes)
    assert audio.shape == (2, 1, 13 * 8)
    torch.testing.assert_close(audio, want_audio)


def test_resampling_in_and_out():
    tok = CodecTokenizer(_rvq_codec())
    x = 0.1 * torch.randn(1, 1, 480, generator=torch.Generator().manual_seed(2))
    x16 = torch.from_numpy(resample(x[0].numpy(), 48000, 16000))[None]
    assert torch.equal(tok.encode(x, sample_rate=48000), tok.encode(x16))
    out = tok.decode(tok.encode(x16), sample_rate=8000)
    assert out.shape == (1, 1, 160 // 2)
    same = torch.zeros(1, 1, 10)
    assert resample_batch(same, 16000, 16000) is same


def test_adapter_errors():
    with pytest.raises(ValueError, match="discrete"):
        vae = BottleneckConfig(kind="vae", vae=VAEConfig(latent_dim=4))
        CodecTokenizer(Autoencoder(AutoencoderConfig(oobleck=_oobleck(4, 8), bottleneck=vae)))
    with pytest.raises(ValueError, match=r"valid: 1\.\.3"):
        CodecTokenizer(_rvq_codec(), n_codebooks=4)
    fsq = BottleneckConfig(kind="fsq", fsq=FSQConfig(dim=8, levels=(3, 3), num_codebooks=2))
    fsq_codec = Autoencoder(AutoencoderConfig(oobleck=_oobleck(8), bottleneck=fsq))
    with pytest.raises(ValueError, match="valid: 2"):
        CodecTokenizer(fsq_codec, n_codebooks=1)
    assert CodecTokenizer(fsq_codec).codebook_size == 9
    tok = CodecTokenizer(_rvq_codec(), n_codebooks=2)
    with pytest.raises(ValueError, match="K=3"):
        tok.decode(torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="orig_sr must be a positive integer"):
        tok.encode(torch.zeros(1, 1, 64), sample_rate=-1)
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        tok.encode(torch.zeros(1, 2, 64))
