"""MaskGIT-style iterative parallel decoding of codec codes, one codebook (stage) after another (MAGNeT, Ziv et al.
2024, Sec. 3.2, as audiocraft's ``MagnetLMModel._generate_stage``; MaskGIT, Chang et al. 2022, Sec. 3.2).

Stage k runs S_k steps. At step s (``t_s = s / (S_k - 1)``, the mask rate ``gamma_s = cos(pi t_s / 2)``):

1. re-mask: step 0 masks every free frame of codebook k; later steps mask the ``max(1, floor(gamma_s n))`` least
   confident of the n free non-overlapping spans of ``span`` frames, a span's score being the max (or mean) of its
   frames' uncertainties ``-log p(sampled id)``; frames given by the caller (prefix, the kept part of an inpainting)
   are never masked, so they come back exactly;
2. predict every frame with classifier-free guidance ``l_u + w_s (l_c - l_u)``, the scale annealed with the mask
   rate ``w_s = w_min + (w_max - w_min) gamma_s`` (audiocraft's max/min CFG coefficients);
3. sample each masked frame at the annealed temperature ``tau_s = tau (S_k - 1 - s) / S_k`` (the last step is
   greedy) with top-p/top-k (``lm/generate.py``'s :func:`sample_next`), and record its uncertainty.

Every masked frame is sampled at every step, so no [MASK] id is left at the end (tested). The model is any callable
``logits_fn(codes (B, K, T), stage, guidance_scale) -> logits (B, T, V)``; :class:`GuidedLogits` builds one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from wavefoundry.config import ConfigError
from wavefoundry.lm.generate import sample_next
from wavefoundry.lm.masked import MaskedTransformer
from wavefoundry.lm.masking import cosine_schedule, frame_spans

#: ``logits_fn(codes (B, K, T), stage, guidance_scale) -> (B, T, V)`` logits of codebook ``stage``.
LogitsFn = Callable[[Tensor, int, float], Tensor]


def _span_max(scores: Tensor, spans: Tensor, n_spans: int) -> Tensor:
    out = scores.new_full((scores.shape[0], n_spans), float("-inf"))
    return out.scatter_reduce(1, spans.expand_as(scores), scores, reduce="amax")


def _span_mean(scores: Tensor, spans: Tensor, n_spans: int) -> Tensor:
    finite = torch.isfinite(scores)
    total = scores.new_zeros(scores.shape[0], n_spans).scatter_add(1, spans.expand_as(scores), scores.where(finite, 0))
    count = scores.new_zeros(total.shape).scatter_add(1, spans.expand_as(scores), finite.to(scores.dtype))
    return (total / count.clamp(min=1)).masked_fill(count == 0, float("-inf"))


#: Span score name -> (scores (B, T) with -inf on fixed frames, span ids (1, T), n_spans) -> (B, n_spans).
SPAN_SCORES = {"max": _span_max, "mean": _span_mean}


@dataclass(kw_only=True)
class DecodeConfig:
    """Settings of :func:`decode`; the defaults are MAGNeT's (audiocraft ``MAGNeT.set_generation_params``)."""

    steps: tuple[int, ...] = (20, 10, 10, 10)
    temperature: float = 3.0
    top_p: float | None = 0.9
    top_k: int | None = None
    cfg_max: float = 10.0
    cfg_min: float = 1.0
    span: int = 3
    span_score: str = "max"

    def __post_init__(self) -> None:
        self.steps = tuple(int(s) for s in self.steps)
        if not self.steps or min(self.steps) < 1:
            raise ConfigError(f"decode steps must be one count >= 1 per codebook, got {self.steps}")
        if self.temperature < 0 or self.span < 1:
            raise ConfigError(f"decode needs temperature >= 0 and span >= 1, got {self.temperature}, {self.span}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"decode top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"decode top_k must be >= 1, got {self.top_k}")
        if self.span_score not in SPAN_SCORES:
            raise ConfigError(f"decode span_score: unknown {self.span_score!r}; valid: {', '.join(SPAN_SCORES)}")
        if not (math.isfinite(self.cfg_max) and math.isfinite(self.cfg_min)):
            raise ConfigError(f"decode cfg_max/cfg_min must be finite, got {self.cfg_max}, {self.cfg_min}")


