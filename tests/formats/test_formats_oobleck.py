"""Oobleck checkpoint conversion: parity with diffusers' AutoencoderOobleck and stable-audio-tools' layout."""

import json
import math
import warnings

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from wavefoundry.codecs.oobleck import OobleckConfig, OobleckDecoder, OobleckEncoder, oobleck_sao
from wavefoundry.config import ConfigError
from wavefoundry.formats.oobleck import (
    DIFFUSERS_DEFAULTS,
    SAO_PREFIX,
    CheckpointMismatchError,
    config_from_diffusers,
    config_from_stable_audio,
    config_to_diffusers,
    diffusers_key_map,
    from_diffusers,
    from_stable_audio,
    load_diffusers_folder,
    load_stable_audio,
    save_diffusers_folder,
    stable_audio_key_map,
    to_diffusers,
    to_stable_audio,
)

AutoencoderOobleck = pytest.importorskip("diffusers").AutoencoderOobleck

# torch.nn.utils.weight_norm (used by diffusers and the stable-audio-tools replica below) is deprecated.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

CFG = OobleckConfig(audio_channels=2, channels=6, c_mults=(1, 2), strides=(2, 4), latent_dim=3, encoder_out_dim=6)


def diffusers_model(cfg: OobleckConfig = CFG, seed: int = 0) -> nn.Module:
    """A diffusers AutoencoderOobleck with random weights, Snake parameters included."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = AutoencoderOobleck(**{k: v for k, v in config_to_diffusers(cfg).items() if not k.startswith("_")})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.copy_(0.5 * torch.randn(p.shape))
            elif name.endswith("weight_g"):
                p.mul_(torch.empty(p.shape).uniform_(0.5, 1.5))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape))
    return model.eval()


def ours(cfg: OobleckConfig, encoder_state, decoder_state) -> tuple[OobleckEncoder, OobleckDecoder]:
    enc, dec = OobleckEncoder(cfg), OobleckDecoder(cfg)
    enc.load_state_dict(encoder_state, strict=True)
    dec.load_state_dict(decoder_state, strict=True)
    return enc.eval(), dec.eval()


def random_ours(cfg: OobleckConfig = CFG, seed: int = 1) -> tuple[dict, dict]:
    torch.manual_seed(seed)
    enc, dec = OobleckEncoder(cfg), OobleckDecoder(cfg)
    with torch.no_grad():
        for p in [*enc.parameters(), *dec.parameters()]:
            p.add_(0.1 * torch.randn(p.shape))
    return enc.state_dict(), dec.state_dict()


def assert_states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --- parity with diffusers ---------------------------------------------------------------------------------------


def test_encoder_and_decoder_match_diffusers():
    ref = diffusers_model()
    enc, dec = ours(CFG, *from_diffusers(ref.state_dict(), CFG))
    x = torch.randn(2, 2, 16 * CFG.hop_length)
    z = torch.randn(2, CFG.latent_dim, 12)
    with torch.no_grad():
        want_h, want_y = ref.encoder(x), ref.decode(z).sample
        torch.testing.assert_close(enc(x), want_h, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dec(z), want_y, rtol=1e-5, atol=1e-5)
    # Fast inference path: weight norm folded, in-place Snake under inference_mode.
    enc.remove_weight_norm()
    dec.remove_weight_norm()
    with torch.inference_mode():  # folding changes float rounding: tolerance relative to the output scale
        torch.testing.assert_close(enc(x), want_h, rtol=1e-4, atol=1e-5 * want_h.abs().max().item())
        torch.testing.assert_close(dec(z), want_y, rtol=1e-4, atol=1e-5 * want_y.abs().max().item())


def test_stable_audio_open_size_matches_diffusers_default():
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = AutoencoderOobleck()
        enc, dec = OobleckEncoder(oobleck_sao()), OobleckDecoder(oobleck_sao())
    n_ours = sum(p.numel() for p in [*enc.parameters(), *dec.parameters()])
    assert n_ours == sum(p.numel() for p in ref.parameters()) == 156_112_514
    assert config_from_diffusers(dict(ref.config)) == oobleck_sao()
    # Every diffusers key and shape is hit by the map (shape check: Snake (1, C, 1) vs our (C,)).
    key_map = diffusers_key_map(oobleck_sao())
    assert sorted(key_map.values()) == sorted(ref.state_dict())


def test_round_trip_through_diffusers():
    enc_state, dec_state = random_ours()
    theirs = to_diffusers(enc_state, dec_state, CFG)
    diffusers_model().load_state_dict(theirs, strict=True)
    assert theirs["encoder.block.0.res_unit1.snake1.alpha"].shape == (1, 6, 1)
    back_enc, back_dec = from_diffusers(theirs, CFG)
    assert_states_equal(back_enc, enc_state)
    assert_states_equal(back_dec, dec_state)


# --- stable-audio-tools layout -----------------------------------------------------------------------------------
# A replica of stable-audio-tools' Oobleck module tree (autoencoders.py: nn.Sequential named `layers` at every
# level, torch.nn.utils.weight_norm, SnakeBeta with (C,) log-scale parameters), so that both the key names and the
# numbers are checked against that structure, including the ELU / final-tanh variants diffusers lacks.


class SatSnakeBeta(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.alpha, self.beta = nn.Parameter(0.5 * torch.randn(c)), nn.Parameter(0.5 * torch.randn(c))

    def forward(self, x):
        a, b = self.alpha.exp()[None, :, None], self.beta.exp()[None, :, None]
        return x + 1.0 / (b + 1e-9) * torch.sin(x * a) ** 2


class Seq(nn.Module):
    def __init__(self, *layers, residual=False):
        super().__init__()
        self.layers, self.residual = nn.Sequential(*layers), residual

    def forward(self, x):
        return self.layers(x) + x if self.residual else self.layers(x)


def wn(conv):
    return nn.utils.weight_norm(conv)


def sat_act(cfg, c):
    return SatSnakeBeta(c) if cfg.use_snake else nn.ELU()


def sat_unit(cfg, c, d):
    conv7 = wn(nn.Conv1d(c, c, 7, dilation=d, padding=3 * d))
    return Seq(sat_act(cfg, c), conv7, sat_act(cfg, c), wn(nn.Conv1d(c, c, 1)), residual=True)


def sat_autoencoder(cfg: OobleckConfig) -> nn.Module:
    w, n = cfg.widths, len(cfg.strides)
    enc = [wn(nn.Conv1d(cfg.audio_channels, w[0], 7, padding=3))]
    for i, s in enumerate(cfg.strides):
        down = wn(nn.Conv1d(w[i], w[i + 1], 2 * s, stride=s, padding=math.ceil(s / 2)))
        enc.append(Seq(*[sat_unit(cfg, w[i], d) for d in (1, 3, 9)], sat_act(cfg, w[i]), down))
    enc += [sat_act(cfg, w[-1]), wn(nn.Conv1d(w[-1], cfg.encoder_out_dim, 3, padding=1))]
    dec = [wn(nn.Conv1d(cfg.latent_dim, w[-1], 7, padding=3))]
    for i in reversed(range(n)):
        s = cfg.strides[i]
        up = wn(nn.ConvTranspose1d(w[i + 1], w[i], 2 * s, stride=s, padding=math.ceil(s / 2)))
        dec.append(Seq(sat_act(cfg, w[i + 1]), up, *[sat_unit(cfg, w[i], d) for d in (1, 3, 9)]))
    dec += [sat_act(cfg, w[0]), wn(nn.Conv1d(w[0], cfg.audio_channels, 7, padding=3, bias=False))]
    dec.append(nn.Tanh() if cfg.final_tanh else nn.Identity())
    model = nn.Module()
    model.encoder, model.decoder = Seq(*enc), Seq(*dec)
    return model.eval()


@pytest.mark.parametrize(
    "cfg", [CFG, OobleckConfig(audio_channels=1, channels=4, c_mults=(2, 3), strides=(4, 2), latent_dim=4,
                               encoder_out_dim=4, use_snake=False, final_tanh=True)],
    ids=["snake", "elu-tanh"],
)  # fmt: skip
def test_matches_stable_audio_tools_layout(cfg):
    torch.manual_seed(2)
    ref = sat_autoencoder(cfg)
    enc, dec = ours(cfg, *from_stable_audio(ref.state_dict(), cfg, prefix=""))
    x, z = torch.randn(2, cfg.audio_channels, 12 * cfg.hop_length), torch.randn(2, cfg.latent_dim, 9)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), ref.encoder(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dec(z), ref.decoder(z), rtol=1e-5, atol=1e-5)


def test_stable_audio_key_names():
    key_map = stable_audio_key_map(CFG, prefix=SAO_PREFIX)
    assert key_map["encoder.stem.weight_g"] == "pretransform.model.encoder.layers.0.weight_g"
    assert (
        key_map["encoder.blocks.0.units.0.act1.alpha"] == "pretransform.model.encoder.layers.1.layers.0.layers.0.alpha"
    )
    assert key_map["encoder.blocks.1.units.2.conv1.weight_v"] == (
        "pretransform.model.encoder.layers.2.layers.2.layers.1.weight_v"
    )
    assert key_map["encoder.blocks.1.down.bias"] == "pretransform.model.encoder.layers.2.layers.4.bias"
    assert key_map["encoder.proj.weight_v"] == "pretransform.model.encoder.layers.4.weight_v"
    assert key_map["decoder.blocks.0.up.weight_g"] == "pretransform.model.decoder.layers.1.layers.1.weight_g"
    assert (
        key_map["decoder.blocks.1.units.0.conv2.bias"] == "pretransform.model.decoder.layers.2.layers.2.layers.3.bias"
    )
    assert key_map["decoder.act.beta"] == "pretransform.model.decoder.layers.3.beta"
    assert "decoder.proj.bias" not in key_map


def test_round_trip_through_stable_audio_with_prefix():
    enc_state, dec_state = random_ours()
    theirs = to_stable_audio(enc_state, dec_state, CFG, prefix=SAO_PREFIX)
    sat_autoencoder(CFG).load_state_dict({k.removeprefix(SAO_PREFIX): v for k, v in theirs.items()}, strict=True)
    # The rest of a full Stable Audio Open checkpoint (the DiT, the conditioners) is ignored.
    theirs |= {
        "model.model.transformer.layers.0.self_attn.to_qkv.weight": torch.zeros(3),
        "conditioner.x": torch.ones(1),
    }
    back_enc, back_dec = from_stable_audio(theirs, CFG)
    assert_states_equal(back_enc, enc_state)
    assert_states_equal(back_dec, dec_state)


# --- strictness --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["stable_audio", "diffusers"])
def test_mismatched_checkpoints_name_the_keys(fmt):
    to, back = {"stable_audio": (to_stable_audio, from_stable_audio), "diffusers": (to_diffusers, from_diffusers)}[fmt]
    kw = {"prefix": ""} if fmt == "stable_audio" else {}
    good = to(*random_ours(), CFG)
    victim = sorted(good)[3]

    missing = {k: v for k, v in good.items() if k != victim}
    with pytest.raises(CheckpointMismatchError, match=rf"missing keys: {victim}"):
        back(missing, CFG, **kw)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys: encoder\.extra\.weight"):
        back(good | {"encoder.extra.weight": torch.zeros(1)}, CFG, **kw)
    wrong = good | {victim: torch.zeros(7, 1, 1)}
    with pytest.raises(CheckpointMismatchError, match=rf"wrong shapes: {victim} \(7, 1, 1\) != "):
        back(wrong, CFG, **kw)
    # A checkpoint of another size fails on shapes, never loads partly.
    other = OobleckConfig(audio_channels=2, channels=8, c_mults=(1, 2), strides=(2, 4), latent_dim=3, encoder_out_dim=8)
    with pytest.raises(CheckpointMismatchError, match="wrong shapes"):
        back(good, other, **kw)


def test_exporting_after_remove_weight_norm_is_explained():
    cfg = CFG
    enc, dec = OobleckEncoder(cfg).remove_weight_norm(), OobleckDecoder(cfg).remove_weight_norm()
    with pytest.raises(CheckpointMismatchError, match="weight norm was removed"):
        to_stable_audio(enc.state_dict(), dec.state_dict(), cfg)


def test_prefix_mistakes_are_explained():
    full = to_stable_audio(*random_ours(), CFG, prefix=SAO_PREFIX)
    with pytest.raises(CheckpointMismatchError, match=r"pass prefix='pretransform\.model\.'"):
        from_stable_audio(full, CFG, prefix="")
    bare = to_stable_audio(*random_ours(), CFG)
    with pytest.raises(CheckpointMismatchError, match="needs prefix=''"):
        from_stable_audio(bare, CFG)


# --- configs -----------------------------------------------------------------------------------------------------

SAO_PRETRANSFORM = {
    "type": "autoencoder",
    "config": {
        "encoder": {
            "type": "oobleck",
            "config": {"in_channels": 2, "channels": 128, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
                       "latent_dim": 128, "use_snake": True},
        },
        "decoder": {
            "type": "oobleck",
            "config": {"out_channels": 2, "channels": 128, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
                       "latent_dim": 64, "use_snake": True, "final_tanh": False},
        },
        "bottleneck": {"type": "vae"},
        "latent_dim": 64,
        "downsampling_ratio": 2048,
        "io_channels": 2,
    },
}  # fmt: skip


def test_config_from_stable_audio_open_model_config():
    full = {"model_type": "diffusion_cond", "sample_rate": 44100, "model": {"pretransform": SAO_PRETRANSFORM}}
    assert config_from_stable_audio(full) == oobleck_sao()
    standalone = {"model_type": "autoencoder", "sample_rate": 44100, "model": SAO_PRETRANSFORM["config"]}
    assert config_from_stable_audio(standalone) == oobleck_sao()


def test_bad_configs_are_config_errors():
    bad_sat = json.loads(json.dumps(SAO_PRETRANSFORM["config"]))
    bad_sat["decoder"]["config"]["strides"] = [2, 4, 4, 8, 4]
    with pytest.raises(ConfigError, match="strides"):
        config_from_stable_audio({"model": bad_sat})
    bad_sat["decoder"]["config"] |= {"strides": [2, 4, 4, 8, 8], "antialias_activation": True}
    with pytest.raises(ConfigError, match="antialias"):
        config_from_stable_audio({"model": bad_sat})
    bad_sat["encoder"]["type"] = "dac"
    with pytest.raises(ConfigError, match="oobleck"):
        config_from_stable_audio({"model": bad_sat})
    with pytest.raises(ConfigError, match="decoder_channels"):
        config_from_diffusers(DIFFUSERS_DEFAULTS | {"decoder_channels": 64})
    with pytest.raises(ConfigError, match="unknown keys"):
        config_from_diffusers(DIFFUSERS_DEFAULTS | {"tile_size": 3})
    with pytest.raises(ConfigError, match="use_snake"):
        config_to_diffusers(OobleckConfig(use_snake=False))


# --- files -------------------------------------------------------------------------------------------------------


def test_load_diffusers_folder_written_by_diffusers(tmp_path):
    ref = diffusers_model()
    ref.save_pretrained(tmp_path / "pipe" / "vae")
    cfg, enc_state, dec_state = load_diffusers_folder(tmp_path / "pipe")  # a pipeline folder: finds vae/
    assert cfg == CFG
    _, dec = ours(cfg, enc_state, dec_state)
    z = torch.randn(1, CFG.latent_dim, 5)
    with torch.no_grad():
        torch.testing.assert_close(dec(z), ref.decode(z).sample, rtol=1e-5, atol=1e-5)


def test_saved_diffusers_folder_loads_in_diffusers(tmp_path):
    enc_state, dec_state = random_ours()
    save_diffusers_folder(tmp_path / "vae", enc_state, dec_state, CFG)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = AutoencoderOobleck.from_pretrained(tmp_path / "vae").eval()
    enc, _ = ours(CFG, enc_state, dec_state)
    x = torch.randn(1, 2, 4 * CFG.hop_length)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), ref.encoder(x), rtol=1e-5, atol=1e-5)


def test_load_diffusers_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        load_diffusers_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config_to_diffusers(CFG)))
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="only safetensors"):
        load_diffusers_folder(tmp_path)
    save_file({"x": torch.zeros(1)}, tmp_path / "diffusion_pytorch_model.safetensors")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_diffusers_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config_to_diffusers(CFG)))
    with pytest.raises(CheckpointMismatchError, match="unexpected keys: x"):
        load_diffusers_folder(tmp_path)


def test_load_stable_audio_checkpoint_folder(tmp_path):
    enc_state, dec_state = random_ours()
    state = to_stable_audio(enc_state, dec_state, CFG, prefix=SAO_PREFIX)
    state["model.model.transformer.proj_in.weight"] = torch.ones(4, 3)
    save_file(state, tmp_path / "model.safetensors")
    model_config = {
        "model_type": "diffusion_cond",
        "sample_rate": CFG.sample_rate,
        "model": {"pretransform": {"type": "autoencoder", "config": {
            "encoder": {"type": "oobleck", "config": {"in_channels": 2, "channels": 6, "c_mults": [1, 2],
                                                      "strides": [2, 4], "latent_dim": 6, "use_snake": True}},
            "decoder": {"type": "oobleck", "config": {"out_channels": 2, "channels": 6, "c_mults": [1, 2],
                                                      "strides": [2, 4], "latent_dim": 3, "use_snake": True,
                                                      "final_tanh": False}},
        }}},
    }  # fmt: skip
    (tmp_path / "model_config.json").write_text(json.dumps(model_config))
    cfg, enc2, dec2 = load_stable_audio(tmp_path)  # config from model_config.json, prefix detected
    assert cfg == CFG
    assert_states_equal(enc2, enc_state)
    assert_states_equal(dec2, dec_state)


def test_load_stable_audio_ckpt_and_errors(tmp_path):
    enc_state, dec_state = random_ours()
    torch.save({"state_dict": to_stable_audio(enc_state, dec_state, CFG)}, tmp_path / "vae.ckpt")
    _, enc2, _ = load_stable_audio(tmp_path / "vae.ckpt", cfg=CFG)
    assert_states_equal(enc2, enc_state)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_stable_audio(tmp_path / "nothing.safetensors", cfg=CFG)
    (tmp_path / "sub").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no model\.safetensors"):
        load_stable_audio(tmp_path / "sub", cfg=CFG)
    (tmp_path / "vae.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported checkpoint type"):
        load_stable_audio(tmp_path / "vae.bin", cfg=CFG, prefix="")
    # A checkpoint for another architecture: a clear mismatch, not a partial load.
    with pytest.raises(CheckpointMismatchError):
        load_stable_audio(tmp_path / "vae.ckpt", cfg=oobleck_sao())
