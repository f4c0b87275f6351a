"""The masked transformer: parameter count (closed form, meta device), attention against torch's MultiheadAttention,
bidirectionality, the restricted window of stages > 0, per-row stage heads and bad input."""

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from wavefoundry.config import ConfigError
from wavefoundry.lm.masked import (
    BidirectionalAttention,
    MaskedConfig,
    MaskedTransformer,
    forward_flops,
    masked_mega,
    masked_micro,
    masked_preset,
    param_count,
)


def _model(**kw):
    torch.manual_seed(0)
    cfg = masked_micro()
    for k, v in kw.items():
        setattr(cfg, k, v)
    return MaskedTransformer(MaskedConfig(**cfg.__dict__)).eval()


def _inputs(b=2, t=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 17, (b, 3, t), generator=g), torch.randn(b, 5, 16, generator=g)


@pytest.mark.parametrize("name", ["masked_mega", "masked_tiny", "masked_micro"])
def test_param_count_matches_the_module_on_meta(name):
    cfg = masked_preset(name)
    with torch.device("meta"):
        model = MaskedTransformer(cfg)
    assert sum(p.numel() for p in model.parameters()) == param_count(cfg)


def test_mega_shape_and_closed_form():
    cfg = masked_mega()
    assert (cfg.n_layers, cfg.dim, cfg.n_heads, cfg.positions) == (72, 2048, 32, "learned")
    D, F, K, V = 2048, 5504, 4, 2048
    closed = K * (V + 1) * D + 1500 * D + 768 * D + 72 * (8 * D * D + 3 * D * F + 3 * D) + D + K * V * D
    assert param_count(cfg) == closed == 4_889_364_480


def test_forward_flops_match_torch_flop_counter():
    cfg = masked_micro()
    model = MaskedTransformer(cfg).eval()
    codes, ctx = _inputs(b=1, t=12)
    # The math SDPA backend runs attention as counted matmuls (the CPU flash kernel is not counted).
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(codes, 0, context=ctx)
    assert counter.get_total_flops() == forward_flops(cfg, 12, 5)


def test_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    attn = BidirectionalAttention(32, 4)
    ref = nn.MultiheadAttention(32, 4, bias=False, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(attn.qkv.weight)
        ref.out_proj.weight.copy_(attn.out.weight)
    x = torch.randn(2, 7, 32)
    keep = torch.rand(7, 7) > 0.3
    keep |= torch.eye(7, dtype=torch.bool)
    ours = attn(x, keep, None)
    theirs, _ = ref(x, x, x, attn_mask=~keep, need_weights=False)  # torch: True = not allowed
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_bidirectional_every_frame_sees_the_future(positions):
    model = _model(positions=positions)
    codes, ctx = _inputs()
    base = model(codes, 0, context=ctx)
    changed = codes.clone()
    changed[:, 1, -1] = (changed[:, 1, -1] + 1) % 17  # the last frame of codebook 1
    out = model(changed, 0, context=ctx)
    assert base.shape == (2, 12, 17)
    assert (out[:, 0] - base[:, 0]).abs().max() > 1e-4  # frame 0 depends on the last frame
    assert (model(codes, 0, context=ctx * 2) - base).abs().max() > 1e-4  # and on the text


def test_stage_window_restricts_stages_above_zero_only():
    model = _model(stage_window=1)
    codes, ctx = _inputs(t=16)
    changed = codes.clone()
    changed[:, 0, 15] = (changed[:, 0, 15] + 1) % 17
    # 2 layers x window 1: frame 0 sees frames <= 2 at stage 1, so frame 15 cannot reach it; at stage 0 it can.
    for stage, moves in ((1, False), (0, True)):
        diff = (model(changed, stage, context=ctx)[:, 0] - model(codes, stage, context=ctx)[:, 0]).abs().max()
        assert (diff > 1e-5) == moves
    rows = model(codes, torch.tensor([0, 1]), context=ctx)  # one stage per row, windows per row
    torch.testing.assert_close(rows[0], model(codes[:1], 0, context=ctx[:1])[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rows[1], model(codes[1:], 1, context=ctx[1:])[0], atol=1e-5, rtol=1e-5)


def test_stage_selects_its_head():
    model = _model()
    codes, ctx = _inputs()
    with torch.no_grad():
        model.heads[2].zero_()
    assert model(codes, 2, context=ctx).abs().max() == 0
    assert model(codes, 1, context=ctx).abs().max() > 0


def test_padding_frames_do_not_change_valid_frames():
    model = _model()
    codes, ctx = _inputs(b=1, t=10)
    valid = torch.zeros(1, 10, dtype=torch.bool)
    valid[:, :6] = True
    a = model(codes, 0, context=ctx, frame_mask=valid)
    other = codes.clone()
    other[:, :, 6:] = 17  # padding content is irrelevant
    b = model(other, 0, context=ctx, frame_mask=valid)
    torch.testing.assert_close(a[:, :6], b[:, :6], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a[:, :6], model(codes[:, :, :6], 0, context=ctx)[:, :6], atol=1e-5, rtol=1e-5)


def test_bad_input():
    model = _model()
    codes, ctx = _inputs()
    with pytest.raises(ValueError, match=r"code ids must be in \[0, 17\]"):
        model(codes.index_fill(2, torch.tensor([3]), 18), 0, context=ctx)  # 18 is past [MASK] (17)
    with pytest.raises(ValueError, match=r"code ids must be in"):
        model(codes - 1, 0, context=ctx)
    with pytest.raises(ValueError, match=r"stage must be in \[0, 3\)"):
        model(codes, 3, context=ctx)
    with pytest.raises(ValueError, match="max_frames=64"):
        model(torch.zeros(1, 3, 65, dtype=torch.long), 0, context=ctx[:1])
    with pytest.raises(ValueError, match=r"codes must be \(B, 3, T\)"):
        model(codes.float(), 0, context=ctx)
    with pytest.raises(ConfigError, match="positions"):
        MaskedConfig(positions="alibi")
    with pytest.raises(ConfigError, match="stage_window"):
        MaskedConfig(stage_window=-1)
