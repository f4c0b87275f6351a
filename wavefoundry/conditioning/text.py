"""The learned text encoder: the offline default in place of T5 (no downloaded weights or vocabulary).

Token embedding + learned positions + ``depth`` pre-LN transformer encoder layers (Vaswani et al. 2017; pre-LN as
Xiong et al. 2020) with a key padding mask (SDPA through :func:`wavefoundry.nn.attention.attention`), a final
LayerNorm and a linear map to ``out_dim``. Outputs at padded positions are zero, as Stable Audio Open's T5
conditioner leaves them, so a prompt's valid outputs do not depend on how much padding its batch has.
:class:`LearnedPromptEncoder` pairs it with a :class:`~wavefoundry.conditioning.tokenizer.WordTokenizer` to take
strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from wavefoundry.conditioning.tokenizer import MAX_LENGTH, WordTokenizer
from wavefoundry.config import ConfigError
from wavefoundry.nn.attention import attention


class EncoderBlock(nn.Module):
    """Pre-LN transformer encoder layer: x + attn(LN(x)), then x + MLP(LN(x)), attention through SDPA.

    Args:
        dim: width D.
        heads: attention heads H (D divisible by H).
        mlp_ratio: hidden width of the MLP over D.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, L, D), mask (B, L) bool (True = real token) -> (B, L, D)."""
        B, L, D = x.shape
        H = self.heads
        qkv = self.qkv(self.norm1(x)).view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)  # (3, B, H, L, D / H)
        a = attention(qkv[0], qkv[1], qkv[2], key_mask=mask)  # (B, H, L, D / H)
        x = x + self.out(a.transpose(1, 2).reshape(B, L, D))  # (B, L, D)
        return x + self.mlp(self.norm2(x))


@dataclass(kw_only=True)
class LearnedTextEncoderConfig:
    """Shape of the learned text encoder.

    ``vocab_size`` is the embedding table size: at least the tokenizer's vocabulary (a bigger table leaves room to
    rebuild the vocabulary). ``max_length`` is the number of learned positions and the padded prompt length.
    """

    vocab_size: int = 4096
    dim: int = 256
    depth: int = 4
    heads: int = 4
    max_length: int = MAX_LENGTH
    out_dim: int = 768
    mlp_ratio: int = 4

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "depth", "heads", "max_length", "out_dim", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ConfigError(f"LearnedTextEncoderConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.vocab_size < 2:
            raise ConfigError(f"LearnedTextEncoderConfig.vocab_size must be >= 2 (<pad>, <unk>), got {self.vocab_size}")
        if self.dim % self.heads:
            raise ConfigError(f"LearnedTextEncoderConfig: dim={self.dim} is not divisible by heads={self.heads}")


class LearnedTextEncoder(nn.Module):
    """Token ids -> contextual embeddings, zero at padded positions."""

    def __init__(self, cfg: LearnedTextEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.out_dim = cfg.out_dim
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos_emb = nn.Embedding(cfg.max_length, cfg.dim)
        self.blocks = nn.ModuleList(EncoderBlock(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.out_dim)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Encode a padded batch.

        Args:
            ids: (B, L) long token ids, L <= max_length.
            mask: (B, L) bool, True on real tokens; every row needs at least one.

        Returns:
            (B, L, out_dim), zero where ``mask`` is False.
        """
        L = ids.shape[1]
        if self.cfg.max_length < L:
            raise ValueError(f"{L} tokens exceed the encoder's max_length={self.cfg.max_length}")
        x = self.tok_emb(ids) + self.pos_emb.weight[:L][None]  # (B, L, D)
        for block in self.blocks:
            x = block(x, mask)
        return self.proj(self.norm(x)) * mask[..., None].to(x.dtype)  # (B, L, out_dim)


class LearnedPromptEncoder(nn.Module):
    """Strings -> (embeddings, mask) with a :class:`WordTokenizer` and a :class:`LearnedTextEncoder`.

    Args:
        cfg: the encoder's shape; ``cfg.vocab_size`` must cover the tokenizer's vocabulary.
        tokenizer: the vocabulary, saved next to the weights (it is not part of the state dict).

    Raises:
        ValueError: the tokenizer has more ids than the embedding table.
    """

    def __init__(self, cfg: LearnedTextEncoderConfig, tokenizer: WordTokenizer) -> None:
        super().__init__()
        if tokenizer.vocab_size > cfg.vocab_size:
            raise ValueError(
                f"the tokenizer has {tokenizer.vocab_size} tokens but the text encoder's vocab_size is "
                f"{cfg.vocab_size}: set text.vocab_size >= {tokenizer.vocab_size}"
            )
        self.tokenizer = tokenizer
        self.encoder = LearnedTextEncoder(cfg)
        self.out_dim = cfg.out_dim

    def forward(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """B prompts -> embeddings (B, max_length, out_dim) zero on padding, and mask (B, max_length) bool.

        Raises:
            ValueError: an empty batch, an empty prompt or one over the tokenizer's character bound.
        """
        ids, mask = self.tokenizer.encode(prompts, self.encoder.cfg.max_length)
        device = self.encoder.tok_emb.weight.device
        ids, mask = ids.to(device), mask.to(device)
        return self.encoder(ids, mask), mask
