"""Oobleck encoder/decoder, SnakeBeta, weight-normalised convs and the analytic receptive fields."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from wavefoundry.codecs.oobleck import (
    OobleckConfig,
    OobleckDecoder,
    OobleckEncoder,
    oobleck_sao,
    oobleck_small_16k_stereo,
    oobleck_tiny_16k_mono,
)
from wavefoundry.codecs.receptive import (
    decoder_context,
    decoder_influence,
    encoder_context,
    encoder_receptive_field,
)
from wavefoundry.config import ConfigError, from_dict, to_dict
from wavefoundry.nn.conv import (
    ChannelsLastConv1d,
    ChannelsLastConvTranspose1d,
    WNConv1d,
    WNConvTranspose1d,
    remove_weight_norm,
)
from wavefoundry.nn.snake import SnakeBeta


def small_cfg(strides=(2, 4), **kw) -> OobleckConfig:
    kw = {"audio_channels": 2, "channels": 4, "latent_dim": 3, "encoder_out_dim": 6} | kw
    return OobleckConfig(c_mults=tuple(range(1, len(strides) + 1)), strides=strides, **kw)


def randomise(*modules: nn.Module, gain: float = 1.0) -> None:
    """Random Snake parameters (else alpha = beta = 1 everywhere) and optionally larger weights."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in modules:
            for name, p in m.named_parameters():
                if name.endswith(("alpha", "beta")):
                    p.copy_(0.5 * torch.randn(p.shape, generator=gen))
                elif name.endswith("weight_g"):
                    p.mul_(gain)


# --- SnakeBeta ---------------------------------------------------------------------------------------------------


def snake_numpy(x, alpha, beta):
    x = x.astype(np.float64)
    a, b = alpha.astype(np.float64)[:, None], beta.astype(np.float64)[:, None]
    return x + 1.0 / (b + 1e-9) * np.sin(a * x) ** 2


@pytest.mark.parametrize("logscale", [True, False])
@pytest.mark.parametrize("grad", [True, False])
def test_snake_beta_closed_form(logscale, grad):
    snake = SnakeBeta(5, logscale=logscale)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        if logscale:
            snake.alpha.copy_(torch.randn(5, generator=gen))
            snake.beta.copy_(torch.randn(5, generator=gen))
        else:
            snake.alpha.copy_(torch.rand(5, generator=gen) + 0.2)
            snake.beta.copy_(torch.rand(5, generator=gen) + 0.2)
    x = 3 * torch.randn(2, 5, 50, generator=gen)
    x_before = x.clone()
    with torch.set_grad_enabled(grad):
        y = snake(x)
    a, b = snake.alpha.detach().numpy(), snake.beta.detach().numpy()
    if logscale:
        a, b = np.exp(a), np.exp(b)
    np.testing.assert_allclose(y.detach().numpy(), snake_numpy(x.numpy(), a, b), rtol=1e-5, atol=1e-5)
    assert torch.equal(x, x_before), "the fast path must not write into its input"
    assert y.requires_grad == grad


def test_snake_beta_defaults_and_gradients():
    snake = SnakeBeta(3).double()
    assert snake.alpha.shape == snake.beta.shape == (3,)
    x = torch.tensor([[[0.0, math.pi / 2, -1.0]]], dtype=torch.float64).expand(1, 3, 3).contiguous()
    # alpha = beta = 1 at init: f(0) = 0, f(pi / 2) = pi / 2 + 1 (1 / (1 + 1e-9) ~ 1).
    y = snake(x)
    assert y[0, 0, 0] == 0 and abs(y[0, 0, 1].item() - (math.pi / 2 + 1)) < 1e-8
    with torch.no_grad():
        snake.alpha.normal_()
        snake.beta.normal_()
    inputs = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(snake, (inputs,))


def test_snake_beta_rejects_zero_channels():
    with pytest.raises(ValueError, match="channels"):
        SnakeBeta(0)


# --- weight-normalised convs -------------------------------------------------------------------------------------


