"""The diffusion transformer (DiT) of Stable Audio Open 1.0.

Architecture as stable-audio-tools' ``DiffusionTransformer`` with its ``ContinuousTransformer`` (Evans et al. 2024,
"Stable Audio Open"; ``stable_audio_tools/models/dit.py`` and ``transformer.py``), which diffusers ships as
``StableAudioDiTModel``:

* latents (B, C, T) pass a residual 1x1 conv (no bias), then a linear ``proj_in`` to width D;
* the timestep t goes through learned Fourier features ``[cos 2 pi t w, sin 2 pi t w]`` and an MLP; the global
  conditioning (B, Dg) through a bias-free MLP; their sum is one *global token* prepended to the sequence;
* conditioning tokens (B, Lc, Dc) pass a bias-free MLP and are attended to by every block;
* each pre-LayerNorm block (bias-free LayerNorm, eps 1e-5): self-attention (fused qkv, no bias, partial rotary
  embeddings over the whole sequence, global token at position 0), cross-attention with grouped kv heads
  (``cond_embed_dim // head_dim`` of them), and a SwiGLU feed-forward (width 4 D, with biases);
* ``proj_out`` maps back to C channels, the global token is dropped and a residual 1x1 conv follows.

The output is the v-prediction (B, C, T). Branch outputs (attention and feed-forward output projections) and the
two 1x1 convs start at zero, as in stable-audio-tools. Our parameter names differ from both outside layouts;
``wavefoundry.formats.sao_dit`` converts checkpoints to and from either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavefoundry.config import ConfigError
from wavefoundry.nn.attention import CrossAttention, SelfAttention
from wavefoundry.nn.rope import rope_tables


@dataclass(kw_only=True)
class DiTConfig:
    """Shape of a :class:`DiT`; the defaults are Stable Audio Open 1.0's (1,056,828,544 parameters).

    ``cond_token_dim`` is the width of the conditioning tokens fed in; they are projected to ``cond_embed_dim``
    (= ``embed_dim`` with ``project_cond_tokens``, else ``cond_token_dim``, as Stable Audio Open), which sets the
    number of cross-attention kv heads, ``cond_embed_dim // head_dim``. ``rotary_dim`` None means
    stable-audio-tools' rule ``max(head_dim // 2, 32)``; set it for heads narrower than 32.
    """

    io_channels: int = 64
    embed_dim: int = 1536
    depth: int = 24
    num_heads: int = 24
    cond_token_dim: int = 768
    global_cond_dim: int = 1536
    project_cond_tokens: bool = False
    timestep_features_dim: int = 256
    ff_mult: int = 4
    rotary_dim: int | None = None
    rope_base: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        sizes = {
            "io_channels": self.io_channels,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "cond_token_dim": self.cond_token_dim,
            "global_cond_dim": self.global_cond_dim,
            "ff_mult": self.ff_mult,
        }
        for name, value in sizes.items():
            if value < 1:
                raise ConfigError(f"DiTConfig.{name} must be >= 1, got {value}")
        if self.timestep_features_dim < 2 or self.timestep_features_dim % 2:
            raise ConfigError(
                f"DiTConfig.timestep_features_dim must be even and >= 2, got {self.timestep_features_dim}"
            )
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"DiTConfig: embed_dim={self.embed_dim} is not a multiple of num_heads={self.num_heads}")
        hd = self.head_dim
        if self.cond_embed_dim % hd or self.num_heads % (self.cond_embed_dim // hd):
            raise ConfigError(
                f"DiTConfig: cross-attention kv heads = cond_embed_dim // head_dim = {self.cond_embed_dim} // {hd} "
                f"must be a whole number dividing num_heads={self.num_heads}"
            )
        if self.rot_dim % 2 or not 2 <= self.rot_dim <= hd:
            raise ConfigError(
                f"DiTConfig: rotary dim {self.rot_dim} must be even and in [2, head_dim={hd}]"
                + ("" if self.rotary_dim is not None else " (the default max(head_dim // 2, 32); set rotary_dim)")
            )
        if self.rope_base <= 1 or self.norm_eps <= 0:
            raise ConfigError(f"DiTConfig: need rope_base > 1 and norm_eps > 0, got {self.rope_base}, {self.norm_eps}")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.embed_dim // self.num_heads

    @property
    def rot_dim(self) -> int:
        """Rotated features per query/key head."""
        return max(self.head_dim // 2, 32) if self.rotary_dim is None else self.rotary_dim

    @property
    def cond_embed_dim(self) -> int:
        """Width of the projected conditioning tokens that cross-attention reads."""
        return self.embed_dim if self.project_cond_tokens else self.cond_token_dim

    @property
    def kv_heads(self) -> int:
        """Cross-attention key/value heads."""
        return self.cond_embed_dim // self.head_dim


def _mlp(dim_in: int, dim: int, bias: bool) -> nn.Sequential:
    """Linear, SiLU, Linear: the embedding MLPs of stable-audio-tools' DiT."""
    return nn.Sequential(nn.Linear(dim_in, dim, bias=bias), nn.SiLU(), nn.Linear(dim, dim, bias=bias))


