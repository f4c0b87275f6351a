"""Discrete autoencoder bottlenecks (residual VQ, FSQ) and the output type and usage statistics all bottlenecks share.

``bottlenecks.py`` is the public entry point (it adds the VAE bottleneck and the builder and re-exports these names);
the shared pieces live here because the builder there must import the quantizers.

References: SoundStream (Zeghidour et al. 2021, residual VQ with quantizer dropout), DAC (Kumar et al. 2023, low-dim
codebook projection), VQ-VAE-2 / audiocraft (EMA codebook updates, dead-code replacement), FSQ (Mentzer et al. 2023).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SyncFn = Callable[[Tensor], Tensor]
#: Laplace smoothing of EMA cluster sizes, so a code with no assignments never divides by zero.
EMA_EPS = 1e-5


def _identity(t: Tensor) -> Tensor:
    return t


@dataclass
class BottleneckOutput:
    """What ``encode`` returns.

    Attributes:
        latents: (B, D, T) decoder input.
        losses: scalar losses to add to the training objective (see each bottleneck for weighting).
        codes: (B, K, T) int64 code ids in [0, codebook_size), or None for continuous bottlenecks.
        metrics: detached scalars to log.
        first_quantized: (B, D, T) the first quantizer's output (codebook 0's vectors in the decoder width, with the
            straight-through gradient to the encoder), residual VQ only: the input of a semantic head
            (``codecs/semantic.py``). Equals ``codes_to_latents(codes[:, :1])`` in eval mode.
    """

    latents: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    codes: Tensor | None = None
    metrics: dict[str, Tensor] = field(default_factory=dict)
    first_quantized: Tensor | None = None


def check_latent_input(z: Tensor, channels: int, *, name: str = "z", finite: bool = True) -> None:
    """Raise ``ValueError`` unless ``z`` is a floating (B, channels, T) tensor (with finite values if ``finite``)."""
    if not isinstance(z, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if z.ndim != 3 or z.shape[1] != channels:
        raise ValueError(f"{name} must have shape (B, {channels}, T), got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {z.dtype}")
    if finite and not bool(torch.isfinite(z).all()):
        raise ValueError(f"{name} contains NaN or Inf values")


def check_codes(codes: Tensor, num_codebooks: tuple[int, int], codebook_size: int) -> None:
    """Raise ``ValueError`` unless ``codes`` is an integer (B, K, T) tensor with K in ``num_codebooks`` (inclusive
    range) and every id in [0, codebook_size)."""
    if not isinstance(codes, Tensor) or codes.ndim != 3:
        shape = tuple(codes.shape) if isinstance(codes, Tensor) else type(codes).__name__
        raise ValueError(f"codes must be a (B, K, T) tensor, got {shape}")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise ValueError(f"codes must be an integer tensor, got {codes.dtype}")
    lo, hi = num_codebooks
    if not lo <= codes.shape[1] <= hi:
        valid = f"{lo}" if lo == hi else f"{lo}..{hi}"
        raise ValueError(f"codes have K={codes.shape[1]} codebooks; valid: {valid}")
    if codes.numel():
        cmin, cmax = int(codes.min()), int(codes.max())
        if cmin < 0 or cmax >= codebook_size:
            bad = cmin if cmin < 0 else cmax
            raise ValueError(f"code id {bad} out of range; valid ids are 0..{codebook_size - 1}")


# --- usage statistics -------------------------------------------------------------------------------------------


def usage_from_counts(counts: Tensor) -> dict[str, Tensor]:
    """Per-codebook statistics from code counts.

    Args:
        counts: (K, N) number of times each of N codes was used, per codebook.

    Returns:
        ``perplexity`` (K,) = 2^H (N for uniform use, 1 for a single code), ``entropy_bits`` (K,) = H in bits,
        ``used_fraction`` (K,) = fraction of codes used at least once.
    """
    counts = counts.to(torch.float64)
    p = counts / counts.sum(-1, keepdim=True).clamp(min=1.0)
    entropy = -(p * torch.log2(p.clamp(min=1e-300))).sum(-1)  # 0 * log 0 = 0
    return {
        "perplexity": torch.exp2(entropy).float(),
        "entropy_bits": entropy.float(),
        "used_fraction": (counts > 0).double().mean(-1).float(),
    }


def code_counts(codes: Tensor, codebook_size: int) -> Tensor:
    """(K, codebook_size) int64 counts of each code per codebook in ``codes`` (B, K, T)."""
    K = codes.shape[1]
    offsets = torch.arange(K, device=codes.device)[None, :, None] * codebook_size  # (1, K, 1)
    flat = (codes.long() + offsets).reshape(-1)
    return torch.bincount(flat, minlength=K * codebook_size).view(K, codebook_size)


def codebook_usage(codes: Tensor, codebook_size: int) -> dict[str, Tensor]:
    """Per-codebook perplexity, entropy (bits) and used fraction of one batch of codes (B, K, T); see
    :func:`usage_from_counts`."""
    check_codes(codes, (1, 2**31), codebook_size)
    return usage_from_counts(code_counts(codes, codebook_size))


class CodebookUsage:
    """Streaming :func:`codebook_usage` over many batches: ``update(codes)`` then ``compute()``."""

    def __init__(self, num_codebooks: int, codebook_size: int) -> None:
        if num_codebooks < 1 or codebook_size < 1:
            raise ValueError(f"need num_codebooks >= 1 and codebook_size >= 1, got {num_codebooks}, {codebook_size}")
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.counts = torch.zeros(num_codebooks, codebook_size, dtype=torch.int64)

    def update(self, codes: Tensor) -> None:
        """Add a batch of codes (B, K, T) with K == num_codebooks."""
        check_codes(codes, (self.num_codebooks, self.num_codebooks), self.codebook_size)
        self.counts += code_counts(codes, self.codebook_size).cpu()

    def compute(self) -> dict[str, Tensor]:
        return usage_from_counts(self.counts)

    def reset(self) -> None:
        self.counts.zero_()


def _usage_metrics(codes: Tensor, codebook_size: int) -> dict[str, Tensor]:
    stats = usage_from_counts(code_counts(codes.detach(), codebook_size))
    out = {}
    for k in range(codes.shape[1]):
        out[f"perplexity_{k}"] = stats["perplexity"][k]
        out[f"used_fraction_{k}"] = stats["used_fraction"][k]
    return out


# --- residual vector quantization -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RVQConfig:
    """Residual vector quantizer (SoundStream / DAC style).

    Args:
        dim: channels of the encoder output and the decoder input.
        codebook_size: codes per quantizer (N).
        num_quantizers: number of residual stages (K).
        codebook_dim: if set, each stage projects to this many channels (1x1 conv) before the lookup, as in DAC.
        update: "ema" (codebook is a buffer moved by exponential moving averages) or "straight_through" (codebook is a
            parameter trained by the codebook loss).
        ema_decay: decay of the EMA statistics (cluster sizes, sums, code usage).
        commitment_weight: multiplies ``losses["commitment"]``.
        init: "kmeans" (k-means on the first training batch), "data" (random vectors of the first training batch)
            or "random" (standard normal at construction).
        kmeans_iters: Lloyd iterations for ``init="kmeans"``.
        quantizer_dropout: probability per batch item of using only the first n ~ U{1..K} quantizers in training.
        dead_code_threshold: codes whose EMA usage (assignments per step) falls below this are replaced by random
            encoder vectors of the current batch; 0 disables.
    """

    dim: int = 64
    codebook_size: int = 1024
    num_quantizers: int = 8
    codebook_dim: int | None = None
    update: Literal["ema", "straight_through"] = "ema"
    ema_decay: float = 0.99
    commitment_weight: float = 1.0
    init: Literal["kmeans", "data", "random"] = "kmeans"
    kmeans_iters: int = 10
    quantizer_dropout: float = 0.0
    dead_code_threshold: float = 2.0

    def __post_init__(self) -> None:
        for name in ("dim", "codebook_size", "num_quantizers"):
            if getattr(self, name) < 1:
                raise ValueError(f"rvq.{name} must be >= 1, got {getattr(self, name)}")
        if self.codebook_dim is not None and self.codebook_dim < 1:
            raise ValueError(f"rvq.codebook_dim must be >= 1 or None, got {self.codebook_dim}")
        if self.update not in ("ema", "straight_through"):
            raise ValueError(f"rvq.update must be 'ema' or 'straight_through', got {self.update!r}")
        if self.init not in ("kmeans", "data", "random"):
            raise ValueError(f"rvq.init must be one of 'kmeans', 'data', 'random', got {self.init!r}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"rvq.ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.commitment_weight < 0 or self.dead_code_threshold < 0 or self.kmeans_iters < 0:
            raise ValueError("rvq.commitment_weight, rvq.dead_code_threshold and rvq.kmeans_iters must be >= 0")
        if not 0.0 <= self.quantizer_dropout <= 1.0:
            raise ValueError(f"rvq.quantizer_dropout must be in [0, 1], got {self.quantizer_dropout}")


def _sq_distances(x: Tensor, codebook: Tensor) -> Tensor:
    """(M, N) squared Euclidean distances between rows of x (M, d) and codebook (N, d)."""
    return x.pow(2).sum(1, keepdim=True) - 2 * x @ codebook.t() + codebook.pow(2).sum(1)


def kmeans(x: Tensor, k: int, iters: int) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means from k random rows of x (with replacement when x has fewer than k rows).

    Args:
        x: (M, d) vectors.
        k: number of centroids.
        iters: Lloyd iterations (0: the sampled rows themselves).

    Returns:
        centroids (k, d) and the number of rows nearest to each (k,), float. Empty clusters keep their centroid.
    """
    M = x.shape[0]
    idx = torch.randperm(M, device=x.device)[:k] if k <= M else torch.randint(0, M, (k,), device=x.device)
    centroids = x[idx].clone()
    for _ in range(iters):
        assign = _sq_distances(x, centroids).argmin(1)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids)
    counts = torch.bincount(_sq_distances(x, centroids).argmin(1), minlength=k).to(x.dtype)
    return centroids, counts


