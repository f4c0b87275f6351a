"""A semantic first codebook: a character vocabulary, a weak CTC head over codebook 0, greedy decoding and CER.

The discrete audio LM (SODA, Manakul et al. 2026) reads one "semantic" codebook and several acoustic ones. Mimi
(Defossez et al. 2024, Moshi) makes its codebook 0 semantic by distilling WavLM features into it; we have no WavLM
offline, so our RVQ codec is trained with an auxiliary CTC loss (Graves et al. 2006) that makes codebook 0's
vectors predict the transcript's characters (``train/semantic_codec.py``, docs/semantic_tokens.md).

The head is deliberately weak: ``linear`` is a 1x1 convolution, so in the forward pass each frame's output is a
function of its code id alone (a per-code table of character logits) and the linguistic content has to live in
codebook 0 itself, not in a strong head that could read it from anywhere. ``conv`` widens that table to
``kernel_size`` neighbouring codes (still linear, no hidden layer).

Vocabulary ids: 0 = CTC blank, 1 = unknown-character fallback, 2.. = characters of the training transcripts.
Transcripts are NFKC-normalised, lower-cased and whitespace-collapsed first (:func:`normalize_transcript`).
"""

from __future__ import annotations

import itertools
import json
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavefoundry.config import atomic_write_bytes

BLANK, UNK = "<blank>", "<unk>"
BLANK_ID, UNK_ID = 0, 1
SPECIALS = (BLANK, UNK)
FORMAT = "wavefoundry-char-vocab"
VERSION = 1


