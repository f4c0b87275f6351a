"""Training objectives of the audio+vision -> text model and their weighted sum.

* captioning: next-token cross-entropy of the caption after ``[BOS]`` (padding not counted);
* contrastive: symmetric InfoNCE (CLIP) between pooled audio and visual embeddings of the same clip,
  :func:`wavefoundry.understanding.contrastive.info_nce`; rows that lost a modality to dropout still count (the
  embeddings come before fusion);
* MLM: BLIP-style bidirectional mode of the decoder (docs/understanding.md): BERT masking (Devlin et al. 2019) of
  15% of the caption's text tokens, of which 80% become ``[MASK]``, 10% a random text id, 10% stay; the loss is the
  cross-entropy of the original ids at the chosen positions;
* classification: single-label cross-entropy (softmax) and multi-label binary cross-entropy (sigmoid).

Batch keys (all optional except what the enabled terms need): ``audio`` (B, S), ``audio_lengths`` (B,),
``images`` (B, 3, S, S) or ``frames`` (B, F, 3, S, S) + ``frame_mask``, ``caption`` (B, L) ids ``[BOS] text [EOS]``
right-padded with ``[PAD]``, ``label`` (B,) int64, ``labels`` (B, M) float in {0, 1}.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from wavefoundry.understanding.contrastive import info_nce
from wavefoundry.understanding.encdec import AVTextModel, Encoded
from wavefoundry.understanding.text_decoder import Specials


@dataclass(kw_only=True)
class MultiTaskConfig:
    """Weights of the loss terms (0 turns a term off) and the MLM masking rates."""

    caption: float = 1.0
    contrastive: float = 0.5
    mlm: float = 0.5
    classify: float = 1.0
    multilabel: float = 1.0
    mask_prob: float = 0.15
    mask_token: float = 0.8
    random_token: float = 0.1

    def __post_init__(self) -> None:
        for name in ("caption", "contrastive", "mlm", "classify", "multilabel"):
            if getattr(self, name) < 0:
                raise ValueError(f"MultiTaskConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"MultiTaskConfig.mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.mask_token < 0 or self.random_token < 0 or self.mask_token + self.random_token > 1:
            raise ValueError("MultiTaskConfig: need mask_token, random_token >= 0 with a sum <= 1")


def caption_loss(model: AVTextModel, enc: Encoded, caption: Tensor) -> Tensor:
    """Mean next-token cross-entropy of caption (B, L) ``[BOS] ... [EOS] [PAD]...``; padding is not counted."""
    pad = model.cfg.decoder.specials.pad
    logits = model.caption_logits(caption[:, :-1], enc)  # (B, L - 1, V)
    return F.cross_entropy(logits.flatten(0, 1).float(), caption[:, 1:].flatten(), ignore_index=pad)


def mlm_mask(
    ids: Tensor, specials: Specials, text_vocab: int, cfg: MultiTaskConfig, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """BERT masking of the text ids of ids (B, L); specials are never chosen.

    Returns:
        (inputs (B, L) with the chosen ids replaced and ``[BOS]`` turned into ``[ENC]``, targets (B, L): the
        original id at chosen positions, -100 elsewhere). Every row with a text id gets at least one chosen.
    """
    text = ids < text_vocab  # (B, L)
    u = torch.rand(ids.shape, generator=generator).to(ids.device)
    chosen = text & (u < cfg.mask_prob)
    # At least one per row: the text position with the smallest draw.
    first = u.masked_fill(~text, 2.0).argmin(1)  # (B,)
    chosen[torch.arange(ids.shape[0]), first] |= text.any(1)
    kind = torch.rand(ids.shape, generator=generator).to(ids.device)
    to_mask = chosen & (kind < cfg.mask_token)
    to_random = chosen & (kind >= cfg.mask_token) & (kind < cfg.mask_token + cfg.random_token)
    random_ids = torch.randint(0, text_vocab, ids.shape, generator=generator).to(ids.device)
    inputs = torch.where(to_mask, specials.mask, torch.where(to_random, random_ids, ids))
    inputs = torch.where(inputs == specials.bos, specials.enc, inputs)
    return inputs, torch.where(chosen, ids, -100)


def mlm_loss(model: AVTextModel, enc: Encoded, caption: Tensor, cfg: MultiTaskConfig, generator=None) -> Tensor:
    """Cross-entropy of the original ids at the masked positions, through the bidirectional mode."""
    dec = model.cfg.decoder
    inputs, targets = mlm_mask(caption, dec.specials, dec.text_vocab, cfg, generator)
    logits = model.mlm_logits(inputs, enc, key_mask=caption != dec.specials.pad)  # (B, L, V)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)


def classification_losses(enc_logits: tuple[Tensor | None, Tensor | None], batch: dict) -> dict[str, Tensor]:
    """Single-label CE against ``label`` (B,) and multi-label BCE against ``labels`` (B, M), where both exist."""
    single, multi = enc_logits
    out = {}
    if single is not None and "label" in batch:
        out["classify"] = F.cross_entropy(single.float(), batch["label"])
    if multi is not None and "labels" in batch:
        out["multilabel"] = F.binary_cross_entropy_with_logits(multi.float(), batch["labels"].float())
    return out


def multitask_loss(
    model: AVTextModel, batch: dict, cfg: MultiTaskConfig, generator: torch.Generator | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """``sum_k w_k L_k`` over the terms with a weight > 0 that the batch and model allow.

    Returns:
        (loss, metrics): the scalar loss and each term's detached value.

    Raises:
        ValueError: no term applies (e.g. no caption and no labels).
    """
    enc = model.encode(
        audio=batch.get("audio"),
        audio_lengths=batch.get("audio_lengths"),
        images=batch.get("images"),
        frames=batch.get("frames"),
        frame_mask=batch.get("frame_mask"),
        generator=generator,
    )
    terms: dict[str, Tensor] = {}
    if "caption" in batch and cfg.caption > 0:
        terms["caption"] = caption_loss(model, enc, batch["caption"])
    if "caption" in batch and cfg.mlm > 0:
        terms["mlm"] = mlm_loss(model, enc, batch["caption"], cfg, generator)
    if enc.audio is not None and enc.visual is not None and cfg.contrastive > 0 and enc.memory.shape[0] > 1:
        terms["contrastive"] = info_nce(model.contrastive_logits(enc))
    terms.update(classification_losses(model.class_logits(enc), batch))
    weights = {k: getattr(cfg, k) for k in terms}
    terms = {k: v for k, v in terms.items() if weights[k] > 0}
    if not terms:
        raise ValueError(f"no loss term applies to a batch with keys {sorted(batch)} and weights {cfg}")
    loss = sum(weights[k] * v for k, v in terms.items())
    return loss, {k: v.detach() for k, v in terms.items()}
