"""Fréchet distance between Gaussian fits of embeddings (FAD, FD_openl3, FD_PaSST, ...), streaming statistics.

The Fréchet (2-Wasserstein) distance between N(mu1, S1) and N(mu2, S2) (Dowson & Landau 1982; FAD: Kilgour et
al. 2019) is::

    FD = ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr (S1^(1/2) S2 S1^(1/2))^(1/2)

computed in float64 in the symmetric form: S1^(1/2) from ``eigh`` of S1 (negative eigenvalues, rounding noise,
clipped to 0), then the square roots of the clipped eigenvalues of the symmetric PSD matrix S1^(1/2) S2 S1^(1/2).
Unlike ``sqrtm(S1 @ S2)`` of a non-symmetric product, this never goes complex and stays accurate for singular
(rank-deficient) covariances. See docs/frechet.md.

:class:`RunningStats` accumulates mean and covariance over any number of chunks in O(D^2) memory;
:class:`EmbeddingStats` are saved statistics (safetensors) that carry the embedder's :class:`EmbedderInfo`, and
two of them are only compared when their embedders and conventions agree. :func:`fad_inf` extrapolates FD to an
infinite sample (Gui et al. 2024).
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save as safetensors_bytes

from wavefoundry.config import atomic_write_bytes
from wavefoundry.eval.embedders import EmbedderInfo

logger = logging.getLogger(__name__)

#: Rows converted to float64 at a time by :meth:`RunningStats.update` (memory: CHUNK_ROWS x D doubles).
CHUNK_ROWS = 4096
#: A covariance is accepted when ``max |S - S^T| <= SYMMETRY_RTOL * max |S|`` (float32 round trips pass).
SYMMETRY_RTOL = 1e-6
#: Eigenvalues below ``-PSD_RTOL * max |eigenvalue|`` mean the matrix is not a covariance; above, they are rounding.
PSD_RTOL = 1e-6
#: EmbedderInfo fields that must agree (with the dimension) before two statistics are compared.
COMPARED_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(EmbedderInfo))
#: Value of the ``format`` key in the safetensors header of a statistics file.
STATS_FORMAT = "wavefoundry.embedding_stats"
STATS_FORMAT_VERSION = 1
#: Header keys written by :meth:`EmbeddingStats.save`; ``extra`` metadata may not use them.
RESERVED_KEYS: frozenset[str] = frozenset({"format", "format_version", "dim", "count", *COMPARED_FIELDS})


class StatsMismatchError(ValueError):
    """Two statistics come from different embedders or conventions; ``fields`` names every difference."""

    def __init__(self, message: str, fields: tuple[str, ...]) -> None:
        super().__init__(message)
        self.fields = fields


class StatsFileError(ValueError):
    """A statistics file is missing, unreadable, or holds invalid statistics."""


class FewSamplesWarning(UserWarning):
    """Fewer embeddings than dimensions: the covariance is singular and FD is strongly biased."""


@dataclass(frozen=True)
class FrechetResult:
    """FD and its two terms: ``mean_term = ||mu1 - mu2||^2``, ``trace_term = tr S1 + tr S2 - 2 tr sqrt(...)``.

    Values are not clipped: identical inputs can give -1e-13 from rounding.
    """

    fd: float
    mean_term: float
    trace_term: float

    def __float__(self) -> float:
        return self.fd

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _as_mean(mu: Any, what: str) -> np.ndarray:
    mu = np.asarray(mu)
    if mu.ndim != 1 or mu.shape[0] < 1:
        raise ValueError(f"{what} must be a non-empty (D,) vector, got shape {mu.shape}")
    _check_real(mu, what)
    mu = mu.astype(np.float64)
    if not np.isfinite(mu).all():
        raise ValueError(f"{what} contains NaN or inf")
    return mu


def _as_cov(sigma: Any, what: str, dim: int) -> np.ndarray:
    """Validated float64 symmetric (dim, dim) copy of a covariance."""
    sigma = np.asarray(sigma)
    if sigma.shape != (dim, dim):
        raise ValueError(f"{what} must be ({dim}, {dim}) to match its mean, got shape {sigma.shape}")
    _check_real(sigma, what)
    sigma = sigma.astype(np.float64)
    if not np.isfinite(sigma).all():
        raise ValueError(f"{what} contains NaN or inf")
    asym = float(np.abs(sigma - sigma.T).max())
    if asym > SYMMETRY_RTOL * float(np.abs(sigma).max()):
        raise ValueError(f"{what} is not symmetric (max |S - S^T| = {asym:.3g})")
    if float(np.diagonal(sigma).min()) < 0:
        raise ValueError(f"{what} has a negative variance on its diagonal: not a covariance")
    return (sigma + sigma.T) / 2


def _check_real(x: np.ndarray, what: str) -> None:
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{what} must be real numbers, got dtype {x.dtype}")


def _clip_eigenvalues(eig: np.ndarray, what: str) -> np.ndarray:
    """Zero the eigenvalues at rounding level; clearly negative ones mean ``what`` is not PSD.

    The floor is numpy's rank tolerance ``max |lambda| * D * eps`` (``matrix_rank``): below it an eigenvalue is
    indistinguishable from 0, and keeping it would add its square root (~1e-8 * sqrt(max), D - rank times) to the
    trace of a singular matrix.
    """
    scale = float(np.abs(eig).max(initial=0.0))
    if eig.size and float(eig.min()) < -PSD_RTOL * scale:
        raise ValueError(f"{what} is not positive semi-definite (eigenvalue {float(eig.min()):.3g})")
    return np.where(eig > scale * eig.size * np.finfo(np.float64).eps, eig, 0.0)


def psd_sqrt(sigma: np.ndarray, what: str = "sigma") -> np.ndarray:
    """S^(1/2) (D, D) of a symmetric PSD (D, D) matrix: eigh, rounding-level eigenvalues zeroed."""
    eig, vec = np.linalg.eigh(sigma)
    root = np.sqrt(_clip_eigenvalues(eig, what))
    return (vec * root) @ vec.T  # V diag(sqrt(lambda)) V^T


def _frechet(
    mu1: np.ndarray, sigma1: np.ndarray, sqrt1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, what2: str = "sigma2"
) -> FrechetResult:
    """FD from validated float64 inputs and a precomputed S1^(1/2) (reused when S1 is a fixed reference)."""
    inner = sqrt1 @ sigma2 @ sqrt1  # (D, D), PSD: same nonzero eigenvalues as S1 S2
    eig = _clip_eigenvalues(np.linalg.eigvalsh((inner + inner.T) / 2), what2)
    diff = mu1 - mu2
    mean_term = float(diff @ diff)
    trace_term = float(np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.sqrt(eig).sum())
    return FrechetResult(fd=mean_term + trace_term, mean_term=mean_term, trace_term=trace_term)


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> FrechetResult:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    Args:
        mu1, mu2: (D,) means.
        sigma1, sigma2: (D, D) symmetric PSD covariances (rank-deficient is fine).

    Raises:
        ValueError: shapes disagree, NaN/inf, non-symmetric or clearly non-PSD covariance.
    """
    mu1, mu2 = _as_mean(mu1, "mu1"), _as_mean(mu2, "mu2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 have different dimensions: {mu1.shape[0]} vs {mu2.shape[0]}")
    sigma1 = _as_cov(sigma1, "sigma1", mu1.shape[0])
    sigma2 = _as_cov(sigma2, "sigma2", mu2.shape[0])
    return _frechet(mu1, sigma1, psd_sqrt(sigma1, "sigma1"), mu2, sigma2)


