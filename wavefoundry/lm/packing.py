"""Packing documents into fixed-length training rows, and mixing document sources by a target ratio.

Documents (id tensors from ``lm/sequences.py`` and ``lm/prompts.py``) are concatenated in stream order and cut into
rows of ``seq_len`` tokens, as Levanter/Marin pack pretraining data for SODA (Manakul et al. 2026): a document may
cross a row boundary (nothing is dropped or padded in between), and per-token document ids, positions within the
document and the loss mask travel with the tokens. The last, incomplete row is padded with ``pad_id`` (loss mask
False, document id -1) or dropped when ``pad_id`` is None. See docs/lm_sequences.md.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Document:
    """One training document.

    Attributes:
        ids: (L,) int64 token ids, L >= 1.
        loss_mask: (L,) bool, True where ids[i] is a training target; None means every token (pretraining).
        kind: the source it came from (e.g. "speech", "text"); used for mixture statistics.
    """

    ids: Tensor
    loss_mask: Tensor | None = None
    kind: str = "document"

    def __post_init__(self) -> None:
        ids = torch.as_tensor(self.ids)
        if ids.ndim != 1 or not len(ids) or ids.is_floating_point() or ids.dtype == torch.bool:
            raise ValueError(f"document ids must be a non-empty 1-D integer tensor, got {ids.dtype} {tuple(ids.shape)}")
        object.__setattr__(self, "ids", ids.to(torch.long))
        if self.loss_mask is not None:
            mask = torch.as_tensor(self.loss_mask)
            if mask.dtype != torch.bool or mask.shape != ids.shape:
                raise ValueError(f"loss_mask must be bool {tuple(ids.shape)}, got {mask.dtype} {tuple(mask.shape)}")
            object.__setattr__(self, "loss_mask", mask)

    def mask(self) -> Tensor:
        """(L,) bool loss mask (all True when none was given)."""
        return torch.ones(len(self.ids), dtype=torch.bool) if self.loss_mask is None else self.loss_mask


def as_document(doc: Document | Tensor, kind: str | None = None) -> Document:
    """A ``Document`` from a document or a plain (L,) id tensor; ``kind`` overrides the document's kind."""
    if not isinstance(doc, Document):
        return Document(ids=doc, kind=kind or "document")
    return doc if kind is None or kind == doc.kind else Document(ids=doc.ids, loss_mask=doc.loss_mask, kind=kind)


# --- mixing -----------------------------------------------------------------------------------------------------

#: What a mixture ratio counts: each document's share of tokens, or documents.
MIX_UNITS = {"tokens": lambda doc: len(doc.ids), "documents": lambda doc: 1}


def mix_documents(
    sources: Mapping[str, Iterable[Document | Tensor]],
    weights: Mapping[str, float],
    *,
    seed: int,
    unit: str = "tokens",
) -> Iterator[Document]:
    """Interleave document sources at random so each gets its weight's share of the stream (seeded, deterministic).

    Each step draws a source s with probability proportional to ``w_s / c_s``, where ``c_s`` is the running mean
    cost of s's documents seen so far (tokens per document for ``unit="tokens"``, 1 for "documents"), so the expected
    share of tokens (or documents) of s is ``w_s / sum(w)``. The stream stops the first time it needs a document from
    an exhausted source, so the ratio never drifts; pass repeating iterables for several epochs.

    Args:
        sources: name -> documents (``Document`` or (L,) id tensors); each output's ``kind`` is its source's name.
        weights: name -> non-negative weight, same names as ``sources``; e.g. ``{"speech": 0.8, "text": 0.2}``.
        seed: seeds the draw (numpy ``default_rng``).
        unit: "tokens" or "documents".
    """
    if unit not in MIX_UNITS:
        raise ValueError(f"unknown mix unit {unit!r}; valid: {', '.join(MIX_UNITS)}")
    if set(weights) != set(sources):
        raise ValueError(f"weights name {sorted(weights)} but sources are {sorted(sources)}")
    if any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {dict(weights)}")
    return _mix(sources, weights, np.random.default_rng(seed), MIX_UNITS[unit])


def _mix(
    sources: Mapping[str, Iterable[Document | Tensor]],
    weights: Mapping[str, float],
    rng: np.random.Generator,
    cost: Callable[[Document], int],
) -> Iterator[Document]:
    names = [name for name in sources if weights[name] > 0]
    its = {name: iter(sources[name]) for name in names}
    w = np.array([weights[name] for name in names], dtype=np.float64)
    total, count = np.zeros(len(names)), np.zeros(len(names))  # cost and number of documents pulled per source

    def pull(i: int) -> Document | None:
        doc = next(its[names[i]], None)
        if doc is not None:
            doc = as_document(doc, names[i])
            total[i] += cost(doc)
            count[i] += 1
        return doc

    pending = [pull(i) for i in range(len(names))]
    while True:
        mean = np.where(count > 0, total / np.maximum(count, 1), 1.0)
        p = w / mean
        i = int(rng.choice(len(names), p=p / p.sum()))
        if pending[i] is None:
            return
        yield pending[i]
        pending[i] = pull(i)


