"""A self-contained word-level tokenizer for text prompts, built from training captions and saved as JSON.

The offline default text encoder (:mod:`wavefoundry.conditioning.text`) needs no downloaded vocabulary: the
vocabulary is the most frequent tokens of the training captions. Text is NFKC-normalised and lower-cased, then
split by one regular expression into

* note names with a sharp: ``"C#4"`` -> ``c#``, ``4`` and ``"F#m"`` -> ``f#``, ``m``. The pitch class stays one
  token shared by notes, chords and keys ("C# minor", "C#4", "c#m7"); the octave and the chord quality are
  separate tokens. Flats read as words (``"Eb"`` -> ``eb``, ``"Bb3"`` -> ``bb``, ``3``).
* single digits: ``"97 BPM"`` -> ``9``, ``7``, ``bpm`` and ``"2.5 seconds"`` -> ``2``, ``.``, ``5``, ``seconds``.
  The ten digits are always in the vocabulary, so every number is representable (a word-level "97" would be
  ``<unk>`` for any tempo seen fewer than ``min_count`` times); the encoder reads place value from positions.
* words (unicode letters with inner apostrophes: ``don't``) and single punctuation characters (``-``, ``,``, ``:``).

Specials: ``<pad>`` = 0 (padding, masked out) and ``<unk>`` = 1. There is no BOS/EOS: the learned encoder has
learned positions and no pooled output. Prompts are bounded twice: more than ``max_chars`` characters (1000)
raises ``ValueError`` before any work, and more than ``max_length`` tokens are cut to ``max_length`` with a
logged warning (or a ``ValueError`` with ``strict=True``).
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wavefoundry.config import atomic_write_bytes

logger = logging.getLogger(__name__)

PAD, UNK = "<pad>", "<unk>"
SPECIALS = (PAD, UNK)
PAD_ID, UNK_ID = 0, 1
DIGITS = tuple("0123456789")
#: Default bounds: tokens per prompt (longer prompts are truncated) and characters per prompt (longer is an error).
MAX_LENGTH = 64
MAX_CHARS = 1000
FORMAT = "wavefoundry-word-tokenizer"
VERSION = 1

# Sharp note names first (only where a token starts: "ac#" is the word "ac" then "#"), then single digits,
# words of unicode letters with inner apostrophes, and any other non-space character on its own.
_TOKEN_RE = re.compile(r"[a-g]#|\d|[^\W\d_]+(?:'[^\W\d_]+)*|\S")
_ACCIDENTALS = str.maketrans({"♯": "#", "♭": "b"})


def normalize(text: str) -> str:
    """NFKC-normalised, lower-cased text with ``♯``/``♭`` spelled ``#``/``b``."""
    return unicodedata.normalize("NFKC", text).translate(_ACCIDENTALS).lower()


def split_words(text: str) -> list[str]:
    """The token strings of ``text``: ``"C#4 at 97 BPM"`` -> ``["c#", "4", "at", "9", "7", "bpm"]``."""
    return _TOKEN_RE.findall(normalize(text))


