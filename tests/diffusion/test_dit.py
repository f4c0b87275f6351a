"""The Stable Audio Open DiT: parity with diffusers' StableAudioDiTModel, invariants, rope and attention layers."""

import dataclasses

import pytest
import torch

from tests.diffusion.dit_fixtures import TINY_DIT
from wavefoundry.config import ConfigError
from wavefoundry.diffusion.dit import DiT, DiTConfig, compile_for_inference, dit_sao, dit_small, dit_tiny
from wavefoundry.formats.sao_dit import config_to_diffusers, dit_from_diffusers, dit_to_diffusers
from wavefoundry.nn.attention import CrossAttention, attention
from wavefoundry.nn.rope import apply_rope, apply_rope_, rope_tables

diffusers = pytest.importorskip("diffusers")
from diffusers.models.embeddings import get_1d_rotary_pos_embed  # noqa: E402

CFG = TINY_DIT
B, T, LC = 2, 11, 5


def random_dit(cfg: DiTConfig = CFG, seed: int = 0) -> DiT:
    """A DiT with every parameter random (the zero-initialised ones too, so that every path is exercised)."""
    torch.manual_seed(seed)
    model = DiT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape))
    return model.eval()


def reference(model: DiT) -> torch.nn.Module:
    """diffusers' StableAudioDiTModel holding ``model``'s weights."""
    cfg = model.cfg
    ref = diffusers.StableAudioDiTModel(**{k: v for k, v in config_to_diffusers(cfg).items() if k[0] != "_"})
    ref.load_state_dict(dit_to_diffusers(model.state_dict(), cfg), strict=True)
    return ref.eval()


def make_inputs(cfg: DiTConfig = CFG, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, LC, dtype=torch.bool)
    mask[1, 3:] = False  # the second prompt is shorter: two padded tokens
    return {
        "x": torch.randn(B, cfg.io_channels, T, generator=g),
        "t": torch.rand(B, generator=g),
        "cross": torch.randn(B, LC, cfg.cond_token_dim, generator=g),
        "cross_mask": mask,
        "global_cond": torch.randn(B, cfg.global_cond_dim, generator=g),
    }


