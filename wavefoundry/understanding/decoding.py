"""Caption decoding through the :class:`~wavefoundry.understanding.text_decoder.TextDecoder`'s KV cache: greedy or
sampled (temperature, top-k, top-p via :func:`wavefoundry.nn.sampling.sample_next`) and beam search with the GNMT
length penalty (Wu et al. 2016, eq. 14): a finished hypothesis Y scores ``log P(Y) / lp(Y)`` with
``lp(Y) = ((5 + |Y|) / 6) ** alpha``, |Y| counting the generated tokens with the end token.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wavefoundry.nn.sampling import sample_next
from wavefoundry.understanding.text_decoder import TextDecoder


def _check(decoder: TextDecoder, max_new_tokens: int, prompt_len: int) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if prompt_len + max_new_tokens > decoder.cfg.max_seq_len:
        raise ValueError(
            f"{prompt_len} prompt + {max_new_tokens} new tokens exceed max_seq_len={decoder.cfg.max_seq_len}"
        )


@torch.inference_mode()
def sample_captions(
    decoder: TextDecoder,
    memory: Tensor,
    memory_mask: Tensor,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Greedy (temperature 0) or sampled captions, one per memory row, stopping at ``[EOS]``.

    Args:
        decoder: the text decoder (call ``.eval()`` first).
        memory: (B, Lm, Dm) fused tokens; memory_mask (B, Lm) bool.
        max_new_tokens: most tokens after ``[BOS]``.
        temperature, top_k, top_p, generator: as :func:`~wavefoundry.nn.sampling.sample_next`; only text ids and
            ``[EOS]`` may be drawn.

    Returns:
        (B, n) int64 new ids (no ``[BOS]``); rows that ended early continue with ``[EOS]``.
    """
    _check(decoder, max_new_tokens, 1)
    sp, B = decoder.cfg.specials, memory.shape[0]
    allowed = torch.zeros(decoder.cfg.vocab_size, dtype=torch.bool, device=memory.device)
    allowed[: decoder.cfg.text_vocab] = True
    allowed[sp.eos] = True
    sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "generator": generator}
    cache = decoder.new_cache(1 + max_new_tokens)
    token = torch.full((B, 1), sp.bos, dtype=torch.long, device=memory.device)
    done = torch.zeros(B, dtype=torch.bool, device=memory.device)
    out = []
    for _ in range(max_new_tokens):
        logits = decoder(token, memory, memory_mask, cache=cache)[:, -1]  # (B, V)
        nxt = sample_next(logits, allowed=allowed, **sampling)  # (B,)
        nxt = torch.where(done, torch.full_like(nxt, sp.eos), nxt)
        out.append(nxt)
        done |= nxt == sp.eos
        if bool(done.all()):
            break
        token = nxt[:, None]
    return torch.stack(out, dim=1)


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ``((5 + length) / 6) ** alpha`` (Wu et al. 2016)."""
    return ((5.0 + length) / 6.0) ** alpha


#: One row's finished hypotheses: (ids, length-normalised score).
Hypotheses = list[tuple[list[int], float]]


def _advance_row(
    top: list[float],
    idx: list[int],
    seqs: Tensor,
    row: int,
    k: int,
    v: int,
    eos: int,
    alpha: float,
    finished: Hypotheses,
) -> list[tuple[float, int, int]]:
    """Walk one row's best candidates: those ending in ``[EOS]`` join ``finished``, the first K others stay live.

    Returns:
        Up to K live (score, source beam row in the flat batch, token), best first.
    """
    live = []
    for score, i in zip(top, idx, strict=True):
        if len(live) == k or score == float("-inf") or len(finished) >= k:
            break
        beam, tok = divmod(i, v)
        if tok == eos:
            ids = [*seqs[row * k + beam].tolist(), tok]
            finished.append((ids, score / length_penalty(len(ids), alpha)))
        else:
            live.append((score, row * k + beam, tok))
    return live


@torch.inference_mode()
def beam_search(
    decoder: TextDecoder,
    memory: Tensor,
    memory_mask: Tensor,
    *,
    beams: int,
    max_new_tokens: int,
    alpha: float = 0.6,
) -> list[Hypotheses]:
    """Beam search over text ids and ``[EOS]``; a row stops once it holds ``beams`` finished hypotheses.

    Hypotheses still open at ``max_new_tokens`` are finished there (scored without an end token).

    Args:
        decoder: the text decoder (``.eval()``).
        memory: (B, Lm, Dm); memory_mask (B, Lm) bool.
        beams: K >= 1 (1 is greedy).
        max_new_tokens: most tokens after ``[BOS]``.
        alpha: length-penalty exponent >= 0 (0: raw log-probability).

    Returns:
        Per row, up to K ``(ids, score)`` pairs sorted by score, best first; ids without ``[BOS]``, ending with
        ``[EOS]`` when finished.
    """
    _check(decoder, max_new_tokens, 1)
    if beams < 1 or alpha < 0:
        raise ValueError(f"need beams >= 1 and alpha >= 0, got beams={beams}, alpha={alpha}")
    sp, (B, K), V, dev = decoder.cfg.specials, (memory.shape[0], beams), decoder.cfg.vocab_size, memory.device
    banned = torch.ones(V, dtype=torch.bool, device=dev)
    banned[: decoder.cfg.text_vocab] = False
    banned[sp.eos] = False
    memory, memory_mask = memory.repeat_interleave(K, 0), memory_mask.repeat_interleave(K, 0)  # (B K, Lm, ...)
    cache = decoder.new_cache(1 + max_new_tokens)
    seqs = torch.zeros(B * K, 0, dtype=torch.long, device=dev)
    scores = torch.full((B, K), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # one live beam at the start
    token = torch.full((B * K, 1), sp.bos, dtype=torch.long, device=dev)
    finished: list[Hypotheses] = [[] for _ in range(B)]
    for _ in range(max_new_tokens):
        logp = decoder(token, memory, memory_mask, cache=cache)[:, -1].float().log_softmax(-1)  # (B K, V)
        cand = (scores.view(B * K, 1) + logp.masked_fill(banned, float("-inf"))).view(B, K * V)  # (B, K V)
        top, idx = cand.topk(2 * K, dim=1)  # (B, 2K): enough to keep K live ones after K finish
        live = torch.tensor([(float("-inf"), 0, sp.eos)] * (B * K), device=dev)  # (B K, 3): score, source, token
        for b in range(B):
            chosen = _advance_row(top[b].tolist(), idx[b].tolist(), seqs, b, K, V, sp.eos, alpha, finished[b])
            if chosen:
                live[b * K : b * K + len(chosen)] = torch.tensor(chosen, device=dev)
        src, token = live[:, 1].long(), live[:, 2].long().view(-1, 1)
        seqs, scores = torch.cat((seqs.index_select(0, src), token), 1), live[:, 0].view(B, K)  # (B K, step + 1)
        if all(len(f) >= K for f in finished):
            break
        cache.reorder(src)
    return [_finish(finished[b], seqs[b * K : (b + 1) * K], scores[b], K, alpha) for b in range(B)]


def _finish(finished: Hypotheses, seqs: Tensor, scores: Tensor, k: int, alpha: float) -> Hypotheses:
    """Top up a row's finished hypotheses with its open beams (seqs (K, n), scores (K,)), best K first."""
    for ids, score in zip(seqs.tolist(), scores.tolist(), strict=True):
        if len(finished) < k and score > float("-inf"):
            finished.append((ids, score / length_penalty(len(ids), alpha)))
    return sorted(finished, key=lambda h: h[1], reverse=True)[:k]
