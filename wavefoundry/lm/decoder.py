"""Qwen3-style decoder-only transformer, its KV cache, the next-token loss and the SODA presets.

Architecture as Hugging Face ``Qwen3ForCausalLM`` (Qwen team 2025, "Qwen3 Technical Report"), which SODA (Manakul
et al. 2026, arXiv 2602.16687) trains over text + 4 specials + audio codec ids:

* token embedding (no scaling), then ``n_layers`` pre-norm blocks, final RMSNorm, a linear head (untied by default);
* block: ``x + attn(rms(x))`` then ``x + swiglu(rms(x))``, RMSNorm (Zhang & Sennrich 2019) with eps 1e-6;
* attention: grouped-query (Ainslie et al. 2023; H query heads, H_kv key/value heads), no biases, a per-head RMSNorm
  of queries and keys (QK-norm, Qwen3) *before* rotary embeddings over the full head (RoPE, Su et al. 2021, "rotate
  half" pairs, base 1e6), causal softmax attention with scale ``1 / sqrt(Dh)``;
* feed-forward: ``W_down (silu(W_gate x) * W_up x)`` (SwiGLU, Shazeer 2020).

Our projections are fused where Hugging Face keeps them apart (``attn.qkv`` rows [q | k | v], ``ffn.gate_up`` rows
[gate | up]): fewer, larger matmuls. ``wavefoundry.formats.qwen3`` splits and joins them at export and import.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from wavefoundry.config import ConfigError
from wavefoundry.nn.attention import causal_attention, causal_mask
from wavefoundry.nn.ffn import SwiGLU
from wavefoundry.nn.norms import RMSNorm, rms_norm
from wavefoundry.nn.rope import rope_inv_freq, rotate

#: SODA's vocabulary: 128,256 Llama-3 text ids + 4 specials + 8 Mimi codebooks x 2,048 (docs/lm_sequences.md).
SODA_VOCAB = 144_644


@dataclass(kw_only=True)
class DecoderConfig:
    """Shape of a :class:`Decoder`; the defaults are :func:`soda_135m`'s.

    ``head_dim`` None means ``dim // n_heads`` (read the width from :attr:`dh`; None stays None, so a variant that
    edits ``dim`` or ``n_heads`` keeps the rule); Qwen3 sets it explicitly (128 from 0.6B up), so
    ``n_heads * head_dim`` may differ from ``dim``.
    """

    vocab_size: int = SODA_VOCAB
    dim: int = 512
    n_layers: int = 15
    n_heads: int = 8
    n_kv_heads: int = 4
    head_dim: int | None = None
    ffn_dim: int = 1792
    rope_base: float = 1_000_000.0
    norm_eps: float = 1e-6
    max_seq_len: int = 8192
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        sizes = {
            "vocab_size": self.vocab_size,
            "dim": self.dim,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "head_dim": self.dh if self.n_heads > 0 else 0,
            "ffn_dim": self.ffn_dim,
            "max_seq_len": self.max_seq_len,
        }
        for name, value in sizes.items():
            if value < 1:
                raise ConfigError(f"DecoderConfig.{name} must be >= 1, got {value}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"DecoderConfig: n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads}")
        if self.dh % 2:
            raise ConfigError(f"DecoderConfig.head_dim must be even (rotary pairs), got {self.dh}")
        if self.rope_base <= 1 or self.norm_eps <= 0:
            raise ConfigError(f"DecoderConfig: need rope_base > 1, norm_eps > 0; got {self.rope_base}, {self.norm_eps}")

    @property
    def dh(self) -> int:
        """Dh, the width of one attention head: ``head_dim``, or ``dim // n_heads`` when that is None."""
        return self.dim // self.n_heads if self.head_dim is None else self.head_dim


