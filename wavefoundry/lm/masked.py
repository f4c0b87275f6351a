"""Masked generative transformer over K codebooks of discrete audio codes (MAGNeT, Ziv et al. 2024, "Masked Audio
Generation using a Single Non-Autoregressive Transformer"; MaskGIT, Chang et al. 2022).

* Input: codes (B, K, T), id ``codebook_size`` being the [MASK] token; one embedding table per codebook, the K
  embeddings of a frame summed (MAGNeT / MusicGen), plus a learned positional embedding (the described "AudioGen-Mega"
  design) or rotary embeddings in self-attention (``positions="rope"``).
* ``n_layers`` pre-norm blocks: bidirectional self-attention (no causal mask; an optional key padding mask and, for
  stages > 0, an optional window ``|i - j| <= stage_window``, MAGNeT's restricted context), cross-attention to the
  text conditioning tokens (projected to width D), SwiGLU feed-forward (Shazeer 2020); RMSNorm (Zhang & Sennrich
  2019) and the SwiGLU of ``lm/decoder.py``.
* Output: one linear head per codebook; :meth:`MaskedTransformer.forward` returns the logits of the head of the stage
  being predicted, (B, T, codebook_size).

Decoding lives in ``lm/masked_decode.py``, the masking maths in ``lm/masking.py``. The text encoder is the caller's
(``conditioning/``): this module takes its tokens as tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavefoundry.config import ConfigError
from wavefoundry.lm.decoder import RMSNorm, SwiGLU
from wavefoundry.nn.attention import CrossAttention
from wavefoundry.nn.rope import apply_rope_, rope_tables

#: Positional encodings: name -> whether the model holds a learned (max_frames, D) table.
POSITIONS = {"learned": True, "rope": False}


@dataclass(kw_only=True)
class MaskedConfig:
    """Shape of a :class:`MaskedTransformer`; the defaults are :func:`masked_tiny`'s.

    ``stage_window`` None: full attention for every stage; w >= 0: stages > 0 attend to frames within w of the query.
    ``cond_dim`` is the width of the conditioning tokens fed in (projected to ``dim``).
    """

    n_codebooks: int = 4
    codebook_size: int = 256
    dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    ffn_dim: int = 384
    max_frames: int = 512
    cond_dim: int = 128
    positions: str = "learned"
    rope_base: float = 10000.0
    stage_window: int | None = None
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        sizes = {"n_codebooks": self.n_codebooks, "codebook_size": self.codebook_size, "dim": self.dim,
                 "n_layers": self.n_layers, "n_heads": self.n_heads, "ffn_dim": self.ffn_dim,
                 "max_frames": self.max_frames, "cond_dim": self.cond_dim}  # fmt: skip
        for name, value in sizes.items():
            if value < 1:
                raise ConfigError(f"MaskedConfig.{name} must be >= 1, got {value}")
        if self.positions not in POSITIONS:
            raise ConfigError(f"MaskedConfig.positions: unknown {self.positions!r}; valid: {', '.join(POSITIONS)}")
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ConfigError(f"MaskedConfig: dim={self.dim} must split into n_heads={self.n_heads} even-width heads")
        if self.stage_window is not None and self.stage_window < 0:
            raise ConfigError(f"MaskedConfig.stage_window must be None or >= 0, got {self.stage_window}")
        if self.rope_base <= 1 or self.norm_eps <= 0:
            raise ConfigError(f"MaskedConfig: need rope_base > 1, norm_eps > 0; got {self.rope_base}, {self.norm_eps}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def mask_id(self) -> int:
        """The [MASK] id of every codebook: ``codebook_size``."""
        return self.codebook_size


class BidirectionalAttention(nn.Module):
    """Multi-head self-attention without a causal mask: fused qkv, optional rotary embeddings, a boolean mask."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, mask: Tensor | None, rope: tuple[Tensor, Tensor] | None) -> Tensor:
        """(B, L, D) -> (B, L, D); mask broadcasting to (B, H, L, L), True = attend; rope (cos, sin) (L, Dh / 2)."""
        B, L, D = x.shape
        qkv = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads)  # (B, L, 3, H, Dh)
        if rope is not None:
            cos, sin = rope
            apply_rope_(qkv[:, :, :2], cos[:, None, None, :], sin[:, None, None, :])
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, Dh)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, Dh)
        return self.out(o.transpose(1, 2).reshape(B, L, D))


