"""Byte-level BPE text tokenizer over HF ``tokenizers``: train on a corpus, save/load ``tokenizer.json``, encode/decode.

BPE (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword Units") over UTF-8 bytes mapped to
printable characters (GPT-2, Radford et al. 2019): the 256 byte symbols are always in the vocabulary, so every string
encodes without an unknown token and ``decode(encode(s)) == s`` exactly (no normaliser, no added prefix space).
A trained vocabulary holds text only; the LM token layout (``lm/sequences.py``) puts its specials after it.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from wavefoundry.config import atomic_write_bytes

#: Longest text that :meth:`TextTokenizer.encode` (and each training text) accepts, in characters.
MAX_CHARS = 1_000_000
#: Largest ``tokenizer.json`` that :meth:`TextTokenizer.from_file` reads (large multilingual ones are ~10-30 MB).
MAX_FILE_BYTES = 256 * 1024 * 1024
BYTE_ALPHABET = 256


class TextTokenizer:
    """Text <-> ids with a ``tokenizers.Tokenizer``; input is bounded to ``max_chars`` characters.

    Special tokens that a loaded ``tokenizer.json`` declares (e.g. BOS/EOS) keep their ids (:attr:`special_ids`), but
    :meth:`encode` never produces them from text: ``"<|endoftext|>"`` in user text is encoded as ordinary characters.
    """

    def __init__(self, tokenizer: Tokenizer, *, max_chars: int = MAX_CHARS) -> None:
        if max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {max_chars}")
        self.tokenizer = tokenizer
        self.tokenizer.encode_special_tokens = True  # text never turns into a special id
        self.max_chars = max_chars

    @classmethod
    def from_file(cls, path: str | Path, *, max_chars: int = MAX_CHARS) -> TextTokenizer:
        """Load a local byte-level BPE ``tokenizer.json`` (written by :meth:`save` or ``tokenizers.Tokenizer.save``).

        The vocabulary must hold the 256 byte symbols (GPT-2, Llama-3 and Qwen tokenizers do), else ValueError.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{path}: {size} bytes is larger than the {MAX_FILE_BYTES}-byte limit for tokenizer.json")
        try:
            tokenizer = Tokenizer.from_str(path.read_bytes().decode("utf-8"))
        except Exception as exc:  # tokenizers raises a bare Exception for malformed JSON or an unknown model
            raise ValueError(f"{path}: not a valid tokenizer.json ({exc})") from None
        vocab = tokenizer.get_vocab(with_added_tokens=False)
        missing = [c for c in pre_tokenizers.ByteLevel.alphabet() if c not in vocab]
        if missing:  # BPE without an unknown token drops such bytes silently: the round trip would not hold
            raise ValueError(
                f"{path}: not a byte-level BPE tokenizer ({len(missing)} of the {BYTE_ALPHABET} byte symbols are "
                "missing from its vocabulary, so text with those bytes would be lost)"
            )
        return cls(tokenizer, max_chars=max_chars)

    def save(self, path: str | Path) -> None:
        """Write ``tokenizer.json`` atomically (the ``tokenizers`` library's own format)."""
        atomic_write_bytes(path, self.tokenizer.to_str(pretty=True).encode("utf-8"))

    @property
    def vocab_size(self) -> int:
        """Number of text ids: ids are in ``[0, vocab_size)`` (added special tokens included)."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> dict[str, int]:
        """Special tokens declared by the file, ``{token: id}``; empty for a tokenizer made by :func:`train_bpe`."""
        return {tok.content: i for i, tok in self.tokenizer.get_added_tokens_decoder().items() if tok.special}

    def encode(self, text: str) -> list[int]:
        """Text ids of ``text`` (no BOS/EOS: the LM layout adds its own delimiters)."""
        _check_text(text, self.max_chars, "text")
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``; a slice that cuts a UTF-8 character decodes it as U+FFFD."""
        if len(ids) > self.max_chars:
            raise ValueError(f"{len(ids)} ids is more than max_chars={self.max_chars}")
        try:
            ids = [operator.index(i) for i in ids]  # ints, numpy or 0-d torch integers; never floats
        except TypeError:
            raise TypeError("text ids must be integers") from None
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"text ids must be ints in [0, {self.vocab_size}), got {bad[:5]}")
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def _check_text(text: object, max_chars: int, what: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")
    if len(text) > max_chars:
        raise ValueError(f"{what} has {len(text)} characters, more than max_chars={max_chars}")


def _checked(texts: Iterable[str], max_chars: int, seen: list[int]) -> Iterator[str]:
    for i, text in enumerate(texts):
        _check_text(text, max_chars, f"texts[{i}]")
        seen[0] += len(text)
        yield text


def byte_level_bpe() -> Tokenizer:
    """An untrained byte-level BPE ``Tokenizer`` (GPT-2 pre-tokenisation regex, no prefix space, no normaliser)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_bpe(
    texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2, max_chars: int = MAX_CHARS
) -> TextTokenizer:
    """Train a byte-level BPE tokenizer with at most ``vocab_size`` ids (256 byte symbols + merges), no specials.

    Merges stop at ``vocab_size`` or when no pair occurs ``min_frequency`` times, so a small corpus gives a smaller
    vocabulary. The same corpus gives the same vocabulary and merges.
    """
    if vocab_size < BYTE_ALPHABET:
        raise ValueError(f"vocab_size must be >= {BYTE_ALPHABET} (the byte alphabet), got {vocab_size}")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    tokenizer = byte_level_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    chars = [0]
    tokenizer.train_from_iterator(_checked(texts, max_chars, chars), trainer)
    if chars[0] == 0:
        raise ValueError("train_bpe needs at least one non-empty text")
    return TextTokenizer(tokenizer, max_chars=max_chars)