def _check_embeddings(x: Any, dim: int | None, what: str = "embeddings") -> np.ndarray:
    """Shape/dtype check of (N, D) embeddings (no copy); finiteness is checked chunk by chunk by the callers."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{what} must be (N, D), got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{what} have dimension {x.shape[1]}, expected {dim}")
    _check_real(x, what)
    return x


def _finite_block(block: np.ndarray, offset: int, what: str) -> np.ndarray:
    block = np.asarray(block, dtype=np.float64)
    bad = ~np.isfinite(block).all(axis=1)
    if bad.any():
        raise ValueError(f"{what} contain NaN or inf (row {offset + int(np.argmax(bad))})")
    return block


class RunningStats:
    """Mean and covariance of (N, D) embeddings accumulated chunk by chunk in float64, O(D^2) memory.

    Chunks are combined with the pairwise update of Chan, Golub & LeVeque (1979): for parts a, b with counts
    n_a, n_b, means m_a, m_b and centred scatter matrices M_a, M_b, and delta = m_b - m_a::

        n = n_a + n_b,  m = m_a + delta n_b / n,  M = M_a + M_b + delta delta^T n_a n_b / n

    so the result equals the mean and ``np.cov`` of the concatenation, in any order of updates and merges.
    """

    def __init__(self, dim: int) -> None:
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self._dim = int(dim)
        self._n = 0
        self._mean = np.zeros(self._dim)
        self._scatter = np.zeros((self._dim, self._dim))

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def count(self) -> int:
        return self._n

    @property
    def mean(self) -> np.ndarray:
        """(D,) mean of everything added."""
        self._require(1)
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        """(D, D) unbiased covariance (divided by N - 1), exactly symmetric."""
        self._require(2)
        return (self._scatter + self._scatter.T) / (2 * (self._n - 1))

    def _require(self, n: int) -> None:
        if self._n < n:
            raise ValueError(f"need at least {n} embeddings, got {self._n}")

    def _add(self, n_b: int, mean_b: np.ndarray, scatter_b: np.ndarray) -> None:
        if n_b == 0:
            return
        n = self._n + n_b
        delta = mean_b - self._mean
        self._scatter += scatter_b + np.outer(delta, delta) * (self._n * n_b / n)
        self._mean += delta * (n_b / n)
        self._n = n

    def update(self, x: Any, *, chunk_rows: int = CHUNK_ROWS) -> RunningStats:
        """Add (N, D) embeddings (any real dtype, e.g. a float32 memmap); returns self. N = 0 adds nothing.

        All or nothing: on an error nothing of ``x`` has been added.

        Raises:
            ValueError: not (N, D) with D = ``dim``, not real, or NaN/inf (the first bad row is named).
        """
        x = _check_embeddings(x, self._dim)
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        part = RunningStats(self._dim)
        for start in range(0, x.shape[0], chunk_rows):
            block = _finite_block(x[start : start + chunk_rows], start, "embeddings")  # (n, D) float64
            mean_b = block.mean(axis=0)
            centred = block - mean_b
            part._add(block.shape[0], mean_b, centred.T @ centred)
        self._add(part._n, part._mean, part._scatter)
        return self

    def merge(self, other: RunningStats) -> RunningStats:
        """Add everything ``other`` accumulated (other is unchanged); returns self."""
        if not isinstance(other, RunningStats):
            raise TypeError(f"can only merge RunningStats, got {type(other).__name__}")
        if other.dim != self._dim:
            raise ValueError(f"cannot merge statistics of dimension {other.dim} into dimension {self._dim}")
        self._add(other._n, other._mean.copy(), other._scatter.copy())
        return self

    @classmethod
    def from_stats(cls, stats: EmbeddingStats) -> RunningStats:
        """Running statistics holding saved ``stats`` (to merge statistics of shards computed apart)."""
        running = cls(stats.dim)
        running._add(stats.count, stats.mu.copy(), stats.sigma * (stats.count - 1))
        return running

    def to_stats(self, info: EmbedderInfo, **extra_metadata: Any) -> EmbeddingStats:
        """Freeze into :class:`EmbeddingStats` made by ``info``'s embedder; extra metadata must be JSON values."""
        self._require(2)
        return EmbeddingStats(mu=self.mean, sigma=self.cov, count=self._n, info=info, extra=extra_metadata)


