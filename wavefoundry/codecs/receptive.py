"""Receptive fields of the Oobleck encoder and decoder, derived from an :class:`OobleckConfig`.

The networks are walked as a chain of convolutions (kernel, stride, dilation, padding); activations are
point-wise and a residual unit's skip path reaches less far than its branch, so neither adds reach. Index
intervals are propagated exactly, with the floors and ceilings that strides and transposed convolutions bring.

Chunked coding needs, for a chunk whose core is cut at frame boundaries, how much context each side makes the
core bit-for-bit the same as coding the whole signal (up to float rounding). Every intermediate tensor of the
chunk must then hold the values the whole-signal pass holds wherever the core's outputs look, so the reach is
checked at every layer, not only at the input: :func:`encoder_context` (samples) and :func:`decoder_context`
(latent frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wavefoundry.codecs.oobleck import DILATIONS, RES_KERNEL, OobleckConfig

Interval = tuple[int, int]  # inclusive [first, last] index


@dataclass(frozen=True)
class ConvOp:
    """One convolution as index arithmetic; ``transposed`` ones have dilation 1 (as in Oobleck)."""

    kernel: int
    stride: int = 1
    dilation: int = 1
    padding: int = 0
    transposed: bool = False

    def inputs_of(self, out: Interval) -> Interval:
        """Input indices that outputs ``out`` read (before zero padding is considered)."""
        a, b = out
        k, s, d, p = self.kernel, self.stride, self.dilation, self.padding
        if self.transposed:  # output o = s * i - p + m, m in [0, k)
            return -((-(a + p - k + 1)) // s), (b + p) // s
        return s * a - p, s * b - p + d * (k - 1)

    def outputs_of(self, inp: Interval) -> Interval:
        """Output indices that inputs ``inp`` reach."""
        a, b = inp
        k, s, d, p = self.kernel, self.stride, self.dilation, self.padding
        if self.transposed:
            return s * a - p, s * b - p + k - 1
        return -((-(a + p - d * (k - 1))) // s), (b + p) // s


def _residual_ops() -> list[ConvOp]:
    ops = []
    for d in DILATIONS:
        ops += [ConvOp(RES_KERNEL, dilation=d, padding=(RES_KERNEL - 1) * d // 2), ConvOp(1)]
    return ops


def encoder_ops(cfg: OobleckConfig) -> list[ConvOp]:
    """The encoder's convolutions in forward order."""
    ops = [ConvOp(7, padding=3)]
    for s in cfg.strides:
        ops += [*_residual_ops(), ConvOp(2 * s, stride=s, padding=math.ceil(s / 2))]
    return [*ops, ConvOp(3, padding=1)]


def decoder_ops(cfg: OobleckConfig) -> list[ConvOp]:
    """The decoder's convolutions in forward order."""
    ops = [ConvOp(7, padding=3)]
    for s in reversed(cfg.strides):
        ops += [ConvOp(2 * s, stride=s, padding=math.ceil(s / 2), transposed=True), *_residual_ops()]
    return [*ops, ConvOp(7, padding=3)]


def _backward(ops: list[ConvOp], out: Interval) -> list[Interval]:
    """Interval read at the input of every op (last op first), walking back from output interval ``out``."""
    intervals = []
    for op in reversed(ops):
        out = op.inputs_of(out)
        intervals.append(out)
    return intervals


def encoder_receptive_field(cfg: OobleckConfig) -> tuple[int, int]:
    """Input samples left and right of a frame's own hop that the frame depends on.

    Frame j owns samples ``[j * hop, (j + 1) * hop)``; it reads ``[j * hop - left, (j + 1) * hop + right)``.
    """
    hop = cfg.hop_length
    first, last = _backward(encoder_ops(cfg), (0, 0))[-1]
    return -first, last - (hop - 1)


def decoder_influence(cfg: OobleckConfig) -> tuple[int, int]:
    """Output samples left and right of a latent frame's own hop that the frame changes.

    Frame j owns samples ``[j * hop, (j + 1) * hop)``; it reaches ``[j * hop - left, (j + 1) * hop + right)``.
    """
    span = (0, 0)
    for op in decoder_ops(cfg):
        span = op.outputs_of(span)
    return -span[0], span[1] - (cfg.hop_length - 1)


def encoder_context(cfg: OobleckConfig) -> int:
    """Input samples of context each side that make a chunk's core frames exact.

    Cut the chunk at ``[a * hop - c, b * hop + c)`` with ``c`` this value rounded up to a multiple of
    ``hop_length`` (so every stride keeps its phase); its frames ``[c / hop, c / hop + b - a)`` then equal frames
    ``[a, b)`` of the whole-signal encoding. At the signal's ends the zero padding of the whole pass is the same
    as the chunk's, so the context can be cut short there.
    """
    hop, ops = cfg.hop_length, encoder_ops(cfg)
    # Input index scale (samples per position) at the input of each op, last op first.
    scales, m = [], hop
    for op in reversed(ops):
        m //= op.stride
        scales.append(m)
    need = 0
    for (first, last), scale in zip(_backward(ops, (0, 0)), scales):
        own = hop // scale  # positions that frame 0 owns at this layer: [0, own)
        need = max(need, scale * max(-first, last - (own - 1)))
    return need


def decoder_context(cfg: OobleckConfig) -> int:
    """Latent frames of context each side that make a chunk's core audio exact.

    Decode latent frames ``[a - c, b + c)`` with ``c`` this value; output samples ``[c * hop, (c + b - a) * hop)``
    then equal samples ``[a * hop, b * hop)`` of the whole decode (fewer frames suffice at the signal's ends).
    """
    hop, ops = cfg.hop_length, decoder_ops(cfg)
    scales, m = [], hop  # positions per latent frame at the input of each op, last op first
    for op in reversed(ops):
        if op.transposed:
            m //= op.stride
        scales.append(m)
    need = 0
    for (first, last), per_frame in zip(_backward(ops, (0, hop - 1)), scales):
        reach = max(-first, last - (per_frame - 1))
        need = max(need, -(-reach // per_frame))
    return need
