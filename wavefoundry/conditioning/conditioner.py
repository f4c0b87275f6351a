"""Prompt + timing conditioning for the DiT, wired as Stable Audio Open's ``MultiConditioner``.

Stable Audio Open (Evans et al. 2024) conditions its DiT on three inputs: the prompt (T5 tokens), seconds_start
and seconds_total (one learned-Fourier token each). The DiT gets

* cross-attention tokens ``cross = [text tokens; seconds_start token; seconds_total token]`` (B, L + 2, D), with
  ``cross_mask`` (B, L + 2) True on real text tokens and always on the two number tokens;
* a global vector ``global_cond = cat(seconds_start token, seconds_total token)`` along features (B, 2 D).

Text embeddings are projected to ``cond_dim`` when the encoder's width differs (stable-audio-tools' ``proj_out``,
diffusers' ``text_projection``) and zeroed on padding. The unconditional input for classifier-free guidance is
Stable Audio Open's: the cross tokens all zero, the global vector kept (:meth:`Conditioning.null`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from wavefoundry.conditioning.numbers import FOURIER_DIM, MAX_SECONDS, MIN_SECONDS, NumberConditioner, validate_seconds
from wavefoundry.conditioning.t5 import T5_MAX_LENGTH, T5TextEncoder
from wavefoundry.conditioning.text import LearnedPromptEncoder, LearnedTextEncoderConfig
from wavefoundry.conditioning.tokenizer import MAX_CHARS, WordTokenizer
from wavefoundry.config import ConfigError

#: File name of the learned tokenizer, saved next to the weights.
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class Conditioning:
    """What the DiT is conditioned on, for a batch of B.

    Attributes:
        cross: (B, L, D) cross-attention tokens: text tokens, then the seconds_start and seconds_total tokens.
        cross_mask: (B, L) bool, True on tokens to attend to.
        global_cond: (B, Dg) global conditioning vector (Dg = 2 D: seconds_start and seconds_total).
    """

    cross: Tensor
    cross_mask: Tensor
    global_cond: Tensor

    def __post_init__(self) -> None:
        B, L = self.cross.shape[:2] if self.cross.dim() == 3 else (-1, -1)
        if B < 0 or tuple(self.cross_mask.shape) != (B, L) or self.global_cond.dim() != 2 or len(self.global_cond) != B:
            raise ValueError(
                f"Conditioning shapes disagree: cross {tuple(self.cross.shape)}, cross_mask "
                f"{tuple(self.cross_mask.shape)}, global_cond {tuple(self.global_cond.shape)}"
            )
        if self.cross_mask.dtype != torch.bool:
            raise ValueError(f"cross_mask must be bool, got {self.cross_mask.dtype}")

    def __len__(self) -> int:
        return self.cross.shape[0]

    def as_kwargs(self) -> dict[str, Tensor]:
        """The DiT's keyword arguments: ``dit(x, t, **cond.as_kwargs())``."""
        return {"cross": self.cross, "cross_mask": self.cross_mask, "global_cond": self.global_cond}

    def null(self) -> Conditioning:
        """The unconditional input for classifier-free guidance: cross tokens zero, mask and global kept.

        Zero tokens make identical keys and values, so the attention output does not depend on which of them
        the mask lets through (the number tokens are always valid).
        """
        return replace(self, cross=torch.zeros_like(self.cross))

    def null_where(self, drop: Tensor) -> Conditioning:
        """Rows where ``drop`` (B,) bool is True replaced by :meth:`null` (condition dropout for CFG training)."""
        cross = torch.where(drop.to(self.cross.device)[:, None, None], torch.zeros_like(self.cross), self.cross)
        return replace(self, cross=cross)

    def index(self, idx: Tensor | slice | Sequence[int]) -> Conditioning:
        """Batch rows selected by a (B,) bool mask, an index tensor/list or a slice (repeat rows with
        ``torch.arange(B).repeat_interleave(n)``)."""
        if isinstance(idx, Tensor):
            idx = idx.to(self.cross.device)
        elif not isinstance(idx, slice):
            idx = torch.as_tensor(list(idx), dtype=torch.long, device=self.cross.device)
        return Conditioning(cross=self.cross[idx], cross_mask=self.cross_mask[idx], global_cond=self.global_cond[idx])

    @staticmethod
    def cat(items: Sequence[Conditioning]) -> Conditioning:
        """Concatenate along the batch (e.g. ``cat([cond.null(), cond])`` for one batched CFG call).

        Raises:
            ValueError: no items, or items with different token counts or widths.
        """
        if not items:
            raise ValueError("Conditioning.cat needs at least one item")
        shapes = {(tuple(c.cross.shape[1:]), tuple(c.global_cond.shape[1:])) for c in items}
        if len(shapes) > 1:
            raise ValueError(f"Conditioning.cat: items differ in (cross, global) shape: {sorted(shapes)}")
        return Conditioning(
            cross=torch.cat([c.cross for c in items]),
            cross_mask=torch.cat([c.cross_mask for c in items]),
            global_cond=torch.cat([c.global_cond for c in items]),
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Conditioning:
        """Moved to ``device``; float tensors cast to ``dtype`` (the mask stays bool)."""
        return Conditioning(
            cross=self.cross.to(device=device, dtype=dtype),
            cross_mask=self.cross_mask.to(device=device),
            global_cond=self.global_cond.to(device=device, dtype=dtype),
        )


@dataclass(kw_only=True)
class ConditionerConfig:
    """Text encoder choice and conditioning widths; the defaults give Stable Audio Open's layout.

    ``text_encoder`` is a key of :data:`TEXT_ENCODERS`: ``"learned"`` (offline default, needs a
    :class:`WordTokenizer`) or ``"t5"`` (a frozen T5 loaded from the local directory ``t5_path``).
    """

    text_encoder: str = "learned"
    text: LearnedTextEncoderConfig = field(default_factory=LearnedTextEncoderConfig)
    t5_path: str | None = None
    t5_tokenizer_path: str | None = None  # None: the tokenizer is in t5_path
    t5_max_length: int = T5_MAX_LENGTH
    cond_dim: int = 768
    fourier_dim: int = FOURIER_DIM
    min_seconds: float = MIN_SECONDS
    max_seconds: float = MAX_SECONDS
    max_prompt_chars: int = MAX_CHARS

    def __post_init__(self) -> None:
        if self.text_encoder not in TEXT_ENCODERS:
            raise ConfigError(
                f"ConditionerConfig.text_encoder: unknown {self.text_encoder!r}; valid: {', '.join(TEXT_ENCODERS)}"
            )
        if self.text_encoder == "t5" and not self.t5_path:
            raise ConfigError("ConditionerConfig: text_encoder='t5' needs t5_path (a local T5 directory)")
        for name in ("t5_max_length", "cond_dim", "max_prompt_chars"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ConditionerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.fourier_dim < 2 or self.fourier_dim % 2:
            raise ConfigError(f"ConditionerConfig.fourier_dim must be even and >= 2, got {self.fourier_dim}")
        if not self.max_seconds > self.min_seconds >= 0:
            raise ConfigError(
                f"ConditionerConfig needs 0 <= min_seconds < max_seconds, got {self.min_seconds}, {self.max_seconds}"
            )

    @property
    def global_dim(self) -> int:
        """Width of ``global_cond``: the DiT's ``global_cond_dim``."""
        return 2 * self.cond_dim


def _learned(cfg: ConditionerConfig, tokenizer: WordTokenizer | None) -> nn.Module:
    if tokenizer is None:
        raise ValueError(
            "text_encoder='learned' needs a tokenizer: WordTokenizer.build(captions) for a new model, "
            f"or Conditioner.from_dir(cfg, run_dir) to read the {TOKENIZER_FILE} saved next to its weights"
        )
    # A copy bounded by the config, which is what is saved with the run.
    bounded = WordTokenizer(tokenizer.vocab, max_length=cfg.text.max_length, max_chars=cfg.max_prompt_chars)
    return LearnedPromptEncoder(cfg.text, bounded)


def _t5(cfg: ConditionerConfig, tokenizer: WordTokenizer | None) -> nn.Module:
    return T5TextEncoder(
        cfg.t5_path, tokenizer_path=cfg.t5_tokenizer_path, max_length=cfg.t5_max_length, max_chars=cfg.max_prompt_chars
    )


#: Text encoder name -> builder(cfg, tokenizer) of a module mapping B prompts to ((B, L, D), (B, L) bool).
TEXT_ENCODERS: dict[str, Callable[[ConditionerConfig, WordTokenizer | None], nn.Module]] = {
    "learned": _learned,
    "t5": _t5,
}


def _batch(value: Tensor | float | Sequence[float], size: int, name: str, device: torch.device) -> Tensor:
    """(B,) float32 on ``device`` from a number, a 0-dim tensor or B = ``size`` values."""
    t = value if isinstance(value, Tensor) else torch.tensor(value, dtype=torch.float32)
    t = t.to(device=device, dtype=torch.float32)
    if t.dim() == 0:
        return t.expand(size)
    if tuple(t.shape) != (size,):
        raise ValueError(f"{name} must be a number or have shape ({size},), got {tuple(t.shape)}")
    return t


class Conditioner(nn.Module):
    """Prompts and timing -> :class:`Conditioning` (Stable Audio Open's ``MultiConditioner``).

    State dict: ``text.*`` (the learned encoder; nothing for T5), ``text_proj.*`` (only when the text width
    differs from ``cond_dim``), ``seconds_start.*`` and ``seconds_total.*``.

    Args:
        cfg: see :class:`ConditionerConfig`.
        tokenizer: the learned encoder's vocabulary (required for ``"learned"``, ignored for ``"t5"``).
    """

    def __init__(self, cfg: ConditionerConfig, *, tokenizer: WordTokenizer | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.text = TEXT_ENCODERS[cfg.text_encoder](cfg, tokenizer)
        text_dim = self.text.out_dim
        self.text_proj = nn.Identity() if text_dim == cfg.cond_dim else nn.Linear(text_dim, cfg.cond_dim)
        numbers = {"min_value": cfg.min_seconds, "max_value": cfg.max_seconds, "fourier_dim": cfg.fourier_dim}
        self.seconds_start = NumberConditioner(cfg.cond_dim, **numbers)
        self.seconds_total = NumberConditioner(cfg.cond_dim, **numbers)

    @classmethod
    def from_dir(cls, cfg: ConditionerConfig, directory: str | Path) -> Conditioner:
        """A conditioner whose learned tokenizer is read from ``directory/tokenizer.json`` (weights not loaded).

        Raises:
            FileNotFoundError: the learned encoder is configured and the tokenizer file is missing.
        """
        tokenizer = WordTokenizer.load(Path(directory) / TOKENIZER_FILE) if cfg.text_encoder == "learned" else None
        return cls(cfg, tokenizer=tokenizer)

    @property
    def tokenizer(self) -> WordTokenizer | None:
        """The learned encoder's tokenizer (None for T5, whose tokenizer lives in ``t5_path``)."""
        return self.text.tokenizer if isinstance(self.text, LearnedPromptEncoder) else None

    def tokenizer_state(self) -> dict[str, Any] | None:
        """The learned tokenizer as a JSON-able dict, or None for T5."""
        return None if self.tokenizer is None else self.tokenizer.state()

    def save_tokenizer(self, directory: str | Path) -> Path | None:
        """Write the learned tokenizer to ``directory/tokenizer.json`` (next to the weights); None for T5."""
        if self.tokenizer is None:
            return None
        path = Path(directory) / TOKENIZER_FILE
        self.tokenizer.save(path)
        return path

    def validate_seconds(
        self, seconds_start: Tensor | float | Sequence[float], seconds_total: Tensor | float | Sequence[float]
    ) -> tuple[Tensor, Tensor]:
        """:func:`~wavefoundry.conditioning.numbers.validate_seconds` with this conditioner's range."""
        return validate_seconds(
            seconds_start, seconds_total, min_seconds=self.cfg.min_seconds, max_seconds=self.cfg.max_seconds
        )

    def forward(
        self,
        prompts: Sequence[str],
        seconds_start: Tensor | float | Sequence[float],
        seconds_total: Tensor | float | Sequence[float],
    ) -> Conditioning:
        """Condition a batch.

        Args:
            prompts: B non-empty prompts.
            seconds_start: (B,) or one number for all; clamped to [min_seconds, max_seconds].
            seconds_total: (B,) or one number for all; clamped likewise.

        Returns:
            cross (B, L + 2, cond_dim), cross_mask (B, L + 2), global_cond (B, 2 cond_dim); L is the text
            encoder's padded length (``text.max_length`` or ``t5_max_length``).

        Raises:
            ValueError: bad prompts (empty batch, empty or over-long prompt) or timing of the wrong shape.
        """
        text, mask = self.text(prompts)  # (B, L, Dt), (B, L)
        B = text.shape[0]
        device = self.seconds_start.proj.weight.device
        start = self.seconds_start(_batch(seconds_start, B, "seconds_start", device))  # (B, 1, D)
        total = self.seconds_total(_batch(seconds_total, B, "seconds_total", device))  # (B, 1, D)
        text = self.text_proj(text.to(start.dtype)) * mask[..., None].to(start.dtype)  # (B, L, D)
        cross = torch.cat([text, start, total], dim=1)  # (B, L + 2, D)
        cross_mask = torch.cat([mask, mask.new_ones(B, 2)], dim=1)  # (B, L + 2)
        global_cond = torch.cat([start, total], dim=-1)[:, 0]  # (B, 2 D)
        return Conditioning(cross=cross, cross_mask=cross_mask, global_cond=global_cond)
