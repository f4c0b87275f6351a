"""Swin Transformer vision encoder (Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer using
Shifted Windows"), and video as per-frame Swin with temporal pooling.

Images (B, 3, H, W) -> 4x4 patch embedding (conv, LayerNorm) -> stages of blocks at resolutions H/4, H/8, ...:
each block is ``x + W-MSA(LN(x))`` then ``x + MLP(LN(x))`` (GELU), its attention inside M x M windows with a learned
relative position bias ``B[dy, dx]`` per head (paper eq. 4); every second block cyclically shifts the map by M/2
first (SW-MSA), and a mask keeps tokens from attending across the borders of the regions that the shift brought
together (paper Sec. 3.2, Fig. 4). Between stages, patch merging concatenates 2x2 neighbours and maps 4C -> 2C.
A final LayerNorm gives (B, L, C_last) tokens. As the paper does, a stage whose map is no larger than the window
uses one window and no shift. Layout and names follow transformers' ``SwinModel`` (parity tested).

Images must be exactly ``image_size`` and 3-channel: :func:`prepare_images` resizes (bilinear, antialiased) and
fixes the channels (grey -> RGB, RGBA -> RGB) for callers that have other sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavefoundry.nn.block_view import BlockView


@dataclass(kw_only=True)
class SwinConfig:
    """Shape of a :class:`SwinEncoder`; defaults are Swin-T (paper Sec. 3.3: C = 96, depths 2-2-6-2)."""

    image_size: int = 224
    patch_size: int = 4
    in_channels: int = 3
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    heads: tuple[int, ...] = (3, 6, 12, 24)
    window: int = 7
    mlp_ratio: float = 4.0
    drop_path: float = 0.2
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        self.depths, self.heads = tuple(self.depths), tuple(self.heads)
        if len(self.depths) != len(self.heads) or not self.depths:
            raise ValueError(f"SwinConfig: depths {self.depths} and heads {self.heads} need the same non-zero length")
        if min(self.depths) < 1 or min(self.heads) < 1 or self.window < 1 or self.embed_dim < 1:
            raise ValueError("SwinConfig: depths, heads, window and embed_dim must be >= 1")
        if self.image_size % self.patch_size:
            raise ValueError(f"SwinConfig: image_size={self.image_size} not a multiple of patch={self.patch_size}")
        for i, (res, dim, heads) in enumerate(zip(self.resolutions(), self.dims(), self.heads, strict=True)):
            if dim % heads:
                raise ValueError(f"SwinConfig: stage {i} width {dim} is not a multiple of its heads {heads}")
            if res > self.window and res % self.window:
                raise ValueError(f"SwinConfig: stage {i} map {res}x{res} is not a multiple of window={self.window}")
            if i < len(self.depths) - 1 and res % 2:
                raise ValueError(f"SwinConfig: stage {i} map {res}x{res} cannot be merged 2x2")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"SwinConfig.drop_path must be in [0, 1), got {self.drop_path}")

    def resolutions(self) -> list[int]:
        """The map side of each stage: ``image_size / patch / 2^i``."""
        return [self.image_size // self.patch_size // 2**i for i in range(len(self.depths))]

    def dims(self) -> list[int]:
        """The width of each stage: ``embed_dim * 2^i``."""
        return [self.embed_dim * 2**i for i in range(len(self.depths))]

    @property
    def out_dim(self) -> int:
        """Width of the output tokens."""
        return self.dims()[-1]

    @property
    def num_tokens(self) -> int:
        """Output tokens per image."""
        return self.resolutions()[-1] ** 2


def window_partition(x: Tensor, m: int) -> Tensor:
    """(B, H, W, C) -> (B * H/m * W/m, m * m, C) non-overlapping windows, row-major."""
    B, H, W, C = x.shape
    x = x.view(B, H // m, m, W // m, m, C).permute(0, 1, 3, 2, 4, 5)  # (B, H/m, W/m, m, m, C)
    return x.reshape(-1, m * m, C)


def window_reverse(windows: Tensor, m: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B * H/m * W/m, m * m, C) -> (B, H, W, C)."""
    H, W, C = height, width, windows.shape[-1]
    x = windows.view(-1, H // m, W // m, m, m, C).permute(0, 1, 3, 2, 4, 5)  # (B, H/m, m, W/m, m, C)
    return x.reshape(-1, H, W, C)


def shifted_window_mask(res: int, m: int, shift: int) -> Tensor:
    """Which tokens of each window may attend to which after a cyclic shift by ``shift`` (paper Fig. 4).

    The shifted map is cut into 3 x 3 regions (rows/cols ``[0, res - m)``, ``[res - m, res - shift)``,
    ``[res - shift, res)``); a token attends only to tokens of its own region.

    Returns:
        (n_windows, m * m, m * m) bool, True = may attend.
    """
    idx = torch.arange(res)
    region = (idx >= res - m).long() + (idx >= res - shift).long()  # (res,) in {0, 1, 2}
    label = (region[:, None] * 3 + region[None, :])[None, :, :, None]  # (1, res, res, 1)
    win = window_partition(label, m).squeeze(-1)  # (n_windows, m * m)
    return win[:, :, None] == win[:, None, :]


def relative_position_index(m: int) -> Tensor:
    """(m * m, m * m) index into the (2m - 1)^2 bias table of the offset (dy, dx) between two window tokens."""
    coords = torch.stack(torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")).flatten(1)  # (2, m * m)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (m - 1)  # (m * m, m * m, 2) in [0, 2m - 2]
    return rel[..., 0] * (2 * m - 1) + rel[..., 1]


class WindowAttention(nn.Module):
    """Multi-head attention inside windows with a learned relative position bias (paper eq. 4)."""

    relative_position_index: Tensor

    def __init__(self, dim: int, heads: int, m: int) -> None:
        super().__init__()
        self.heads, self.m = heads, m
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.dense = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * m - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(m).flatten(), persistent=False)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """Windows (N, m * m, C), mask (n_windows, m * m, m * m) bool or None -> (N, m * m, C)."""
        N, L, C = x.shape
        H, Dh = self.heads, C // self.heads
        q, k, v = (proj(x).view(N, L, H, Dh).transpose(1, 2) for proj in (self.query, self.key, self.value))
        bias = self.relative_position_bias_table[self.relative_position_index].view(L, L, H).permute(2, 0, 1)
        bias = bias.unsqueeze(0).to(q.dtype)  # (1, H, L, L)
        if mask is None:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (N, H, L, Dh)
        else:
            nw = mask.shape[0]
            bias = bias.masked_fill(~mask[:, None], float("-inf"))  # (nw, H, L, L)
            # Windows are ordered image-major: view them as (N / nw, nw) so the mask broadcasts over images.
            q, k, v = (t.view(N // nw, nw, H, L, Dh) for t in (q, k, v))  # each (B, nw, H, L, Dh)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).view(N, H, L, Dh)
        return self.dense(o.transpose(1, 2).reshape(N, L, C))


class SwinBlock(nn.Module):
    """``x + DropPath(W-MSA or SW-MSA(LN(x)))`` then ``x + DropPath(MLP(LN(x)))`` on a res x res map."""

    attn_mask: Tensor | None

    def __init__(self, dim: int, heads: int, res: int, window: int, shift: bool, cfg: SwinConfig, drop: float):
        super().__init__()
        self.res = res
        self.m = min(window, res)
        self.shift = self.m // 2 if shift and res > window else 0
        self.layernorm_before = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attention = WindowAttention(dim, heads, self.m)
        self.layernorm_after = nn.LayerNorm(dim, eps=cfg.norm_eps)
        hidden = int(dim * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop = drop
        mask = shifted_window_mask(res, self.m, self.shift) if self.shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def _drop_path(self, x: Tensor) -> Tensor:
        """Stochastic depth (Huang et al. 2016): drop the branch per sample, rescale the kept ones."""
        if not self.training or self.drop == 0.0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.drop
        return x * keep.to(x.dtype) / (1.0 - self.drop)

    def forward(self, x: Tensor) -> Tensor:
        """(B, res * res, C) -> (B, res * res, C)."""
        B, L, C = x.shape
        h = self.layernorm_before(x).view(B, self.res, self.res, C)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        h = self.attention(window_partition(h, self.m), self.attn_mask)  # (B * n_windows, m * m, C)
        h = window_reverse(h, self.m, self.res, self.res)  # (B, res, res, C)
        if self.shift:
            h = torch.roll(h, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self._drop_path(h.reshape(B, L, C))
        return x + self._drop_path(self.mlp(self.layernorm_after(x)))


class PatchMerging(nn.Module):
    """Concatenate each 2x2 neighbourhood (4C), LayerNorm, map to 2C: (B, r*r, C) -> (B, r/2 * r/2, 2C)."""

    def __init__(self, dim: int, res: int, eps: float) -> None:
        super().__init__()
        self.res = res
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        B, _, C = x.shape
        x = x.view(B, self.res, self.res, C)
        # Order (0,0), (1,0), (0,1), (1,1) as the paper's code and transformers.
        x = torch.cat([x[:, r::2, c::2] for c in range(2) for r in range(2)], dim=-1)  # (B, r/2, r/2, 4C)
        return self.reduction(self.norm(x.view(B, -1, 4 * C)))


class SwinStage(nn.Module):
    """``depth`` blocks alternating W-MSA and SW-MSA, then an optional patch merging."""

    def __init__(self, cfg: SwinConfig, i: int, drops: list[float]) -> None:
        super().__init__()
        dim, res = cfg.dims()[i], cfg.resolutions()[i]
        self.blocks = nn.ModuleList(
            SwinBlock(dim, cfg.heads[i], res, cfg.window, j % 2 == 1, cfg, drops[j]) for j in range(cfg.depths[i])
        )
        self.downsample = PatchMerging(dim, res, cfg.norm_eps) if i < len(cfg.depths) - 1 else None

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class SwinEncoder(nn.Module):
    """Images (B, 3, image_size, image_size) -> tokens (B, (image_size / patch / 2^(S-1))^2, C_last).

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: SwinConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.projection = nn.Conv2d(cfg.in_channels, cfg.embed_dim, cfg.patch_size, cfg.patch_size)
        self.embed_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        n = sum(cfg.depths)
        rates = [cfg.drop_path * i / max(n - 1, 1) for i in range(n)]  # linearly growing stochastic depth
        starts = [sum(cfg.depths[:i]) for i in range(len(cfg.depths))]
        self.stages = nn.ModuleList(
            SwinStage(cfg, i, rates[s : s + d]) for i, (s, d) in enumerate(zip(starts, cfg.depths, strict=True))
        )
        self.norm = nn.LayerNorm(cfg.out_dim, eps=cfg.norm_eps)

    @property
    def blocks(self) -> BlockView:
        """Every block of every stage, in order; assigning an entry writes through to its stage."""
        return BlockView([stage.blocks for stage in self.stages])

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) float images -> (B, L, C_last) tokens.

        Raises:
            ValueError: not (B, in_channels, image_size, image_size); :func:`prepare_images` converts other sizes.
        """
        c = self.cfg
        if images.ndim != 4 or tuple(images.shape[1:]) != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(
                f"images must be (B, {c.in_channels}, {c.image_size}, {c.image_size}), got {tuple(images.shape)}; "
                "prepare_images() resizes and fixes channels"
            )
        x = self.projection(images).flatten(2).transpose(1, 2)  # (B, L, C)
        x = self.embed_norm(x)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)


def prepare_images(images: Tensor, size: int) -> Tensor:
    """Bring images (B, C, H, W) or (C, H, W) with C in {1, 3, 4} to (B, 3, size, size) float.

    Grey is repeated to RGB, alpha dropped; other sizes resized bilinearly with antialiasing (aspect not kept).

    Raises:
        ValueError: another channel count or rank.
    """
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] not in (1, 3, 4):
        raise ValueError(f"images must be (B, C, H, W) with C in 1 (grey), 3 (RGB), 4 (RGBA); got {images.shape}")
    x = images.float()
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]  # (B, 3, H, W)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


@dataclass(kw_only=True)
class VideoConfig:
    """Temporal pooling of per-frame Swin tokens: ``mean`` over frames, or ``attention`` (a learned score per
    frame and token, softmax over frames)."""

    pooling: str = "mean"

    def __post_init__(self) -> None:
        if self.pooling not in TEMPORAL_POOLING:
            raise ValueError(f"unknown video pooling {self.pooling!r}; valid: {', '.join(TEMPORAL_POOLING)}")


def mean_pool(tokens: Tensor, frame_mask: Tensor, scorer: nn.Module) -> Tensor:
    """Mean of (B, F, L, C) over the valid frames (B, F) -> (B, L, C)."""
    w = frame_mask.to(tokens.dtype)[:, :, None, None]  # (B, F, 1, 1)
    return (tokens * w).sum(1) / w.sum(1)


def attention_pool(tokens: Tensor, frame_mask: Tensor, scorer: nn.Module) -> Tensor:
    """Softmax over valid frames of a learned linear score, per token: (B, F, L, C) -> (B, L, C)."""
    scores = scorer(tokens).masked_fill(~frame_mask[:, :, None, None], float("-inf"))  # (B, F, L, 1)
    return (scores.softmax(1) * tokens).sum(1)


#: Temporal pooling name -> function ``(tokens (B, F, L, C), frame_mask (B, F), scorer) -> (B, L, C)``.
TEMPORAL_POOLING = {"mean": mean_pool, "attention": attention_pool}


class VideoEncoder(nn.Module):
    """Frames (B, F, 3, S, S) -> per-frame :class:`SwinEncoder` tokens -> temporal pooling -> (B, L, C_last).

    A still image is a one-frame video. Args: the Swin encoder and the pooling settings.
    """

    def __init__(self, swin: SwinEncoder, cfg: VideoConfig) -> None:
        super().__init__()
        self.swin, self.cfg = swin, cfg
        self.pool = TEMPORAL_POOLING[cfg.pooling]
        self.scorer = nn.Linear(swin.cfg.out_dim, 1)

    def forward(self, frames: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        """(B, F, 3, S, S) frames with (B, F) bool mask (True = a real frame; each row needs one) -> (B, L, C)."""
        if frames.ndim != 5:
            raise ValueError(f"video frames must be (B, F, C, H, W), got {tuple(frames.shape)}")
        B, Fr = frames.shape[:2]
        mask = torch.ones(B, Fr, dtype=torch.bool, device=frames.device) if frame_mask is None else frame_mask
        if not bool(mask.any(1).all()):
            raise ValueError("every video needs at least one valid frame")
        tokens = self.swin(frames.flatten(0, 1))  # (B * F, L, C)
        return self.pool(tokens.view(B, Fr, *tokens.shape[1:]), mask, self.scorer)  # (B, L, C)


def swin_t() -> SwinConfig:
    """Swin-T (paper Sec. 3.3): 224 px, C = 96, depths 2-2-6-2, heads 3-6-12-24, window 7 (~27.5M without head)."""
    return SwinConfig()


def swin_tiny() -> SwinConfig:
    """A CPU-trainable encoder: 64 px, patch 4, C = 32, depths 2-2, heads 2-4, window 4 -> 64 tokens of 64."""
    return SwinConfig(image_size=64, embed_dim=32, depths=(2, 2), heads=(2, 4), window=4, drop_path=0.0)


#: Preset name -> function returning its config.
SWIN_PRESETS = {"t": swin_t, "tiny": swin_tiny}
