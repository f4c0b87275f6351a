"""Training FLOPs of our decoders under three conventions, side by side (see docs/scaling_flops.md).

* ``chinchilla``: ``C = 6 N D`` with N every parameter, embeddings included (Hoffmann et al. 2022, "Training
  Compute-Optimal Large Language Models", Sec. 2 and App. F).
* ``kaplan``: ``C = 6 N D`` with N the non-embedding parameters, token embedding and head left out (Kaplan et al.
  2020, "Scaling Laws for Neural Language Models", Sec. 2.1; they drop the context term as small).
* ``levanter``: 3 x an analytic count of the forward pass (Levanter's ``lm_flops_per_token``, which Marin and SODA,
  Manakul et al. 2026, report): per layer the q/k/v and output projections, the SwiGLU matmuls, the attention
  scores ``Q K^T``, 3 FLOPs per score for scaling, masking and softmax, and ``P V``; then the output head
  ``2 D V``. Attention is counted over the **full** L x L score matrix, not the causal half (Levanter's "assume
  full attention map like megatron-lm"; it is also what a dense SDPA kernel computes). The backward pass is
  counted as twice the forward (x 3 for training, as Levanter's ``flops_per_example = 3 * flops_per_token *
  seq_len``). The embedding lookup and the norms, RoPE and SiLU are not counted. Where ``n_heads * head_dim``
  differs from ``dim`` (Qwen3 0.6B and up) the projections use ``n_heads * head_dim``, as Levanter's count does
  once given ``head_dim``.

D is the number of training tokens: ``steps * batch_size * seq_len``. Counts are exact Python ints.
"""

from __future__ import annotations

from collections.abc import Callable

from wavefoundry.lm.decoder import DecoderConfig, param_count

#: The FLOP count of a non-matmul op on each attention score (scale, mask, softmax), as Levanter counts it.
SOFTMAX_FLOPS_PER_SCORE = 3


def _check_seq_len(cfg: DecoderConfig, seq_len: int) -> None:
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
        raise ValueError(f"seq_len must be an integer >= 1, got {seq_len!r}")
    if seq_len > cfg.max_seq_len:
        raise ValueError(f"seq_len={seq_len} exceeds the model's max_seq_len={cfg.max_seq_len}")


def forward_flops_breakdown(cfg: DecoderConfig, seq_len: int) -> dict[str, int]:
    """Levanter's analytic forward FLOPs per token, term by term (one layer's terms, and the head).

    Args:
        cfg: the decoder shape (D ``dim``, H ``n_heads``, H_kv ``n_kv_heads``, Dh ``dh``, F ``ffn_dim``, V).
        seq_len: L, tokens per training row (attention cost per token grows with it).

    Returns:
        ``qkv`` 2 D (H + 2 H_kv) Dh, ``out`` 2 H Dh D, ``mlp`` 2 * 3 D F (gate, up, down), ``attn_scores``
        2 L H Dh, ``attn_softmax`` 3 L H, ``attn_values`` 2 L H Dh (all per layer), ``layers`` = n_layers x their
        sum, ``lm_head`` 2 D V, and ``total``.
    """
    _check_seq_len(cfg, seq_len)
    D, H, H_kv, Dh, L = cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.dh, seq_len
    per_layer = {
        "qkv": 2 * D * (H + 2 * H_kv) * Dh,
        "out": 2 * H * Dh * D,
        "mlp": 2 * 3 * D * cfg.ffn_dim,
        # Full L x L maps over the sequence, divided by L: per token (Levanter's seq_flops / seq_len).
        "attn_scores": 2 * L * H * Dh,
        "attn_softmax": SOFTMAX_FLOPS_PER_SCORE * L * H,
        "attn_values": 2 * L * H * Dh,
    }
    layers = cfg.n_layers * sum(per_layer.values())
    head = 2 * D * cfg.vocab_size  # a matmul even when tied to the embedding
    return {**per_layer, "layers": layers, "lm_head": head, "total": layers + head}


def forward_flops_per_token(cfg: DecoderConfig, seq_len: int) -> int:
    """Levanter's analytic forward FLOPs per token (:func:`forward_flops_breakdown`'s ``total``)."""
    return forward_flops_breakdown(cfg, seq_len)["total"]


def chinchilla_flops_per_token(cfg: DecoderConfig, seq_len: int) -> int:
    """``6 N``, N all parameters (Hoffmann et al. 2022). ``seq_len`` is only checked."""
    _check_seq_len(cfg, seq_len)
    return 6 * param_count(cfg, embeddings=True)


def kaplan_flops_per_token(cfg: DecoderConfig, seq_len: int) -> int:
    """``6 N_non-embedding`` (Kaplan et al. 2020). ``seq_len`` is only checked."""
    _check_seq_len(cfg, seq_len)
    return 6 * param_count(cfg, embeddings=False)


def levanter_flops_per_token(cfg: DecoderConfig, seq_len: int) -> int:
    """``3 x`` the analytic forward count: forward + backward (twice the forward), as Levanter counts training."""
    return 3 * forward_flops_per_token(cfg, seq_len)


#: Convention name -> training FLOPs per token ``f(cfg, seq_len)``.
CONVENTIONS: dict[str, Callable[[DecoderConfig, int], int]] = {
    "chinchilla": chinchilla_flops_per_token,
    "kaplan": kaplan_flops_per_token,
    "levanter": levanter_flops_per_token,
}
#: One line per convention, for tables and docs.
DESCRIPTIONS = {
    "chinchilla": "6*N*D, N = all parameters (Hoffmann et al. 2022)",
    "kaplan": "6*N*D, N = non-embedding parameters (Kaplan et al. 2020)",
    "levanter": "3 x analytic forward matmuls + attention (full L^2) + head (Levanter/Marin/SODA)",
}
DEFAULT_CONVENTION = "levanter"


def convention_fn(name: str) -> Callable[[DecoderConfig, int], int]:
    """The per-token function of convention ``name``; an unknown name raises ValueError listing the valid ones."""
    if name not in CONVENTIONS:
        raise ValueError(f"unknown FLOP convention {name!r}; valid: {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name]


def train_flops_per_token(cfg: DecoderConfig, seq_len: int, convention: str = DEFAULT_CONVENTION) -> int:
    """Training FLOPs per token of ``cfg`` on rows of ``seq_len`` tokens under ``convention``."""
    return convention_fn(convention)(cfg, seq_len)


def training_flops(cfg: DecoderConfig, seq_len: int, tokens: int, convention: str = DEFAULT_CONVENTION) -> int:
    """C, the training FLOPs of ``tokens`` tokens (D) under ``convention``: per-token FLOPs x D."""
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        raise ValueError(f"tokens must be an integer >= 0, got {tokens!r}")
    return train_flops_per_token(cfg, seq_len, convention) * tokens


def all_conventions(cfg: DecoderConfig, seq_len: int) -> dict[str, int]:
    """Training FLOPs per token under every convention, in :data:`CONVENTIONS` order."""
    return {name: fn(cfg, seq_len) for name, fn in CONVENTIONS.items()}