# --- packing ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PackedRows:
    """Fixed-length training rows.

    Attributes:
        ids: (N, L) int64 tokens.
        loss_mask: (N, L) bool, True where ids is a training target (False on padding).
        document_ids: (N, L) int64 index of each token's document in the packed stream (-1 on padding).
        positions: (N, L) int64 position of each token within its document (counting across rows; 0 on padding).
        kinds: document id -> kind, for the documents present in these rows.
    """

    ids: Tensor
    loss_mask: Tensor
    document_ids: Tensor
    positions: Tensor
    kinds: dict[int, str]

    @staticmethod
    def cat(rows: Iterable[PackedRows]) -> PackedRows:
        """Stack rows along N."""
        rows = list(rows)
        if not rows:
            raise ValueError("no rows to stack")
        fields = ("ids", "loss_mask", "document_ids", "positions")
        stacked = {f: torch.cat([getattr(r, f) for r in rows]) for f in fields}
        return PackedRows(**stacked, kinds={k: v for r in rows for k, v in r.kinds.items()})


def _row(ids: Tensor, mask: Tensor, doc: Tensor, pos: Tensor, kinds: dict[int, str]) -> PackedRows:
    present = {k: kinds[k] for k in doc.unique().tolist() if k >= 0}
    return PackedRows(ids=ids[None], loss_mask=mask[None], document_ids=doc[None], positions=pos[None], kinds=present)


def iter_packed_rows(
    documents: Iterable[Document | Tensor], *, seq_len: int, pad_id: int | None = None
) -> Iterator[PackedRows]:
    """Concatenate documents and yield (1, seq_len) rows lazily (documents cross row boundaries).

    Args:
        documents: ``Document`` or (L,) id tensors, in stream order.
        seq_len: L, tokens per row.
        pad_id: pads the last incomplete row; None drops it.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
    kinds: dict[int, str] = {}
    filled = 0
    for doc_id, doc in enumerate(documents):
        doc = as_document(doc)
        n = len(doc.ids)
        kinds[doc_id] = doc.kind
        parts.append((doc.ids, doc.mask(), torch.full((n,), doc_id), torch.arange(n)))
        filled += n
        if filled < seq_len:
            continue
        ids, mask, docs, pos = (torch.cat(t) for t in zip(*parts))
        n_full = filled // seq_len
        for r in range(n_full):
            cut = slice(r * seq_len, (r + 1) * seq_len)
            yield _row(ids[cut], mask[cut], docs[cut], pos[cut], kinds)
        rest = slice(n_full * seq_len, None)
        parts, filled = [(ids[rest], mask[rest], docs[rest], pos[rest])], filled - n_full * seq_len
        kinds = {doc_id: doc.kind}  # the rest (< seq_len tokens) lies within this last document
    if filled and pad_id is None:
        logger.debug("dropped the last %d tokens (an incomplete row, no pad_id)", filled)
    elif filled:
        pad = seq_len - filled
        parts.append((torch.full((pad,), pad_id), torch.zeros(pad, dtype=torch.bool), torch.full((pad,), -1),
                      torch.zeros(pad, dtype=torch.long)))  # fmt: skip
        yield _row(*(torch.cat(t) for t in zip(*parts)), kinds)


def pack_documents(
    documents: Iterable[Document | Tensor], *, seq_len: int, n_rows: int | None = None, pad_id: int | None = None
) -> PackedRows:
    """The first ``n_rows`` rows (all when None) of :func:`iter_packed_rows`, stacked: (N, seq_len) each."""
    rows = iter_packed_rows(documents, seq_len=seq_len, pad_id=pad_id)
    out = list(rows if n_rows is None else itertools.islice(rows, n_rows))
    if not out:
        raise ValueError(f"the documents hold fewer than seq_len={seq_len} tokens and no pad_id was given")
    return PackedRows.cat(out)


def next_token_targets(packed: PackedRows) -> tuple[Tensor, Tensor, Tensor]:
    """Shifted next-token training targets of packed rows.

    Position i predicts ids[i + 1]; a target counts when its loss mask is True and it belongs to the same document as
    its input (so no document is predicted from the end of the previous one, and padding never counts).

    Returns:
        inputs (N, L-1), labels (N, L-1) int64 and mask (N, L-1) bool.
    """
    same_doc = packed.document_ids[:, 1:] == packed.document_ids[:, :-1]
    return packed.ids[:, :-1], packed.ids[:, 1:], packed.loss_mask[:, 1:] & same_doc


def token_shares(packed: PackedRows) -> dict[str, float]:
    """Realised share of (non-padding) tokens per document kind."""
    docs = packed.document_ids[packed.document_ids >= 0]
    counts: dict[str, int] = {}
    for doc_id, n in zip(*(t.tolist() for t in docs.unique(return_counts=True))):
        counts[packed.kinds[doc_id]] = counts.get(packed.kinds[doc_id], 0) + n
    total = sum(counts.values())
    return {kind: n / total for kind, n in sorted(counts.items())}
