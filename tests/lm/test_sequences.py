"""SODA token layout: id ranges, codes <-> ids (closed form and inverse), documents and their exact parsing."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.lm.sequence_strategies import codes, layouts, selected, texts, utterances
from wavefoundry.config import ConfigError, from_dict, to_dict
from wavefoundry.lm.sequences import (
    SPECIAL_TOKENS,
    Segment,
    TokenLayout,
    Utterance,
    audio_document,
    build_document,
    codes_to_ids,
    ids_to_codes,
    interleave,
    parse_sequence,
    soda_layout,
    text_document,
    utterance_document,
)

SETTINGS = settings(max_examples=60, deadline=None)


def tiny(**kw) -> TokenLayout:
    base = {"text_vocab_size": 10, "n_codebooks": 3, "codebook_size": 4}
    return TokenLayout(**{**base, **kw})


def same_segments(a: list[Segment], b: list[Segment]) -> bool:
    return len(a) == len(b) and all(x.equals(y) for x, y in zip(a, b))


# --- layout -----------------------------------------------------------------------------------------------------


def test_soda_layout_reproduces_the_released_vocabulary():
    layout = soda_layout()
    # Llama-3 text 128,256 + 4 specials + Mimi 8 x 2048 (SODA experiment log).
    assert layout.vocab_size == 128_256 + 4 + 8 * 2048 == 144_644
    assert layout.special_ids() == {name: 128_256 + i for i, name in enumerate(SPECIAL_TOKENS)}
    assert layout.audio_offset == 128_260
    codes = torch.zeros(8, 1, dtype=torch.long)
    codes[3, 0] = 5
    assert codes_to_ids(layout, codes)[3] == 128_260 + 3 * 2048 + 5
    semantic = soda_layout(codebooks=(0,))
    assert semantic.vocab_size == 128_260 + 2048
    assert semantic.n_selected == 1 and soda_layout(codebooks=tuple(range(1, 8))).n_selected == 7


def test_layout_ranges_partition_the_vocabulary():
    layout = tiny(codebooks=(0, 2))
    assert (layout.text_start, layout.text_end, layout.audio_start, layout.audio_end) == (10, 11, 12, 13)
    assert layout.audio_offset == 14 and layout.audio_vocab_size == 2 * 4 and layout.vocab_size == 22
    assert layout.selected == (0, 2) and tiny().selected == (0, 1, 2)


def test_layout_config_round_trip_and_bad_values():
    layout = tiny(codebooks=(1, 2), bos_id=0, eos_id=1, pad_id=21)
    again = from_dict(TokenLayout, to_dict(layout))
    assert again == layout and again.codebooks == (1, 2)
    for bad, match in [
        ({"codebooks": (2, 1)}, "increasing"),
        ({"codebooks": (0, 3)}, "0..2"),
        ({"codebooks": ()}, "codebooks"),
        ({"bos_id": 10}, "bos_id"),
        ({"pad_id": 100}, "pad_id"),
        ({"codebook_size": 0}, "codebook_size"),
    ]:
        with pytest.raises(ConfigError, match=match):
            from_dict(TokenLayout, {**to_dict(tiny()), **bad})


# --- codes <-> ids ----------------------------------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_codes_to_ids_matches_the_closed_form_and_inverts(data):
    layout = data.draw(layouts())
    c = data.draw(codes(layout))
    ids = codes_to_ids(layout, c)
    keep = selected(layout, c)
    # Frame-major: position t * K' + j holds offset + j * C + code of slot j at frame t.
    expected = [
        layout.audio_offset + j * layout.codebook_size + int(keep[j, t])
        for t in range(keep.shape[1])
        for j in range(layout.n_selected)
    ]
    assert ids.tolist() == expected
    assert torch.equal(ids_to_codes(layout, ids), keep)


def test_bad_codes_name_codebook_and_frame():
    layout = tiny(codebooks=(0, 2))
    with pytest.raises(ValueError, match="code 4 at codebook 2, frame 1"):
        codes_to_ids(layout, torch.tensor([[0, 0], [0, 0], [0, 4]]))
    with pytest.raises(ValueError, match="code -1 at codebook 2, frame 0"):
        codes_to_ids(layout, torch.tensor([[0, 0], [-1, 0]]))  # the K' = 2 selected codebooks
    with pytest.raises(ValueError, match="expected 3 \\(all\\) or 2"):
        codes_to_ids(layout, torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="integers"):
        codes_to_ids(layout, torch.zeros(3, 2))


def test_bad_audio_ids_name_position_and_id():
    layout = tiny(codebooks=(0, 2))  # slot 0 ids 14..17, slot 1 ids 18..21
    with pytest.raises(ValueError, match="3 audio ids from position 7 are not a multiple of 2"):
        ids_to_codes(layout, [14, 18, 14], start=7)
    with pytest.raises(ValueError, match="id 19 at position 6 belongs to codebook 2, expected codebook 0"):
        ids_to_codes(layout, [14, 18, 15, 19, 19, 18], start=2)
    with pytest.raises(ValueError, match=r"id 3 at position 1 is not an audio id \(14\.\.21\)"):
        ids_to_codes(layout, [14, 3])
    with pytest.raises(ValueError, match="id 22 at position 1 is not an audio id"):
        ids_to_codes(layout, [14, 22])


# --- documents and parsing --------------------------------------------------------------------------------------


def test_text_first_and_audio_first_documents_follow_the_soda_template():
    layout = tiny(bos_id=0, eos_id=1)
    c = torch.tensor([[0, 1], [2, 3], [3, 0]])
    a = codes_to_ids(layout, c).tolist()
    u = Utterance(text=[5, 6], codes=c)
    ts, te, as_, ae = layout.text_start, layout.text_end, layout.audio_start, layout.audio_end
    assert utterance_document(layout, [u]).tolist() == [0, ts, 5, 6, te, as_, *a, ae, 1]
    two = utterance_document(layout, [u, u], order="audio_first").tolist()
    assert two == [0, as_, *a, ae, ts, 5, 6, te, as_, *a, ae, ts, 5, 6, te, 1]
    assert text_document(layout, [7]).tolist() == [0, ts, 7, te, 1]
    assert audio_document(layout, c).tolist() == [0, as_, *a, ae, 1]
    assert tiny().vocab_size == 26 and text_document(tiny(), [7]).tolist() == [ts, 7, te]
    with pytest.raises(ValueError, match="unknown order 'middle'; valid: text_first, audio_first"):
        interleave([u], "middle")
    with pytest.raises(ValueError, match=r"text id 10 at index 1 is out of range 0\.\.9"):
        text_document(layout, [3, 10])


@SETTINGS
@given(st.data())
def test_build_then_parse_gives_back_every_segment(data):
    layout = data.draw(layouts())
    kinds = data.draw(st.lists(st.sampled_from(["text", "audio"]), max_size=5))
    segments = [
        Segment(kind="text", tokens=data.draw(texts(layout)))
        if kind == "text"
        else Segment(kind="audio", tokens=data.draw(codes(layout, all_codebooks=False)))
        for kind in kinds
    ]
    ids = build_document(layout, segments)
    assert same_segments(parse_sequence(layout, ids), segments)
    assert torch.equal(build_document(layout, parse_sequence(layout, ids)), ids)


@SETTINGS
@given(st.data())
def test_interleaved_documents_parse_back_to_their_utterances(data):
    layout = data.draw(layouts())
    utts = data.draw(utterances(layout))
    order = data.draw(st.sampled_from(["text_first", "audio_first"]))
    parsed = parse_sequence(layout, utterance_document(layout, utts, order))
    texts_back, codes_back = parsed[0::2], parsed[1::2]
    if order == "audio_first":
        texts_back, codes_back = codes_back, texts_back
    assert [s.kind for s in texts_back] == ["text"] * len(utts)
    assert [s.kind for s in codes_back] == ["audio"] * len(utts)
    for u, t, c in zip(utts, texts_back, codes_back):
        assert torch.equal(t.tokens, torch.as_tensor(u.text)) and torch.equal(c.tokens, selected(layout, u.codes))
    text_only = parse_sequence(layout, text_document(layout, utts[0].text))
    audio_only = parse_sequence(layout, audio_document(layout, utts[0].codes))
    assert same_segments(text_only, [Segment(kind="text", tokens=utts[0].text)])
    assert same_segments(audio_only, [Segment(kind="audio", tokens=selected(layout, utts[0].codes))])


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        ([10, 5, 12, 14, 13, 11], "<\\|audio_start\\|> at position 2 inside a text block opened at 0"),
        ([12, 10, 13], "<\\|text_start\\|> at position 1 inside an audio block opened at 0"),
        ([10, 5, 11, 11], "<\\|text_end\\|> at position 3 with no open text block"),
        ([10, 5, 13], "<\\|audio_end\\|> at position 2 closes a text block opened at 0"),
        ([10, 5, 11, 12, 14], "audio block opened at position 3 is not closed"),
        ([10, 5, 18, 11], "audio id 18 at position 2 inside a text block opened at 0"),
        ([12, 14, 5, 13], "text id 5 at position 2 inside an audio block opened at 0"),
        ([12, 18, 14, 13], "id 18 at position 1 belongs to codebook 1, expected codebook 0"),
        ([12, 14, 13], "1 audio ids from position 1 are not a multiple of 2"),
        ([10, 5, 11, 7, 10, 11], "text id 7 at position 3 outside any block"),
        ([10, 5, 11, 16], "audio id 16 at position 3 outside any block"),
        ([10, 26, 11], "id 26 at position 1 is outside the vocabulary 0..21"),
        ([10, -1, 11], "id -1 at position 1 is outside the vocabulary"),
    ],
)
def test_malformed_sequences_raise_naming_the_position(ids, match):
    layout = tiny(codebooks=(0, 1))  # audio ids 14..21: slot 0 14..17, slot 1 18..21
    with pytest.raises(ValueError, match=match):
        parse_sequence(layout, ids)


def test_bos_and_eos_are_allowed_only_at_the_ends():
    layout = tiny(bos_id=0, eos_id=1)
    ts, te = layout.text_start, layout.text_end
    assert same_segments(parse_sequence(layout, [0, ts, 1, 0, te, 1]), [Segment(kind="text", tokens=[1, 0])])
    assert parse_sequence(layout, [0, 1]) == [] and parse_sequence(layout, []) == []
    with pytest.raises(ValueError, match="text id 1 at position 3 outside any block"):  # two documents
        parse_sequence(layout, [0, ts, te, 1, 0, ts, te, 1])
    with pytest.raises(ValueError, match="text id 1 at position 1 outside any block"):
        parse_sequence(layout, [0, 1, ts, te])