@dataclass(frozen=True, kw_only=True, eq=False)
class EmbeddingStats:
    """Gaussian statistics of a set of embeddings and what produced them.

    Args:
        mu: (D,) mean. sigma: (D, D) unbiased covariance. count: number of embeddings (N >= 2).
        info: the embedder (name, weights hash, rate, window, hop, channel mode).
        extra: free JSON metadata (e.g. ``n_files``, ``source``); keys may not be header keys (RESERVED_KEYS).
    """

    mu: np.ndarray
    sigma: np.ndarray
    count: int
    info: EmbedderInfo
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mu = _as_mean(self.mu, "mu")
        sigma = _as_cov(self.sigma, "sigma", mu.shape[0])
        if not isinstance(self.info, EmbedderInfo):
            raise TypeError(f"info must be an EmbedderInfo, got {type(self.info).__name__}")
        if isinstance(self.count, bool) or not isinstance(self.count, (int, np.integer)) or self.count < 2:
            raise ValueError(f"count must be an integer >= 2, got {self.count!r}")
        extra = dict(self.extra)
        clash = sorted(k for k in extra if not isinstance(k, str) or k in RESERVED_KEYS)
        if clash:
            raise ValueError(f"extra metadata may not use the keys {clash} (reserved or not strings)")
        try:
            extra = json.loads(json.dumps(extra))  # a JSON copy: what is saved is what is held
        except (TypeError, ValueError) as err:
            raise ValueError(f"extra metadata must be JSON values: {err}") from None
        mu.flags.writeable = False
        sigma.flags.writeable = False
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "count", int(self.count))
        object.__setattr__(self, "extra", extra)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @property
    def metadata(self) -> dict[str, Any]:
        """Everything written to the file header: embedder fields, ``dim``, ``count`` and the extras."""
        return {**self.info.to_dict(), "dim": self.dim, "count": self.count, **self.extra}

    def save(self, path: str | Path) -> None:
        """Write ``mu``/``sigma`` (float64 tensors) and the metadata (one JSON string per key) as safetensors."""
        header = {"format": STATS_FORMAT, "format_version": STATS_FORMAT_VERSION, **self.metadata}
        tensors = {"mu": np.ascontiguousarray(self.mu), "sigma": np.ascontiguousarray(self.sigma)}
        atomic_write_bytes(path, safetensors_bytes(tensors, metadata={k: json.dumps(v) for k, v in header.items()}))

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingStats:
        """Read a file written by :meth:`save`, validating format, metadata, shapes, finiteness and symmetry.

        Raises:
            StatsFileError: the file is missing, not safetensors, or its content is invalid (the reason is named).
        """
        path = Path(path)
        if not path.is_file():
            raise StatsFileError(f"{path}: no such statistics file")
        try:
            with safe_open(str(path), framework="numpy") as fh:
                raw = fh.metadata() or {}
                tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 (safe_open is no dict)
        except Exception as err:  # safetensors raises its own error types for a bad header
            raise StatsFileError(f"{path}: not a readable safetensors file ({err})") from None
        try:
            return cls._from_file(raw, tensors)
        except (ValueError, TypeError) as err:
            raise StatsFileError(f"{path}: {err}") from None

    @classmethod
    def _from_file(cls, raw: Mapping[str, str], tensors: Mapping[str, np.ndarray]) -> EmbeddingStats:
        try:
            meta = {key: json.loads(value) for key, value in raw.items()}
        except json.JSONDecodeError as err:
            raise ValueError(f"header metadata is not JSON ({err})") from None
        if meta.get("format") != STATS_FORMAT:
            raise ValueError(f"not a statistics file (format {meta.get('format')!r}, expected {STATS_FORMAT!r})")
        if meta.get("format_version") != STATS_FORMAT_VERSION:
            raise ValueError(f"unsupported format_version {meta.get('format_version')!r}")
        missing = sorted({"dim", "count", *COMPARED_FIELDS} - set(meta))
        if missing:
            raise ValueError(f"header lacks {', '.join(missing)}")
        if set(tensors) != {"mu", "sigma"}:
            raise ValueError(f"expected tensors mu and sigma, found {sorted(tensors)}")
        if tensors["mu"].ndim != 1 or tensors["mu"].shape[0] != meta["dim"]:
            raise ValueError(f"mu has shape {tensors['mu'].shape}, header says dim {meta['dim']}")
        info = EmbedderInfo(**{name: meta[name] for name in COMPARED_FIELDS})
        extra = {key: value for key, value in meta.items() if key not in RESERVED_KEYS}
        return cls(mu=tensors["mu"], sigma=tensors["sigma"], count=meta["count"], info=info, extra=extra)


