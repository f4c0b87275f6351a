"""Conditioner: Stable Audio Open's cross/global wiring, Conditioning helpers, bounds, tokenizer next to weights."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from wavefoundry.conditioning import (
    TOKENIZER_FILE,
    Conditioner,
    ConditionerConfig,
    Conditioning,
    LearnedTextEncoderConfig,
    WordTokenizer,
)
from wavefoundry.config import ConfigError, from_dict, to_dict

CAPTIONS = ["a rock drum beat at 97 BPM", "a C#4 note, 2.5 seconds long", "pink noise, quiet", "an F#m chord"]
TEXT = LearnedTextEncoderConfig(vocab_size=48, dim=32, depth=1, heads=4, max_length=12, out_dim=32)


def make(cond_dim: int = 16, **kw) -> Conditioner:
    cfg = ConditionerConfig(text=TEXT, cond_dim=cond_dim, fourier_dim=8, **kw)
    return Conditioner(cfg, tokenizer=WordTokenizer.build(CAPTIONS)).eval()


def test_sao_wiring():
    cond = make()
    start, total = torch.tensor([0.0, 3.0, 10.0]), torch.tensor([4.0, 30.0, 600.0])
    out = cond(CAPTIONS[:3], start, total)
    assert out.cross.shape == (3, 14, 16) and out.cross_mask.shape == (3, 14) and out.global_cond.shape == (3, 32)
    text, mask = cond.text(CAPTIONS[:3])
    assert torch.equal(out.cross_mask[:, :12], mask) and out.cross_mask[:, 12:].all()
    assert torch.allclose(out.cross[:, :12], cond.text_proj(text) * mask[..., None])
    assert (out.cross[:, :12][~mask] == 0).all()  # the projection's bias does not leak into padding
    s, t = cond.seconds_start(start), cond.seconds_total(total)  # (B, 1, D) each
    assert torch.equal(out.cross[:, 12:13], s) and torch.equal(out.cross[:, 13:], t)
    assert torch.equal(out.global_cond, torch.cat([s[:, 0], t[:, 0]], dim=-1))
    assert torch.allclose(out.cross[2, 13], cond(CAPTIONS[:1], 0.0, 512.0).cross[0, 13], atol=1e-6)  # clamped


def test_text_projection_only_when_widths_differ():
    assert isinstance(make(cond_dim=32).text_proj, nn.Identity)
    assert isinstance(make(cond_dim=16).text_proj, nn.Linear)
    assert "text_proj.weight" not in make(cond_dim=32).state_dict()


def test_scalar_timing_broadcasts_and_shapes_are_checked():
    cond = make()
    a = cond(CAPTIONS[:2], 0.0, torch.tensor(8.0))
    b = cond(CAPTIONS[:2], [0.0, 0.0], [8.0, 8.0])
    assert torch.allclose(a.global_cond, b.global_cond)
    with pytest.raises(ValueError, match=r"seconds_total must be a number or have shape \(2,\)"):
        cond(CAPTIONS[:2], 0.0, [1.0, 2.0, 3.0])


@pytest.mark.parametrize(("prompts", "match"), [([], "no prompts"), ([""], "empty"), (["a" * 1001], "1001")])
def test_bad_prompts(prompts, match):
    with pytest.raises(ValueError, match=match):
        make()(prompts, 0.0, 1.0)


def test_validate_seconds_uses_the_config_range():
    cond = make(max_seconds=47.0)
    assert cond.validate_seconds(0.0, 47.0)[1].item() == 47.0
    with pytest.raises(ValueError, match=r"within \[0, 47\]"):
        cond.validate_seconds(0.0, 48.0)
    with pytest.raises(ValueError, match="seconds_start must be within"):
        cond.validate_seconds(-0.5, 10.0)


def test_conditioning_helpers():
    out = make()(CAPTIONS[:3], 0.0, [4.0, 5.0, 6.0])
    assert set(out.as_kwargs()) == {"cross", "cross_mask", "global_cond"} and len(out) == 3
    null = out.null()
    assert (null.cross == 0).all() and torch.equal(null.cross_mask, out.cross_mask)
    assert torch.equal(null.global_cond, out.global_cond)
    drop = torch.tensor([True, False, True])
    mixed = out.null_where(drop)
    assert (mixed.cross[drop] == 0).all() and torch.equal(mixed.cross[1], out.cross[1])
    both = Conditioning.cat([null, out])
    assert len(both) == 6 and torch.equal(both.index(slice(3, None)).cross, out.cross)
    assert torch.equal(out.index(torch.tensor([2, 0])).global_cond, out.global_cond[[2, 0]])
    assert torch.equal(out.index(~drop).cross, out.cross[1:2])
    half = out.to(dtype=torch.float16)
    assert half.cross.dtype == torch.float16 and half.cross_mask.dtype == torch.bool
    with pytest.raises(ValueError, match="differ"):
        Conditioning.cat(
            [out, Conditioning(cross=out.cross[:, :5], cross_mask=out.cross_mask[:, :5], global_cond=out.global_cond)]
        )
    with pytest.raises(ValueError, match="shapes disagree"):
        Conditioning(cross=out.cross, cross_mask=out.cross_mask[:, 1:], global_cond=out.global_cond)


def test_null_cross_attention_does_not_depend_on_the_mask():
    """Why null() may keep the mask: zero tokens give equal keys and values (biases included)."""
    torch.manual_seed(3)
    null = make()(CAPTIONS[:2], 0.0, 4.0).null()
    to_q, to_kv = nn.Linear(16, 16), nn.Linear(16, 32)
    q = to_q(torch.randn(2, 5, 16))
    k, v = to_kv(null.cross).chunk(2, dim=-1)
    masked = F.scaled_dot_product_attention(q, k, v, attn_mask=null.cross_mask[:, None, :])
    assert torch.allclose(masked, F.scaled_dot_product_attention(q, k, v), atol=1e-6)


def test_config_errors():
    with pytest.raises(ConfigError, match="valid: learned, t5"):
        ConditionerConfig(text_encoder="clap")
    with pytest.raises(ConfigError, match="needs t5_path"):
        ConditionerConfig(text_encoder="t5")
    with pytest.raises(ConfigError, match="min_seconds < max_seconds"):
        ConditionerConfig(min_seconds=10.0, max_seconds=5.0)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        Conditioner(ConditionerConfig(text=TEXT))
    cfg = ConditionerConfig(text=TEXT, cond_dim=16)
    assert from_dict(ConditionerConfig, to_dict(cfg)) == cfg and cfg.global_dim == 32


def test_tokenizer_and_weights_round_trip(tmp_path):
    cond = make()
    assert cond.tokenizer_state()["vocab"] == cond.tokenizer.vocab
    assert cond.save_tokenizer(tmp_path) == tmp_path / TOKENIZER_FILE
    save_file(cond.state_dict(), tmp_path / "model.safetensors")
    back = Conditioner.from_dir(cond.cfg, tmp_path)
    back.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=True)
    back.eval()
    a, b = cond(CAPTIONS, 1.0, 9.0), back(CAPTIONS, 1.0, 9.0)
    assert torch.equal(a.cross, b.cross) and torch.equal(a.cross_mask, b.cross_mask)
    with pytest.raises(FileNotFoundError, match=TOKENIZER_FILE):
        Conditioner.from_dir(cond.cfg, tmp_path / "elsewhere")


def test_the_config_bounds_the_tokenizer():
    tok = WordTokenizer.build(CAPTIONS, max_length=64, max_chars=5000)
    cond = Conditioner(ConditionerConfig(text=TEXT, cond_dim=16, max_prompt_chars=30), tokenizer=tok)
    assert cond.tokenizer.max_length == 12 and tok.max_chars == 5000  # the caller's tokenizer is not changed
    with pytest.raises(ValueError, match="at most 30"):
        cond(["a" * 31], 0.0, 1.0)


def test_t5_kind(tmp_path):
    pytest.importorskip("transformers")
    from tests.conditioning.t5_fixtures import make_tiny_t5

    d = make_tiny_t5(tmp_path)
    cond = Conditioner(
        ConditionerConfig(text_encoder="t5", t5_path=str(d), t5_max_length=10, cond_dim=16, fourier_dim=8)
    )
    assert sorted({k.split(".")[0] for k in cond.state_dict()}) == ["seconds_start", "seconds_total", "text_proj"]
    out = cond(["a rock drum beat", "rain"], 0.0, 10.0)
    assert out.cross.shape == (2, 12, 16) and out.cross_mask[:, :10].sum(1).tolist() == [5, 2]
    assert cond.tokenizer is None and cond.tokenizer_state() is None and cond.save_tokenizer(tmp_path) is None