def check_prompts(prompts: Sequence[str], max_chars: int = MAX_CHARS) -> list[str]:
    """Validate a batch of prompts and return it as a list.

    Raises:
        TypeError: ``prompts`` is a bare string or holds a non-string.
        ValueError: an empty batch, an empty (or whitespace-only) prompt, or one longer than ``max_chars``.
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, not one string (wrap it: [prompt])")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts: pass at least one")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompt {i} is a {type(p).__name__}, not a string")
        if not p.strip():
            raise ValueError(f"prompt {i} is empty")
        if len(p) > max_chars:
            raise ValueError(f"prompt {i} has {len(p)} characters; at most {max_chars} are allowed")
    return prompts


class WordTokenizer:
    """Word-level tokenizer: token strings <-> ids, with padding and masks for batches.

    Args:
        vocab: id -> token; must start with ``<pad>``, ``<unk>`` and hold no duplicates.
        max_length: tokens kept per prompt (and the padded length).
        max_chars: longest prompt accepted, in characters.
    """

    def __init__(self, vocab: Sequence[str], *, max_length: int = MAX_LENGTH, max_chars: int = MAX_CHARS) -> None:
        vocab = list(vocab)
        if tuple(vocab[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocab must start with {list(SPECIALS)}, got {vocab[: len(SPECIALS)]}")
        if len(set(vocab)) != len(vocab):
            dupes = sorted(t for t, n in Counter(vocab).items() if n > 1)
            raise ValueError(f"vocab has duplicate tokens: {dupes[:5]}")
        if max_length < 1 or max_chars < 1:
            raise ValueError(f"max_length and max_chars must be >= 1, got {max_length}, {max_chars}")
        self.vocab = vocab
        self.index = {t: i for i, t in enumerate(vocab)}
        self.max_length = max_length
        self.max_chars = max_chars

    @classmethod
    def build(
        cls,
        captions: Iterable[str],
        *,
        min_count: int = 1,
        max_vocab: int = 4096,
        max_length: int = MAX_LENGTH,
        max_chars: int = MAX_CHARS,
    ) -> WordTokenizer:
        """A tokenizer whose vocabulary is the specials, the ten digits and the most frequent caption tokens.

        Ties in frequency are broken alphabetically, so the same captions always give the same ids.

        Args:
            captions: training prompts (any iterable; read once).
            min_count: tokens seen fewer times map to ``<unk>``.
            max_vocab: vocabulary size cap, specials and digits included.
            max_length: see the class.
            max_chars: see the class.

        Raises:
            ValueError: ``max_vocab`` too small for the specials and digits, or ``min_count`` < 1.
        """
        reserved = [*SPECIALS, *DIGITS]
        if max_vocab < len(reserved):
            raise ValueError(f"max_vocab must be >= {len(reserved)} (specials and digits), got {max_vocab}")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(tok for caption in captions for tok in split_words(caption))
        kept = (t for t, n in counts.items() if n >= min_count and t not in reserved)
        ranked = sorted(kept, key=lambda t: (-counts[t], t))
        return cls(reserved + ranked[: max_vocab - len(reserved)], max_length=max_length, max_chars=max_chars)

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included."""
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def tokenize(self, text: str) -> list[int]:
        """All ids of one prompt, untruncated (unknown tokens -> ``<unk>``)."""
        return [self.index.get(t, UNK_ID) for t in split_words(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Token strings joined by spaces, padding skipped (for inspection; spacing is not restored)."""
        return " ".join(self.vocab[i] for i in ids if i != PAD_ID)

    def encode(
        self, texts: Sequence[str], max_length: int | None = None, *, pad_to_max: bool = True, strict: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Ids and validity mask for a batch of prompts.

        Args:
            texts: B prompts, each non-empty and at most ``max_chars`` characters.
            max_length: tokens kept per prompt; defaults to the tokenizer's.
            pad_to_max: pad every row to ``max_length`` (fixed shapes, as Stable Audio Open); else to the longest.
            strict: raise instead of truncating a prompt longer than ``max_length`` tokens.

        Returns:
            ids (B, L) long, ``<pad>`` after each prompt's tokens, and mask (B, L) bool, True on real tokens.

        Raises:
            ValueError: see :func:`check_prompts`; with ``strict``, a prompt over ``max_length`` tokens.
        """
        texts = check_prompts(texts, self.max_chars)
        max_length = self.max_length if max_length is None else max_length
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        rows = [self.tokenize(t) for t in texts]
        long = [i for i, r in enumerate(rows) if len(r) > max_length]
        if long:
            what = f"prompts {long[:5]} have more than {max_length} tokens ({max(len(rows[i]) for i in long)} max)"
            if strict:
                raise ValueError(what)
            logger.warning("%s; keeping the first %d", what, max_length)
        rows = [r[:max_length] for r in rows]
        L = max_length if pad_to_max else max(1, *(len(r) for r in rows))
        ids = torch.full((len(rows), L), PAD_ID, dtype=torch.long)  # (B, L)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask = torch.arange(L)[None, :] < torch.tensor([len(r) for r in rows])[:, None]  # (B, L)
        return ids, mask

    def state(self) -> dict[str, Any]:
        """A JSON-able description (what :meth:`save` writes)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "max_length": self.max_length,
            "max_chars": self.max_chars,
            "vocab": list(self.vocab),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WordTokenizer:
        """The inverse of :meth:`state`.

        Raises:
            ValueError: another format or version, or missing fields.
        """
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (format={state.get('format') if isinstance(state, dict) else None})")
        if state.get("version") != VERSION:
            raise ValueError(f"{FORMAT} version {state.get('version')} is not supported (expected {VERSION})")
        missing = sorted({"vocab", "max_length", "max_chars"} - set(state))
        if missing:
            raise ValueError(f"{FORMAT}: missing fields {missing}")
        return cls(state["vocab"], max_length=int(state["max_length"]), max_chars=int(state["max_chars"]))

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON (atomically)."""
        atomic_write_bytes(path, (json.dumps(self.state(), ensure_ascii=False, indent=1) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        """Read a tokenizer written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not valid JSON, or not a tokenizer file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        try:
            return cls.from_state(state)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
