"""Autoregressive generation through the KV cache, and the pure sampling helpers it uses.

:func:`generate` runs the prompt once (prefill), then one token per step, each step reading the cached keys and
values of everything before it. Sampling (:func:`~wavefoundry.nn.sampling.sample_next`, shared with the other
decoders) is a pure function of the logits: restrict to the allowed ids (ASR decodes text ids only, TTS audio ids
only), divide by the temperature, keep the top-k ids (Fan et al. 2018) and the nucleus (top-p, Holtzman et al.
2020), then draw; temperature 0 is greedy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from wavefoundry.lm.decoder import Decoder
from wavefoundry.nn.sampling import filter_logits as filter_logits
from wavefoundry.nn.sampling import sample_next

#: An allowed-id mask, (V,) or (B, V) bool, or a callable ``(step, ids) -> mask`` asked at every step with the
#: ids so far (B, L + step).
Allowed = Tensor | Callable[[int, Tensor], Tensor]


def _check_request(model: Decoder, prompt: Tensor, max_new_tokens: int, prompt_mask: Tensor | None) -> None:
    if prompt.ndim != 2 or prompt.dtype != torch.int64 or prompt.shape[1] == 0:
        raise ValueError(f"prompt must be (B, L) int64 with L >= 1, got {tuple(prompt.shape)} {prompt.dtype}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    total, limit = prompt.shape[1] + max_new_tokens, model.cfg.max_seq_len
    if total > limit:
        raise ValueError(
            f"prompt of {prompt.shape[1]} tokens + max_new_tokens={max_new_tokens} = {total} exceeds the model's "
            f"max_seq_len={limit}"
        )
    if prompt_mask is not None and (prompt_mask.shape != prompt.shape or prompt_mask.dtype != torch.bool):
        raise ValueError(f"prompt_mask must be (B, L) bool like the prompt, got {tuple(prompt_mask.shape)}")


@torch.inference_mode()
def generate(
    model: Decoder,
    prompt: Tensor,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
    allowed: Allowed | None = None,
    prompt_mask: Tensor | None = None,
) -> Tensor:
    """Continue each prompt row by up to ``max_new_tokens`` sampled ids, through a KV cache.

    Args:
        model: the decoder (its mode is left as it is; call ``model.eval()`` first).
        prompt: (B, L) int64 ids; rows of unequal length are left-padded, with ``prompt_mask``.
        max_new_tokens: most ids to add; L + max_new_tokens must fit the model's ``max_seq_len``.
        temperature, top_k, top_p: as :func:`sample_next` (temperature 0: greedy).
        generator: random source for the draws.
        eos_id: a row that draws it is finished and continues with ``eos_id``; generation stops early once
            every row is.
        allowed: (V,) or (B, V) bool, or a callable ``(step, ids) -> mask`` (step 0 is the first new id, ids the
            (B, L + step) sequence so far), e.g. text ids only for ASR, one codebook's ids per step for TTS.
        prompt_mask: (B, L) bool, False on left padding.

    Returns:
        (B, L + n) int64: the prompt then n <= max_new_tokens new ids.
    """
    _check_request(model, prompt, max_new_tokens, prompt_mask)
    B, L = prompt.shape
    if max_new_tokens == 0:
        return prompt
    out = torch.cat((prompt, prompt.new_zeros(B, max_new_tokens)), dim=1)  # (B, L + max_new_tokens)
    cache = model.new_cache(B, L + max_new_tokens)
    logits = model(prompt, cache=cache, key_mask=prompt_mask, last_only=True)[:, -1]  # (B, V)
    done = torch.zeros(B, dtype=torch.bool, device=prompt.device)
    sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "generator": generator}
    for step in range(max_new_tokens):
        if step:
            logits = model(out[:, L + step - 1 : L + step], cache=cache)[:, -1]  # (B, V)
        mask = allowed(step, out[:, : L + step]) if callable(allowed) else allowed
        token = sample_next(logits, allowed=mask, **sampling)  # (B,)
        if eos_id is not None:
            token = token.masked_fill(done, eos_id)
            done |= token == eos_id
        out[:, L + step] = token
        if eos_id is not None and bool(done.all()):
            return out[:, : L + step + 1]
    return out
