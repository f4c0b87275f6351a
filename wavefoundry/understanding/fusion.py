"""Audio-visual fusion by bidirectional cross-attention; its output is the text decoder's memory.

Design (docs/understanding.md): audio tokens (B, La, Da) and visual tokens (B, Lv, Dv) are projected to width D and
tagged with a learned modality embedding (visual tokens also get a learned position per token, since Swin's tokens
carry no absolute position). Each fusion layer lets each modality attend to the other (co-attention, as ViLBERT,
Lu et al. 2019), then applies a feed-forward per modality::

    a = a + CrossAttn(rms(a), rms(v))      v = v + CrossAttn(rms(v), rms(a))      (both from the layer's input)
    a = a + SwiGLU(rms(a))                 v = v + SwiGLU(rms(v))

The memory is the concatenation ``[a; v]`` (B, La + Lv, D) with the concatenated masks. A modality may be absent:
for the whole batch (None: the other one's tokens alone, no cross-attention) or per row (``present`` False:
its tokens are masked out of the memory, and the other modality's cross-attention update is zeroed for that row),
which is how modality dropout trains the single-modality cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from wavefoundry.nn.attention import CrossAttention
from wavefoundry.nn.ffn import SwiGLU
from wavefoundry.nn.norms import RMSNorm


@dataclass(kw_only=True)
class FusionConfig:
    """Width and depth of :class:`CrossModalFusion`."""

    dim: int = 512
    n_layers: int = 2
    n_heads: int = 8
    ffn_dim: int = 1536
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("dim", "n_heads", "ffn_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"FusionConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_layers < 0:
            raise ValueError(f"FusionConfig.n_layers must be >= 0, got {self.n_layers}")
        if self.dim % self.n_heads:
            raise ValueError(f"FusionConfig: dim={self.dim} is not a multiple of n_heads={self.n_heads}")


@dataclass
class Stream:
    """One modality's tokens (B, L, D), their mask (B, L) bool and which rows have the modality (B,) bool."""

    tokens: Tensor
    mask: Tensor
    present: Tensor


def _cross(attn: CrossAttention, x: Tensor, ctx: Stream) -> Tensor:
    """Cross-attention of x to ``ctx``, zero for rows without ``ctx`` (their all-False mask would give NaN)."""
    safe = ctx.mask | ~ctx.present[:, None]  # (B, Lc): absent rows attend to anything, then get zeroed
    return attn(x, ctx.tokens, safe) * ctx.present[:, None, None].to(x.dtype)


class FusionLayer(nn.Module):
    """One co-attention layer (module docstring)."""

    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        d, eps = cfg.dim, cfg.norm_eps
        self.a_norm, self.v_norm = RMSNorm(d, eps), RMSNorm(d, eps)
        self.a_from_v = CrossAttention(d, d, cfg.n_heads)
        self.v_from_a = CrossAttention(d, d, cfg.n_heads)
        self.a_ffn_norm, self.v_ffn_norm = RMSNorm(d, eps), RMSNorm(d, eps)
        self.a_ffn, self.v_ffn = SwiGLU(d, cfg.ffn_dim), SwiGLU(d, cfg.ffn_dim)

    def forward(self, a: Stream | None, v: Stream | None) -> tuple[Stream | None, Stream | None]:
        na = None if a is None else Stream(self.a_norm(a.tokens), a.mask, a.present)
        nv = None if v is None else Stream(self.v_norm(v.tokens), v.mask, v.present)
        if a is not None:
            h = a.tokens if nv is None else a.tokens + _cross(self.a_from_v, na.tokens, nv)
            a = Stream(h + self.a_ffn(self.a_ffn_norm(h)), a.mask, a.present)
        if v is not None:
            h = v.tokens if na is None else v.tokens + _cross(self.v_from_a, nv.tokens, na)
            v = Stream(h + self.v_ffn(self.v_ffn_norm(h)), v.mask, v.present)
        return a, v


class CrossModalFusion(nn.Module):
    """Audio and/or visual tokens -> memory (B, La + Lv, D) and mask.

    Args:
        cfg: width and depth.
        audio_dim: Da, the audio encoder's width.
        visual_dim: Dv, the vision encoder's width.
        visual_tokens: Lv, visual tokens per image (for their learned positions).
    """

    def __init__(self, cfg: FusionConfig, *, audio_dim: int, visual_dim: int, visual_tokens: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.audio_proj = nn.Linear(audio_dim, cfg.dim)
        self.visual_proj = nn.Linear(visual_dim, cfg.dim)
        self.modality = nn.Parameter(torch.randn(2, cfg.dim) * 0.02)  # [audio, visual]
        self.visual_pos = nn.Parameter(torch.randn(visual_tokens, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(FusionLayer(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def project(self, audio: Stream | None, visual: Stream | None) -> tuple[Stream | None, Stream | None]:
        """Project to width D and add the modality (and visual position) embeddings."""
        if audio is not None:
            audio = Stream(self.audio_proj(audio.tokens) + self.modality[0], audio.mask, audio.present)
        if visual is not None:
            h = self.visual_proj(visual.tokens) + self.modality[1] + self.visual_pos
            visual = Stream(h, visual.mask, visual.present)
        return audio, visual

    def forward(self, audio: Stream | None, visual: Stream | None) -> tuple[Tensor, Tensor]:
        """Projected streams (from :meth:`project`) -> (memory (B, L, D), mask (B, L) bool).

        Raises:
            ValueError: both absent, or a row with neither modality.
        """
        streams = [s for s in (audio, visual) if s is not None]
        if not streams:
            raise ValueError("give audio, an image/video or both: the fusion got neither modality")
        present = torch.stack([s.present for s in streams]).any(0)  # (B,)
        if not bool(present.all()):
            raise ValueError("every row needs audio or a visual input (modality dropout may drop only one)")
        for block in self.blocks:
            audio, visual = block(audio, visual)
        streams = [s for s in (audio, visual) if s is not None]
        memory = self.norm(torch.cat([s.tokens for s in streams], 1))  # (B, La + Lv, D)
        mask = torch.cat([s.mask & s.present[:, None] for s in streams], 1)  # (B, La + Lv)
        return memory, mask
