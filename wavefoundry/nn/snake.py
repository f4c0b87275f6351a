"""SnakeBeta activation: ``x + 1 / (beta + eps) * sin(alpha * x) ** 2`` with per-channel alpha and beta.

Snake (Ziyin et al. 2020) with a separate magnitude beta, as in BigVGAN and stable-audio-tools' ``SnakeBeta``.
Parameters are named ``alpha`` and ``beta`` with shape (C,) so that stable-audio-tools checkpoints map 1:1.
With ``logscale=True`` (the default, as in Stable Audio Open) they are stored as logarithms and exponentiated
in the forward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: Guard against division by zero, the value stable-audio-tools uses.
SNAKE_EPS = 1e-9


def snake_beta(x: Tensor, alpha: Tensor, beta: Tensor, eps: float = SNAKE_EPS) -> Tensor:
    """Reference closed form ``x + 1 / (beta + eps) * sin(alpha * x) ** 2`` on linear-scale parameters.

    Args:
        x: (B, C, T) input.
        alpha: (C,) frequency, linear scale.
        beta: (C,) magnitude, linear scale.
        eps: added to beta before the division.

    Returns:
        (B, C, T) tensor.
    """
    a = alpha[:, None]  # (C, 1)
    b = beta[:, None]  # (C, 1)
    return x + (b + eps).reciprocal() * torch.sin(a * x).pow(2)


class SnakeBeta(nn.Module):
    """Per-channel SnakeBeta activation over (B, C, T) tensors.

    Without autograd (``torch.no_grad`` / ``torch.inference_mode``) the forward pass takes a fast path that
    allocates one (B, C, T) tensor instead of five: the per-channel factors are computed once on (C,) vectors
    and the element-wise work is done in place. With autograd it computes the plain closed form.

    Args:
        channels: number of channels C.
        logscale: store log(alpha) and log(beta) (initialised to 0, i.e. alpha = beta = 1).
    """

    def __init__(self, channels: int, logscale: bool = True) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"SnakeBeta: channels must be >= 1, got {channels}")
        init = torch.zeros(channels) if logscale else torch.ones(channels)
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone())
        self.logscale = logscale

    def extra_repr(self) -> str:
        return f"{self.alpha.numel()}, logscale={self.logscale}"

    def linear_params(self) -> tuple[Tensor, Tensor]:
        """(alpha, beta) on the linear scale, each (C,)."""
        if self.logscale:
            return self.alpha.exp(), self.beta.exp()
        return self.alpha, self.beta

    def forward(self, x: Tensor) -> Tensor:
        """Apply the activation.

        Args:
            x: (B, C, T) input.

        Returns:
            (B, C, T) tensor of x's dtype.
        """
        alpha, beta = self.linear_params()
        if torch.is_grad_enabled():
            return snake_beta(x, alpha.to(x.dtype), beta.to(x.dtype))
        return _snake_beta_inplace(x, alpha, beta)


def _snake_beta_inplace(x: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """The same values as :func:`snake_beta` in one allocation; for use without autograd only."""
    # 1 / (beta + eps) * s^2 == (s * sqrt(1 / (beta + eps)))^2: the per-channel factor is folded into s so that
    # the final step is a single addcmul written into s itself.
    scale = (beta + SNAKE_EPS).rsqrt().to(x.dtype)[:, None]  # (C, 1)
    s = torch.mul(x, alpha.to(x.dtype)[:, None])  # (B, C, T), the only new tensor
    s.sin_().mul_(scale)
    return torch.addcmul(x, s, s, out=s)