def run_reference(ref, inp: dict, cfg: DiTConfig = CFG, mask: bool = True) -> torch.Tensor:
    # As diffusers' StableAudioPipeline does: rotary tables for the global token + T frames, built outside.
    rope = get_1d_rotary_pos_embed(cfg.head_dim // 2, T + 1, use_real=True, repeat_interleave_real=False)
    return ref(
        inp["x"],
        inp["t"],
        encoder_hidden_states=inp["cross"],
        global_hidden_states=inp["global_cond"][:, None, :],  # diffusers takes (B, 1, Dg)
        rotary_embedding=rope,
        encoder_attention_mask=inp["cross_mask"] if mask else None,
        return_dict=False,
    )[0]


def run(model: DiT, inp: dict, mask: bool = True) -> torch.Tensor:
    return model(
        inp["x"],
        inp["t"],
        cross=inp["cross"],
        cross_mask=inp["cross_mask"] if mask else None,
        global_cond=inp["global_cond"],
    )


# --- parity with diffusers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [False, True])
def test_matches_diffusers_fp32(mask):
    model = random_dit()
    ref = reference(model)
    inp = make_inputs()
    with torch.no_grad():
        ours, theirs = run(model, inp, mask), run_reference(ref, inp, mask=mask)
    assert ours.shape == (B, CFG.io_channels, T)
    scale = theirs.abs().max().item()
    assert scale > 0.1
    torch.testing.assert_close(ours, theirs, atol=1e-5 * scale, rtol=0)


@pytest.mark.slow
def test_compiled_for_inference_matches_eager():
    # Inductor compiles C++ for the CPU (tens of seconds), hence slow; frozen weights, mask path included.
    model = random_dit()
    inp = make_inputs()
    with torch.inference_mode():
        eager = run(model, inp)
        compiled = run(compile_for_inference(model), inp)
    torch.testing.assert_close(compiled, eager, atol=1e-5 * eager.abs().max().item(), rtol=0)


def test_gradients_match_diffusers():
    model = random_dit()
    ref = reference(model)
    inp = make_inputs()
    run(model, inp).square().mean().backward()
    run_reference(ref, inp).square().mean().backward()
    ours = dit_to_diffusers({k: p.grad for k, p in model.named_parameters()}, CFG)
    theirs = {k: p.grad for k, p in ref.named_parameters() if p.grad is not None}
    # diffusers' LayerNorm biases get gradients (ours have none) and its Fourier weights are frozen.
    compared = [k for k in theirs if not k.endswith(("norm1.bias", "norm2.bias", "norm3.bias"))]
    assert len(compared) == len(ours) - 3 * CFG.depth - 1
    for k in compared:
        torch.testing.assert_close(ours[k], theirs[k], atol=1e-5 * theirs[k].abs().max().item() + 1e-8, rtol=0)


def test_bf16_autocast_runs_close_to_fp32():
    model = random_dit()
    inp = make_inputs()
    with torch.no_grad():
        full = run(model, inp)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = run(model, inp)
    assert half.dtype == torch.bfloat16
    assert torch.isfinite(half).all()
    rel = (half.float() - full).norm() / full.norm()
    assert rel < 0.05


def test_sao_parameter_count_without_allocating():
    cfg = dit_sao()
    with torch.device("meta"):
        model = DiT(cfg)
        ref = diffusers.StableAudioDiTModel()  # diffusers' defaults are Stable Audio Open's
    n = sum(p.numel() for p in model.parameters())
    D, C, F_, Dc, Dg = cfg.embed_dim, cfg.io_channels, cfg.timestep_features_dim, cfg.cond_token_dim, 1536
    block = 3 * D + 4 * D * D + 2 * D * D + Dc * 2 * Dc + (D * 8 * D + 8 * D) + (4 * D * D + D)
    top = F_ // 2 + (F_ * D + D + D * D + D) + (Dg * D + D * D) + (Dc * Dc + Dc * Dc) + 2 * C * C + 2 * C * D
    assert n == top + cfg.depth * block == 1_056_828_544
    # diffusers' copy has three LayerNorm biases more per block.
    assert sum(p.numel() for p in ref.parameters()) == n + 3 * cfg.depth * D
    assert all(p.is_meta for p in model.parameters())


# --- invariants ----------------------------------------------------------------------------------------------------


def test_masking_a_token_equals_removing_it():
    model = random_dit()
    inp = make_inputs()
    with torch.no_grad():
        full = run(model, inp)
        short = model(
            inp["x"][1:], inp["t"][1:], cross=inp["cross"][1:, :3], global_cond=inp["global_cond"][1:]
        )  # the padded row without its two padded tokens
        unmasked = run(model, inp, mask=False)
    torch.testing.assert_close(full[1:], short, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full[:1], unmasked[:1])  # row 0 has no padding
    assert (full[1:] - unmasked[1:]).abs().max() > 1e-3  # padding does matter when not masked


def test_fresh_model_is_identity_through_the_blocks():
    # Zero-initialised branch outputs and 1x1 convs: every block passes tokens through, so the output is
    # proj_out(proj_in(x)) per frame, whatever the timestep and conditioning.
    torch.manual_seed(0)
    model = DiT(CFG).eval()
    inp = make_inputs()
    with torch.no_grad():
        out = run(model, inp)
        expected = (model.proj_out.weight @ model.proj_in.weight) @ inp["x"]  # (B, C, T)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_timestep_and_global_conditioning_change_the_output():
    model = random_dit()
    inp = make_inputs()
    with torch.no_grad():
        base = run(model, inp)
        other_t = run(model, inp | {"t": inp["t"] + 0.1})
        other_g = run(model, inp | {"global_cond": inp["global_cond"] + 1.0})
    assert (base - other_t).abs().max() > 1e-3
    assert (base - other_g).abs().max() > 1e-3


def test_blocks_is_a_module_list_of_depth():
    model = DiT(CFG)
    assert isinstance(model.blocks, torch.nn.ModuleList)
    assert len(model.blocks) == CFG.depth


def test_presets_build_and_run():
    for preset in (dit_tiny, dit_small, dit_sao):
        cfg = preset()
        assert cfg.head_dim == 64 and cfg.rot_dim == 32
        assert cfg.num_heads % cfg.kv_heads == 0
    cfg = dataclasses.replace(dit_tiny(), depth=1)
    model = DiT(cfg).eval()
    with torch.no_grad():
        out = model(
            torch.randn(1, cfg.io_channels, 7),
            torch.rand(1),
            cross=torch.randn(1, 3, cfg.cond_token_dim),
            global_cond=torch.randn(1, cfg.global_cond_dim),
        )
    assert out.shape == (1, cfg.io_channels, 7)


def test_sao_rotary_rule():
    assert dit_sao().rot_dim == 32  # max(64 // 2, 32)
    assert DiTConfig(embed_dim=1536, num_heads=12).rot_dim == 64  # head dim 128 -> 64
    assert dataclasses.replace(CFG, project_cond_tokens=True).cond_embed_dim == CFG.embed_dim


@pytest.mark.parametrize(
    "changes",
    [
        {"embed_dim": 100},  # not a multiple of 24 heads
        {"cond_token_dim": 100},  # not a multiple of head dim 64
        {"cond_token_dim": 64 * 5},  # 5 kv heads do not divide 24 heads
        {"embed_dim": 384, "num_heads": 24},  # head dim 16 < the default rotary dim 32
        {"rotary_dim": 7},
        {"depth": 0},
        {"timestep_features_dim": 3},
        {"norm_eps": 0.0},
    ],
)
def test_bad_config_raises(changes):
    with pytest.raises(ConfigError):
        DiTConfig(**changes)


# --- nn layers -------------------------------------------------------------------------------------------------------


def test_rope_tables_match_diffusers():
    cos, sin = rope_tables(9, 16)
    dcos, dsin = get_1d_rotary_pos_embed(16, 9, use_real=True, repeat_interleave_real=False)
    torch.testing.assert_close(cos, dcos[:, :8], atol=0, rtol=0)
    torch.testing.assert_close(sin, dsin[:, 8:], atol=0, rtol=0)


def test_rope_scores_depend_on_offset_only():
    torch.manual_seed(0)
    q, k = torch.randn(1, 24), torch.randn(1, 24)
    cos, sin = rope_tables(12, 16)  # 16 of 24 features rotate

    def score(m: int, n: int) -> float:
        qm = apply_rope(q, cos[m : m + 1], sin[m : m + 1])
        kn = apply_rope(k, cos[n : n + 1], sin[n : n + 1])
        return (qm * kn).sum().item()

    assert score(3, 1) == pytest.approx(score(9, 7), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    assert torch.equal(apply_rope(q, cos[:1], sin[:1]), q)  # position 0 is the identity
    x = torch.randn(12, 24)
    y = apply_rope(x, cos, sin)
    assert torch.equal(y[:, 16:], x[:, 16:])  # partial: the rest passes through
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))  # a rotation
    assert torch.equal(apply_rope_(x.clone(), cos, sin), y)