def _differences(a: EmbedderInfo, dim_a: int, b: EmbedderInfo, dim_b: int) -> list[tuple[str, Any, Any]]:
    diffs = []
    for name in COMPARED_FIELDS:
        va, vb = getattr(a, name), getattr(b, name)
        same = math.isclose(va, vb, rel_tol=1e-9) if isinstance(va, float) or isinstance(vb, float) else va == vb
        if not same:
            diffs.append((name, va, vb))
    if dim_a != dim_b:
        diffs.append(("dim", dim_a, dim_b))
    return diffs


def _raise_if_different(diffs: list[tuple[str, Any, Any]], labels: tuple[str, str]) -> None:
    if diffs:
        parts = "; ".join(f"{name}: {va!r} ({labels[0]}) vs {vb!r} ({labels[1]})" for name, va, vb in diffs)
        raise StatsMismatchError(f"statistics are not comparable: {parts}", tuple(name for name, _, _ in diffs))


def check_comparable(a: EmbeddingStats, b: EmbeddingStats, *, labels: tuple[str, str] = ("a", "b")) -> None:
    """Raise :class:`StatsMismatchError` naming every differing embedder field (and ``dim``) of ``a`` and ``b``."""
    _raise_if_different(_differences(a.info, a.dim, b.info, b.dim), labels)


