"""Rotary position embeddings (RoPE), partial and "rotate half" style.

RoPE (Su et al. 2021, "RoFormer") rotates pairs of query/key features by an angle proportional to the token
position, so that ``q_m . k_n`` depends on ``m - n`` only. Pairs are (x_i, x_{i + r/2}) for i < r/2 (GPT-NeoX's
"rotate half" layout, as stable-audio-tools and diffusers' Stable Audio use), and only the first r features of each
head rotate (partial rotary embeddings, GPT-J); the rest pass through unchanged.

With ``theta_i = base ** (-2 i / r)`` and position m the pair rotates by ``m * theta_i``:

    y_i         = x_i cos(m theta_i) - x_{i+r/2} sin(m theta_i)
    y_{i + r/2} = x_{i+r/2} cos(m theta_i) + x_i sin(m theta_i)

Tables are float32 and the rotation is computed in float32 whatever the input dtype, then cast back.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rope_inv_freq(dim: int, base: float = 10000.0, device: torch.device | str | None = None) -> Tensor:
    """The rotation frequencies ``theta_i = base ** (-2 i / dim)``, i < dim / 2.

    Args:
        dim: rotary width r (even): the number of rotated features per head.
        base: the frequency base.
        device: where to build them.

    Returns:
        (dim // 2,) float32.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"rotary dim must be even and >= 2, got {dim}")
    # Written as stable-audio-tools and diffusers write it, so the tables agree bit for bit.
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))


def rope_tables(
    length: int, dim: int, base: float = 10000.0, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """cos and sin of ``m * theta_i`` for positions m = 0 .. length - 1.

    Args:
        length: number of positions L.
        dim: rotary width r (even).
        base: the frequency base.
        device: where to build them.

    Returns:
        (cos, sin), each (L, r / 2) float32.
    """
    positions = torch.arange(length, dtype=torch.float32, device=device)
    angles = positions[:, None] * rope_inv_freq(dim, base, device)[None, :]  # (L, r/2)
    return angles.cos(), angles.sin()


def _rotated(x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    half = cos.shape[-1]
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    # bf16 * fp32 promotes to fp32: the rotation runs in float32 without an explicit upcast copy.
    return x1, x2, x1 * cos - x2 * sin, x2 * cos + x1 * sin


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the first ``2 * cos.shape[-1]`` features of ``x``; returns a new tensor of ``x``'s dtype.

    Args:
        x: (..., D) features, D >= r; its position dim must line up with the tables' first dim after
            broadcasting (e.g. tables ``cos[:, None, :]`` for x (B, L, H, D), plain ``cos`` for x (B, H, L, D)).
        cos: (L, r / 2) float32 table from :func:`rope_tables`, reshaped to broadcast against x.
        sin: same shape as ``cos``.

    Returns:
        Tensor shaped and typed like ``x``.
    """
    _, _, y1, y2 = _rotated(x, cos, sin)
    rest = x[..., 2 * cos.shape[-1] :]
    return torch.cat((y1.to(x.dtype), y2.to(x.dtype), rest), dim=-1)


def apply_rope_(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """In-place :func:`apply_rope`: writes the rotated features back into ``x`` (which may be a view).

    Safe under autograd when ``x`` is a view of a fresh projection output (nothing saved ``x`` for backward):
    the products' backward needs only the tables, which carry no gradient. Saves the copy that concatenating
    rotated and pass-through features would make.

    Args:
        x: (..., D) features, as in :func:`apply_rope`.
        cos: table broadcasting against x's first r / 2 features.
        sin: same shape as ``cos``.

    Returns:
        ``x``.
    """
    x1, x2, y1, y2 = _rotated(x, cos, sin)
    x1.copy_(y1)
    x2.copy_(y2)
    return x


def _rotate_into(out: Tensor, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Write the rotation of ``x`` into ``out`` (same shape): four ops, no temporaries beyond the products."""
    half = cos.shape[-1]
    x1, x2, o1, o2 = x[..., :half], x[..., half : 2 * half], out[..., :half], out[..., half : 2 * half]
    torch.mul(x1, cos, out=o1)
    o1.addcmul_(x2, sin, value=-1)
    torch.mul(x2, cos, out=o2)
    o2.addcmul_(x1, sin)
    if x.shape[-1] > 2 * half:
        out[..., 2 * half :] = x[..., 2 * half :]
    return out


class _Rotate(torch.autograd.Function):
    """RoPE as an autograd function: the backward is the inverse rotation (angle -m theta) of the gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # same-dtype ops: mixed bf16 x float32 ones are slow on CPU
        ctx.save_for_backward(cos, sin)
        return _rotate_into(torch.empty_like(x), x, cos, sin)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        return _rotate_into(torch.empty_like(grad), grad, cos, -sin), None, None


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """:func:`apply_rope` with a cheaper backward (measured ~1.4x faster forward + backward on CPU).

    Computed in x's dtype, the tables cast to it (as transformers' Llama/Qwen rotary does; exact for float32,
    bf16 tables for bf16 x). The backward rotates the gradient by the opposite angle, so nothing but the tables is
    saved. Tables carry no gradient.

    Args:
        x: (..., D) features; the tables broadcast against its first r / 2 features, as in :func:`apply_rope`.
        cos: (L, r / 2) float32 table, reshaped to broadcast against x.
        sin: same shape as ``cos``.

    Returns:
        A new tensor shaped and typed like ``x``.
    """
    if not (torch.is_grad_enabled() and x.requires_grad):  # inference: skip the autograd function's overhead
        return _rotate_into(torch.empty_like(x), x, cos.to(x.dtype), sin.to(x.dtype))
    return _Rotate.apply(x, cos, sin)
