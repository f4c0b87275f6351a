"""Text decoder of the audio+vision -> text model: causal self-attention, cross-attention to the fused memory in
every block, and a bidirectional mode of the same blocks for masked language modelling.

Block (pre-norm, RMSNorm; Qwen3/Llama-style parts from :mod:`wavefoundry.nn`)::

    x = x + SelfAttn(rms(x))          causal (captioning) or bidirectional (MLM mode), RoPE (Su et al. 2021)
    x = x + CrossAttn(rms(x), memory)  keys/values from the fused audio-visual memory (Vaswani et al. 2017)
    x = x + SwiGLU(rms(x))             (Shazeer 2020)

The MLM mode is BLIP's image-grounded text encoder (Li et al. 2022, Sec. 3.1) done with full weight sharing: the
same blocks run without the causal mask (``causal=False``), the sequence starts with ``[ENC]`` instead of ``[BOS]``
so the blocks know the mode, and the tied head predicts the token at each masked position (not the next one).

Ids: a text tokenizer's ``text_vocab`` ids, then five specials after them (:class:`Specials`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from wavefoundry.nn.attention import CrossAttention, attention, causal_attention, causal_mask
from wavefoundry.nn.ffn import SwiGLU
from wavefoundry.nn.norms import RMSNorm
from wavefoundry.nn.rope import rope_inv_freq, rotate


@dataclass(frozen=True)
class Specials:
    """Special ids placed right after the text ids: pad, bos, eos, mask, enc (MLM-mode start)."""

    pad: int
    bos: int
    eos: int
    mask: int
    enc: int

    @classmethod
    def after(cls, text_vocab: int) -> Specials:
        """The layout for a tokenizer with ``text_vocab`` ids: ``text_vocab + 0 .. 4``."""
        return cls(*(text_vocab + i for i in range(5)))


@dataclass(kw_only=True)
class TextDecoderConfig:
    """Shape of a :class:`TextDecoder`; ``vocab_size`` is ``text_vocab + 5`` (the specials)."""

    text_vocab: int = 32000
    dim: int = 512
    n_layers: int = 8
    n_heads: int = 8
    ffn_dim: int = 1536
    memory_dim: int = 512
    max_seq_len: int = 2048
    rope_base: float = 10000.0
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("text_vocab", "dim", "n_layers", "n_heads", "ffn_dim", "memory_dim", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"TextDecoderConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"TextDecoderConfig: dim={self.dim} must split into n_heads={self.n_heads} even heads")

    @property
    def vocab_size(self) -> int:
        return self.text_vocab + 5

    @property
    def specials(self) -> Specials:
        return Specials.after(self.text_vocab)


class DecoderCache:
    """Keys/values for incremental decoding: per layer, the self-attention keys so far (preallocated) and the
    cross-attention keys of the memory (computed once). :meth:`reorder` follows beam search's choices.

    Args:
        n_layers: decoder depth.
        max_len: most text tokens the cache holds.
    """

    def __init__(self, n_layers: int, max_len: int) -> None:
        self.max_len, self.length = max_len, 0
        self.k: list[Tensor | None] = [None] * n_layers
        self.v: list[Tensor | None] = [None] * n_layers
        self.memory_kv: list[tuple[Tensor, Tensor] | None] = [None] * n_layers

    def update(self, layer: int, k: Tensor, v: Tensor, start: int) -> tuple[Tensor, Tensor]:
        """Write k, v (B, H, L, Dh) at ``start``; return all keys/values so far (B, H, start + L, Dh)."""
        if self.k[layer] is None:
            B, H, _, Dh = k.shape
            self.k[layer], self.v[layer] = k.new_empty(B, H, self.max_len, Dh), v.new_empty(B, H, self.max_len, Dh)
        end = start + k.shape[2]
        self.k[layer][:, :, start:end], self.v[layer][:, :, start:end] = k, v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` (B',) of every buffer, in that order."""
        for i in range(len(self.k)):
            if self.k[i] is not None:
                self.k[i], self.v[i] = self.k[i].index_select(0, index), self.v[i].index_select(0, index)
            if self.memory_kv[i] is not None:
                self.memory_kv[i] = tuple(t.index_select(0, index) for t in self.memory_kv[i])


class SelfAttention(nn.Module):
    """Multi-head self-attention with RoPE over the full head; causal (with a cache) or bidirectional."""

    def __init__(self, dim: int, n_heads: int, layer: int) -> None:
        super().__init__()
        self.n_heads, self.layer = n_heads, layer
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        mask: Tensor | None,
        causal: bool,
        cache: DecoderCache | None,
        start: int,
    ) -> Tensor:
        """(B, L, D) -> (B, L, D); ``mask``: causal_mask output (causal) or (B, L) key mask (bidirectional)."""
        B, L, D = x.shape
        H, Dh = self.n_heads, D // self.n_heads
        qkv = self.qkv(x).view(B, L, 3 * H, Dh)  # (B, L, 3H, Dh)
        qk, v = qkv.split((2 * H, H), dim=2)
        q, k = rotate(qk, *rope).transpose(1, 2).split((H, H), dim=1)  # each (B, H, L, Dh)
        v = v.transpose(1, 2)  # (B, H, L, Dh)
        if cache is not None:
            k, v = cache.update(self.layer, k, v, start)  # (B, H, start + L, Dh)
        o = causal_attention(q, k, v, mask=mask) if causal else attention(q, k, v, key_mask=mask)
        return self.out(o.transpose(1, 2).reshape(B, L, D))