class KVCache:
    """Preallocated keys and values of earlier tokens, one (B, H_kv, L_max, Dh) buffer pair per layer.

    Buffers are allocated on a layer's first write, in the dtype and device of its keys (bf16 under autocast), so
    attention never casts the cache. ``length`` is the number of tokens held; :class:`Decoder` advances it.
    ``key_mask`` (B, L_max) bool holds the padding mask once a call passed one.

    Args:
        n_layers: decoder depth.
        batch: B.
        max_len: L_max, the most tokens the cache can hold.
    """

    def __init__(self, n_layers: int, batch: int, max_len: int) -> None:
        self.batch, self.max_len, self.length = batch, max_len, 0
        self.k: list[Tensor | None] = [None] * n_layers
        self.v: list[Tensor | None] = [None] * n_layers
        self.key_mask: Tensor | None = None

    def update(self, layer: int, k: Tensor, v: Tensor, start: int) -> tuple[Tensor, Tensor]:
        """Write k, v (B, H_kv, L, Dh) at ``start``; return every key and value so far, (B, H_kv, start + L, Dh)."""
        if self.k[layer] is None:
            B, H_kv, _, Dh = k.shape
            self.k[layer] = k.new_empty(B, H_kv, self.max_len, Dh)
            self.v[layer] = v.new_empty(B, H_kv, self.max_len, Dh)
        end = start + k.shape[2]
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def extend_mask(self, key_mask: Tensor | None, start: int, length: int) -> Tensor | None:
        """Record the new tokens' mask (None = all valid); the mask of every token so far, or None if no padding."""
        if key_mask is None and self.key_mask is None:
            return None
        if self.key_mask is None:  # tokens before the first mask were all valid
            self.key_mask = torch.ones(self.batch, self.max_len, dtype=torch.bool, device=key_mask.device)
        self.key_mask[:, start : start + length] = True if key_mask is None else key_mask
        return self.key_mask[:, : start + length]


@dataclass
class AttentionInputs:
    """What every layer's attention needs for one forward, built once by :class:`Decoder`."""

    cos: Tensor  # (L, 1, Dh / 2) or (B, L, 1, Dh / 2) float32, broadcasting against (B, L, H, Dh / 2)
    sin: Tensor
    mask: Tensor | None  # from causal_mask; None = plain causal
    start: int  # index of the first new token
    cache: KVCache | None


class Attention(nn.Module):
    """Grouped-query self-attention with QK-norm and full-head rotary embeddings (Qwen3), no biases.

    Args:
        dim: model width D.
        n_heads: H query heads.
        n_kv_heads: H_kv key/value heads.
        head_dim: Dh.
        eps: the q/k RMSNorm epsilon.
        layer: this layer's index in the KV cache.
    """

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, head_dim: int, eps: float, layer: int) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim, self.eps, self.layer = n_heads, n_kv_heads, head_dim, eps, layer
        self.qkv = nn.Linear(dim, (n_heads + 2 * n_kv_heads) * head_dim, bias=False)
        self.out = nn.Linear(n_heads * head_dim, dim, bias=False)
        self.q_norm = RMSNorm(head_dim, eps)
        self.k_norm = RMSNorm(head_dim, eps)

    def forward(self, x: Tensor, inputs: AttentionInputs) -> Tensor:
        """(B, L, D) -> (B, L, D)."""
        B, L, _ = x.shape
        H, H_kv, Dh = self.n_heads, self.n_kv_heads, self.head_dim
        qkv = self.qkv(x).view(B, L, H + 2 * H_kv, Dh)  # (B, L, H + 2 H_kv, Dh)
        # QK-norm of all query and key heads in one call, each head scaled by its norm's weight (Qwen3).
        w = torch.cat((self.q_norm.weight.expand(H, Dh), self.k_norm.weight.expand(H_kv, Dh)))  # (H + H_kv, Dh)
        # split, not slicing: its backward is one cat, where slices' backward zero-fills and adds full buffers.
        qk, v = qkv.split((H + H_kv, H_kv), dim=2)  # (B, L, H + H_kv, Dh), (B, L, H_kv, Dh)
        qk = rms_norm(qk, w, self.eps)  # (B, L, H + H_kv, Dh)
        qk = rotate(qk, inputs.cos, inputs.sin)  # its backward is the inverse rotation: nothing saved
        q, k = (t.transpose(1, 2) for t in qk.split((H, H_kv), dim=2))  # (B, H, L, Dh), (B, H_kv, L, Dh)
        v = v.transpose(1, 2)  # (B, H_kv, L, Dh)
        if inputs.cache is not None:
            k, v = inputs.cache.update(self.layer, k, v, inputs.start)  # (B, H_kv, start + L, Dh)
        o = causal_attention(q, k, v, mask=inputs.mask)  # (B, H, L, Dh)
        return self.out(o.transpose(1, 2).reshape(B, L, H * Dh))