def test_wnconv_matches_torch_weight_norm():
    torch.manual_seed(0)
    ours = WNConv1d(3, 5, 4, stride=2, padding=1, dilation=1)
    ours_t = WNConvTranspose1d(5, 3, 8, stride=4, padding=2)
    ref = nn.utils.parametrizations.weight_norm(nn.Conv1d(3, 5, 4, stride=2, padding=1))
    ref_t = nn.utils.parametrizations.weight_norm(nn.ConvTranspose1d(5, 3, 8, stride=4, padding=2))
    for m, r in ((ours, ref), (ours_t, ref_t)):
        with torch.no_grad():
            m.weight_g.uniform_(0.5, 2.0)
            r.parametrizations.weight.original0.copy_(m.weight_g)
            r.parametrizations.weight.original1.copy_(m.weight_v)
            r.bias.copy_(m.bias)
    assert ours_t.weight_g.shape == (5, 1, 1)  # dim 0 of a transposed weight (C_in, C_out, K) is C_in
    x = torch.randn(2, 3, 32)
    torch.testing.assert_close(ours(x), ref(x))
    z = torch.randn(2, 5, 8)
    torch.testing.assert_close(ours_t(z), ref_t(z))
    assert ours_t(z).shape == (2, 3, 32)


def test_wnconv_initial_weight_is_the_plain_init():
    torch.manual_seed(3)
    plain = nn.Conv1d(4, 6, 3)
    torch.manual_seed(3)
    wn = WNConv1d(4, 6, 3)
    torch.testing.assert_close(wn.weight, plain.weight)


def test_channels_last_convs_match_plain_convs():
    torch.manual_seed(0)
    conv, conv_t = WNConv1d(3, 5, 7, stride=2, padding=9, dilation=3), WNConvTranspose1d(5, 3, 8, stride=4, padding=2)
    cl, cl_t = conv.to_channels_last(), conv_t.to_channels_last()
    assert isinstance(cl, ChannelsLastConv1d) and isinstance(cl_t, ChannelsLastConvTranspose1d)
    x, z = torch.randn(2, 3, 40), torch.randn(2, 5, 9)
    y = cl(x)
    torch.testing.assert_close(y, conv(x))
    torch.testing.assert_close(cl_t(z), conv_t(z))
    assert y.shape == (2, 5, 20) and y.stride() == (100, 1, 5)  # (B, C, T) with time-major memory
    torch.testing.assert_close(cl(y.contiguous()[:, :3]), cl(y[:, :3]))  # either layout goes in
    with pytest.raises(ValueError, match="dilation"):
        ChannelsLastConvTranspose1d(torch.zeros(2, 2, 4), None, dilation=2)


@pytest.mark.parametrize("channels_last", [False, True])
def test_remove_weight_norm_folds_every_conv(channels_last):
    model = nn.Sequential(WNConv1d(2, 4, 3, padding=1), nn.ELU(), nn.ModuleList([WNConvTranspose1d(4, 2, 4, stride=2)]))
    with torch.no_grad():
        model[0].weight_g.mul_(3)
    x = torch.randn(1, 2, 10)
    before = model[2][0](model[1](model[0](x)))
    remove_weight_norm(model, channels_last)
    plain = (ChannelsLastConv1d, ChannelsLastConvTranspose1d) if channels_last else (nn.Conv1d, nn.ConvTranspose1d)
    assert isinstance(model[0], plain[0]) and isinstance(model[2][0], plain[1])
    assert not any(n.endswith(("weight_g", "weight_v")) for n, _ in model.named_parameters())
    torch.testing.assert_close(model[2][0](model[1](model[0](x))), before)


# --- config ------------------------------------------------------------------------------------------------------


def test_config_defaults_are_stable_audio_open():
    cfg = oobleck_sao()
    assert cfg.hop_length == 2048 and cfg.widths == (128, 128, 256, 512, 1024, 2048)
    assert cfg.frame_rate == pytest.approx(44100 / 2048)
    assert from_dict(OobleckConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"strides": (2, 5), "c_mults": (1, 2)}, "even"),
        ({"strides": (2, 4), "c_mults": (1,)}, "one c_mult per stride"),
        ({"strides": (), "c_mults": ()}, "one c_mult per stride"),
        ({"channels": 0}, "channels"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"c_mults": (1, 0, 4, 8, 16)}, "c_mults"),
    ],
)
def test_config_rejects_bad_values(kw, match):
    with pytest.raises(ConfigError, match=match):
        OobleckConfig(**kw)


