"""Swin encoder: parity with transformers' SwinModel, shifted-window masks, Swin-T size, video pooling, bad input."""

import re

import pytest
import torch

from wavefoundry.understanding.swin import (
    SwinConfig,
    SwinEncoder,
    VideoConfig,
    VideoEncoder,
    prepare_images,
    shifted_window_mask,
    swin_t,
)

TINY = dict(image_size=64, patch_size=4, embed_dim=16, depths=(2, 2), heads=(2, 4), window=4, drop_path=0.0)

#: Our key pattern -> transformers' SwinModel key (explicit map).
KEY_MAP = [
    (r"^projection\.", "embeddings.patch_embeddings.projection."),
    (r"^embed_norm\.", "embeddings.norm."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.attention\.query\.", r"encoder.layers.\1.blocks.\2.attention.q_proj."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.attention\.key\.", r"encoder.layers.\1.blocks.\2.attention.k_proj."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.attention\.value\.", r"encoder.layers.\1.blocks.\2.attention.v_proj."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.attention\.dense\.", r"encoder.layers.\1.blocks.\2.attention.o_proj."),
    (
        r"^stages\.(\d+)\.blocks\.(\d+)\.attention\.relative_position_bias_table",
        r"encoder.layers.\1.blocks.\2.attention.relative_position_bias.relative_position_bias_table",
    ),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.mlp\.0\.", r"encoder.layers.\1.blocks.\2.mlp.fc1."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.mlp\.2\.", r"encoder.layers.\1.blocks.\2.mlp.fc2."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.layernorm_", r"encoder.layers.\1.blocks.\2.layernorm_"),
    (r"^stages\.(\d+)\.downsample\.", r"encoder.layers.\1.downsample."),
    (r"^norm\.", "layernorm."),
]


def _hf_key(key):
    for pattern, repl in KEY_MAP:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    raise KeyError(key)


@pytest.mark.parametrize("image_size", [64, 32])  # 32: the last stage fits one window (no shift)
def test_matches_transformers_swin_model(image_size):
    from transformers import SwinConfig as HFSwinConfig
    from transformers import SwinModel

    torch.manual_seed(0)
    ours = SwinEncoder(SwinConfig(**{**TINY, "image_size": image_size})).eval()
    for p in ours.parameters():
        torch.nn.init.normal_(p, std=0.2)
    hf = SwinModel(
        HFSwinConfig(image_size=image_size, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4)
    ).eval()
    hf.load_state_dict({_hf_key(k): v for k, v in ours.state_dict().items()}, strict=True)
    x = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(pixel_values=x).last_hidden_state, atol=1e-5, rtol=1e-5)


def test_shifted_window_mask_regions():
    mask = shifted_window_mask(8, 4, 2)  # 4 windows of 16 tokens
    assert mask.shape == (4, 16, 16)
    assert bool(mask[0].all())  # the top-left window holds one region
    assert int(mask[3].sum()) == 4 * 16  # bottom-right: 4 regions of 4 tokens, each sees its own 4


def test_no_attention_across_window_borders_after_shift():
    """Perturbing one token changes, in one shifted block, only tokens of its own (shifted) window region."""
    torch.manual_seed(1)
    enc = SwinEncoder(SwinConfig(**TINY)).eval()
    block = enc.stages[0].blocks[1]  # shifted: res 16, window 4, shift 2
    assert block.shift == 2
    res, m, s = 16, 4, 2
    x = torch.randn(1, res * res, 16)
    y0 = block(x)
    # The region label of a map position after the cyclic shift: window index and 3x3 region inside the last ones.
    rolled = torch.roll(torch.arange(res * res).view(res, res), shifts=(-s, -s), dims=(0, 1))

    def label(pos):
        i, j = (rolled == pos).nonzero()[0].tolist()
        ri = (i >= res - m) + (i >= res - s)
        rj = (j >= res - m) + (j >= res - s)
        return (i // m, j // m, int(ri), int(rj))

    for pos in (0, 17, 255, 14 * 16 + 15):  # corner tokens fall in masked regions after the shift
        x1 = x.clone()
        x1[0, pos] += 3.0 * torch.randn(16)  # not a constant: LayerNorm would remove it
        changed = (block(x1) - y0).abs().amax(-1)[0] > 1e-6  # (res * res,)
        same_region = torch.tensor([label(q) == label(pos) for q in range(res * res)])
        assert bool(changed[same_region].all()) and not bool(changed[~same_region].any())


def test_swin_t_parameter_count_on_meta():
    with torch.device("meta"):
        model = SwinEncoder(swin_t())
    n = sum(p.numel() for p in model.parameters())
    assert 27_000_000 < n < 28_500_000  # paper: 28M with the 1000-class head (769k); timm/HF: 27.52M without
    assert model.cfg.num_tokens == 49 and model.cfg.out_dim == 768


def test_video_pooling():
    torch.manual_seed(2)
    swin = SwinEncoder(SwinConfig(**TINY)).eval()
    frames = torch.randn(2, 3, 3, 64, 64)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    with torch.no_grad():
        per_frame = swin(frames.flatten(0, 1)).view(2, 3, 64, 32)  # (B, F, L, C)
        mean = VideoEncoder(swin, VideoConfig(pooling="mean"))(frames, mask)
        torch.testing.assert_close(mean[0], per_frame[0, :2].mean(0), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(mean[1], per_frame[1].mean(0), atol=1e-6, rtol=1e-5)
        att = VideoEncoder(swin, VideoConfig(pooling="attention"))
        torch.nn.init.zeros_(att.scorer.weight)  # equal scores: attention pooling is the mean
        torch.testing.assert_close(att(frames, mask), mean, atol=1e-6, rtol=1e-5)
        one = att(frames[:, :1])
        torch.testing.assert_close(one, per_frame[:, 0], atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        VideoConfig(pooling="max")
    with pytest.raises(ValueError, match="valid frame"):
        att(frames, torch.zeros(2, 3, dtype=torch.bool))


def test_bad_images():
    enc = SwinEncoder(SwinConfig(**TINY))
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        enc(torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match="C in 1"):
        prepare_images(torch.randn(1, 2, 64, 64), 64)
    grey = prepare_images(torch.rand(1, 1, 80, 100), 64)
    assert grey.shape == (1, 3, 64, 64) and torch.equal(grey[:, 0], grey[:, 2])
    rgba = torch.rand(1, 4, 64, 64)
    assert torch.equal(prepare_images(rgba, 64), rgba[:, :3])
    with pytest.raises(ValueError, match="multiple of window"):
        SwinConfig(image_size=96, window=7)