class DecoderBlock(nn.Module):
    """Pre-norm block: ``x + attn(rms(x))``, then ``x + ffn(rms(x))``."""

    def __init__(self, cfg: DecoderConfig, layer: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.dh, cfg.norm_eps, layer)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = SwiGLU(cfg.dim, cfg.ffn_dim)

    def forward(self, x: Tensor, inputs: AttentionInputs) -> Tensor:
        """(B, L, D) -> (B, L, D)."""
        # Out of place: under autocast the branches are bf16 and the residual stream stays float32.
        x = x + self.attn(self.attn_norm(x), inputs)
        return x + self.ffn(self.ffn_norm(x))


class Decoder(nn.Module):
    """Qwen3-style causal language model: ids (B, L) -> next-token logits (B, L, V).

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(DecoderBlock(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        """Qwen3's init (``initializer_range`` 0.02): every matrix N(0, std^2), norms at one; re-ties the head."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        self.tie_weights()

    def tie_weights(self) -> None:
        """With ``tie_embeddings``, make the head share the embedding's Parameter (again, e.g. after loading)."""
        if self.cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """An empty cache for ``batch`` rows of up to ``max_len`` tokens (default ``max_seq_len``)."""
        return KVCache(self.cfg.n_layers, batch, max_len or self.cfg.max_seq_len)

    def forward(
        self,
        ids: Tensor,
        *,
        cache: KVCache | None = None,
        start_pos: int | None = None,
        positions: Tensor | None = None,
        key_mask: Tensor | None = None,
        last_only: bool = False,
    ) -> Tensor:
        """Next-token logits.

        Args:
            ids: (B, L) int64 token ids in [0, vocab_size).
            cache: keys/values of earlier tokens; this call's are written at ``cache.length`` and the length
                advances by L. None: no cache, the ids are the whole sequence.
            start_pos: index of ``ids[:, 0]`` in the sequence; with a cache it must equal ``cache.length`` (the
                default), without one it defaults to 0 (only position numbers change).
            positions: (L,) or (B, L) rotary positions; default ``start_pos + arange(L)``, or with a key mask the
                number of valid tokens before each token (left padding shifts nothing, as Hugging Face's
                ``cumsum(attention_mask) - 1``).
            key_mask: (B, L) bool, False = padding that no other token attends to; kept in the cache for later
                calls. None: every token is valid.
            last_only: return only the last position's logits, (B, 1, V) (prefill before sampling).

        Returns:
            (B, L, V) logits, or (B, 1, V) with ``last_only``; in the head's compute dtype.
        """
        self._check_ids(ids)
        start = cache.length if cache is not None else 0 if start_pos is None else start_pos
        if cache is not None and start_pos is not None and start_pos != cache.length:
            raise ValueError(f"start_pos={start_pos} but the cache holds {cache.length} tokens")
        if start + ids.shape[1] > self.cfg.max_seq_len:
            raise ValueError(
                f"{start + ids.shape[1]} tokens ({start} before + {ids.shape[1]} new) exceed max_seq_len="
                f"{self.cfg.max_seq_len}"
            )
        inputs = self._attention_inputs(ids, start, cache, positions, key_mask)
        h = self.embed(ids)  # (B, L, D)
        for block in self.blocks:
            h = block(h, inputs)
        if cache is not None:
            cache.length = start + ids.shape[1]
        if last_only:
            h = h[:, -1:]  # (B, 1, D)
        return self.lm_head(self.norm(h))

    def _attention_inputs(
        self, ids: Tensor, start: int, cache: KVCache | None, positions: Tensor | None, key_mask: Tensor | None
    ) -> AttentionInputs:
        B, L = ids.shape
        if key_mask is not None and (key_mask.shape != ids.shape or key_mask.dtype != torch.bool):
            raise ValueError(f"key_mask must be (B, L) bool like ids, got {tuple(key_mask.shape)} {key_mask.dtype}")
        if cache is not None and (cache.batch != B or start + L > cache.max_len):
            raise ValueError(
                f"cache for {cache.batch} rows of {cache.max_len} tokens cannot take {B} rows at {start}..{start + L}"
            )
        valid = key_mask if cache is None else cache.extend_mask(key_mask, start, L)  # (B, start + L) or None
        if positions is None and valid is None:
            positions = torch.arange(start, start + L, device=ids.device)  # (L,)
        elif positions is None:
            positions = (valid.cumsum(-1) - 1).clamp(min=0)[:, start:]  # (B, L): valid tokens before each
        inv_freq = rope_inv_freq(self.cfg.dh, self.cfg.rope_base, device=ids.device)
        angles = (positions.float()[..., None] * inv_freq).unsqueeze(-2)  # (L, 1, Dh/2) or (B, L, 1, Dh/2)
        mask = causal_mask(L, start + L, valid, device=ids.device)
        return AttentionInputs(cos=angles.cos(), sin=angles.sin(), mask=mask, start=start, cache=cache)

    def _check_ids(self, ids: Tensor) -> None:
        if ids.ndim != 2 or ids.dtype not in (torch.int64, torch.int32) or ids.shape[1] == 0:
            raise ValueError(f"ids must be (B, L) int64 with L >= 1, got {tuple(ids.shape)} {ids.dtype}")
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.cfg.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.cfg.vocab_size}), got min {lo}, max {hi}")