class MaskedBlock(nn.Module):
    """Pre-norm block: ``x + attn(rms(x))``, ``x + cross(rms(x), context)``, ``x + ffn(rms(x))``."""

    def __init__(self, cfg: MaskedConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = BidirectionalAttention(cfg.dim, cfg.n_heads)
        self.cross_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.cross = CrossAttention(cfg.dim, cfg.dim, cfg.n_heads)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = SwiGLU(cfg.dim, cfg.ffn_dim)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None, mask: Tensor | None,
                rope: tuple[Tensor, Tensor] | None) -> Tensor:  # fmt: skip
        """(B, T, D) -> (B, T, D); context (B, Lc, D)."""
        x = x + self.attn(self.attn_norm(x), mask, rope)
        x = x + self.cross(self.cross_norm(x), context, context_mask)
        return x + self.ffn(self.ffn_norm(x))


def attention_mask(frame_mask: Tensor | None, window: int | None, frames: int, device) -> Tensor | None:
    """Self-attention mask: valid keys (``frame_mask`` (B, T)) and ``|i - j| <= window``; None when unrestricted.

    A query always sees itself, so padding rows stay finite.

    Returns:
        None, (T, T) or (B, 1, T, T) bool, True = attend.
    """
    if frame_mask is None and window is None:
        return None
    i = torch.arange(frames, device=device)
    eye = i[:, None] == i[None, :]  # (T, T)
    band = (i[:, None] - i[None, :]).abs() <= window if window is not None else torch.ones_like(eye)
    if frame_mask is None:
        return band
    return ((band & frame_mask[:, None, :]) | eye)[:, None]  # (B, 1, T, T)


class MaskedTransformer(nn.Module):
    """Bidirectional transformer over K codebooks: codes with [MASK] ids -> logits of one codebook (the stage).

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: MaskedConfig) -> None:
        super().__init__()
        self.cfg = cfg
        K, V, D = cfg.n_codebooks, cfg.codebook_size, cfg.dim
        self.embed = nn.ModuleList(nn.Embedding(V + 1, D) for _ in range(K))  # + 1: the [MASK] id
        self.pos = nn.Embedding(cfg.max_frames, D) if POSITIONS[cfg.positions] else None
        self.cond_proj = nn.Linear(cfg.cond_dim, D, bias=False)
        self.blocks = nn.ModuleList(MaskedBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(D, cfg.norm_eps)
        self.heads = nn.Parameter(torch.empty(K, V, D))  # one (V, D) output matrix per codebook
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        """Every matrix N(0, std^2), norms at one."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        nn.init.normal_(self.heads, std=std)

    def check_codes(self, codes: Tensor, *, allow_mask: bool = True) -> None:
        """Raise ValueError unless codes is (B, K, T) integer with ids in [0, V] (V = [MASK]) and T <= max_frames."""
        K, V = self.cfg.n_codebooks, self.cfg.codebook_size
        if codes.ndim != 3 or codes.shape[1] != K or codes.is_floating_point() or codes.shape[2] < 1:
            raise ValueError(f"codes must be (B, {K}, T) integer with T >= 1, got {tuple(codes.shape)} {codes.dtype}")
        if codes.shape[2] > self.cfg.max_frames:
            raise ValueError(f"{codes.shape[2]} frames exceed the model's max_frames={self.cfg.max_frames}")
        top = V if allow_mask else V - 1
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi > top:
            raise ValueError(f"code ids must be in [0, {top}] ({V} = [MASK]), got min {lo}, max {hi}")

    def forward(
        self,
        codes: Tensor,
        stage: int | Tensor,
        *,
        context: Tensor,
        context_mask: Tensor | None = None,
        frame_mask: Tensor | None = None,
    ) -> Tensor:
        """Logits of codebook ``stage`` at every frame.

        Args:
            codes: (B, K, T) int64 ids in [0, V]; V is [MASK].
            stage: the codebook predicted: an int, or (B,) int64 (one per row).
            context: (B, Lc, cond_dim) conditioning tokens (zeros for the unconditional branch).
            context_mask: (B, Lc) bool, True = attend; None attends to every token.
            frame_mask: (B, T) bool, False = padding frames no query attends to; None: all valid.

        Returns:
            (B, T, V) logits, in the head's compute dtype.
        """
        self.check_codes(codes)
        B, K, T = codes.shape
        stage = torch.as_tensor(stage, device=codes.device).expand(B)  # (B,)
        if int(stage.min()) < 0 or int(stage.max()) >= K:
            raise ValueError(f"stage must be in [0, {K}), got {stage.tolist()}")
        h = sum(self.embed[k](codes[:, k]) for k in range(K))  # (B, T, D)
        rope = None
        if self.pos is not None:
            h = h + self.pos.weight[:T]
        else:
            rope = rope_tables(T, self.cfg.head_dim, self.cfg.rope_base, device=codes.device)
        mask = self._mask(stage, frame_mask, T, codes.device)
        ctx = self.cond_proj(context)  # (B, Lc, D)
        for block in self.blocks:
            h = block(h, ctx, context_mask, mask, rope)
        h = self.norm(h)  # (B, T, D)
        return torch.einsum("btd,bvd->btv", h, self.heads[stage].to(h.dtype))  # (B, T, V)

    def _mask(self, stage: Tensor, frame_mask: Tensor | None, frames: int, device) -> Tensor | None:
        window = self.cfg.stage_window
        if window is None or not bool((stage > 0).any()):
            return attention_mask(frame_mask, None, frames, device)
        restricted = attention_mask(frame_mask, window, frames, device)
        if bool((stage > 0).all()):
            return restricted
        full = attention_mask(frame_mask, None, frames, device)
        full = torch.ones_like(restricted) if full is None else full
        pick = (stage > 0).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        return torch.where(pick, restricted, full)  # (B, 1, T, T)


