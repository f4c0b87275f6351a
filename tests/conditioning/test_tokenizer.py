"""WordTokenizer: splitting rules for numbers and notes, vocabulary building, batches, bounds and JSON round trip."""

import json
import logging

import pytest
import torch

from wavefoundry.conditioning.tokenizer import DIGITS, PAD_ID, UNK_ID, WordTokenizer, check_prompts, split_words

CAPTIONS = [
    "a tight syncopated rock drum beat 97 BPM",
    "a single C#4 note, 2.5 seconds long",
    "an F#m chord on a drawbar organ",
    "a rock drum beat at 120 BPM",
]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("C#4 at 97 BPM", ["c#", "4", "at", "9", "7", "bpm"]),
        ("2.5 seconds", ["2", ".", "5", "seconds"]),
        ("F#m7", ["f#", "m", "7"]),
        ("Eb major, Bb3", ["eb", "major", ",", "bb", "3"]),
        ("C♯ minor", ["c#", "minor"]),
        ("hi-hat: don't", ["hi", "-", "hat", ":", "don't"]),
        ("abc# Café", ["abc", "#", "café"]),
        ("ＢＰＭ", ["bpm"]),  # NFKC folds full-width letters
    ],
)
def test_split_words(text, tokens):
    assert split_words(text) == tokens


def test_build_reserves_specials_and_digits_and_ranks_by_count():
    tok = WordTokenizer.build(CAPTIONS, min_count=2)
    assert tok.vocab[:2] == ["<pad>", "<unk>"] and tok.vocab[2:12] == list(DIGITS)
    # "a" appears 4 times, then "beat", "bpm", "drum", "rock" twice each (ties alphabetical); singletons dropped.
    assert tok.vocab[12:] == ["a", "beat", "bpm", "drum", "rock"]
    assert WordTokenizer.build(CAPTIONS, max_vocab=14).vocab[12:] == ["a", "beat"]
    with pytest.raises(ValueError, match="max_vocab"):
        WordTokenizer.build(CAPTIONS, max_vocab=5)


def test_every_number_is_representable():
    tok = WordTokenizer.build(["no numbers here"])
    ids = tok.tokenize("173 BPM, 3.75 s")
    assert ids[:3] == [tok.index["1"], tok.index["7"], tok.index["3"]] and ids[3] == UNK_ID


def test_encode_pads_masks_and_maps_unknown_words():
    tok = WordTokenizer.build(CAPTIONS, max_length=12)
    ids, mask = tok.encode(["a rock beat", "a zebra"])
    assert ids.shape == mask.shape == (2, 12) and ids.dtype == torch.long and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [3, 2]
    assert (ids[~mask] == PAD_ID).all()
    assert ids[1, 1] == UNK_ID
    assert tok.decode(ids[0].tolist()) == "a rock beat"
    ids, mask = tok.encode(["a rock beat", "a"], pad_to_max=False)
    assert ids.shape == (2, 3) and mask[1].tolist() == [True, False, False]


def test_long_prompts_truncate_with_a_warning_or_raise(caplog):
    tok = WordTokenizer.build(CAPTIONS, max_length=4)
    with caplog.at_level(logging.WARNING):
        ids, mask = tok.encode(["a tight syncopated rock drum beat", "a"])
    assert "more than 4 tokens" in caplog.text
    assert mask.all(1).tolist() == [True, False] and tok.decode(ids[0].tolist()) == "a tight syncopated rock"
    with pytest.raises(ValueError, match="more than 4 tokens"):
        tok.encode(["a tight syncopated rock drum beat"], strict=True)
    assert tok.encode(["a tight syncopated rock"], strict=True)[1].all()


@pytest.mark.parametrize(
    ("prompts", "error", "match"),
    [
        ([], ValueError, "no prompts"),
        (["a", ""], ValueError, "prompt 1 is empty"),
        (["   "], ValueError, "prompt 0 is empty"),
        (["x" * 1001], ValueError, "1001 characters; at most 1000"),
        ("a rock beat", TypeError, "list of strings"),
        ([3], TypeError, "prompt 0 is a int"),
    ],
)
def test_bad_prompts(prompts, error, match):
    with pytest.raises(error, match=match):
        WordTokenizer.build(CAPTIONS).encode(prompts)
    with pytest.raises(error, match=match):
        check_prompts(prompts)


def test_save_load_round_trip_is_plain_json(tmp_path):
    tok = WordTokenizer.build(CAPTIONS, max_length=9, max_chars=200)
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    state = json.loads(path.read_text())
    assert state["vocab"] == tok.vocab and state["max_length"] == 9 and state["max_chars"] == 200
    back = WordTokenizer.load(path)
    prompts = ["a C#4 note at 97 BPM", "drum"]
    for a, b in zip(tok.encode(prompts), back.encode(prompts)):
        assert torch.equal(a, b)
    assert back.max_chars == 200


def test_load_rejects_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        WordTokenizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        WordTokenizer.load(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a wavefoundry-word-tokenizer"):
        WordTokenizer.load(bad)
    with pytest.raises(ValueError, match="must start with"):
        WordTokenizer(["a", "<pad>", "<unk>"])
    with pytest.raises(ValueError, match="duplicate"):
        WordTokenizer(["<pad>", "<unk>", "a", "a"])