def _shifted_exp(x: Tensor, shift: Tensor) -> Tensor:
    """``exp(x - shift[:, None])`` as a new float32 (N, V) tensor in the fewest passes measured on CPU.

    float32: one out-of-place subtraction; bf16: a float32 copy then in place (mixed-dtype ops are slower).
    """
    y = x - shift[:, None] if x.dtype == torch.float32 else x.float().sub_(shift[:, None])
    return y.exp_()


class _LogSumExpPick(torch.autograd.Function):
    """``(logsumexp(x), x[target])`` per row, in float32, with a one-buffer backward.

    The backward is ``softmax(x) * g_lse`` plus ``g_pick`` at the targets, written into one (N, V) float32 buffer
    recomputed from the saved logits: no float32 copy of the logits is kept between forward and backward, and no
    zero-filled scatter buffer or separate softmax tensor is made (autograd's logsumexp + gather makes both).
    """

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:  # (N, V), (N,)
        x = logits.detach()
        picked = x.gather(-1, targets[:, None]).squeeze(-1).float()  # (N,)
        m = x.amax(dim=-1).float()  # (N,), exact in any dtype
        lse = m + _shifted_exp(x, m).sum(-1).log_()  # (N,)
        ctx.save_for_backward(logits, lse, targets)
        return lse, picked

    @staticmethod
    def backward(ctx, g_lse: Tensor, g_pick: Tensor) -> tuple[Tensor, None]:
        logits, lse, targets = ctx.saved_tensors
        grad = _shifted_exp(logits, lse).mul_(g_lse[:, None])  # (N, V) float32: softmax * g_lse
        grad.scatter_add_(-1, targets[:, None], g_pick[:, None])
        return grad.to(logits.dtype), None


def next_token_loss(
    logits: Tensor, targets: Tensor, *, loss_mask: Tensor | None = None, z_loss: float = 1e-4
) -> tuple[Tensor, dict[str, Tensor]]:
    """Cross-entropy of the targets plus the z-loss, averaged over counted tokens, in float32.

    ``loss = mean_t [ logsumexp(z_t) - z_t[y_t] + z_loss * logsumexp(z_t)^2 ]`` over positions with
    ``loss_mask`` True; the z-term keeps the softmax normaliser near 1 (PaLM, Chowdhery et al. 2022, Sec. 5).

    Args:
        logits: (B, L, V) logits (any float dtype).
        targets: (B, L) int64, the id each position should predict (the ids shifted left by one).
        loss_mask: (B, L) bool, True = counted; None counts every position.
        z_loss: weight of the z-term (0 turns it off).

    Returns:
        (loss, metrics): scalar loss; detached ``nll`` and ``z_loss`` (means over counted tokens) and ``tokens``.
    """
    if logits.ndim != 3 or targets.shape != logits.shape[:2]:
        got = f"{tuple(logits.shape)}, {tuple(targets.shape)}"
        raise ValueError(f"logits must be (B, L, V) and targets (B, L); got {got}")
    if loss_mask is not None and loss_mask.shape != targets.shape:
        raise ValueError(f"loss_mask must be (B, L) like targets, got {tuple(loss_mask.shape)}")
    lse, picked = _LogSumExpPick.apply(logits.flatten(0, 1), targets.flatten())  # (B L,) each, float32
    lse, nll = lse.view(targets.shape), (lse - picked).view(targets.shape)  # (B, L)
    z = z_loss * lse.square()  # (B, L)
    weight = torch.ones_like(nll) if loss_mask is None else loss_mask.to(nll.dtype)
    tokens = weight.sum()
    denom = tokens.clamp(min=1.0)  # no counted token: loss 0, not NaN
    nll_mean, z_mean = (nll * weight).sum() / denom, (z * weight).sum() / denom
    metrics = {"nll": nll_mean.detach(), "z_loss": z_mean.detach(), "tokens": tokens.detach()}
    return nll_mean + z_mean, metrics


