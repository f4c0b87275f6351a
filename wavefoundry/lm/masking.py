"""Span masking of codec codes for the masked generative transformer (MAGNeT, Ziv et al. 2024; MaskGIT, Chang et
al. 2022).

Mask-rate schedule (MaskGIT Sec. 3.2): ``gamma(t) = cos(pi t / 2)`` with ``t ~ U(0, 1)`` in training, ``t = s / S`` at
decoding step s of S.

Spans (MAGNeT Sec. 3.1): masked frames come in spans of ``l`` consecutive frames. Spans may overlap, so masking
``gamma T / l`` spans masks fewer than ``gamma T`` frames. The number of span starts is therefore taken from the
closed form of the expected masked fraction (MAGNeT App. A's ``1 - (1 - p)^l`` correction, here exact): with ``n``
distinct starts drawn uniformly from the ``N = T + l - 1`` positions whose spans touch the sequence (spans starting
before frame 0 are cut, so every frame is covered by exactly ``l`` candidate starts), a frame stays visible with
probability ``C(N - l, n) / C(N, n) = prod_{j<l} (N - n - j) / (N - j)``, the same for every frame. So

    f(n) = 1 - prod_{j=0}^{l-1} (N - n - j) / (N - j)

is the expected masked fraction of n starts, increasing in n. :func:`span_counts` draws ``n`` from the two integers
around the solution of ``f(n) = gamma``, mixed so that ``E[f(n)] = gamma`` exactly; the realised rate then matches
the schedule in expectation at every gamma (tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def cosine_schedule(t: Tensor | float) -> Tensor:
    """MaskGIT's mask rate ``gamma(t) = cos(pi t / 2)``: 1 at t = 0 (all masked), 0 at t = 1."""
    return torch.cos(torch.as_tensor(t, dtype=torch.float32) * (math.pi / 2))


def expected_masked_fraction(n: Tensor, frames: int, span: int) -> Tensor:
    """f(n): expected fraction of ``frames`` masked by ``n`` distinct span starts of length ``span`` (module doc).

    Args:
        n: number of starts, any shape (float or int), in [0, frames + span - 1].
        frames: T >= 1.
        span: l >= 1.

    Returns:
        float64 tensor shaped like n.
    """
    N = frames + span - 1
    n = torch.as_tensor(n, dtype=torch.float64)
    visible = torch.ones_like(n)
    for j in range(span):
        visible = visible * ((N - n - j) / (N - j)).clamp(min=0.0)
    return 1.0 - visible


def span_counts(gamma: Tensor, frames: int, span: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Number of span starts per row whose expected masked fraction is exactly ``gamma`` (module doc).

    Args:
        gamma: (B,) target mask rates in [0, 1].
        frames: T.
        span: l.
        generator: random source of the floor/ceil mix.

    Returns:
        (B,) int64 counts in [0, T + l - 1].
    """
    if frames < 1 or span < 1:
        raise ValueError(f"frames and span must be >= 1, got {frames}, {span}")
    g = gamma.to(torch.float64).clamp(0.0, 1.0)
    N = frames + span - 1
    table = expected_masked_fraction(torch.arange(N + 1), frames, span)  # (N + 1,) increasing, table[-1] == 1
    lo = (torch.searchsorted(table, g, right=True) - 1).clamp(0, N - 1)  # table[lo] <= g
    f_lo, f_hi = table[lo], table[lo + 1]
    w = ((g - f_lo) / (f_hi - f_lo).clamp(min=1e-12)).clamp(0.0, 1.0)  # P(take lo + 1)
    u = torch.rand(g.shape, generator=generator, dtype=torch.float64)
    return lo + (u < w).long()


def span_mask(gamma: Tensor, frames: int, span: int = 3, *, generator: torch.Generator | None = None) -> Tensor:
    """A span mask per row with expected masked fraction ``gamma`` (MAGNeT span masking, exact correction).

    Args:
        gamma: (B,) mask rates in [0, 1].
        frames: T.
        span: l, frames per span (1: plain MaskGIT token masking).
        generator: random source (seeded: reproducible masks).

    Returns:
        (B, T) bool, True = masked.
    """
    B = gamma.shape[0]
    N = frames + span - 1
    n = span_counts(gamma, frames, span, generator=generator)  # (B,)
    ranks = torch.rand(B, N, generator=generator).argsort(-1).argsort(-1)  # (B, N) a random permutation per row
    starts = (ranks < n[:, None].to(ranks.device)).float()  # (B, N), n distinct starts per row
    # Extended start e covers frames e - l + 1 .. e, so frame i is masked iff any start in [i, i + l - 1].
    return F.max_pool1d(starts[:, None], kernel_size=span, stride=1)[:, 0] > 0  # (B, T)


def frame_spans(frames: int, span: int, device: torch.device | str | None = None) -> Tensor:
    """Index of the non-overlapping decoding span each frame belongs to: ``i // span``, (T,) int64."""
    return torch.arange(frames, device=device) // span
