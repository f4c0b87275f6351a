"""Pure sampling helpers over next-token logits, shared by every autoregressive decoder.

Restrict to the allowed ids, divide by the temperature, keep the top-k ids (Fan et al. 2018) and the nucleus
(top-p, Holtzman et al. 2020), then draw; temperature 0 is greedy.
"""

from __future__ import annotations

import torch
from torch import Tensor


def filter_logits(
    logits: Tensor, *, top_k: int | None = None, top_p: float | None = None, allowed: Tensor | None = None
) -> Tensor:
    """Logits with the removed ids set to -inf: not ``allowed``, outside the top k, outside the nucleus.

    Top-k keeps exactly k ids (ties broken by ``torch.topk``). Top-p keeps the smallest set of most probable ids
    whose probability (after the other filters, at these logits) reaches p; the most probable id always stays.

    Args:
        logits: (B, V) float logits (already divided by any temperature).
        top_k: k >= 1, or None.
        top_p: p in (0, 1], or None.
        allowed: (V,) or (B, V) bool, True = may be drawn; every row needs one True.

    Returns:
        (B, V) float32.
    """
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    out = logits.float()
    if allowed is not None:
        if allowed.dtype != torch.bool or allowed.shape[-1] != out.shape[-1]:
            raise ValueError(f"allowed must be a bool mask over the {out.shape[-1]} ids, got {tuple(allowed.shape)}")
        if not bool(allowed.any(-1).all()):
            raise ValueError("allowed masks out every id of a row")
        out = out.masked_fill(~allowed, float("-inf"))
    if top_k is not None and top_k < out.shape[-1]:
        keep = torch.zeros_like(out, dtype=torch.bool).scatter_(-1, out.topk(top_k, dim=-1).indices, True)
        out = out.masked_fill(~keep, float("-inf"))
    if top_p is not None and top_p < 1:
        probs, order = out.softmax(-1).sort(dim=-1, descending=True)  # (B, V) each
        before = probs.cumsum(-1) - probs  # mass of the more probable ids
        drop = (before >= top_p).scatter(-1, order, before >= top_p)  # back to id order
        out = out.masked_fill(drop, float("-inf"))
    return out


def sample_next(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    allowed: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw one id per row from the logits; temperature 0 takes the argmax (of the allowed ids).

    Args:
        logits: (B, V).
        temperature: >= 0; divides the logits before top-k/top-p.
        top_k, top_p, allowed: as :func:`filter_logits`.
        generator: the random source (seeded: reproducible draws).

    Returns:
        (B,) int64 ids.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return filter_logits(logits, allowed=allowed).argmax(-1)
    scores = filter_logits(logits.float() / temperature, top_k=top_k, top_p=top_p, allowed=allowed)
    return torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(-1)