def _warn_few(count: int, dim: int, what: str) -> None:
    if count < dim:
        warnings.warn(
            f"{what}: {count} embeddings for dimension {dim}: the covariance is singular and FD is biased "
            "upward; use more audio or FAD-inf",
            FewSamplesWarning,
            stacklevel=3,
        )


def stats_fd(a: EmbeddingStats, b: EmbeddingStats, *, labels: tuple[str, str] = ("a", "b")) -> FrechetResult:
    """FD between two saved statistics after :func:`check_comparable`; warns (FewSamplesWarning) if N < D."""
    check_comparable(a, b, labels=labels)
    for stats, label in zip((a, b), labels):
        _warn_few(stats.count, stats.dim, label)
    return _frechet(a.mu, a.sigma, psd_sqrt(a.sigma, f"{labels[0]} sigma"), b.mu, b.sigma, f"{labels[1]} sigma")


@dataclass(frozen=True)
class FadInfResult:
    """FD-inf fit: ``fd(N) ~ fd_inf + slope / N`` over ``points`` ((N, fd) pairs), with its r^2."""

    fd_inf: float
    slope: float
    r2: float
    points: tuple[tuple[int, float], ...]


def _subset_sizes(n_total: int, min_size: int, steps: int) -> list[int]:
    if n_total < min_size:
        raise ValueError(f"FAD-inf needs at least min_size={min_size} embeddings, got {n_total}")
    if steps < 2 or min_size < 2:
        raise ValueError(f"FAD-inf needs steps >= 2 and min_size >= 2, got steps={steps}, min_size={min_size}")
    sizes = sorted({round(n) for n in np.linspace(min_size, n_total, steps)})
    if len(sizes) < 2:
        raise ValueError(f"FAD-inf needs at least 2 distinct subset sizes; {min_size}..{n_total} gives {sizes}")
    return sizes