class GuidedLogits:
    """Classifier-free guidance over a :class:`MaskedTransformer`: ``l_u + w (l_c - l_u)`` in one batched call.

    Args:
        model: the transformer (call ``model.eval()`` first).
        context, context_mask: (B, Lc, Dc) conditional tokens and their (B, Lc) mask.
        null_context, null_mask: the unconditional ones (same shapes).
    """

    def __init__(self, model: MaskedTransformer, context: Tensor, context_mask: Tensor | None, null_context: Tensor,
                 null_mask: Tensor | None) -> None:  # fmt: skip
        self.model = model
        self.context, self.context_mask = context, context_mask
        self.both = torch.cat((context, null_context))  # (2B, Lc, Dc)
        self.both_mask = None if context_mask is None else torch.cat((context_mask, null_mask))

    def __call__(self, codes: Tensor, stage: int, scale: float) -> Tensor:
        """(B, K, T) codes -> (B, T, V) guided float32 logits of codebook ``stage``."""
        if scale == 1.0:
            return self.model(codes, stage, context=self.context, context_mask=self.context_mask).float()
        logits = self.model(codes.repeat(2, 1, 1), stage, context=self.both, context_mask=self.both_mask).float()
        cond, uncond = logits.chunk(2)  # (B, T, V) each
        return uncond + scale * (cond - uncond)


def _remask(scores: Tensor, free: Tensor, gamma: float, cfg: DecodeConfig) -> Tensor:
    """Frames to mask at a step after the first: the least confident ``max(1, floor(gamma n))`` of n free spans."""
    B, T = scores.shape
    spans = frame_spans(T, cfg.span, scores.device)[None]  # (1, T)
    n_spans = int(spans.max()) + 1
    span_scores = SPAN_SCORES[cfg.span_score](scores.masked_fill(~free, float("-inf")), spans, n_spans)  # (B, S)
    n_free = torch.isfinite(span_scores).sum(-1)  # (B,)
    n_mask = torch.minimum(n_free, (gamma * n_free).floor().long().clamp(min=1))  # (B,)
    rank = span_scores.argsort(-1, descending=True).argsort(-1)  # (B, S): 0 = least confident
    chosen = rank < n_mask[:, None]  # (B, S)
    return chosen.gather(1, spans.expand(B, T)) & free  # (B, T)


def _check(codes: Tensor, known: Tensor, cfg: DecodeConfig) -> None:
    if codes.ndim != 3 or codes.is_floating_point():
        raise ValueError(f"codes must be (B, K, T) integer ids, got {tuple(codes.shape)} {codes.dtype}")
    if known.dtype != torch.bool or known.shape != codes.shape:
        raise ValueError(f"known must be a (B, K, T) bool mask like codes, got {tuple(known.shape)} {known.dtype}")
    if len(cfg.steps) != codes.shape[1]:
        raise ValueError(f"the step schedule {cfg.steps} has {len(cfg.steps)} stages; the model has "
                         f"{codes.shape[1]} codebooks (give one step count >= 1 per codebook)")  # fmt: skip


@torch.inference_mode()
def decode(
    logits_fn: LogitsFn,
    codes: Tensor,
    known: Tensor,
    cfg: DecodeConfig,
    *,
    mask_id: int,
    generator: torch.Generator | None = None,
    callback: Callable[[int, int, Tensor], None] | None = None,
) -> Tensor:
    """Fill every unknown frame of every codebook by iterative parallel decoding (module doc).

    Args:
        logits_fn: the model, ``(codes, stage, guidance_scale) -> (B, T, V)`` (e.g. :class:`GuidedLogits`).
        codes: (B, K, T) int64; values at ``known`` frames are kept exactly, the rest are ignored.
        known: (B, K, T) bool, True = given (a prefix, the kept part of an inpainting).
        cfg: steps per stage (one per codebook), temperature, top-p/top-k, CFG range, span scoring.
        mask_id: the [MASK] id (the model's ``codebook_size``).
        generator: random source of the draws.
        callback: called as ``callback(stage, step, codes)`` after every step.

    Returns:
        (B, K, T) int64 codes with no [MASK] id left.
    """
    _check(codes, known, cfg)
    codes = codes.masked_fill(~known, mask_id)  # (B, K, T)
    for k, S in enumerate(cfg.steps):
        free = ~known[:, k]  # (B, T)
        if not bool(free.any()):
            continue
        scores = torch.zeros(free.shape, device=codes.device)  # (B, T) uncertainty of the current ids
        for s in range(S):
            gamma = float(cosine_schedule(s / (S - 1) if S > 1 else 0.0))
            mask = free if s == 0 else _remask(scores, free, gamma, cfg)  # (B, T)
            codes[:, k] = codes[:, k].masked_fill(mask, mask_id)
            scale = cfg.cfg_min + (cfg.cfg_max - cfg.cfg_min) * gamma
            logits = logits_fn(codes, k, scale)[mask]  # (N, V) at the masked frames
            tau = cfg.temperature * (S - 1 - s) / S
            ids = sample_next(logits, temperature=tau, top_k=cfg.top_k, top_p=cfg.top_p, generator=generator)
            logp = logits.log_softmax(-1).gather(-1, ids[:, None]).squeeze(-1)  # (N,)
            codes[:, k][mask] = ids
            scores[mask] = -logp
            if callback is not None:
                callback(k, s, codes)
    if bool((codes == mask_id).any()):
        raise RuntimeError("decoding left [MASK] ids (a bug: every masked frame is sampled at every step)")
    return codes