class FourierFeatures(nn.Module):
    """Learned Fourier features of a scalar: ``[cos(2 pi t w), sin(2 pi t w)]`` with w ~ N(0, 1) (trained).

    Args:
        dim: output width (even); w has dim / 2 entries.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim // 2))

    def forward(self, t: Tensor) -> Tensor:
        """(B,) -> (B, dim), float32 for float32 weights whatever autocast says (no matmul involved)."""
        f = (2 * math.pi * t.to(self.weight.dtype))[:, None] * self.weight[None, :]  # (B, dim / 2)
        return torch.cat((f.cos(), f.sin()), dim=-1)


class SwiGLU(nn.Module):
    """Feed-forward ``W2 (a * silu(g)) + b2`` with ``[a | g] = W1 x + b1`` (Shazeer 2020, "GLU Variants").

    Args:
        dim: input and output width.
        hidden: inner width (a and g each).
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.proj_in = nn.Linear(dim, 2 * hidden)
        self.proj_out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, L, dim) -> (B, L, dim)."""
        a, g = self.proj_in(x).chunk(2, dim=-1)  # each (B, L, hidden)
        # In place into silu's fresh output: one (B, L, hidden) buffer fewer; autograd keeps what it needs.
        return self.proj_out(F.silu(g).mul_(a))


class DiTBlock(nn.Module):
    """Pre-LayerNorm block: self-attention (rotary), cross-attention to the conditioning, SwiGLU feed-forward.

    Args:
        dim: width D.
        num_heads: attention heads (self and cross).
        context_dim: width of the conditioning tokens; ``context_dim // (dim // num_heads)`` kv heads.
        ff_hidden: feed-forward inner width.
        eps: LayerNorm epsilon.
    """

    def __init__(self, dim: int, num_heads: int, context_dim: int, ff_hidden: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=eps, bias=False)
        self.self_attn = SelfAttention(dim, num_heads)
        self.cross_norm = nn.LayerNorm(dim, eps=eps, bias=False)
        self.cross_attn = CrossAttention(dim, context_dim, num_heads)
        self.ff_norm = nn.LayerNorm(dim, eps=eps, bias=False)
        self.ff = SwiGLU(dim, ff_hidden)

    def forward(
        self, x: Tensor, context: Tensor, context_mask: Tensor | None, rope: tuple[Tensor, Tensor] | None
    ) -> Tensor:
        """(B, L, D) -> (B, L, D); context (B, Lc, context_dim), context_mask (B, Lc) bool or None."""
        # Branch outputs are fresh tensors that no backward needs, so the residual adds go in place into them.
        x = self.self_attn(self.attn_norm(x), rope).add_(x)
        x = self.cross_attn(self.cross_norm(x), context, context_mask).add_(x)
        return self.ff(self.ff_norm(x)).add_(x)


class DiT(nn.Module):
    """Stable Audio Open's diffusion transformer: v-prediction for latents given timestep and conditioning.

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, C = cfg.embed_dim, cfg.io_channels
        self.timestep_features = FourierFeatures(cfg.timestep_features_dim)
        self.timestep_mlp = _mlp(cfg.timestep_features_dim, D, bias=True)
        self.global_mlp = _mlp(cfg.global_cond_dim, D, bias=False)
        self.cond_mlp = _mlp(cfg.cond_token_dim, cfg.cond_embed_dim, bias=False)
        self.preprocess_conv = nn.Conv1d(C, C, 1, bias=False)
        self.proj_in = nn.Linear(C, D, bias=False)
        self.blocks = nn.ModuleList(
            DiTBlock(D, cfg.num_heads, cfg.cond_embed_dim, cfg.ff_mult * D, cfg.norm_eps) for _ in range(cfg.depth)
        )
        self.proj_out = nn.Linear(D, C, bias=False)
        self.postprocess_conv = nn.Conv1d(C, C, 1, bias=False)
        self._zero_init()

    def _zero_init(self) -> None:
        """Branch outputs and the residual convs start at zero, as stable-audio-tools initialises them."""
        zeroed = [self.preprocess_conv.weight, self.postprocess_conv.weight]
        for block in self.blocks:
            zeroed += [block.self_attn.to_out.weight, block.cross_attn.to_out.weight]
            zeroed += [block.ff.proj_out.weight, block.ff.proj_out.bias]
        with torch.no_grad():
            for p in zeroed:
                p.zero_()

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        *,
        cross: Tensor,
        cross_mask: Tensor | None = None,
        global_cond: Tensor,
    ) -> Tensor:
        """Predict v for noisy latents.

        Args:
            x: (B, C, T) noisy latents.
            t: (B,) diffusion time in [0, 1].
            cross: (B, Lc, cond_token_dim) conditioning tokens.
            cross_mask: (B, Lc) bool, True = attend; None attends to all tokens (Stable Audio Open itself
                ignores its masks and attends to all, zeroed padding included).
            global_cond: (B, global_cond_dim) global conditioning.

        Returns:
            (B, C, T) v-prediction.
        """
        T = x.shape[-1]
        context = self.cond_mlp(cross)  # (B, Lc, cond_embed_dim)
        global_token = self.global_mlp(global_cond) + self.timestep_mlp(self.timestep_features(t))  # (B, D)
        x = self.preprocess_conv(x) + x  # (B, C, T)
        h = self.proj_in(x.transpose(1, 2))  # (B, T, D)
        h = torch.cat((global_token[:, None, :].to(h.dtype), h), dim=1)  # (B, 1 + T, D)
        rope = rope_tables(T + 1, self.cfg.rot_dim, self.cfg.rope_base, device=h.device)
        for block in self.blocks:
            h = block(h, context, cross_mask, rope)
        out = self.proj_out(h[:, 1:]).transpose(1, 2)  # (B, C, T), global token dropped
        return self.postprocess_conv(out) + out