def param_count(cfg: MaskedConfig) -> int:
    """Parameters of a :class:`MaskedTransformer` for ``cfg`` from the config alone (nothing allocated)."""
    K, V, D, F_ = cfg.n_codebooks, cfg.codebook_size, cfg.dim, cfg.ffn_dim
    block = 4 * D * D + 4 * D * D + 3 * D * F_ + 3 * D  # self qkv + out, cross q + kv + out, SwiGLU, 3 norms
    pos = cfg.max_frames * D if POSITIONS[cfg.positions] else 0
    return K * (V + 1) * D + pos + cfg.cond_dim * D + cfg.n_layers * block + D + K * V * D


def forward_flops(cfg: MaskedConfig, frames: int, context: int) -> int:
    """Matmul FLOPs (2 per multiply-add) of one forward over ``frames`` frames and ``context`` text tokens.

    Counts the projections, the full T x T attention scores and values (windows not subtracted), cross-attention
    over ``context`` tokens, the feed-forward and one output head; embeddings are lookups (0).
    """
    T, Lc, D, F_, V = frames, context, cfg.dim, cfg.ffn_dim, cfg.codebook_size
    per_layer = (
        2 * T * D * 3 * D  # qkv
        + 2 * 2 * T * T * D  # q k^T and attention-weighted values
        + 2 * T * D * D  # out
        + 2 * T * D * D
        + 2 * Lc * D * 2 * D
        + 2 * 2 * T * Lc * D
        + 2 * T * D * D  # cross: q, kv, attention, out
        + 2 * T * D * 3 * F_  # gate, up, down
    )
    return cfg.n_layers * per_layer + 2 * Lc * cfg.cond_dim * D + 2 * T * D * V


def masked_mega() -> MaskedConfig:
    """The described "AudioGen-Mega" shape: 72 layers, width 2048, 32 heads, learned positions, FFN 4 D (8192 in
    SwiGLU's 2/3 convention: 5461 rounded up to 5504), 4 codebooks x 2048, 30 s at 50 Hz, T5-base tokens (768)."""
    return MaskedConfig(n_codebooks=4, codebook_size=2048, dim=2048, n_layers=72, n_heads=32, ffn_dim=5504,
                        max_frames=1500, cond_dim=768)  # fmt: skip


def masked_tiny() -> MaskedConfig:
    """A CPU-trainable model: 4 layers, width 128, 4 heads, FFN 384, codec-tiny-rvq's 4 x 256 codes, 512 frames."""
    return MaskedConfig()


def masked_micro() -> MaskedConfig:
    """A model for tests: 2 layers, width 32, 4 heads, FFN 64, 3 codebooks x 17 codes, 64 frames, 16-wide context."""
    return MaskedConfig(n_codebooks=3, codebook_size=17, dim=32, n_layers=2, n_heads=4, ffn_dim=64, max_frames=64,
                        cond_dim=16)  # fmt: skip


#: Preset name -> function returning its config.
PRESETS: dict[str, Callable[[], MaskedConfig]] = {
    "masked_mega": masked_mega,
    "masked_tiny": masked_tiny,
    "masked_micro": masked_micro,
}


def masked_preset(name: str) -> MaskedConfig:
    """The config of preset ``name``; an unknown name raises ValueError listing the valid ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown masked-transformer preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]()