def extrapolate_fd(
    embeddings: Any,
    mu_ref: Any,
    sigma_ref: Any,
    *,
    min_size: int = 500,
    steps: int = 25,
    sizes: Sequence[int] | None = None,
    seed: int = 0,
    replace: bool = False,
) -> FadInfResult:
    """FAD-inf (Gui et al. 2024): FD of seeded random subsets at several sizes N_i, line fit of FD vs 1/N_i.

    The plug-in FD of N samples is biased by about c / N; the intercept of the least-squares line is the
    estimate for an infinite sample. Subsets are drawn without replacement by default, so that the largest size
    uses every embedding (fadtk draws with replacement, which adds the bias of the pool itself).

    Args:
        embeddings: (N, D) generated embeddings (any real dtype; read in chunks).
        mu_ref, sigma_ref: (D,), (D, D) reference statistics.
        min_size, steps: sizes are ``steps`` values from ``min_size`` to N (rounded, deduplicated), as fadtk.
        sizes: explicit subset sizes instead.
        seed: seed of the subset draws (``np.random.default_rng``); same seed, same result.
        replace: draw subsets with replacement.
    """
    x = _check_embeddings(embeddings, None)
    mu_ref = _as_mean(mu_ref, "mu_ref")
    if x.shape[1] != mu_ref.shape[0]:
        raise ValueError(f"embeddings have dimension {x.shape[1]}, reference has {mu_ref.shape[0]}")
    sigma_ref = _as_cov(sigma_ref, "sigma_ref", mu_ref.shape[0])
    for start in range(0, x.shape[0], CHUNK_ROWS):  # fail before any work, also on rows a subset may skip
        _finite_block(x[start : start + CHUNK_ROWS], start, "embeddings")
    if sizes is None:
        sizes = _subset_sizes(x.shape[0], min_size, steps)
    sizes = sorted({int(n) for n in sizes})
    if len(sizes) < 2 or sizes[0] < 2 or (not replace and sizes[-1] > x.shape[0]):
        raise ValueError(f"subset sizes must be >= 2 distinct values in 2..{x.shape[0]}, got {sizes}")
    _warn_few(sizes[0], x.shape[1], "FAD-inf smallest subset")
    sqrt_ref = psd_sqrt(sigma_ref, "sigma_ref")
    rng = np.random.default_rng(seed)
    points = []
    for n in sizes:
        index = np.sort(rng.choice(x.shape[0], size=n, replace=replace))  # sorted: contiguous reads, same stats
        running = RunningStats(x.shape[1])
        for start in range(0, n, CHUNK_ROWS):
            running.update(x[index[start : start + CHUNK_ROWS]])
        result = _frechet(mu_ref, sigma_ref, sqrt_ref, running.mean, running.cov, "subset sigma")
        logger.debug("FAD-inf: N=%d FD=%.6g", n, result.fd)
        points.append((n, result.fd))
    inv_n = np.array([1.0 / n for n, _ in points])
    values = np.array([v for _, v in points])
    design = np.stack([inv_n, np.ones_like(inv_n)], axis=1)  # (S, 2): columns 1/N, 1
    (slope, intercept), *_ = np.linalg.lstsq(design, values, rcond=None)
    residual = float(((values - design @ np.array([slope, intercept])) ** 2).sum())
    total = float(((values - values.mean()) ** 2).sum())
    r2 = 1.0 - residual / total if total > 0 else 1.0
    return FadInfResult(fd_inf=float(intercept), slope=float(slope), r2=r2, points=tuple(points))


def fad_inf(embeddings: Any, info: EmbedderInfo, reference: EmbeddingStats, **kwargs: Any) -> FadInfResult:
    """:func:`extrapolate_fd` of embeddings made by ``info``'s embedder against comparable saved ``reference``.

    Raises:
        StatsMismatchError: ``info`` or the dimension differ from the reference's.
    """
    x = _check_embeddings(embeddings, None)
    _raise_if_different(_differences(info, x.shape[1], reference.info, reference.dim), ("embeddings", "reference"))
    return extrapolate_fd(x, reference.mu, reference.sigma, **kwargs)
