"""Task formats on top of the token layout: the speech-to-speech translation fine-tune example with its loss mask,
the prompts of ``wavefoundry lm asr|tts|continue``, allowed-id masks for samplers, and tolerant parsing of what a model
generated after a prompt.

Every prompt ends right after an opening delimiter (or inside an open audio block, for continuation), so the model's
continuation is the block's content followed by its closing delimiter; :func:`parse_generated` reads it back.
Formats follow SODA (Manakul et al. 2026, arXiv 2602.16687). See docs/lm_sequences.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from wavefoundry.lm.sequences import (
    Segment,
    TokenLayout,
    Utterance,
    audio_block,
    block,
    codes_to_ids,
    ids_to_codes,
    interleave,
    text_block,
    wrap_document,
)


def _cat(*parts: int | Tensor) -> Tensor:
    return torch.cat([p.view(-1) if isinstance(p, Tensor) else torch.tensor([p]) for p in parts]).to(torch.long)


# --- fine-tune format and prompts -------------------------------------------------------------------------------


def s2st_prompt(layout: TokenLayout, source_codes: Tensor, source_text: Tensor | Sequence[int]) -> Tensor:
    """Speech-to-speech translation prompt: ``[BOS] <source audio block> <source text block> <|text_start|>``."""
    body = _cat(audio_block(layout, source_codes), text_block(layout, source_text), layout.text_start)
    return wrap_document(layout, body, eos=False)


def s2st_document(
    layout: TokenLayout,
    *,
    source_codes: Tensor,
    source_text: Tensor | Sequence[int],
    target_text: Tensor | Sequence[int],
    target_codes: Tensor,
) -> tuple[Tensor, Tensor]:
    """Speech-to-speech translation fine-tune example: source audio, source text, target text, target audio.

    Returns:
        ids (L,) int64 and loss_mask (L,) bool, aligned with ids (``mask[i]``: ids[i] is a training target). The
        mask is True on the response only: everything after :func:`s2st_prompt` (which ends with the target's
        ``<|text_start|>``), i.e. target text, ``<|text_end|>``, the target audio block with its ``<|audio_end|>``,
        and EOS when set.
    """
    prompt = s2st_prompt(layout, source_codes, source_text)
    # text_block minus its <|text_start|>, which the prompt already holds.
    response = _cat(text_block(layout, target_text)[1:], audio_block(layout, target_codes))
    if layout.eos_id is not None:
        response = _cat(response, layout.eos_id)
    mask = torch.cat([torch.zeros(len(prompt), dtype=torch.bool), torch.ones(len(response), dtype=torch.bool)])
    return torch.cat([prompt, response]), mask


def asr_prompt(layout: TokenLayout, codes: Tensor, examples: Iterable[Utterance] = ()) -> Tensor:
    """``[BOS] (few-shot audio-first examples) <|audio_start|> A <|audio_end|> <|text_start|>``; the model continues
    with the transcript and ``<|text_end|>``."""
    shots = [block(layout, s) for s in interleave(examples, "audio_first")]
    return wrap_document(layout, _cat(*shots, audio_block(layout, codes), layout.text_start), eos=False)


def tts_prompt(layout: TokenLayout, text: Tensor | Sequence[int], examples: Iterable[Utterance] = ()) -> Tensor:
    """``[BOS] (few-shot text-first examples, e.g. a voice prompt) <|text_start|> T <|text_end|> <|audio_start|>``;
    the model continues with audio frames and ``<|audio_end|>``."""
    shots = [block(layout, s) for s in interleave(examples, "text_first")]
    return wrap_document(layout, _cat(*shots, text_block(layout, text), layout.audio_start), eos=False)


def continuation_prompt(layout: TokenLayout, codes_prefix: Tensor) -> Tensor:
    """``[BOS] <|audio_start|> A_prefix``: audio continuation from whole frames of a prefix."""
    return wrap_document(layout, _cat(layout.audio_start, codes_to_ids(layout, codes_prefix)), eos=False)


def text_mask(layout: TokenLayout) -> Tensor:
    """(V,) bool: True on text ids and ``<|text_end|>`` (what may follow ``<|text_start|>``)."""
    mask = torch.zeros(layout.vocab_size, dtype=torch.bool)
    mask[: layout.text_vocab_size] = True
    mask[layout.text_end] = True
    return mask


def audio_mask(layout: TokenLayout, slot: int | None = None) -> Tensor:
    """(V,) bool: True on audio ids and ``<|audio_end|>``.

    Args:
        layout: the token layout.
        slot: None allows every audio id; j allows only slot j's codebook (the next id after n generated audio ids
            is slot ``n % K'``) and ``<|audio_end|>`` only at a frame boundary (j == 0).
    """
    mask = torch.zeros(layout.vocab_size, dtype=torch.bool)
    if slot is None:
        mask[layout.audio_offset :] = True
        mask[layout.audio_end] = True
        return mask
    if not 0 <= slot < layout.n_selected:
        raise ValueError(f"slot must be in 0..{layout.n_selected - 1}, got {slot}")
    lo = layout.audio_offset + slot * layout.codebook_size
    mask[lo : lo + layout.codebook_size] = True
    mask[layout.audio_end] = slot == 0
    return mask


# --- reading generated continuations ----------------------------------------------------------------------------

#: Why a generated block stopped: its closing delimiter, EOS, an id that cannot continue it, or the end of the ids.
STOPS = ("end", "eos", "invalid", "length")


@dataclass(frozen=True, eq=False)
class Generated:
    """A generated block read tolerantly.

    Attributes:
        segment: text ids (L,), or audio codes (K', T) of whole frames only (a trailing partial frame is dropped).
        stop: one of :data:`STOPS`.
        stop_at: index of the id that stopped the block (``len(ids)`` when ``stop == "length"``).
    """

    segment: Segment
    stop: str
    stop_at: int

    @property
    def finished(self) -> bool:
        """The model closed the block itself (closing delimiter or EOS)."""
        return self.stop in ("end", "eos")


def _text_run(layout: TokenLayout, ids: Tensor) -> tuple[Tensor, int]:
    """(ids that may continue a text block, its closing delimiter)."""
    ok = ids < layout.text_vocab_size
    if layout.eos_id is not None:
        ok &= ids != layout.eos_id
    ok &= ids >= 0
    return ok, layout.text_end


def _audio_run(layout: TokenLayout, ids: Tensor) -> tuple[Tensor, int]:
    rel = ids - layout.audio_offset
    slot = torch.arange(len(ids)) % layout.n_selected
    ok = (rel >= 0) & (rel < layout.audio_vocab_size) & (rel.div(layout.codebook_size, rounding_mode="floor") == slot)
    return ok, layout.audio_end


_RUNS = {"text": _text_run, "audio": _audio_run}


def parse_generated(layout: TokenLayout, ids: Tensor | Sequence[int], kind: str) -> Generated:
    """Read a block's content from generated ids, never raising on what the model produced.

    Reads ids until the first one that cannot continue a ``kind`` block: ``<|text_end|>``/``<|audio_end|>`` (stop
    "end"), the layout's EOS ("eos"), anything else ("invalid": another special, an id of the other modality, an
    audio id in the wrong codebook slot), or the end of ``ids`` ("length").

    Args:
        layout: the token layout.
        ids: (L,) ids generated right after the prompt's opening delimiter (:func:`asr_prompt` -> "text",
            :func:`tts_prompt` -> "audio"; for :func:`continuation_prompt`, ids after the prefix's last whole frame).
        kind: "text" or "audio".
    """
    if kind not in _RUNS:
        raise ValueError(f"unknown block kind {kind!r}; valid: {', '.join(_RUNS)}")
    ids = torch.as_tensor(ids, dtype=torch.long).view(-1)
    ok, closing = _RUNS[kind](layout, ids)
    bad = (~ok).nonzero()
    stop_at = int(bad[0]) if len(bad) else len(ids)
    if stop_at == len(ids):
        stop = "length"
    elif int(ids[stop_at]) == closing:
        stop = "end"
    else:
        stop = "eos" if layout.eos_id is not None and int(ids[stop_at]) == layout.eos_id else "invalid"
    if kind == "text":
        return Generated(segment=Segment(kind="text", tokens=ids[:stop_at].clone()), stop=stop, stop_at=stop_at)
    whole = stop_at - stop_at % layout.n_selected
    codes = ids_to_codes(layout, ids[:whole])
    return Generated(segment=Segment(kind="audio", tokens=codes), stop=stop, stop_at=stop_at)
