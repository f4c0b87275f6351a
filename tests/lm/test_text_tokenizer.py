"""Byte-level BPE text tokenizer: exact round trips, determinism, vocabulary bounds, files, bad input."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from wavefoundry.lm.text_tokenizer import BYTE_ALPHABET, TextTokenizer, train_bpe

SAMPLES = [
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein; Straße, Größe, Äpfel.",
    "¿Dónde está la estación? Mañana será otro día, señor.",
    "Não há mal que sempre dure, nem bem que nunca acabe; coração, ação.",
    "Tiếng Việt có dấu: Hà Nội, Đà Nẵng, Thành phố Hồ Chí Minh.",
    "Zażółć gęślą jaźń. Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Çok güzel bir gün; İstanbul'da ılık bir rüzgâr esiyor.",
    "Η γλώσσα μου έδωσαν ελληνική. Съешь же ещё этих мягких французских булок.",
    "日本語のテキストと中文文本，还有한국어 문장도 있습니다。",
    "العربية من اليمين إلى اليسار، हिन्दी देवनागरी में लिखी जाती है।",
    "emoji 🎵🎶 and flags 🇫🇷, combining e\u0301 vs \u00e9, zero width\u200bjoiner",
    "  leading spaces, tabs\tand\nnewlines\r\n  trailing  ",
]
CORPUS = [s for s in SAMPLES for _ in range(4)] + ["the sound of music " * 20, "a speech corpus, a speech model " * 10]


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    return train_bpe(CORPUS, 400)


@pytest.mark.parametrize("text", [*SAMPLES, "", " ", "\x00 control \x7f", "never seen: ₿ ꙮ 𓂀"])
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=80))
def test_round_trip_any_unicode(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_merges_compress_the_training_text(tok):
    text = "the sound of music " * 20
    assert len(tok.encode(text)) < len(text.encode("utf-8")) / 3  # merges learnt; bytes would be 1 id per byte


def test_same_corpus_same_vocabulary():
    a, b = train_bpe(CORPUS, 350), train_bpe(list(reversed(CORPUS)), 350)
    c = train_bpe(CORPUS, 350)
    assert a.tokenizer.to_str() == c.tokenizer.to_str()
    assert a.tokenizer.get_vocab() == b.tokenizer.get_vocab()  # order of texts does not matter either


@pytest.mark.parametrize("size", [BYTE_ALPHABET, 300, 333])
def test_vocab_size_respected(size):
    tok = train_bpe(CORPUS, size)
    assert tok.vocab_size == size  # the corpus has enough frequent pairs to fill it
    assert sorted(tok.tokenizer.get_vocab().values()) == list(range(size))
    assert tok.special_ids == {}  # text only: the LM layout adds its specials after these ids


def test_small_corpus_gives_smaller_vocab():
    tok = train_bpe(["abab abab"], 10_000, min_frequency=2)
    assert BYTE_ALPHABET < tok.vocab_size < 300


def test_save_and_load(tok, tmp_path):
    tok.save(tmp_path / "tokenizer.json")
    loaded = TextTokenizer.from_file(tmp_path / "tokenizer.json")
    assert loaded.vocab_size == tok.vocab_size
    for text in SAMPLES:
        assert loaded.encode(text) == tok.encode(text)


def _raw_byte_level() -> Tokenizer:
    """A byte-level BPE built with the tokenizers library alone (as a user or another project would)."""
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    return raw


def test_loads_a_file_written_by_tokenizers(tmp_path):
    raw = _raw_byte_level()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=320, show_progress=False, special_tokens=["<s>"], initial_alphabet=alphabet
    )
    raw.train_from_iterator(CORPUS, trainer)
    raw.save(str(tmp_path / "tokenizer.json"))
    reference = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    tok = TextTokenizer.from_file(tmp_path / "tokenizer.json")
    assert tok.vocab_size == reference.get_vocab_size(with_added_tokens=True)
    assert tok.special_ids == {"<s>": reference.token_to_id("<s>")}
    for text in SAMPLES:
        assert tok.encode(text) == reference.encode(text).ids
        assert tok.decode(tok.encode(text)) == reference.decode(reference.encode(text).ids) == text
    # user text never becomes a special id
    ids = tok.encode("hello <s> world")
    assert reference.token_to_id("<s>") not in ids and tok.decode(ids) == "hello <s> world"


def test_missing_or_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        TextTokenizer.from_file(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"not a valid tokenizer\.json"):
        TextTokenizer.from_file(tmp_path / "bad.json")
    (tmp_path / "wrong.json").write_text(json.dumps({"model": {"type": "Nope"}}))
    with pytest.raises(ValueError, match=r"not a valid tokenizer\.json"):
        TextTokenizer.from_file(tmp_path / "wrong.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match=r"not a valid tokenizer\.json"):
        TextTokenizer.from_file(tmp_path / "binary.json")


def test_rejects_a_vocabulary_without_all_bytes(tmp_path):
    raw = _raw_byte_level()  # trained without the byte alphabet: "<", "@", most accented bytes are missing
    raw.train_from_iterator(["hello world"] * 5, trainers.BpeTrainer(vocab_size=300, show_progress=False))
    assert raw.decode(raw.encode("<@>").ids) == ""  # why: such a tokenizer loses text silently
    raw.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match="byte symbols are missing"):
        TextTokenizer.from_file(tmp_path / "tokenizer.json")


def test_bounded_and_typed_input(tok):
    small = TextTokenizer(tok.tokenizer, max_chars=10)
    assert small.decode(small.encode("0123456789")) == "0123456789"
    with pytest.raises(ValueError, match="max_chars=10"):
        small.encode("01234567890")
    with pytest.raises(ValueError, match="max_chars=10"):
        small.decode([0] * 11)
    with pytest.raises(TypeError, match="must be a str"):
        tok.encode(b"bytes")
    with pytest.raises(ValueError, match=r"\[0, 400\)"):
        tok.decode([1, 400])
    with pytest.raises(ValueError, match=r"\[0, 400\)"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="integers"):
        tok.decode([1.5])


def test_bad_training_input():
    with pytest.raises(ValueError, match=">= 256"):
        train_bpe(CORPUS, 100)
    with pytest.raises(ValueError, match="non-empty"):
        train_bpe(["", ""], 300)
    with pytest.raises(ValueError, match=r"texts\[1\].*max_chars=5"):
        train_bpe(["abc", "abcdef"], 300, max_chars=5)
    with pytest.raises(TypeError, match=r"texts\[0\] must be a str"):
        train_bpe([3], 300)
    with pytest.raises(ValueError, match="min_frequency"):
        train_bpe(CORPUS, 300, min_frequency=0)
