"""Chunked encoding and decoding with overlap: exact (to float tolerance) and bounded in memory for any length.

A convolutional encoder/decoder output at one position depends on a finite window of its input (the receptive
field, derived from the config in ``codecs/receptive.py``). Each chunk is processed together with ``context``
frames of real input on both sides; the outputs over the context are dropped, so every kept output saw exactly
the input it would have seen in a full pass. At the true signal edges there is no context and the chunk sees the
same zero padding as the full pass. Peak memory is that of one chunk plus the output buffer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Fn = Callable[[torch.Tensor], torch.Tensor]


def _spans(length: int, chunk: int, context: int) -> list[tuple[int, int, int, int]]:
    """(input start, input stop, keep start, keep stop) in frames for chunks of ``chunk`` frames."""
    if chunk < 1 or context < 0:
        raise ValueError(f"chunk must be >= 1 and context >= 0, got chunk={chunk}, context={context}")
    spans = []
    for start in range(0, length, chunk):
        stop = min(start + chunk, length)
        lo, hi = max(0, start - context), min(length, stop + context)
        spans.append((lo, hi, start - lo, stop - lo))
    return spans


@torch.no_grad()
def encode_chunked(
    encode: Fn, audio: torch.Tensor, *, hop: int, chunk_frames: int, context_frames: int
) -> torch.Tensor:
    """Encode long audio chunk by chunk.

    Args:
        encode: (B, C, T) -> (B, D, T / hop), e.g. an Oobleck encoder (before the bottleneck).
        audio: (B, C, T); T is zero-padded up to a multiple of ``hop`` (as a full pass would need).
        hop: samples per latent frame.
        chunk_frames: latent frames produced per chunk (memory grows with it).
        context_frames: frames of input context each side; must cover the encoder's receptive field.

    Returns:
        (B, D, ceil(T / hop)) latents equal to ``encode(padded audio)``.
    """
    frames = -(-audio.shape[-1] // hop)
    audio = F.pad(audio, (0, frames * hop - audio.shape[-1]))
    out = None
    for lo, hi, keep_lo, keep_hi in _spans(frames, chunk_frames, context_frames):
        z = encode(audio[..., lo * hop : hi * hop])  # (B, D, hi - lo)
        if z.shape[-1] != hi - lo:
            raise ValueError(f"encoder returned {z.shape[-1]} frames for {hi - lo} x {hop} samples; hop is wrong")
        if out is None:
            out = z.new_empty(z.shape[0], z.shape[1], frames)
        out[..., lo + keep_lo : lo + keep_hi] = z[..., keep_lo:keep_hi]
    return out


@torch.no_grad()
def decode_chunked(
    decode: Fn, latents: torch.Tensor, *, hop: int, chunk_frames: int, context_frames: int
) -> torch.Tensor:
    """Decode long latents chunk by chunk.

    Args:
        decode: (B, D, L) -> (B, C, L * hop), e.g. an Oobleck decoder.
        latents: (B, D, L).
        hop: samples per latent frame.
        chunk_frames: latent frames decoded per chunk (memory grows with it).
        context_frames: latent frames of context each side; must cover the decoder's receptive field.

    Returns:
        (B, C, L * hop) audio equal to ``decode(latents)``.
    """
    length = latents.shape[-1]
    out = None
    for lo, hi, keep_lo, keep_hi in _spans(length, chunk_frames, context_frames):
        y = decode(latents[..., lo:hi])  # (B, C, (hi - lo) * hop)
        if y.shape[-1] != (hi - lo) * hop:
            raise ValueError(f"decoder returned {y.shape[-1]} samples for {hi - lo} frames x hop {hop}")
        if out is None:
            out = y.new_empty(y.shape[0], y.shape[1], length * hop)
        out[..., (lo + keep_lo) * hop : (lo + keep_hi) * hop] = y[..., keep_lo * hop : keep_hi * hop]
    return out
