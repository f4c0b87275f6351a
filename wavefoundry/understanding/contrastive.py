"""A small contrastive text-audio model (CLAP design, Elizalde et al. 2023; CLIP, Radford et al. 2021).

Two towers map audio and text into one D-dimensional space where matching pairs have a high cosine similarity:

* audio: an :class:`~wavefoundry.understanding.tagger.AudioTagger`'s clip embedding (log-mel CNN, global
  mean + max pooling), then a linear projection to D;
* text: a token encoder ``text(ids (B, L), mask (B, L)) -> (B, L, text_dim)`` that is zero on padding (the
  project's learned text encoder; passed in, so this module does not depend on the conditioning package), mean
  pooled over the real tokens, then a linear projection to D.

Both are L2-normalised; the logits are ``exp(t) * a @ u^T`` with a learned log-scale ``t`` (CLIP's temperature,
initialised to 1 / 0.07 and clamped at 100), trained with the symmetric InfoNCE loss (:func:`info_nce`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavefoundry.understanding.tagger import AudioTagger


@dataclass(kw_only=True)
class ContrastiveConfig:
    """The shared space of :class:`ContrastiveModel`: width D and the temperature's start and bound.

    ``init_temperature`` 0.07 and ``max_logit_scale`` 100 are CLIP's (Radford et al. 2021, section 2.5).
    """

    embed_dim: int = 128
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0

    def __post_init__(self) -> None:
        if self.embed_dim < 1:
            raise ValueError(f"contrastive.embed_dim must be >= 1, got {self.embed_dim}")
        if not 0.0 < self.init_temperature <= 1.0:
            raise ValueError(f"contrastive.init_temperature must be in (0, 1], got {self.init_temperature}")
        if self.max_logit_scale < 1.0 / self.init_temperature:
            raise ValueError(
                f"contrastive.max_logit_scale ({self.max_logit_scale}) must be >= 1 / init_temperature "
                f"({1.0 / self.init_temperature:g})"
            )


class ContrastiveModel(nn.Module):
    """Audio tower + text tower + projections + learned temperature.

    Args:
        cfg: shared space settings.
        audio: the audio tower; its ``embed`` gives (B, audio.cfg.embed_dim) (its classification head is unused).
        text: token encoder ``(ids (B, L), mask (B, L)) -> (B, L, text_dim)``, zero where ``mask`` is False.
        text_dim: the text encoder's output width.
    """

    def __init__(self, cfg: ContrastiveConfig, *, audio: AudioTagger, text: nn.Module, text_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.audio = audio
        self.text = text
        self.audio_proj = nn.Linear(audio.cfg.embed_dim, cfg.embed_dim)
        self.text_proj = nn.Linear(text_dim, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    @property
    def dim(self) -> int:
        return self.cfg.embed_dim

    def embed_audio(self, audio: Tensor) -> Tensor:
        """L2-normalised embeddings (B, D) of audio (B, C, T) at the tower's rate (channels are averaged)."""
        return F.normalize(self.audio_proj(self.audio.embed(audio)).float(), dim=-1)

    def embed_text(self, ids: Tensor, mask: Tensor) -> Tensor:
        """L2-normalised embeddings (B, D) of token ids (B, L) with mask (B, L) (True on real tokens).

        Raises:
            ValueError: a row without any real token (its mean would be undefined).
        """
        counts = mask.sum(dim=1, keepdim=True)  # (B, 1)
        if bool((counts == 0).any()):
            raise ValueError("embed_text: every text needs at least one token")
        h = self.text(ids, mask)  # (B, L, text_dim), zero on padding
        pooled = h.sum(dim=1) / counts.to(h.dtype)  # (B, text_dim): mean over the real tokens
        return F.normalize(self.text_proj(pooled).float(), dim=-1)

    def scale(self) -> Tensor:
        """The logit scale exp(t), clamped at ``max_logit_scale`` (CLIP clips it at 100 for stability)."""
        return self.logit_scale.clamp(max=math.log(self.cfg.max_logit_scale)).exp()

    def forward(self, audio: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
        """Logits (B, B): row i scores audio i against every text of the batch (the diagonal are the pairs)."""
        a = self.embed_audio(audio)  # (B, D)
        u = self.embed_text(ids, mask)  # (B, D)
        return self.scale() * a @ u.T  # (B, B)


def info_nce(logits: Tensor) -> Tensor:
    """Symmetric InfoNCE (CLIP, Radford et al. 2021, figure 3): mean of the audio->text and text->audio
    cross-entropies of square logits (B, B) whose positives are on the diagonal."""
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"info_nce needs square logits (B, B), got {tuple(logits.shape)}")
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def in_batch_recall_at_1(logits: Tensor) -> tuple[Tensor, Tensor]:
    """(audio->text, text->audio) share of rows whose diagonal entry is strictly the largest of logits (B, B)."""
    diag = logits.diagonal()  # (B,)
    off = logits - torch.diag_embed(torch.full_like(diag, float("inf")))  # the diagonal can never beat itself
    a2t = (diag > off.amax(dim=1)).float().mean()
    t2a = (diag > off.amax(dim=0)).float().mean()
    return a2t, t2a