def test_config_lists_become_tuples():
    cfg = OobleckConfig(c_mults=[1, 2], strides=[2, 2])
    assert cfg.c_mults == (1, 2) and cfg.strides == (2, 2) and cfg.hop_length == 4


# --- encoder / decoder -------------------------------------------------------------------------------------------


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_preset_parameter_counts():
    with torch.device("meta"):
        sao = count(OobleckEncoder(oobleck_sao())) + count(OobleckDecoder(oobleck_sao()))
        tiny = count(OobleckEncoder(oobleck_tiny_16k_mono())) + count(OobleckDecoder(oobleck_tiny_16k_mono()))
        small = count(OobleckEncoder(oobleck_small_16k_stereo())) + count(OobleckDecoder(oobleck_small_16k_stereo()))
    assert sao == 156_112_514  # diffusers' AutoencoderOobleck() has the same (see tests/formats)
    assert tiny == 610_705 and small == 976_830
    assert max(tiny, small) * 4 < 5e6  # float32 weights under 5 MB


@pytest.mark.parametrize("strides", [(2,), (2, 4), (4, 2, 2), (6, 2)])
def test_shapes_follow_the_hop_length(strides):
    cfg = small_cfg(strides)
    enc, dec = OobleckEncoder(cfg), OobleckDecoder(cfg)
    assert len(enc.blocks) == len(dec.blocks) == len(strides)
    frames = 5
    x = torch.randn(2, 2, frames * cfg.hop_length)
    z = enc(x)
    assert z.shape == (2, cfg.encoder_out_dim, frames)
    y = dec(z[:, : cfg.latent_dim])
    assert y.shape == (2, 2, frames * cfg.hop_length)


def test_bad_input_is_a_clear_error():
    cfg = small_cfg()
    enc, dec = OobleckEncoder(cfg), OobleckDecoder(cfg)
    with pytest.raises(ValueError, match=r"expected \(B, 2, T\).*got shape \(1, 1, 64\)"):
        enc(torch.randn(1, 1, 64))
    with pytest.raises(ValueError, match="got shape"):
        enc(torch.randn(2, 64))
    with pytest.raises(ValueError, match="multiple of hop_length=8"):
        enc(torch.randn(1, 2, 60))
    with pytest.raises(ValueError, match=r"expected \(B, 3, T\).*got shape \(1, 6, 4\)"):
        dec(torch.randn(1, 6, 4))
    with pytest.raises(ValueError, match="zero latent frames"):
        dec(torch.randn(1, 3, 0))


def test_elu_and_tanh_variants():
    cfg = small_cfg(use_snake=False, final_tanh=True)
    enc, dec = OobleckEncoder(cfg), OobleckDecoder(cfg)
    assert not any(isinstance(m, SnakeBeta) for m in [*enc.modules(), *dec.modules()])
    assert sum(isinstance(m, nn.ELU) for m in enc.modules()) == 2 * (3 * 2 + 1) + 1
    with torch.no_grad():
        dec.proj.weight_g.mul_(100)
    y = dec(torch.randn(1, 3, 4))
    assert y.abs().max() <= 1 and isinstance(dec.out_act, nn.Tanh)


@pytest.mark.parametrize("channels_last", [False, True])
def test_remove_weight_norm_keeps_outputs(channels_last):
    cfg = small_cfg((2, 4))
    enc, dec = OobleckEncoder(cfg), OobleckDecoder(cfg)
    randomise(enc, dec, gain=1.5)
    x, z = torch.randn(2, 2, 64), torch.randn(2, 3, 6)
    with torch.no_grad():
        want_x, want_z = enc(x), dec(z)
    n_before = count(enc)
    assert enc.remove_weight_norm(channels_last) is enc and dec.remove_weight_norm(channels_last) is dec
    assert not any(isinstance(m, (WNConv1d, WNConvTranspose1d)) for m in [*enc.modules(), *dec.modules()])
    assert count(enc) < n_before  # one g per output channel folded away
    with torch.inference_mode():
        got_x, got_z = enc(x), dec(z)
    # folding g * v / |v| changes float rounding; compare relative to the output scale
    torch.testing.assert_close(got_x, want_x, rtol=1e-4, atol=1e-5 * want_x.abs().max().item())
    torch.testing.assert_close(got_z, want_z, rtol=1e-4, atol=1e-5 * want_z.abs().max().item())
    assert got_x.is_contiguous() and got_z.is_contiguous()