class VectorQuantizer(nn.Module):
    """One residual stage: optional projection to ``codebook_dim``, nearest-code lookup, usage and dead-code upkeep.

    Subclasses set how the codebook learns (:class:`EMAVectorQuantizer`, :class:`STVectorQuantizer`). State saved in
    checkpoints: ``codebook`` (N, d), ``cluster_size`` (N,) EMA assignments per step, ``initialized`` (bool scalar).
    """

    #: whether ``forward`` returns a codebook loss that trains the codebook
    has_codebook_loss: bool = False

    def __init__(self, cfg: RVQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.codebook_dim or cfg.dim
        project = cfg.codebook_dim is not None
        self.in_proj = nn.Conv1d(cfg.dim, d, 1) if project else nn.Identity()
        self.out_proj = nn.Conv1d(d, cfg.dim, 1) if project else nn.Identity()
        self._register_codebook(torch.randn(cfg.codebook_size, d))
        self.register_buffer("cluster_size", torch.ones(cfg.codebook_size))
        self.register_buffer("initialized", torch.tensor(cfg.init == "random"))
        self.init_iters = cfg.kmeans_iters if cfg.init == "kmeans" else 0  # "data" init: the sampled rows as they are
        self.sync_fn: SyncFn = _identity
        self.broadcast_fn: SyncFn = _identity

    def _register_codebook(self, codebook: Tensor) -> None:
        raise NotImplementedError

    def _codebook_loss(self, q: Tensor, e: Tensor) -> Tensor:
        """Per-item loss (B,) that trains the codebook, from quantized q and encoder vectors e (B, d, T)."""
        return torch.zeros(q.shape[0], device=q.device, dtype=q.dtype)

    def _update_statistics(self, flat: Tensor, codes: Tensor, weight: Tensor) -> None:
        """Move ``cluster_size`` (and the codebook, for EMA) with this step's (M, d) vectors, codes and weights."""
        counts = torch.zeros_like(self.cluster_size).index_add_(0, codes, weight)
        counts = self.sync_fn(counts[:, None])[:, 0]
        self.cluster_size.mul_(self.cfg.ema_decay).add_(counts, alpha=1 - self.cfg.ema_decay)

    def _set_codes(self, mask: Tensor, vectors: Tensor, counts: Tensor) -> None:
        """Where ``mask`` (N,), set codes to ``vectors`` (N, d) and their usage to ``counts`` (N,)."""
        self.codebook.data.copy_(torch.where(mask[:, None], vectors, self.codebook.data))
        self.cluster_size.copy_(torch.where(mask, counts, self.cluster_size))

    def lookup(self, codes: Tensor) -> Tensor:
        """Codes (B, T) -> quantized vectors (B, D, T) in the model width (after ``out_proj``)."""
        return self.out_proj(F.embedding(codes, self.codebook).transpose(1, 2))  # (B, D, T)

    def forward(self, residual: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Quantize one residual.

        Args:
            residual: (B, D, T).
            weight: (B,) 1 where this stage is active for the item, 0 where quantizer dropout removed it.

        Returns:
            quantized (B, D, T) with a straight-through gradient to ``residual``, codes (B, T), and the per-item
            commitment and codebook losses (B,).
        """
        B, _, T = residual.shape
        e = self.in_proj(residual).to(self.codebook.dtype)  # (B, d, T); distances and EMA in the codebook's dtype
        flat = e.transpose(1, 2).reshape(B * T, -1)  # (B*T, d)
        if self.training and not bool(self.initialized):
            self._initialize(flat.detach())
        codes = _sq_distances(flat.detach(), self.codebook.detach()).argmin(1)  # (B*T,)
        q = F.embedding(codes, self.codebook).view(B, T, -1).transpose(1, 2)  # (B, d, T)
        commitment = (e - q.detach()).pow(2).mean((1, 2))
        codebook_loss = self._codebook_loss(q, e)
        if self.training:
            with torch.no_grad():
                self._update_statistics(flat.detach(), codes, weight.repeat_interleave(T).to(flat.dtype))
                if self.cfg.dead_code_threshold > 0:
                    self._replace_dead(flat.detach())
        q_st = e + (q - e).detach()  # straight-through estimator (van den Oord et al. 2017)
        return self.out_proj(q_st.to(residual.dtype)), codes.view(B, T), commitment, codebook_loss

    @torch.no_grad()
    def _initialize(self, flat: Tensor) -> None:
        centroids, counts = kmeans(flat, self.cfg.codebook_size, self.init_iters)
        # every rank must start from the same codebook (ranks see different first batches)
        centroids, counts = self.broadcast_fn(centroids), self.broadcast_fn(counts)
        self._set_codes(torch.ones_like(counts, dtype=torch.bool), centroids, counts)
        self.initialized.fill_(True)

    def _replace_dead(self, flat: Tensor) -> None:
        # No data-dependent branch: every rank runs the same collectives whatever its local statistics.
        threshold = self.cfg.dead_code_threshold
        dead = self.cluster_size < threshold  # (N,)
        pick = torch.randint(0, flat.shape[0], (self.cfg.codebook_size,), device=flat.device)
        candidates = self.broadcast_fn(flat[pick])  # (N, d)
        # usage restarts at the threshold, so a replaced code gets a few steps to attract vectors
        self._set_codes(dead, candidates, torch.full_like(self.cluster_size, threshold))


class STVectorQuantizer(VectorQuantizer):
    """Codebook is a parameter trained by the codebook loss ||sg(e) - q||^2 (van den Oord et al. 2017; DAC)."""

    has_codebook_loss = True

    def _register_codebook(self, codebook: Tensor) -> None:
        self.codebook = nn.Parameter(codebook)

    def _codebook_loss(self, q: Tensor, e: Tensor) -> Tensor:
        return (q - e.detach()).pow(2).mean((1, 2))


class EMAVectorQuantizer(VectorQuantizer):
    """Codebook is a buffer: each code is the EMA of the vectors assigned to it (van den Oord et al. 2017, A.1).

    Extra state: ``embed_sum`` (N, d) EMA of per-code vector sums; codebook = embed_sum / Laplace-smoothed
    cluster_size.
    """

    def _register_codebook(self, codebook: Tensor) -> None:
        self.register_buffer("codebook", codebook)
        self.register_buffer("embed_sum", codebook.clone())

    def _update_statistics(self, flat: Tensor, codes: Tensor, weight: Tensor) -> None:
        N, decay = self.cfg.codebook_size, self.cfg.ema_decay
        counts = torch.zeros_like(self.cluster_size).index_add_(0, codes, weight)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, flat * weight[:, None])
        stats = self.sync_fn(torch.cat([counts[:, None], sums], 1))  # (N, 1 + d): one all-reduce
        self.cluster_size.mul_(decay).add_(stats[:, 0], alpha=1 - decay)
        self.embed_sum.mul_(decay).add_(stats[:, 1:], alpha=1 - decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + EMA_EPS) / (n + N * EMA_EPS) * n  # Laplace smoothing: no division by 0
        self.codebook.copy_(self.embed_sum / smoothed[:, None])

    def _set_codes(self, mask: Tensor, vectors: Tensor, counts: Tensor) -> None:
        # keep embed_sum / cluster_size == codebook, otherwise the next EMA step pulls the code straight back
        super()._set_codes(mask, vectors, counts)
        self.embed_sum.copy_(torch.where(mask[:, None], vectors * counts[:, None], self.embed_sum))


#: How the codebook learns, by ``RVQConfig.update``.
UPDATES: dict[str, type[VectorQuantizer]] = {"ema": EMAVectorQuantizer, "straight_through": STVectorQuantizer}


class ResidualVQ(nn.Module):
    """Residual vector quantizer: stage i quantizes what stages < i left over; the decoder input is the sum.

    ``losses``: ``commitment`` = commitment_weight * (1/K) sum_i mean_b m_ib ||e_i - sg(q_i)||^2 / (d T) and, for
    straight-through updates, ``codebook`` = (1/K) sum_i mean_b m_ib ||sg(e_i) - q_i||^2 / (d T), where m_ib is 0 for
    stages that quantizer dropout removed (as in DAC). Both are ready to add as they are.

    Under DDP, :meth:`set_distributed_hooks` makes the EMA statistics and data-dependent codebooks agree across ranks.
    """

    def __init__(self, cfg: RVQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_dim = self.latent_dim = cfg.dim
        self.num_quantizers = cfg.num_quantizers
        self.codebook_size = cfg.codebook_size
        layer_cls = UPDATES[cfg.update]
        self.layers = nn.ModuleList(layer_cls(cfg) for _ in range(cfg.num_quantizers))

    def set_distributed_hooks(self, sync_fn: SyncFn | None = None, broadcast_fn: SyncFn | None = None) -> None:
        """Install the hooks that keep ranks in step (both default to identity).

        Args:
            sync_fn: returns the sum over ranks of a tensor (e.g. an all-reduce); applied each training step to the
                per-code counts and vector sums before the EMA update.
            broadcast_fn: returns rank 0's copy of a tensor; applied to data-dependent initial codebooks and to the
                replacement vectors for dead codes.
        """
        for layer in self.layers:
            layer.sync_fn = sync_fn or _identity
            layer.broadcast_fn = broadcast_fn or _identity

    def _active_counts(self, batch: int, device: torch.device) -> Tensor:
        """(B,) number of stages used per item: K, or U{1..K} with probability quantizer_dropout in training."""
        K, B = self.num_quantizers, batch
        n_q = torch.full((B,), K, device=device)
        if self.training and self.cfg.quantizer_dropout > 0:
            drop = torch.rand(B, device=device) < self.cfg.quantizer_dropout
            n_q = torch.where(drop, torch.randint(1, K + 1, (B,), device=device), n_q)
        return n_q

    def encode(self, z: Tensor, *, sample: bool = True) -> BottleneckOutput:
        """Quantize z (B, D, T). In training, initializes the codebooks on the first batch and updates them.
        ``sample`` exists for interface parity with the VAE and is ignored (quantization is deterministic).

        Returns:
            latents (B, D, T) = sum of the active stages' vectors (straight-through gradient to z), codes (B, K, T)
            for all K stages (also those dropped in training), losses as in the class docstring, metrics with the
            per-stage perplexity and used fraction of this batch and the mean number of active stages.
        """
        check_latent_input(z, self.input_dim)
        B = z.shape[0]
        n_q = self._active_counts(B, z.device)
        latents, residual, first = torch.zeros_like(z), z, None
        codes, commit, cb_loss = [], z.new_zeros((), dtype=torch.float32), z.new_zeros((), dtype=torch.float32)
        for i, layer in enumerate(self.layers):
            weight = (n_q > i).float()  # (B,)
            q, c, commit_i, cb_i = layer(residual, weight)
            first = q if first is None else first  # stage 0 is never dropped (n_q >= 1)
            latents = latents + q * weight[:, None, None].to(q.dtype)
            residual = residual - q
            codes.append(c)
            commit = commit + (commit_i * weight).mean()
            cb_loss = cb_loss + (cb_i * weight).mean()
        codes_t = torch.stack(codes, 1)  # (B, K, T)
        K = self.num_quantizers
        losses = {"commitment": self.cfg.commitment_weight * commit / K}
        if self.layers[0].has_codebook_loss:
            losses["codebook"] = cb_loss / K
        metrics = _usage_metrics(codes_t, self.codebook_size)
        metrics["active_quantizers"] = n_q.float().mean()
        return BottleneckOutput(latents=latents, losses=losses, codes=codes_t, metrics=metrics, first_quantized=first)

    def decode(self, latents: Tensor) -> Tensor:
        """Identity: the decoder input is the quantized sum. latents (B, D, T) -> (B, D, T)."""
        check_latent_input(latents, self.latent_dim, name="latents", finite=False)
        return latents

    def codes_to_latents(self, codes: Tensor) -> Tensor:
        """Codes (B, K', T) of the first K' stages (1 <= K' <= K) -> latents (B, D, T), the sum of their vectors."""
        check_codes(codes, (1, self.num_quantizers), self.codebook_size)
        codes = codes.long()
        out = self.layers[0].lookup(codes[:, 0])
        for i in range(1, codes.shape[1]):
            out = out + self.layers[i].lookup(codes[:, i])
        return out


# --- finite scalar quantization ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class FSQConfig:
    """Finite scalar quantization (Mentzer et al. 2023).

    Args:
        dim: channels of the encoder output and decoder input; None means ``len(levels) * num_codebooks`` (no
            projection). Otherwise 1x1 convs project to and from the quantized channels.
        levels: quantization levels per channel; a codebook has prod(levels) codes.
        num_codebooks: K; the quantized channels are split into K groups of ``len(levels)``, one code each.
    """

    dim: int | None = None
    levels: tuple[int, ...] = (8, 5, 5, 5)
    num_codebooks: int = 1

    def __post_init__(self) -> None:
        self.levels = tuple(self.levels)
        if not self.levels or any(int(lv) != lv or lv < 2 for lv in self.levels):
            raise ValueError(f"fsq.levels must be a non-empty list of integers >= 2, got {self.levels}")
        if math.prod(self.levels) > 2**31 - 1:
            raise ValueError(f"fsq.levels give {math.prod(self.levels)} codes; at most 2**31 - 1 are supported")
        if self.num_codebooks < 1:
            raise ValueError(f"fsq.num_codebooks must be >= 1, got {self.num_codebooks}")
        if self.dim is not None and self.dim < 1:
            raise ValueError(f"fsq.dim must be >= 1 or None, got {self.dim}")


class FSQ(nn.Module):
    """Finite scalar quantizer: bound each channel with tanh, round to its levels (straight-through), scale to [-1, 1].

    Codes are mixed-radix integers over the channels of a group: code = sum_j digit_j * prod_{i<j} levels_i.
    No losses; metrics hold the per-codebook perplexity and used fraction.
    """

    def __init__(self, cfg: FSQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_quantizers = cfg.num_codebooks
        self.group_dim = len(cfg.levels)
        inner = self.group_dim * cfg.num_codebooks
        self.input_dim = self.latent_dim = cfg.dim or inner
        self.codebook_size = math.prod(cfg.levels)
        self.project_in = nn.Conv1d(self.input_dim, inner, 1) if self.input_dim != inner else nn.Identity()
        self.project_out = nn.Conv1d(inner, self.input_dim, 1) if self.input_dim != inner else nn.Identity()
        levels = torch.tensor(cfg.levels, dtype=torch.int64)
        basis = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.int64), levels[:-1]]), 0)
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("basis", basis, persistent=False)

    def bound(self, h: Tensor, eps: float = 1e-3) -> Tensor:
        """Squash h (..., d, T) so rounding gives levels_j values per channel j (centred; even levels offset by 1/2)."""
        levels = self.levels.to(h.dtype)[:, None]  # (d, 1)
        half_l = (levels - 1) * (1 + eps) / 2
        offset = (self.levels % 2 == 0).to(h.dtype)[:, None] * 0.5
        shift = torch.atanh(offset / half_l)  # bound(0) = 0
        return torch.tanh(h + shift) * half_l - offset

    def quantize(self, h: Tensor) -> Tensor:
        """h (..., d, T) -> normalized grid values in [-1, 1] with a straight-through gradient."""
        b = self.bound(h)
        rounded = b + (torch.round(b) - b).detach()
        return rounded / (self.levels // 2).to(h.dtype)[:, None]

    def _grid_to_codes(self, zhat: Tensor) -> Tensor:
        """Normalized grid values (B, K, d, T) -> codes (B, K, T)."""
        half = (self.levels // 2)[:, None]  # (d, 1)
        digits = torch.round(zhat * half + half).long()  # (B, K, d, T) in [0, levels)
        return (digits * self.basis[:, None]).sum(2)

    def _codes_to_grid(self, codes: Tensor) -> Tensor:
        """Codes (B, K, T) -> normalized grid values (B, K, d, T)."""
        digits = (codes.long()[:, :, None, :] // self.basis[:, None]) % self.levels[:, None]  # (B, K, d, T)
        half = (self.levels // 2)[:, None]
        return (digits - half).float() / half

    def encode(self, z: Tensor, *, sample: bool = True) -> BottleneckOutput:
        """Quantize z (B, D, T): latents (B, D, T) with a straight-through gradient, codes (B, K, T).
        ``sample`` is ignored (deterministic), as for the residual VQ."""
        check_latent_input(z, self.input_dim)
        B, _, T = z.shape
        h = self.project_in(z).view(B, self.num_quantizers, self.group_dim, T)  # (B, K, d, T)
        zhat = self.quantize(h.float())
        codes = self._grid_to_codes(zhat.detach())
        latents = self.project_out(zhat.view(B, -1, T).to(z.dtype))  # (B, D, T)
        return BottleneckOutput(latents=latents, codes=codes, metrics=_usage_metrics(codes, self.codebook_size))

    def decode(self, latents: Tensor) -> Tensor:
        """Identity: the decoder input is the projected grid. latents (B, D, T) -> (B, D, T)."""
        check_latent_input(latents, self.latent_dim, name="latents", finite=False)
        return latents

    def codes_to_latents(self, codes: Tensor) -> Tensor:
        """Codes (B, K, T) -> latents (B, D, T), equal to ``encode(z).latents`` for the z that gave the codes."""
        K = self.num_quantizers
        check_codes(codes, (K, K), self.codebook_size)
        B, _, T = codes.shape
        zhat = self._codes_to_grid(codes).to(self._out_dtype())
        return self.project_out(zhat.reshape(B, K * self.group_dim, T))  # (B, K*d, T) -> (B, D, T)

    def _out_dtype(self) -> torch.dtype:
        proj = self.project_out
        return proj.weight.dtype if isinstance(proj, nn.Conv1d) else torch.get_default_dtype()