def test_rope_in_bf16_rotates_in_float32():
    x = torch.randn(12, 16)
    cos, sin = rope_tables(12, 16)
    y = apply_rope_(x.to(torch.bfloat16), cos, sin)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), apply_rope(x, cos, sin), atol=0.05, rtol=0.02)


def test_grouped_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 6, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, False, True, False]])
    out = attention(q, k, v, key_mask=mask)
    kk, vv = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)  # query head h reads kv head h // 2
    scores = (q @ kk.transpose(-1, -2)) / 8**0.5
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    torch.testing.assert_close(out, scores.softmax(-1) @ vv)


def test_cross_attention_checks_head_layout():
    with pytest.raises(ValueError, match="kv heads"):
        CrossAttention(64, 48, 4)  # 48 / 16 = 3 kv heads do not divide 4 heads
    layer = CrossAttention(64, 32, 4)
    assert (layer.num_heads, layer.kv_heads) == (4, 2)
    out = layer(torch.randn(2, 7, 64), torch.randn(2, 3, 32))
    assert out.shape == (2, 7, 64)


def test_conversion_keeps_weights_loadable():
    # Our DiT loads what dit_from_diffusers makes of diffusers' own freshly initialised model.
    torch.manual_seed(0)
    ref = diffusers.StableAudioDiTModel(**{k: v for k, v in config_to_diffusers(CFG).items() if k[0] != "_"})
    model = DiT(CFG)
    model.load_state_dict(dit_from_diffusers(ref.state_dict(), CFG), strict=True)
    inp = make_inputs()
    with torch.no_grad():
        torch.testing.assert_close(run(model, inp), run_reference(ref.eval(), inp), atol=1e-5, rtol=1e-5)
