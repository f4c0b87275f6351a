"""Token layout of a SODA-style discrete audio LM: one vocabulary, documents, prompts and their exact parsing.

Every task is next-token prediction over one vocabulary (SODA, Manakul et al. 2026, arXiv 2602.16687):

    [0, text_vocab_size)                       text ids (a text tokenizer's vocabulary, its own specials included)
    text_vocab_size + 0 .. 3                   <|text_start|>, <|text_end|>, <|audio_start|>, <|audio_end|>
    audio_offset + j * codebook_size + code    audio ids; j = slot of the codebook among the *selected* codebooks

Audio codes (K, T) enter a sequence frame by frame (all selected codebooks of frame 0, then frame 1, ...), inside
``<|audio_start|> ... <|audio_end|>``; text sits inside ``<|text_start|> ... <|text_end|>``. A document is a list of
such blocks, optionally wrapped in the text tokenizer's BOS/EOS. :func:`parse_sequence` is the exact inverse of
:func:`build_document`. Task prompts, the fine-tune format and sampler masks live in ``lm/prompts.py``, packing
documents into training rows in ``lm/packing.py``. See docs/lm_sequences.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

TEXT_START, TEXT_END, AUDIO_START, AUDIO_END = "<|text_start|>", "<|text_end|>", "<|audio_start|>", "<|audio_end|>"
#: The four specials, in id order right after the text ids.
SPECIAL_TOKENS = (TEXT_START, TEXT_END, AUDIO_START, AUDIO_END)
SegmentKind = Literal["text", "audio"]


@dataclass(kw_only=True)
class TokenLayout:
    """Where text, special and audio ids sit in the vocabulary.

    ``codebooks`` selects which codec codebooks enter sequences, in increasing order: None = all,
    ``(0,)`` = semantic-only, ``(1, ..., K-1)`` = acoustic-only. Audio ids are numbered by the codebook's *slot* j in
    this selection (a compact vocabulary of ``len(codebooks) * codebook_size`` audio ids); with all codebooks the
    slot is the codebook index, so SODA's ``audio_offset + codebook * codebook_size + code`` holds exactly.
    ``bos_id``/``eos_id`` (text ids, e.g. Llama-3's 128000/128001) wrap every document when set. ``pad_id`` (any id)
    fills the last packed row; None drops an incomplete last row instead.
    """

    text_vocab_size: int
    n_codebooks: int
    codebook_size: int
    codebooks: tuple[int, ...] | None = None
    bos_id: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None

    def __post_init__(self) -> None:
        for name in ("text_vocab_size", "n_codebooks", "codebook_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"layout.{name} must be >= 1, got {getattr(self, name)}")
        if self.codebooks is not None:
            self.codebooks = tuple(self.codebooks)
            ok = all(0 <= c < self.n_codebooks for c in self.codebooks)
            if not self.codebooks or not ok or list(self.codebooks) != sorted(set(self.codebooks)):
                raise ValueError(
                    f"layout.codebooks must be distinct increasing codebook indices in 0..{self.n_codebooks - 1}, "
                    f"got {self.codebooks}"
                )
        for name in ("bos_id", "eos_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.text_vocab_size:
                raise ValueError(f"layout.{name} must be a text id in 0..{self.text_vocab_size - 1}, got {value}")
        if self.pad_id is not None and not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"layout.pad_id must be an id in 0..{self.vocab_size - 1}, got {self.pad_id}")

    @property
    def selected(self) -> tuple[int, ...]:
        """The codec codebooks that enter sequences, in slot order."""
        return tuple(range(self.n_codebooks)) if self.codebooks is None else self.codebooks

    @property
    def n_selected(self) -> int:
        """K' = ids per audio frame."""
        return len(self.selected)

    @property
    def text_start(self) -> int:
        return self.text_vocab_size

    @property
    def text_end(self) -> int:
        return self.text_vocab_size + 1

    @property
    def audio_start(self) -> int:
        return self.text_vocab_size + 2

    @property
    def audio_end(self) -> int:
        return self.text_vocab_size + 3

    @property
    def audio_offset(self) -> int:
        """The first audio id (slot 0, code 0)."""
        return self.text_vocab_size + len(SPECIAL_TOKENS)

    @property
    def audio_vocab_size(self) -> int:
        return self.n_selected * self.codebook_size

    @property
    def vocab_size(self) -> int:
        """V = text ids + 4 specials + K' * codebook_size audio ids."""
        return self.audio_offset + self.audio_vocab_size

    def special_ids(self) -> dict[str, int]:
        """Special token string -> id."""
        return {name: self.text_vocab_size + i for i, name in enumerate(SPECIAL_TOKENS)}


def soda_layout(codebooks: tuple[int, ...] | None = None) -> TokenLayout:
    """SODA's released layout: Llama-3 text (128,256) + 4 specials + Mimi 8 x 2048 audio ids = 144,644.

    Specials at 128256..128259, audio from 128260, BOS/EOS = Llama-3's 128000/128001 (from SODA's experiment log
    and Marin's SODA id constants; an assumption until checked against the tokenizer file, see docs/lm_sequences.md).
    ``codebooks`` picks a token composition (e.g. ``(0,)`` semantic-only); it changes the vocabulary size.
    """
    return TokenLayout(
        text_vocab_size=128_256, n_codebooks=8, codebook_size=2048, codebooks=codebooks, bos_id=128_000, eos_id=128_001
    )


# --- audio codes <-> ids ----------------------------------------------------------------------------------------


def _as_long(x: Tensor | Sequence[int], ndim: int, name: str) -> Tensor:
    t = torch.as_tensor(x)
    if not isinstance(x, Tensor) and not t.numel():
        t = t.to(torch.long)  # an empty list comes out float32
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise ValueError(f"{name} must hold integers, got {t.dtype}")
    if t.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    return t.to(torch.long)


def _selected_codes(layout: TokenLayout, codes: Tensor | Sequence[Sequence[int]]) -> Tensor:
    """Check codes and return the selected codebooks (K', T): accepts all K codec codebooks or just the K'."""
    codes = _as_long(codes, 2, "codes")
    k = codes.shape[0]
    if k == layout.n_codebooks:
        codes = codes[list(layout.selected)]
    elif k != layout.n_selected:
        raise ValueError(f"codes have {k} codebooks; expected {layout.n_codebooks} (all) or {layout.n_selected}")
    bad = ((codes < 0) | (codes >= layout.codebook_size)).nonzero()
    if len(bad):
        slot, frame = (int(v) for v in bad[0])
        raise ValueError(
            f"code {int(codes[slot, frame])} at codebook {layout.selected[slot]}, frame {frame} is out of range "
            f"0..{layout.codebook_size - 1}"
        )
    return codes


def codes_to_ids(layout: TokenLayout, codes: Tensor | Sequence[Sequence[int]]) -> Tensor:
    """Flatten audio codes frame by frame into audio ids.

    Args:
        layout: the token layout.
        codes: (K, T) codes of all codec codebooks (the unselected ones are dropped) or (K', T) of the selected ones.

    Returns:
        (T * K',) int64: ``audio_offset + j * codebook_size + codes[j, t]`` at position ``t * K' + j``.
    """
    codes = _selected_codes(layout, codes)
    slots = torch.arange(codes.shape[0])[:, None] * layout.codebook_size  # (K', 1)
    return (codes + slots + layout.audio_offset).T.reshape(-1)  # (K', T) -> (T, K') -> (T * K',)


def ids_to_codes(layout: TokenLayout, ids: Tensor | Sequence[int], *, start: int = 0) -> Tensor:
    """Exact inverse of :func:`codes_to_ids`.

    Args:
        layout: the token layout.
        ids: (T * K',) audio ids, frame-major.
        start: position of ``ids[0]`` in the enclosing sequence (for error messages).

    Returns:
        (K', T) int64 codes of the selected codebooks.

    Raises:
        ValueError: a length that is not a multiple of K', or an id that is not an audio id of its slot's codebook.
    """
    ids = _as_long(ids, 1, "audio ids")
    k = layout.n_selected
    if len(ids) % k:
        raise ValueError(f"{len(ids)} audio ids from position {start} are not a multiple of {k} codebooks")
    rel = ids - layout.audio_offset
    slot = rel.div(layout.codebook_size, rounding_mode="floor")
    expected = torch.arange(len(ids)) % k
    bad = ((rel < 0) | (slot != expected)).nonzero()
    if len(bad):
        i = int(bad[0])
        if not 0 <= int(rel[i]) < layout.audio_vocab_size:
            raise ValueError(
                f"id {int(ids[i])} at position {start + i} is not an audio id "
                f"({layout.audio_offset}..{layout.vocab_size - 1})"
            )
        raise ValueError(
            f"id {int(ids[i])} at position {start + i} belongs to codebook {layout.selected[int(slot[i])]}, "
            f"expected codebook {layout.selected[int(expected[i])]} (slot {int(expected[i])} of its frame)"
        )
    return (rel - slot * layout.codebook_size).view(-1, k).T.contiguous()  # (T, K') -> (K', T)


# --- segments and documents -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Segment:
    """One block of a sequence: ``kind="text"`` with text ids (L,), or ``kind="audio"`` with codes (K', T)."""

    kind: SegmentKind
    tokens: Tensor

    def __post_init__(self) -> None:
        ndim = {"text": 1, "audio": 2}
        if self.kind not in ndim:
            raise ValueError(f"unknown segment kind {self.kind!r}; valid: {', '.join(ndim)}")
        object.__setattr__(self, "tokens", _as_long(self.tokens, ndim[self.kind], f"{self.kind} segment tokens"))

    def equals(self, other: Segment) -> bool:
        """Same kind and identical tokens."""
        return self.kind == other.kind and torch.equal(self.tokens, other.tokens)


@dataclass(frozen=True, eq=False)
class Utterance:
    """A transcript and its audio: text ids (L,) and codes (K, T) or (K', T)."""

    text: Tensor | Sequence[int]
    codes: Tensor | Sequence[Sequence[int]]


def _check_text(layout: TokenLayout, text: Tensor | Sequence[int]) -> Tensor:
    text = _as_long(text, 1, "text ids")
    bad = ((text < 0) | (text >= layout.text_vocab_size)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"text id {int(text[i])} at index {i} is out of range 0..{layout.text_vocab_size - 1}")
    return text


def _ids(*parts: int | Tensor) -> Tensor:
    pieces = [p.view(-1) if isinstance(p, Tensor) else torch.tensor([p]) for p in parts]
    return torch.cat([torch.empty(0, dtype=torch.long), *pieces]).to(torch.long)


def text_block(layout: TokenLayout, text: Tensor | Sequence[int]) -> Tensor:
    """``<|text_start|> T <|text_end|>`` as (L + 2,) int64."""
    return _ids(layout.text_start, _check_text(layout, text), layout.text_end)


def audio_block(layout: TokenLayout, codes: Tensor | Sequence[Sequence[int]]) -> Tensor:
    """``<|audio_start|> A <|audio_end|>`` as (T * K' + 2,) int64; codes (K, T) or (K', T)."""
    return _ids(layout.audio_start, codes_to_ids(layout, codes), layout.audio_end)


def block(layout: TokenLayout, segment: Segment) -> Tensor:
    """The delimited block of one segment (:func:`text_block` or :func:`audio_block`)."""
    return text_block(layout, segment.tokens) if segment.kind == "text" else audio_block(layout, segment.tokens)


def wrap_document(layout: TokenLayout, body: Tensor, *, eos: bool = True) -> Tensor:
    """``[BOS] body [EOS]`` with the layout's BOS/EOS where set (``eos=False`` for prompts); (L,) int64."""
    head = [] if layout.bos_id is None else [layout.bos_id]
    tail = [] if layout.eos_id is None or not eos else [layout.eos_id]
    return _ids(*head, body, *tail)


def build_document(layout: TokenLayout, segments: Iterable[Segment]) -> Tensor:
    """Blocks in order, wrapped in BOS/EOS when the layout has them; (L,) int64. Inverse: :func:`parse_sequence`."""
    return wrap_document(layout, _ids(*(block(layout, s) for s in segments)))


def _text_first(u: Utterance) -> list[Segment]:
    return [Segment(kind="text", tokens=u.text), Segment(kind="audio", tokens=u.codes)]


def _audio_first(u: Utterance) -> list[Segment]:
    return [Segment(kind="audio", tokens=u.codes), Segment(kind="text", tokens=u.text)]


ORDERS = {"text_first": _text_first, "audio_first": _audio_first}


def interleave(utterances: Iterable[Utterance], order: str = "text_first") -> list[Segment]:
    """Utterance-level interleaving (SODA): each utterance's text and audio blocks in ``order``, utterance by
    utterance (several utterances of one speaker or recording make one document)."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; valid: {', '.join(ORDERS)}")
    return [segment for u in utterances for segment in ORDERS[order](u)]


def utterance_document(layout: TokenLayout, utterances: Iterable[Utterance], order: str = "text_first") -> Tensor:
    """One interleaved document from utterances; e.g. text-first ``<|text_start|> T <|text_end|> <|audio_start|> A
    <|audio_end|>`` per utterance."""
    return build_document(layout, interleave(utterances, order))


def text_document(layout: TokenLayout, text: Tensor | Sequence[int]) -> Tensor:
    """A text-only document ``<|text_start|> T <|text_end|>`` (BOS/EOS when set)."""
    return build_document(layout, [Segment(kind="text", tokens=text)])


def audio_document(layout: TokenLayout, codes: Tensor | Sequence[Sequence[int]]) -> Tensor:
    """An audio-only document ``<|audio_start|> A <|audio_end|>`` (BOS/EOS when set)."""
    return build_document(layout, [Segment(kind="audio", tokens=codes)])


# --- parsing ----------------------------------------------------------------------------------------------------

#: special -> (block kind, opens the block)
_MARKERS = {
    TEXT_START: ("text", True),
    TEXT_END: ("text", False),
    AUDIO_START: ("audio", True),
    AUDIO_END: ("audio", False),
}
_A = {"text": "a text", "audio": "an audio"}


def describe_id(layout: TokenLayout, token: int) -> str:
    """A short name for an id in error messages: ``text id 5``, ``<|audio_end|>``, ``audio id 300``."""
    if token < layout.text_vocab_size:
        return f"text id {token}"
    if token < layout.audio_offset:
        return SPECIAL_TOKENS[token - layout.text_vocab_size]
    return f"audio id {token}"


def check_ids(layout: TokenLayout, ids: Tensor | Sequence[int]) -> Tensor:
    """Return ids as (L,) int64, raising ``ValueError`` naming the first id outside the vocabulary and its position."""
    ids = _as_long(ids, 1, "ids")
    bad = ((ids < 0) | (ids >= layout.vocab_size)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"id {int(ids[i])} at position {i} is outside the vocabulary 0..{layout.vocab_size - 1}")
    return ids


def _body_range(layout: TokenLayout, ids: Tensor) -> tuple[int, int]:
    """[lo, hi) of the blocks: without a leading BOS and a trailing EOS."""
    lo, hi = 0, len(ids)
    if layout.bos_id is not None and hi > 0 and int(ids[0]) == layout.bos_id:
        lo = 1
    if layout.eos_id is not None and hi > lo and int(ids[-1]) == layout.eos_id:
        hi -= 1
    return lo, hi


def _segment(layout: TokenLayout, ids: Tensor, kind: str, lo: int, hi: int) -> Segment:
    """The block whose content is ids[lo:hi] (its delimiters at lo - 1 and hi)."""
    content = ids[lo:hi]
    wrong = content >= layout.audio_offset if kind == "text" else content < layout.text_vocab_size
    first = wrong.nonzero()
    if len(first):
        i = lo + int(first[0])
        what = describe_id(layout, int(ids[i]))
        raise ValueError(f"{what} at position {i} inside {_A[kind]} block opened at {lo - 1}")
    if kind == "text":
        return Segment(kind="text", tokens=content.clone())
    return Segment(kind="audio", tokens=ids_to_codes(layout, content, start=lo))


def parse_sequence(layout: TokenLayout, ids: Tensor | Sequence[int]) -> list[Segment]:
    """Split one document into its blocks: the exact inverse of :func:`build_document`.

    A leading BOS and a trailing EOS (when the layout has them) are skipped; everything else must be blocks.

    Args:
        layout: the token layout.
        ids: (L,) ids of one document.

    Returns:
        Segments in order: text ids (L_i,) or audio codes (K', T_i).

    Raises:
        ValueError: naming the position, for unbalanced or nested delimiters, an audio id in a text block, a text id
            in an audio block, a misplaced audio id (wrong codebook slot, partial frame), an id outside the vocabulary
            or outside any block.
    """
    ids = check_ids(layout, ids)
    lo, hi = _body_range(layout, ids)
    special = (ids[lo:hi] >= layout.text_start) & (ids[lo:hi] <= layout.audio_end)
    segments: list[Segment] = []
    open_kind, open_at, pos = None, -1, lo
    for p in (special.nonzero().view(-1) + lo).tolist():
        name = SPECIAL_TOKENS[int(ids[p]) - layout.text_vocab_size]
        kind, opens = _MARKERS[name]
        if open_kind is None and not opens:
            raise ValueError(f"{name} at position {p} with no open {kind} block")
        if open_kind is None:
            if p > pos:
                raise ValueError(f"{describe_id(layout, int(ids[pos]))} at position {pos} outside any block")
            open_kind, open_at = kind, p
        elif opens:
            raise ValueError(f"{name} at position {p} inside {_A[open_kind]} block opened at {open_at}")
        elif kind != open_kind:
            raise ValueError(f"{name} at position {p} closes {_A[open_kind]} block opened at {open_at}")
        else:
            segments.append(_segment(layout, ids, kind, open_at + 1, p))
            open_kind, pos = None, p + 1
    if open_kind is not None:
        raise ValueError(f"{open_kind} block opened at position {open_at} is not closed")
    if pos < hi:
        raise ValueError(f"{describe_id(layout, int(ids[pos]))} at position {pos} outside any block")
    return segments