def compile_for_inference(model: nn.Module) -> nn.Module:
    """Compile a model for fast inference with TorchInductor, weights frozen into the graph.

    Freezing (``torch.compile`` option ``freezing``) treats the parameters as constants, which lets Inductor
    pre-pack the linear weights into oneDNN's blocked layout and fuse the elementwise work around the matmuls.
    Whether it pays depends on the CPU: on the one-thread AVX2 development machine it was within noise of eager
    for :class:`DiT` (the forward is ~80% matmuls; ``docs/dit.md``), so it is opt-in.

    Inference only: call the result under ``torch.inference_mode()`` or ``torch.no_grad()``; later changes to the
    weights are not seen. It compiles on the first call for each input shape (tens of seconds on CPU). Works for
    any module (the benchmark applies it to diffusers' model too).

    Args:
        model: the module, in eval mode.

    Returns:
        The compiled module; call it as ``model``.
    """
    return torch.compile(model, dynamic=False, options={"freezing": True})


def dit_sao() -> DiTConfig:
    """Stable Audio Open 1.0: 64 latent channels, width 1536, 24 blocks of 24 heads, 768-wide T5 tokens."""
    return DiTConfig()


def dit_small() -> DiTConfig:
    """A CPU-trainable DiT (40.0 M parameters): width 512, 8 blocks of 8 heads (head dim 64, rotary 32)."""
    return DiTConfig(embed_dim=512, depth=8, num_heads=8, cond_token_dim=256, global_cond_dim=512)


def dit_tiny() -> DiTConfig:
    """A DiT for tests and demos (7.6 M parameters): width 256, 6 blocks of 4 heads (head dim 64)."""
    return DiTConfig(embed_dim=256, depth=6, num_heads=4, cond_token_dim=128, global_cond_dim=256)