def param_count(cfg: DecoderConfig, *, embeddings: bool = True) -> int:
    """Parameters of a :class:`Decoder` for ``cfg``, from the config alone (nothing allocated).

    Args:
        cfg: the architecture.
        embeddings: count the token embedding and the head (one matrix when tied). False gives the
            "non-embedding" count of Kaplan et al. 2020: blocks and final norm only.
    """
    D, Dh, F_ = cfg.dim, cfg.dh, cfg.ffn_dim
    attn = D * (cfg.n_heads + 2 * cfg.n_kv_heads) * Dh + cfg.n_heads * Dh * D + 2 * Dh  # qkv, out, q/k norms
    block = attn + 3 * D * F_ + 2 * D  # + gate, up, down and the two norms
    body = cfg.n_layers * block + D
    return body + (cfg.vocab_size * D * (1 if cfg.tie_embeddings else 2) if embeddings else 0)


def soda_135m() -> DecoderConfig:
    """SODA 135M: 15 layers, width 512, 8 query / 4 kv heads of 64, FFN 1792 (kv heads: Qwen3's 2:1 grouping)."""
    return DecoderConfig()


def soda_600m() -> DecoderConfig:
    """SODA 600M (Qwen3-0.6B's shape): 28 layers, width 1024, 16 query / 8 kv heads of 128, FFN 3072."""
    return DecoderConfig(dim=1024, n_layers=28, n_heads=16, n_kv_heads=8, head_dim=128, ffn_dim=3072)


def soda_1_7b() -> DecoderConfig:
    """SODA 1.7B (Qwen3-1.7B's shape): 28 layers, width 2048, 16 query / 8 kv heads of 128, FFN 6144."""
    return DecoderConfig(dim=2048, n_layers=28, n_heads=16, n_kv_heads=8, head_dim=128, ffn_dim=6144)


def soda_4b() -> DecoderConfig:
    """SODA 4B (Qwen3-4B's shape): 36 layers, width 2560, 32 query / 8 kv heads of 128, FFN 9728."""
    return DecoderConfig(dim=2560, n_layers=36, n_heads=32, n_kv_heads=8, head_dim=128, ffn_dim=9728)


def lm_tiny() -> DecoderConfig:
    """A CPU-trainable decoder: 4 layers, width 128, 4 query / 2 kv heads of 32, FFN 384, 4,096 ids, 1,024 tokens."""
    return DecoderConfig(vocab_size=4096, dim=128, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=384, max_seq_len=1024)


def lm_micro() -> DecoderConfig:
    """A decoder for tests: 2 layers, width 32, 4 query / 2 kv heads of 8, FFN 64, 97 ids, 64 tokens."""
    return DecoderConfig(vocab_size=97, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, max_seq_len=64)


#: Preset name -> function returning its config.
PRESETS = {
    "soda_135m": soda_135m,
    "soda_600m": soda_600m,
    "soda_1_7b": soda_1_7b,
    "soda_4b": soda_4b,
    "lm_tiny": lm_tiny,
    "lm_micro": lm_micro,
}


def decoder_preset(name: str) -> DecoderConfig:
    """The config of preset ``name``; an unknown name raises ValueError listing the valid ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown decoder preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]()
