"""Fusion, text decoder, decoding and the whole audio+vision -> text model on tiny configs."""

import math

import pytest
import torch

from wavefoundry.understanding.decoding import beam_search, length_penalty, sample_captions
from wavefoundry.understanding.encdec import AVTextModel, av_described, av_preset, av_tiny, param_count
from wavefoundry.understanding.fusion import CrossModalFusion, FusionConfig, Stream
from wavefoundry.understanding.text_decoder import TextDecoder, TextDecoderConfig

DEC = dict(text_vocab=40, dim=32, n_layers=2, n_heads=4, ffn_dim=64, memory_dim=32, max_seq_len=32)


def _decoder(seed=0):
    torch.manual_seed(seed)
    dec = TextDecoder(TextDecoderConfig(**DEC)).eval()
    for p in dec.parameters():  # larger weights: sharper, more varied distributions than the 0.02 init
        torch.nn.init.normal_(p, std=0.3)
    memory = torch.randn(2, 5, 32)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    return dec, memory, mask


def test_cached_decoding_equals_full_recomputation():
    dec, memory, mask = _decoder()
    ids = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        full = dec(ids, memory, mask)
        cache = dec.new_cache()
        parts = [dec(ids[:, :4], memory, mask, cache=cache)]  # prefill, a chunk of 3, then one at a time
        parts.append(dec(ids[:, 4:7], memory, mask, cache=cache))
        parts += [dec(ids[:, i : i + 1], memory, mask, cache=cache) for i in range(7, 9)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_causal_vs_bidirectional_mode():
    dec, memory, mask = _decoder()
    ids = torch.randint(0, 40, (2, 6))
    later = ids.clone()
    later[:, -1] = (later[:, -1] + 1) % 40
    with torch.no_grad():
        causal = (dec(ids, memory, mask) - dec(later, memory, mask))[:, :-1].abs().max()
        bidir = (dec(ids, memory, mask, causal=False) - dec(later, memory, mask, causal=False))[:, :-1].abs().max()
        padded = dec(ids, memory, mask, causal=False, key_mask=torch.ones(2, 6, dtype=torch.bool))
    assert float(causal) == 0.0  # a later token never reaches earlier positions
    assert float(bidir) > 1e-3  # in the MLM mode it does
    torch.testing.assert_close(padded, dec(ids, memory, mask, causal=False))
    # padding keys are ignored: the first 4 positions do not see the masked last two
    km = torch.tensor([[True] * 4 + [False] * 2] * 2)
    with torch.no_grad():
        a = dec(ids, memory, mask, causal=False, key_mask=km)[:, :4]
        b = dec(later, memory, mask, causal=False, key_mask=km)[:, :4]
    torch.testing.assert_close(a, b)


def _sequence_logprob(dec, memory, mask, ids):
    """log P(ids | memory) by full recomputation (no cache), starting after [BOS]."""
    x = torch.tensor([[dec.cfg.specials.bos, *ids]])
    logp = dec(x[:, :-1], memory, mask).log_softmax(-1)[0]  # (n, V)
    return float(sum(logp[i, t] for i, t in enumerate(ids)))


def test_beam_width_one_is_greedy_and_beams_are_sorted():
    dec, memory, mask = _decoder(1)
    greedy = sample_captions(dec, memory, mask, max_new_tokens=8, temperature=0.0)
    beam1 = beam_search(dec, memory, mask, beams=1, max_new_tokens=8, alpha=0.6)
    eos = dec.cfg.specials.eos
    for b in range(2):
        row = greedy[b].tolist()
        row = row[: row.index(eos) + 1] if eos in row else row
        assert beam1[b][0][0] == row
    beams = beam_search(dec, memory, mask, beams=4, max_new_tokens=8, alpha=0.6)
    for b in range(2):
        scores = [s for _, s in beams[b]]
        assert len(beams[b]) == 4 and scores == sorted(scores, reverse=True)
        for ids, score in beams[b]:  # each score is log P / lp(|Y|) by full recomputation
            with torch.no_grad():
                lp = _sequence_logprob(dec, memory[b : b + 1], mask[b : b + 1], ids)
            assert math.isclose(score, lp / length_penalty(len(ids), 0.6), rel_tol=1e-4, abs_tol=1e-4)
        # beam search finds a sequence at least as good as greedy's, under its own score
        with torch.no_grad():
            g_lp = _sequence_logprob(dec, memory[b : b + 1], mask[b : b + 1], beam1[b][0][0])
        assert scores[0] >= g_lp / length_penalty(len(beam1[b][0][0]), 0.6) - 1e-5


def test_sampling_is_seeded_and_stays_in_text_ids():
    dec, memory, mask = _decoder(2)
    kw = dict(max_new_tokens=6, temperature=1.0, top_k=10, top_p=0.9)
    a = sample_captions(dec, memory, mask, generator=torch.Generator().manual_seed(0), **kw)
    b = sample_captions(dec, memory, mask, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(a, b)
    sp = dec.cfg.specials
    assert bool(((a < dec.cfg.text_vocab) | (a == sp.eos)).all())
    with pytest.raises(ValueError, match="max_seq_len"):
        sample_captions(dec, memory, mask, max_new_tokens=40)


def test_fusion_row_absence_equals_modality_absent():
    torch.manual_seed(3)
    fusion = CrossModalFusion(
        FusionConfig(dim=32, n_layers=2, n_heads=4, ffn_dim=64), audio_dim=16, visual_dim=24, visual_tokens=4
    ).eval()
    a_tok, v_tok = torch.randn(2, 6, 16), torch.randn(2, 4, 24)
    a_mask = torch.ones(2, 6, dtype=torch.bool)
    yes, no = torch.ones(2, dtype=torch.bool), torch.tensor([True, False])
    with torch.no_grad():
        a, v = fusion.project(Stream(a_tok, a_mask, yes), Stream(v_tok, torch.ones(2, 4, dtype=torch.bool), no))
        mem, mask = fusion(a, v)
        a_only, _ = fusion.project(Stream(a_tok, a_mask, yes), None)
        mem_a, _ = fusion(a_only, None)
        both, _ = fusion(
            *fusion.project(Stream(a_tok, a_mask, yes), Stream(v_tok, torch.ones(2, 4, dtype=torch.bool), yes))
        )
    assert mem.shape == (2, 10, 32) and mem_a.shape == (2, 6, 32)
    assert not bool(mask[1, 6:].any()) and bool(mask[0].all())
    torch.testing.assert_close(mem[1, :6], mem_a[1], atol=1e-6, rtol=1e-5)  # the dropped row: audio alone
    torch.testing.assert_close(mem[0], both[0], atol=1e-6, rtol=1e-5)  # the other row is untouched
    assert float((mem[0, :6] - mem_a[0]).abs().max()) > 1e-4  # and it did use the image
    with pytest.raises(ValueError, match="neither"):
        fusion(None, None)


def _tiny_model(**kw):
    torch.manual_seed(4)
    return AVTextModel(av_tiny(text_vocab=50, **kw))


def test_model_modalities_and_bad_input():
    model = _tiny_model(num_classes=3, num_labels=5).eval()
    audio, images = torch.randn(2, 8000), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        both = model.encode(audio=audio, images=images)
        a = model.encode(audio=audio)
        v = model.encode(images=images)
        vid = model.encode(frames=images.unsqueeze(1))
    assert both.memory.shape[1] == a.memory.shape[1] + v.memory.shape[1] == a.memory.shape[1] + 64
    torch.testing.assert_close(vid.memory, v.memory)  # an image is a one-frame video
    single, multi = model.class_logits(both)
    assert single.shape == (2, 3) and multi.shape == (2, 5)
    with pytest.raises(ValueError, match="neither modality"):
        model.encode()
    with pytest.raises(ValueError, match="too short"):
        model.encode(audio=torch.randn(1, 100))
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        model.encode(images=torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="not both"):
        model.encode(images=images, frames=images.unsqueeze(1))
    with pytest.raises(ValueError, match="contrastive embeddings"):
        model.embeddings(a)


def test_modality_dropout_drops_one_per_row():
    model = _tiny_model().train()
    model.cfg.modality_dropout = 1.0
    enc = model.encode(
        audio=torch.randn(8, 8000), images=torch.rand(8, 3, 64, 64), generator=torch.Generator().manual_seed(0)
    )
    present = torch.stack([enc.audio.present, enc.visual.present])  # (2, B)
    assert bool((present.sum(0) == 1).all())  # every row keeps exactly one modality
    assert bool(enc.memory_mask.any(1).all())


def test_preset_lookup():
    assert av_preset("av_tiny") == av_tiny()
    with pytest.raises(ValueError, match="av_described, av_tiny"):
        av_preset("av_huge")


def test_param_counts_on_meta():
    big = param_count(av_described())
    assert av_described().decoder.n_layers == 48 and av_described().decoder.max_seq_len == 2048
    assert 1.3e9 < big["total"] < 1.7e9
    assert 27e6 < big["vision"] < 28.5e6
    tiny = param_count(av_tiny())
    assert tiny["total"] < 6e6 and av_tiny().decoder.dim <= 128


def test_config_round_trip_and_block_lists():
    from wavefoundry.config import from_dict, to_dict
    from wavefoundry.understanding.encdec import AVTextConfig

    cfg = av_tiny(text_vocab=50, num_classes=3)
    assert from_dict(AVTextConfig, to_dict(cfg)) == cfg
    model = AVTextModel(cfg)
    lists = model.block_lists()
    assert len(model.blocks) == sum(len(b) for b in lists) == 4 + 4 + 1 + 4  # conformer, swin, fusion, decoder
    registered = {id(m) for m in model.modules()}
    assert all(id(lst) in registered for lst in lists)
    # Activation checkpointing replaces model.blocks[i]; the replacement must reach the owning sub-model.
    keys = set(model.state_dict())
    marker = torch.nn.Sequential(model.blocks[5])  # a Swin block, wrapped
    view = model.blocks
    view[5] = marker
    assert model.video_encoder.swin.stages[0].blocks[1] is marker and model.blocks[5] is marker
    wrapped = {k.replace("stages.0.blocks.1.", "stages.0.blocks.1.0.") for k in keys}  # Sequential adds ".0"
    assert set(model.state_dict()) == wrapped
    with pytest.raises(ValueError, match="memory_dim"):
        AVTextConfig(fusion=av_tiny().fusion)  # default decoder memory_dim 512 != 128


def _naive_attention(q, k, v, allowed):
    """softmax(q k^T / sqrt(d)) v per head with a boolean (Lq, Lk) mask, written out. q: (H, Lq, d)."""
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return s.masked_fill(~allowed, float("-inf")).softmax(-1) @ v


def test_decoder_matches_written_out_reference():
    """One-layer TextDecoder against the block written out: RMSNorm, RoPE (rotate half), causal softmax, cross
    softmax over the valid memory, SwiGLU, final RMSNorm, tied head."""
    torch.manual_seed(5)
    cfg = TextDecoderConfig(**{**DEC, "n_layers": 1})
    dec = TextDecoder(cfg).eval()
    for p in dec.parameters():
        torch.nn.init.normal_(p, std=0.3)
    L, H, Dh, D = 6, 4, 8, 32
    ids = torch.randint(0, 40, (1, L))
    memory, mmask = torch.randn(1, 5, D), torch.tensor([[True, True, False, True, False]])
    blk = dec.blocks[0]

    def rms(x, w):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + cfg.norm_eps) * w

    def rope(x):  # (L, H, Dh); pairs (i, i + Dh/2), angle m * base^(-2i/Dh)
        half = Dh // 2
        theta = cfg.rope_base ** (-torch.arange(half).float() * 2 / Dh)
        ang = torch.arange(L).float()[:, None, None] * theta  # (L, 1, half)
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * ang.cos() - x2 * ang.sin(), x2 * ang.cos() + x1 * ang.sin()), -1)

    with torch.no_grad():
        x = dec.embed.weight[ids[0]]  # (L, D)
        qkv = rms(x, blk.self_norm.weight) @ blk.self_attn.qkv.weight.T  # (L, 3D)
        q, k, v = (t.view(L, H, Dh) for t in qkv.split(D, -1))
        q, k = rope(q), rope(k)
        causal = torch.ones(L, L, dtype=torch.bool).tril()
        o = _naive_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), causal)  # (H, L, Dh)
        x = x + o.transpose(0, 1).reshape(L, D) @ blk.self_attn.out.weight.T
        ca = blk.cross_attn
        cq = (rms(x, blk.cross_norm.weight) @ ca.to_q.weight.T).view(L, H, Dh).transpose(0, 1)
        ck, cv = (t.view(5, H, Dh).transpose(0, 1) for t in (memory[0] @ ca.to_kv.weight.T).split(D, -1))
        co = _naive_attention(cq, ck, cv, mmask[0][None, :].expand(L, 5))
        x = x + co.transpose(0, 1).reshape(L, D) @ ca.to_out.weight.T
        g, u = (rms(x, blk.ffn_norm.weight) @ blk.ffn.gate_up.weight.T).chunk(2, -1)
        x = x + (torch.nn.functional.silu(g) * u) @ blk.ffn.down.weight.T
        ref = rms(x, dec.norm.weight) @ dec.embed.weight.T  # (L, V)
        torch.testing.assert_close(dec(ids, memory, mmask)[0], ref, atol=1e-4, rtol=1e-4)
