"""Task formats: S2ST example and loss mask, ASR/TTS/continuation prompts, sampler masks, generated parsing."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.lm.sequence_strategies import codes, layouts, selected, texts, utterances
from wavefoundry.lm.prompts import (
    asr_prompt,
    audio_mask,
    continuation_prompt,
    parse_generated,
    s2st_document,
    s2st_prompt,
    text_mask,
    tts_prompt,
)
from wavefoundry.lm.sequences import TokenLayout, codes_to_ids, interleave, parse_sequence

SETTINGS = settings(max_examples=50, deadline=None)


def tiny(**kw) -> TokenLayout:
    base = {"text_vocab_size": 10, "n_codebooks": 3, "codebook_size": 4, "codebooks": (0, 2)}
    return TokenLayout(**{**base, **kw})


def eos(layout: TokenLayout) -> list[int]:
    return [] if layout.eos_id is None else [layout.eos_id]


# --- speech-to-speech translation -------------------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_s2st_mask_covers_exactly_the_response(data):
    layout = data.draw(layouts())
    src_codes, tgt_codes = data.draw(codes(layout)), data.draw(codes(layout))
    src_text, tgt_text = data.draw(texts(layout)), data.draw(texts(layout))
    ids, mask = s2st_document(
        layout, source_codes=src_codes, source_text=src_text, target_text=tgt_text, target_codes=tgt_codes
    )
    prompt = s2st_prompt(layout, src_codes, src_text)
    assert torch.equal(ids[: len(prompt)], prompt) and mask.shape == ids.shape and mask.dtype == torch.bool
    # Response = target text, <|text_end|>, target audio block (with <|audio_end|>), EOS: the tail of the sequence.
    response = [*tgt_text.tolist(), layout.text_end, layout.audio_start]
    response += [*codes_to_ids(layout, tgt_codes).tolist(), layout.audio_end, *eos(layout)]
    assert mask.tolist() == [False] * len(prompt) + [True] * len(response)
    assert ids[mask].tolist() == response and int(ids[mask][-1 - len(eos(layout))]) == layout.audio_end
    parsed = parse_sequence(layout, ids)
    assert [s.kind for s in parsed] == ["audio", "text", "text", "audio"]
    assert torch.equal(parsed[0].tokens, selected(layout, src_codes)) and torch.equal(parsed[1].tokens, src_text)
    assert torch.equal(parsed[2].tokens, tgt_text) and torch.equal(parsed[3].tokens, selected(layout, tgt_codes))


# --- prompts ----------------------------------------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_prompts_completed_by_a_response_parse_as_documents(data):
    layout = data.draw(layouts())
    shots = data.draw(st.one_of(st.just([]), utterances(layout, max_count=2)))
    query_codes, query_text = data.draw(codes(layout)), data.draw(texts(layout))
    shot_segments = interleave(shots, "audio_first")
    asr = torch.cat([asr_prompt(layout, query_codes, shots), query_text, torch.tensor([layout.text_end, *eos(layout)])])
    parsed = parse_sequence(layout, asr)
    assert [s.kind for s in parsed] == [s.kind for s in shot_segments] + ["audio", "text"]
    for got, want in zip(parsed, shot_segments):
        expected = selected(layout, want.tokens) if want.kind == "audio" else want.tokens
        assert torch.equal(got.tokens, expected)
    assert torch.equal(parsed[-2].tokens, selected(layout, query_codes)) and torch.equal(parsed[-1].tokens, query_text)

    audio_ids = codes_to_ids(layout, query_codes)
    tts = torch.cat([tts_prompt(layout, query_text, shots), audio_ids, torch.tensor([layout.audio_end, *eos(layout)])])
    parsed = parse_sequence(layout, tts)
    assert [s.kind for s in parsed] == ["text", "audio"] * (len(shots) + 1)
    assert torch.equal(parsed[-2].tokens, query_text) and torch.equal(parsed[-1].tokens, selected(layout, query_codes))

    frames = selected(layout, query_codes).shape[1]
    cut = data.draw(st.integers(0, frames))
    cont = continuation_prompt(layout, selected(layout, query_codes)[:, :cut])
    rest = codes_to_ids(layout, selected(layout, query_codes)[:, cut:])
    whole = torch.cat([cont, rest, torch.tensor([layout.audio_end, *eos(layout)])])
    (segment,) = parse_sequence(layout, whole)
    assert torch.equal(segment.tokens, selected(layout, query_codes))


def test_prompts_end_with_the_opening_delimiter_and_carry_bos():
    layout = tiny(bos_id=0, eos_id=1)
    c = torch.tensor([[1], [2], [3]])
    assert asr_prompt(layout, c).tolist()[-1] == layout.text_start and asr_prompt(layout, c).tolist()[0] == 0
    assert tts_prompt(layout, [4]).tolist() == [0, layout.text_start, 4, layout.text_end, layout.audio_start]
    a = codes_to_ids(layout, c).tolist()
    assert continuation_prompt(layout, c).tolist() == [0, layout.audio_start, *a]
    assert 1 not in asr_prompt(layout, c).tolist()[1:]  # no EOS in a prompt


# --- sampler masks ----------------------------------------------------------------------------------------------


def test_allowed_id_masks():
    layout = tiny()
    v = torch.arange(layout.vocab_size)
    t = text_mask(layout)
    assert t.shape == (layout.vocab_size,) and t.dtype == torch.bool
    assert v[t].tolist() == [*range(layout.text_vocab_size), layout.text_end]
    a = audio_mask(layout)
    assert v[a].tolist() == [layout.audio_end, *range(layout.audio_offset, layout.vocab_size)]
    slots = [audio_mask(layout, slot=j) for j in range(layout.n_selected)]
    assert torch.equal(slots[0] | slots[1], a) and not (slots[0] & slots[1]).any()
    assert slots[0][layout.audio_end] and not slots[1][layout.audio_end]
    for j, m in enumerate(slots):
        audio = v[m & (v >= layout.audio_offset)]
        assert ((audio - layout.audio_offset) // layout.codebook_size == j).all()
    with pytest.raises(ValueError, match=r"slot must be in 0\.\.1, got 2"):
        audio_mask(layout, slot=2)


@SETTINGS
@given(layouts(), st.integers(0, 2**31 - 1))
def test_sampling_under_the_masks_always_gives_a_parsable_document(layout, seed):
    g = torch.Generator().manual_seed(seed)
    prompt = tts_prompt(layout, [0])
    out: list[int] = []
    while not out or out[-1] != layout.audio_end:
        allowed = audio_mask(layout, slot=len(out) % layout.n_selected)
        logits = torch.randn(layout.vocab_size, generator=g).masked_fill(~allowed, float("-inf"))
        out.append(int(torch.multinomial(logits.softmax(-1), 1, generator=g)))
    _, audio = parse_sequence(layout, torch.cat([prompt, torch.tensor(out + eos(layout))]))
    generated = parse_generated(layout, out, "audio")
    assert generated.stop == "end" and generated.finished and torch.equal(generated.segment.tokens, audio.tokens)


# --- generated continuations ------------------------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_parse_generated_reads_back_content_before_any_stop(data):
    layout = data.draw(layouts())
    text = data.draw(texts(layout)).tolist()
    if layout.eos_id is not None:
        text = [i for i in text if i != layout.eos_id]
    stop = data.draw(st.sampled_from(["end", "length", "invalid"] + (["eos"] if layout.eos_id is not None else [])))
    tail = {"end": [layout.text_end, 3], "length": [], "invalid": [layout.audio_start], "eos": [layout.eos_id]}[stop]
    got = parse_generated(layout, text + tail, "text")
    assert got.segment.tokens.tolist() == text and got.stop == stop and got.stop_at == len(text)

    c = selected(layout, data.draw(codes(layout)))
    partial = codes_to_ids(layout, c[:, :1])[: layout.n_selected - 1].tolist() if c.shape[1] else []
    tail = {"end": [layout.audio_end], "length": [], "invalid": [layout.text_start], "eos": [layout.eos_id]}[stop]
    ids = codes_to_ids(layout, c).tolist() + partial + tail
    got = parse_generated(layout, ids, "audio")
    assert torch.equal(got.segment.tokens, c) and got.stop == stop and got.finished == (stop in ("end", "eos"))


def test_parse_generated_stops_at_a_wrong_slot_and_rejects_unknown_kinds():
    layout = tiny()  # slot 0 ids 14..17, slot 1 ids 18..21
    got = parse_generated(layout, [14, 18, 15, 15, 19], "audio")
    assert got.stop == "invalid" and got.stop_at == 3 and got.segment.tokens.tolist() == [[0], [0]]
    got = parse_generated(layout, [14, 18, 14, layout.audio_end], "audio")
    assert got.stop == "end" and got.segment.tokens.shape == (2, 1)  # the partial frame is dropped
    assert parse_generated(layout, [layout.text_end], "text").segment.tokens.tolist() == []
    with pytest.raises(ValueError, match="unknown block kind 'image'; valid: text, audio"):
        parse_generated(layout, [1], "image")