def test_training_path_gives_gradients_to_every_parameter():
    cfg = small_cfg((2, 2))
    enc, dec = OobleckEncoder(cfg), OobleckDecoder(cfg)
    x = torch.randn(1, 2, 16)
    dec(enc(x)[:, : cfg.latent_dim]).square().mean().backward()
    for name, p in [*enc.named_parameters(), *dec.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert enc.blocks[0].units[0].act1.alpha.grad.abs().sum() > 0


# --- receptive field ---------------------------------------------------------------------------------------------

RF_CONFIGS = [(2, 4), (4, 2, 2), (6, 2)]


def rf_models(strides):
    torch.manual_seed(sum(strides))  # deterministic: an unlucky draw can leave an edge sample unchanged
    cfg = small_cfg(strides, audio_channels=1)
    enc, dec = OobleckEncoder(cfg).eval(), OobleckDecoder(cfg).eval()
    # Larger weights so that the far ends of the receptive field move the output well above float noise.
    randomise(enc, dec, gain=2.0)
    return cfg, enc, dec


@pytest.mark.parametrize("strides", RF_CONFIGS)
def test_encoder_receptive_field_is_exact(strides):
    cfg, enc, _ = rf_models(strides)
    hop, (left, right) = cfg.hop_length, encoder_receptive_field(cfg)
    n = 2 * math.ceil(max(left, right) / hop) + 8
    x = torch.randn(1, 1, n * hop)
    t0 = n * hop // 2 + hop // 3
    x2 = x.clone()
    x2[..., t0] += 1.0
    with torch.no_grad():
        changed = (enc(x) != enc(x2)).any(1)[0].nonzero()[:, 0]
    # Frame j reads samples [j * hop - left, (j + 1) * hop + right).
    first, last = -(-(t0 - hop + 1 - right) // hop), (t0 + left) // hop
    assert 0 <= changed.min().item() - first <= 1 and 0 <= last - changed.max().item() <= 1


@pytest.mark.parametrize("strides", RF_CONFIGS)
def test_decoder_influence_is_exact(strides):
    cfg, _, dec = rf_models(strides)
    hop, (left, right) = cfg.hop_length, decoder_influence(cfg)
    n = 2 * math.ceil(max(left, right) / hop) + 8
    z = torch.randn(1, 3, n)
    j0 = n // 2
    z2 = z.clone()
    z2[..., j0] += 1.0
    with torch.no_grad():
        changed = (dec(z) != dec(z2))[0, 0].nonzero()[:, 0]
    # the analytic extent contains the empirical one and is tight (one edge tap may cancel by chance)
    assert 0 <= changed.min().item() - (j0 * hop - left) <= 1
    assert 0 <= (j0 + 1) * hop - 1 + right - changed.max().item() <= 1


@pytest.mark.parametrize("strides", RF_CONFIGS)
def test_contexts_make_chunks_exact_and_are_tight(strides):
    cfg, enc, dec = rf_models(strides)
    hop = cfg.hop_length
    c_enc, c_dec = math.ceil(encoder_context(cfg) / hop), decoder_context(cfg)
    a, b = max(c_enc, c_dec) + 2, max(c_enc, c_dec) + 7
    x, z = torch.randn(1, 1, (b + a) * hop), torch.randn(1, 3, b + a)
    with torch.no_grad():
        full_z, full_y = enc(x)[..., a:b], dec(z)[..., a * hop : b * hop]
        for c, exact in ((c_enc, True), (c_enc - 1, False)):
            chunk = enc(x[..., (a - c) * hop : (b + c) * hop])[..., c : c + b - a]
            assert torch.allclose(chunk, full_z, rtol=0, atol=1e-5) == exact, c
        for c, exact in ((c_dec, True), (c_dec - 1, False)):
            chunk = dec(z[..., a - c : b + c])[..., c * hop : (c + b - a) * hop]
            assert torch.allclose(chunk, full_y, rtol=0, atol=1e-5) == exact, c


def test_stable_audio_open_contexts():
    cfg = oobleck_sao()
    assert encoder_receptive_field(cfg) == (14885, 14885)
    assert encoder_context(cfg) == 14885  # about 7.3 frames of 2048 samples
    assert decoder_influence(cfg) == (18981, 18981)
    assert decoder_context(cfg) == 10