def normalize_transcript(text: str) -> str:
    """NFKC-normalised, lower-cased text with every whitespace run made one space and the ends stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


class CharVocab:
    """Characters <-> ids for CTC targets; blank = 0, unknown = 1, then ``chars`` in order.

    Args:
        chars: distinct single characters (a string or a sequence of one-character strings), without the specials.
    """

    def __init__(self, chars: str | Sequence[str]) -> None:
        chars = list(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"vocabulary entries must be single characters, got {bad[:5]}")
        if len(set(chars)) != len(chars):
            dupes = sorted(c for c, n in Counter(chars).items() if n > 1)
            raise ValueError(f"vocabulary has duplicate characters: {dupes[:5]}")
        if not chars:
            raise ValueError("vocabulary is empty: build it from transcripts with at least one character")
        self.chars = "".join(chars)
        self.index = {c: i + len(SPECIALS) for i, c in enumerate(chars)}

    @classmethod
    def build(cls, transcripts: Iterable[str], *, min_count: int = 1, max_chars: int | None = None) -> CharVocab:
        """The characters of normalised ``transcripts``, most frequent first (ties alphabetical: deterministic).

        Args:
            transcripts: training transcripts (read once).
            min_count: characters seen fewer times map to the unknown id.
            max_chars: keep at most this many characters (None: all).
        """
        if min_count < 1 or (max_chars is not None and max_chars < 1):
            raise ValueError(f"min_count and max_chars must be >= 1, got {min_count}, {max_chars}")
        counts = Counter(c for text in transcripts for c in normalize_transcript(text))
        ranked = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
        return cls(ranked[:max_chars])

    @property
    def vocab_size(self) -> int:
        """Number of ids, blank and unknown included (the CTC head's output size)."""
        return len(self.chars) + len(SPECIALS)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        """Ids of the normalised ``text``; characters outside the vocabulary become ``UNK_ID``."""
        return [self.index.get(c, UNK_ID) for c in normalize_transcript(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``: blanks dropped, unknown ids shown as U+FFFD."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"id {i} out of range; valid ids are 0..{self.vocab_size - 1}")
            if i != BLANK_ID:
                out.append("\ufffd" if i == UNK_ID else self.chars[i - len(SPECIALS)])
        return "".join(out)

    def state(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "chars": self.chars}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CharVocab:
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (format={state.get('format') if isinstance(state, dict) else None})")
        if state.get("version") != VERSION:
            raise ValueError(f"{FORMAT} version {state.get('version')} is not supported (expected {VERSION})")
        if not isinstance(state.get("chars"), str):
            raise ValueError(f"{FORMAT}: 'chars' must be a string")
        return cls(state["chars"])

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as JSON (atomically); returns the path."""
        atomic_write_bytes(path, (json.dumps(self.state(), ensure_ascii=False, indent=1) + "\n").encode())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> CharVocab:
        try:
            return cls.from_state(json.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise FileNotFoundError(f"vocabulary file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


# --- CTC head ---------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class CTCHeadConfig:
    """The head over codebook 0: ``linear`` (1x1, per-code logits) or ``conv`` (one linear conv over
    ``kernel_size`` frames). Both are kept weak on purpose (module docstring)."""

    kind: Literal["linear", "conv"] = "linear"
    kernel_size: int = 3

    def __post_init__(self) -> None:
        if self.kind not in HEADS:
            raise ValueError(f"unknown ctc head kind {self.kind!r}; valid kinds: {', '.join(sorted(HEADS))}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"ctc head kernel_size must be odd and >= 1 (same-length output), got {self.kernel_size}")


def _linear_head(dim: int, vocab_size: int, cfg: CTCHeadConfig) -> nn.Module:
    return nn.Conv1d(dim, vocab_size, 1)


def _conv_head(dim: int, vocab_size: int, cfg: CTCHeadConfig) -> nn.Module:
    return nn.Conv1d(dim, vocab_size, cfg.kernel_size, padding=cfg.kernel_size // 2)


HEADS = {"linear": _linear_head, "conv": _conv_head}


class CTCHead(nn.Module):
    """Quantised codebook-0 vectors (B, D, T) -> CTC log-probabilities (T, B, V), float32.

    Args:
        cfg: head kind.
        dim: D, the RVQ width.
        vocab_size: V, blank and unknown included (:attr:`CharVocab.vocab_size`).
    """

    def __init__(self, cfg: CTCHeadConfig, *, dim: int, vocab_size: int) -> None:
        super().__init__()
        if dim < 1 or vocab_size < len(SPECIALS) + 1:
            raise ValueError(f"CTCHead needs dim >= 1 and vocab_size >= 3, got {dim}, {vocab_size}")
        self.cfg, self.dim, self.vocab_size = cfg, dim, vocab_size
        self.proj = HEADS[cfg.kind](dim, vocab_size, cfg)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[1] != self.dim:
            raise ValueError(f"CTCHead expects (B, {self.dim}, T), got {tuple(x.shape)}")
        logits = self.proj(x).float()  # (B, V, T); CTC in float32 also under bf16 autocast
        return logits.log_softmax(1).permute(2, 0, 1)  # (T, B, V), the layout F.ctc_loss takes


def frames_for_samples(n_samples: Tensor, hop: int) -> Tensor:
    """Codec frames that cover ``n_samples`` (the encoder zero-pads to a multiple of ``hop``): ceil(n / hop)."""
    return torch.div(n_samples + hop - 1, hop, rounding_mode="floor")


def min_ctc_frames(target: Sequence[int]) -> int:
    """Fewest frames a CTC alignment of ``target`` needs: one per label plus a blank between equal neighbours."""
    return len(target) + sum(a == b for a, b in itertools.pairwise(target))


def ctc_loss(
    log_probs: Tensor, targets: Tensor, input_lengths: Tensor, target_lengths: Tensor, *, zero_infinity: bool = False
) -> Tensor:
    """CTC negative log-likelihood per target character, averaged over the batch (``F.ctc_loss``, blank 0, "mean").

    Args:
        log_probs: (T, B, V) log-probabilities (:class:`CTCHead` output).
        targets: (B, S) ids padded with anything past ``target_lengths`` (blank never appears inside a target).
        input_lengths: (B,) valid frames per item, <= T.
        target_lengths: (B,) characters per item, <= S.
        zero_infinity: give infeasible items (too few frames) loss 0 instead of inf.
    """
    if log_probs.ndim != 3 or targets.ndim != 2 or targets.shape[0] != log_probs.shape[1]:
        raise ValueError(f"need log_probs (T, B, V) and targets (B, S), got {tuple(log_probs.shape)}, "
                         f"{tuple(targets.shape)}")  # fmt: skip
    T, B, _ = log_probs.shape
    if input_lengths.shape != (B,) or target_lengths.shape != (B,):
        raise ValueError(f"input_lengths and target_lengths must have shape ({B},)")
    if bool((input_lengths > T).any()) or bool((input_lengths < 1).any()):
        raise ValueError(f"input_lengths must be in 1..{T}, got {input_lengths.tolist()}")
    if bool((target_lengths > targets.shape[1]).any()) or bool((target_lengths < 0).any()):
        raise ValueError(f"target_lengths must be in 0..{targets.shape[1]}, got {target_lengths.tolist()}")
    valid = torch.arange(targets.shape[1], device=targets.device)[None] < target_lengths[:, None]  # (B, S)
    if bool((targets[valid] == BLANK_ID).any()):
        raise ValueError(f"targets contain the blank id {BLANK_ID}")
    return F.ctc_loss(
        log_probs.float(), targets.long(), input_lengths.long(), target_lengths.long(),
        blank=BLANK_ID, reduction="mean", zero_infinity=zero_infinity,
    )  # fmt: skip


def greedy_decode(log_probs: Tensor, input_lengths: Tensor | None = None) -> list[list[int]]:
    """Best-path CTC decoding: argmax per frame, merge repeats, drop blanks.

    Args:
        log_probs: (T, B, V).
        input_lengths: (B,) valid frames per item (None: all T).

    Returns:
        B lists of label ids.
    """
    T, B, _ = log_probs.shape
    best = log_probs.argmax(-1).t().cpu()  # (B, T)
    lengths = [T] * B if input_lengths is None else input_lengths.tolist()
    out = []
    for b in range(B):
        path = best[b, : lengths[b]]
        keep = torch.ones_like(path, dtype=torch.bool)
        keep[1:] = path[1:] != path[:-1]  # merge repeats before removing blanks: "a _ a" stays "aa"
        out.append([int(i) for i in path[keep & (path != BLANK_ID)]])
    return out


def edit_distance(hyp: Sequence, ref: Sequence) -> int:
    """Levenshtein distance (unit-cost substitutions, insertions, deletions) between two sequences."""
    prev = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        cur = [i]
        for j, r in enumerate(ref, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r)))
        prev = cur
    return prev[-1]


def char_error_rate(hyps: Sequence[Sequence], refs: Sequence[Sequence]) -> float:
    """Corpus CER: total edit distance over total reference length (strings or id lists; empty refs count 0 chars).

    Raises:
        ValueError: different numbers of hypotheses and references, or no reference characters at all while some
        hypothesis is non-empty (the rate is undefined; all-empty gives 0).
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    edits = sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True))
    total = sum(len(r) for r in refs)
    if total == 0:
        if edits:
            raise ValueError("the references have no characters: CER is undefined")
        return 0.0
    return edits / total
