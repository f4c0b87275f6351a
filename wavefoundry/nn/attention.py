"""Multi-head attention layers on ``F.scaled_dot_product_attention``: self-attention with a fused qkv projection
and rotary embeddings, cross-attention with grouped key/value heads and a key padding mask, and causal attention
of new queries over cached keys (:func:`causal_attention`, for decoders).

Scaled dot-product attention (Vaswani et al. 2017): ``softmax(q k^T / sqrt(D)) v`` per head. Grouped-query
attention (Ainslie et al. 2023): H query heads share H_kv key/value heads, query head h reading kv head
``h // (H / H_kv)``. Projections have no bias, as in stable-audio-tools' ``Attention``; the fused layouts
(``to_qkv`` rows [q | k | v], ``to_kv`` rows [k | v], each head-major) are stable-audio-tools'.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavefoundry.nn.rope import apply_rope_


def attention(q: Tensor, k: Tensor, v: Tensor, *, key_mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention with grouped kv heads and an optional key padding mask.

    Args:
        q: (B, H, Lq, D) queries.
        k: (B, H_kv, Lk, D) keys; H must be a multiple of H_kv.
        v: (B, H_kv, Lk, D) values.
        key_mask: (B, Lk) bool, True = attend. A row without any True key gives NaN, as softmax over nothing does.

    Returns:
        (B, H, Lq, D).
    """
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        # Repeating the (short) kv beats SDPA's enable_gqa on CPU (see docs/dit.md); same head order.
        k = k.repeat_interleave(groups, dim=1)  # (B, H, Lk, D)
        v = v.repeat_interleave(groups, dim=1)  # (B, H, Lk, D)
    mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, Lk)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _merge_heads(x: Tensor) -> Tensor:
    B, H, L, D = x.shape
    return x.transpose(1, 2).reshape(B, L, H * D)  # (B, L, H * D)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection and partial rotary embeddings.

    Args:
        dim: model width; split into ``num_heads`` heads of ``dim // num_heads``.
        num_heads: H.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not a multiple of num_heads={num_heads}")
        self.num_heads = num_heads
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """(B, L, dim) -> (B, L, dim).

        Args:
            x: (B, L, dim) tokens.
            rope: (cos, sin) tables, each (L, r / 2) from :func:`~wavefoundry.nn.rope.rope_tables`; the first r
                features of every query and key head rotate. None: no position information.
        """
        B, L, D = x.shape
        qkv = self.to_qkv(x).view(B, L, 3, self.num_heads, D // self.num_heads)  # (B, L, 3, H, Dh)
        if rope is not None:
            cos, sin = rope
            # Queries and keys rotate together, in place in the projection's output.
            apply_rope_(qkv[:, :, :2], cos[:, None, None, :], sin[:, None, None, :])
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, Dh), strided views
        return self.to_out(_merge_heads(attention(q, k, v)))


class CrossAttention(nn.Module):
    """Multi-head attention from tokens to a context, with ``context_dim // head_dim`` grouped kv heads.

    Args:
        dim: model width (queries and output); ``num_heads`` heads of ``dim // num_heads``.
        context_dim: context width; it sets the number of kv heads, ``context_dim // head_dim``, which must
            divide ``num_heads``.
        num_heads: H.
    """

    def __init__(self, dim: int, context_dim: int, num_heads: int) -> None:
        super().__init__()
        head_dim = dim // num_heads
        if dim % num_heads or context_dim % head_dim or num_heads % (context_dim // head_dim):
            raise ValueError(
                f"cross-attention needs dim % num_heads == 0 and kv heads (context_dim // head_dim) dividing "
                f"num_heads; got dim={dim}, num_heads={num_heads}, context_dim={context_dim}"
            )
        self.num_heads, self.kv_heads = num_heads, context_dim // head_dim
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * context_dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None = None) -> Tensor:
        """(B, L, dim) attending to (B, Lc, context_dim) -> (B, L, dim).

        Args:
            x: (B, L, dim) queries' tokens.
            context: (B, Lc, context_dim) tokens to attend to.
            context_mask: (B, Lc) bool, True = attend; None attends to every context token.
        """
        B, L, D = x.shape
        Dh = D // self.num_heads
        q = self.to_q(x).view(B, L, self.num_heads, Dh).transpose(1, 2)  # (B, H, L, Dh)
        kv = self.to_kv(context).view(B, context.shape[1], 2, self.kv_heads, Dh)  # (B, Lc, 2, H_kv, Dh)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H_kv, Lc, Dh)
        return self.to_out(_merge_heads(attention(q, k, v, key_mask=context_mask)))


def causal_mask(q_len: int, k_len: int, key_mask: Tensor | None = None, device=None) -> Tensor | None:
    """Boolean mask for :func:`causal_attention`, built once per forward; None where SDPA needs none.

    The ``q_len`` queries are the last ``q_len`` of the ``k_len`` keys (a KV cache holds the earlier ones), so
    query i sees keys ``j <= k_len - q_len + i``. With a key padding mask a query also always sees itself, so that
    the rows of padding tokens stay finite (they attend to themselves only) and never leak NaN into later layers.

    Args:
        q_len: Lq.
        k_len: Lk >= Lq.
        key_mask: (B, Lk) bool, True = a valid key.
        device: where to build the mask.

    Returns:
        None (no padding, and Lq == Lk or Lq == 1: plain causal), (Lq, Lk) or (B, 1, Lq, Lk) bool, True = attend.
    """
    if key_mask is None and q_len in (1, k_len):
        return None
    qi = torch.arange(k_len - q_len, k_len, device=device)[:, None]  # (Lq, 1) absolute query index
    ki = torch.arange(k_len, device=device)[None, :]  # (1, Lk)
    mask = ki <= qi  # (Lq, Lk)
    if key_mask is None:
        return mask
    return (mask & (key_mask[:, None, :] | (ki == qi)))[:, None]  # (B, 1, Lq, Lk)


def causal_attention(q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Causal scaled dot-product attention with grouped kv heads, the queries being the last Lq keys.

    Args:
        q: (B, H, Lq, D) queries.
        k: (B, H_kv, Lk, D) keys, Lk >= Lq; H a multiple of H_kv.
        v: (B, H_kv, Lk, D) values.
        mask: from :func:`causal_mask` for these lengths (None: plain causal, only for Lq == Lk or Lq == 1).

    Returns:
        (B, H, Lq, D).
    """
    B, H, Lq, D = q.shape
    H_kv = k.shape[1]
    if Lq == 1:
        # One query sees every (unmasked) key: fold each group's query heads into the query length, so the kv
        # heads are read in place (no repeat of the whole cache per decoding step).
        out = F.scaled_dot_product_attention(q.reshape(B, H_kv, H // H_kv, D), k, v, attn_mask=mask)
        return out.reshape(B, H, 1, D)
    causal = mask is None
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=H_kv != H)