class TextBlock(nn.Module):
    """Self-attention, cross-attention to the memory, SwiGLU; each pre-RMSNorm with a residual."""

    def __init__(self, cfg: TextDecoderConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.self_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = SelfAttention(cfg.dim, cfg.n_heads, layer)
        self.cross_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.cross_attn = CrossAttention(cfg.dim, cfg.memory_dim, cfg.n_heads)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = SwiGLU(cfg.dim, cfg.ffn_dim)

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """The cross-attention keys and values of memory (B, Lm, Dm): each (B, H_kv, Lm, Dh)."""
        ca = self.cross_attn
        B, Lm, Dm = memory.shape
        kv = ca.to_kv(memory).view(B, Lm, 2, ca.kv_heads, Dm // ca.kv_heads)  # (B, Lm, 2, H_kv, Dh)
        return kv.permute(2, 0, 3, 1, 4).unbind(0)

    def cross(self, x: Tensor, kv: tuple[Tensor, Tensor], memory_mask: Tensor) -> Tensor:
        """Cross-attention of (B, L, D) to the cached memory keys -> (B, L, D)."""
        ca = self.cross_attn
        B, L, D = x.shape
        q = ca.to_q(x).view(B, L, ca.num_heads, D // ca.num_heads).transpose(1, 2)  # (B, H, L, Dh)
        o = attention(q, *kv, key_mask=memory_mask)  # (B, H, L, Dh)
        return ca.to_out(o.transpose(1, 2).reshape(B, L, D))

    def forward(
        self,
        x: Tensor,
        kv: tuple[Tensor, Tensor],
        memory_mask: Tensor,
        rope: tuple[Tensor, Tensor],
        mask: Tensor | None,
        causal: bool,
        cache: DecoderCache | None,
        start: int,
    ) -> Tensor:
        """(B, L, D) -> (B, L, D); kv from :meth:`memory_kv`, the rest as :class:`SelfAttention`."""
        x = x + self.self_attn(self.self_norm(x), rope, mask, causal, cache, start)
        x = x + self.cross(self.cross_norm(x), kv, memory_mask)
        return x + self.ffn(self.ffn_norm(x))


class TextDecoder(nn.Module):
    """Ids (B, L) + memory (B, Lm, memory_dim) -> logits (B, L, vocab_size); head tied to the embedding.

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: TextDecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(TextBlock(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

    def new_cache(self, max_len: int | None = None) -> DecoderCache:
        """An empty cache for up to ``max_len`` tokens (default ``max_seq_len``)."""
        return DecoderCache(self.cfg.n_layers, max_len or self.cfg.max_seq_len)

    def forward(
        self,
        ids: Tensor,
        memory: Tensor,
        memory_mask: Tensor,
        *,
        causal: bool = True,
        key_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        """Logits for every position.

        Args:
            ids: (B, L) int64 ids in [0, vocab_size).
            memory: (B, Lm, memory_dim) fused audio-visual tokens.
            memory_mask: (B, Lm) bool, True = attend; every row needs one True.
            causal: False runs the MLM mode (bidirectional, no cache).
            key_mask: (B, L) bool, False = padding; only used (and needed for padded rows) in the MLM mode.
                Causal decoding needs none: right padding never reaches earlier tokens.
            cache: causal only; this call's tokens are written at ``cache.length``; the memory keys are computed
                on the first call and reused.

        Returns:
            (B, L, vocab_size) logits: next-token logits (causal) or logits of each position's own token (MLM).
        """
        if ids.ndim != 2 or ids.shape[1] == 0 or int(ids.min()) < 0 or int(ids.max()) >= self.cfg.vocab_size:
            raise ValueError(f"ids must be (B, L >= 1) in [0, {self.cfg.vocab_size}), got {tuple(ids.shape)}")
        if not causal and cache is not None:
            raise ValueError("the bidirectional (MLM) mode takes no cache")
        L = ids.shape[1]
        start = cache.length if cache is not None else 0
        if start + L > self.cfg.max_seq_len:
            raise ValueError(f"{start + L} tokens exceed max_seq_len={self.cfg.max_seq_len}")
        if not bool(memory_mask.any(1).all()):
            raise ValueError("every row needs at least one valid memory token (an audio or a visual input)")
        inv_freq = rope_inv_freq(self.cfg.dim // self.cfg.n_heads, self.cfg.rope_base, device=ids.device)
        angles = (torch.arange(start, start + L, device=ids.device).float()[:, None] * inv_freq)[:, None]
        rope = (angles.cos(), angles.sin())  # each (L, 1, Dh / 2)
        mask = causal_mask(L, start + L, device=ids.device) if causal else key_mask
        h = self.embed(ids)  # (B, L, D)
        for i, block in enumerate(self.blocks):
            if cache is None:
                kv = block.memory_kv(memory)
            elif cache.memory_kv[i] is None:
                kv = cache.memory_kv[i] = block.memory_kv(memory)
            else:
                kv = cache.memory_kv[i]
            h = block(h, kv, memory_mask, rope, mask, causal, cache, start)
        if cache is not None:
            cache.length = start + L
        return self.norm(h) @ self.embed.weight.T  # (B, L, V), tied head
