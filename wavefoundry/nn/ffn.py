"""Gated feed-forward layers shared by the transformer models."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SwiGLU(nn.Module):
    """``W_down (silu(g) * u)`` with ``[g | u] = W_gate_up x``, all bias-free (Shazeer 2020, "GLU Variants")."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, L, dim) -> (B, L, dim)."""
        g, u = self.gate_up(x).chunk(2, dim=-1)  # each (B, L, hidden)
        # In place into silu's fresh output: one (B, L, hidden) buffer fewer; autograd keeps what it needs.
        return self.down(F.silu(g).mul_(u))
