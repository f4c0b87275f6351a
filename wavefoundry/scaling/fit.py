"""Chinchilla scaling-law fits with bootstrap uncertainty (saved as ``fit.json`` by ``scaling/fit_file.py``).

* Approach 2 (Hoffmann et al. 2022, arXiv 2203.15556, sec. 3.2): a parabola of loss in ln N per compute budget C
  gives N*(C); power laws N* = k_N C^a and D* = k_D C^b are fitted through the optima. Bootstrap: points are
  resampled with replacement within each budget.
* Approach 3 (Hoffmann et al. sec. 3.3; parametrised as Besiroglu et al. 2024, arXiv 2404.10102):
  L(N, D) = E + A / N^alpha + B / D^beta, fitted as ln L_hat = LSE(a - alpha ln N, b - beta ln D, e) with
  A = exp(a), B = exp(b), E = exp(e), minimising the Huber loss (delta 1e-3) of ln L_hat - ln L by L-BFGS
  (``scaling/lbfgs.py``) from a grid of starting points. Bootstrap: points are resampled with replacement, each
  resample warm-started from the full-data optimum. a = beta / (alpha + beta), b = alpha / (alpha + beta).

Input is a :class:`Table` (``scaling/table.py``; ``read_table`` reads a CSV with at least ``budget,N,D,loss``).
Bad input raises :class:`FitError` naming the row; doubtful results (a budget left out, a parabola that opens
downward or has its minimum outside the sampled sizes, a fit that does not converge) are logged and listed in the
result's ``warnings`` and ``flags``, never silently turned into numbers.
"""

# ruff: noqa: N802, N803, N815  (the papers' symbols N, D, C, W, k_N; DESIGN.md: math uses the paper's symbols)
from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from wavefoundry.scaling.lbfgs import CONVERGED, STALLED, lbfgs, multistart
from wavefoundry.scaling.table import FitError, Table

log = logging.getLogger(__name__)

PARAMS = ("E", "A", "B", "alpha", "beta")
STATISTICS = (*PARAMS, "a", "b")  # the keys of Approach3Result.se and .ci
OPENS_DOWNWARD = "opens_downward"
OUTSIDE_RANGE = "minimum_outside_range"
EXCLUDED = "excluded"  # flagged budget left out of the power law (Approach2Config.drop_outside_range)


def _interval(samples: np.ndarray, level: float) -> list[list[float]]:
    """Percentile interval per column of (R, K) ``samples``: [[lo, hi], ...]."""
    q = 100 * np.array([(1 - level) / 2, (1 + level) / 2])
    return np.percentile(samples, q, axis=0).T.tolist()


def _resample_counts(rng: np.random.Generator, n: int, repeats: int) -> np.ndarray:
    """(repeats, n) multiplicities of n points drawn with replacement from n."""
    draws = rng.integers(0, n, size=(repeats, n))
    return np.stack([np.bincount(d, minlength=n) for d in draws]).astype(np.float64)


# ------------------------------------------------------------------------------------------- approach 2


@dataclass(kw_only=True)
class Approach2Config:
    """IsoFLOP-parabola fit. ``bootstrap`` resamples (0: no intervals); ``level`` of the percentile intervals."""

    bootstrap: int = 200
    seed: int = 0
    level: float = 0.95
    min_points: int = 3  # distinct model sizes a budget needs; a parabola has 3 coefficients
    drop_outside_range: bool = False  # leave extrapolated minima out of the power law (they are always flagged)

    def __post_init__(self) -> None:
        if self.bootstrap < 0:
            raise FitError(f"bootstrap must be >= 0, got {self.bootstrap}")
        if not 0 < self.level < 1:
            raise FitError(f"level must be in (0, 1), got {self.level}")
        if self.min_points < 3:
            raise FitError(f"min_points must be >= 3 (a parabola has 3 coefficients), got {self.min_points}")


@dataclass(kw_only=True)
class BudgetOptimum:
    """The IsoFLOP minimum of one budget. ``parabola``: loss = np.polyval(parabola, ln N) (highest power first)."""

    budget: float
    N_opt: float | None
    D_opt: float | None
    loss_min: float | None
    flags: list[str] = field(default_factory=list)
    n_points: int = 0
    parabola: list[float] | None = None

    @property
    def used(self) -> bool:
        """Whether this optimum enters the power-law fit."""
        return self.N_opt is not None and EXCLUDED not in self.flags


@dataclass(kw_only=True)
class Approach2Result:
    """N*(C) = k_N C^a and D*(C) = k_D C^b through the per-budget optima; intervals from the bootstrap."""

    a: float
    a_ci: list[float] | None
    k_N: float
    b: float
    b_ci: list[float] | None
    k_D: float
    optima: list[BudgetOptimum]
    bootstrap: int
    warnings: list[str] = field(default_factory=list)
    a_se: float | None = None
    b_se: float | None = None
    # (R, 4) bootstrap replicates of (a, ln k_N, b, ln k_D) for frontier bands; not saved in fit.json
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)

    def N_opt(self, C: np.ndarray | float) -> np.ndarray:
        """Compute-optimal model size at budget(s) C."""
        return self.k_N * np.asarray(C, dtype=np.float64) ** self.a

    def D_opt(self, C: np.ndarray | float) -> np.ndarray:
        """Compute-optimal token count at budget(s) C."""
        return self.k_D * np.asarray(C, dtype=np.float64) ** self.b


def _parabolas(z: np.ndarray, y: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares y = c0 + c1 z + c2 z^2 for each row of (R, n) weights ``W``.

    Returns (R, 3) coefficients and an (R,) mask of rows with >= 3 distinct z of positive weight.
    """
    distinct, inverse = np.unique(z, return_inverse=True)
    present = np.zeros((W.shape[0], distinct.size), dtype=bool)
    for j in range(distinct.size):
        present[:, j] = (W[:, inverse == j] > 0).any(axis=1)
    ok = present.sum(axis=1) >= 3
    X = np.stack([np.ones_like(z), z, z * z], axis=1)  # (n, 3)
    M = np.einsum("rn,ni,nj->rij", W, X, X)  # (R, 3, 3)
    M[~ok] = np.eye(3)  # degenerate resamples: any solvable system, masked out by ok
    rhs = np.einsum("rn,ni,n->ri", W, X, y)  # (R, 3)
    return np.linalg.solve(M, rhs[..., None])[..., 0], ok


def _fit_budget(
    C: float, lnN: np.ndarray, lnD: np.ndarray, loss: np.ndarray
) -> tuple[BudgetOptimum, Callable, Callable]:
    """Fit one IsoFLOP curve.

    Returns the optimum, ``vertex(W) -> (ln N*, valid)`` for (R, n) resampling weights, and ``ln_D(ln N)``: the
    budget's own (ln N, ln D) relation, so that D* respects whatever FLOP convention the sweep used.
    """
    m, s = lnN.mean(), max(lnN.std(), 1e-12)
    z = (lnN - m) / s  # centred and scaled for a well-conditioned 3x3 system

    def vertex(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, ok = _parabolas(z, loss, W)
        ok &= c[:, 2] > 0
        return m + s * (-c[:, 1] / (2 * np.where(ok, c[:, 2], 1.0))), ok

    d_coef = np.polyfit(z, lnD, deg=2)

    def ln_D(x: np.ndarray) -> np.ndarray:
        return np.polyval(d_coef, (x - m) / s)

    c0, c1, c2 = _parabolas(z, loss, np.ones((1, z.size)))[0][0]
    raw = [c2 / s**2, c1 / s - 2 * c2 * m / s**2, c0 - c1 * m / s + c2 * m**2 / s**2]  # in ln N, highest first
    opt = BudgetOptimum(budget=float(C), N_opt=None, D_opt=None, loss_min=None, n_points=int(z.size),
                        parabola=[float(v) for v in raw])  # fmt: skip
    if c2 <= 0:
        opt.flags.append(OPENS_DOWNWARD)
        return opt, vertex, ln_D
    x_star = m + s * (-c1 / (2 * c2))
    opt.N_opt, opt.D_opt = math.exp(x_star), float(math.exp(ln_D(x_star)))
    opt.loss_min = float(c0 - c1**2 / (4 * c2))
    if not lnN.min() <= x_star <= lnN.max():
        opt.flags.append(OUTSIDE_RANGE)
    return opt, vertex, ln_D


def _power_law(lnC: np.ndarray, y: np.ndarray, M: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares y = intercept + slope ln C along the last axis of (..., J) ``y``, over budgets with M > 0."""
    M = np.ones_like(y) if M is None else M.astype(np.float64)
    count = M.sum(axis=-1, keepdims=True)
    dc = lnC - (M * lnC).sum(axis=-1, keepdims=True) / count
    dy = np.where(M > 0, y, 0.0) - (M * np.where(M > 0, y, 0.0)).sum(axis=-1, keepdims=True) / count
    slope = (M * dc * dy).sum(axis=-1) / (M * dc * dc).sum(axis=-1)
    return slope, (M * (np.where(M > 0, y, 0.0) - slope[..., None] * lnC)).sum(axis=-1) / count[..., 0]


def fit_approach2(table: Table, config: Approach2Config | None = None) -> Approach2Result:
    """Hoffmann et al.'s Approach 2 on ``table`` (grouped by ``budget``).

    Raises:
        FitError: fewer than two budgets with a usable minimum.
    """
    config = config or Approach2Config()
    warnings: list[str] = []

    def warn(message: str) -> None:
        log.warning("approach 2: %s", message)
        warnings.append(message)

    optima, vertices, lnD_of = [], [], []
    for C in np.unique(table.budget):
        sel = np.flatnonzero(table.budget == C)
        lnN, lnD = np.log(table.N[sel]), np.log(table.D[sel])
        if np.unique(lnN).size < config.min_points:
            warn(f"budget {C:.4g}: {np.unique(lnN).size} distinct model size(s) (< {config.min_points}); left out")
            continue
        opt, vertex, ln_D = _fit_budget(C, lnN, lnD, table.loss[sel])
        if OPENS_DOWNWARD in opt.flags:
            warn(f"budget {C:.4g}: the parabola opens downward (no minimum); left out of the power law")
        elif OUTSIDE_RANGE in opt.flags:
            where = "left out of the power law" if config.drop_outside_range else "extrapolated"
            warn(f"budget {C:.4g}: the minimum N = {opt.N_opt:.4g} lies outside the sampled sizes; {where}")
            if config.drop_outside_range:
                opt.flags.append(EXCLUDED)
        optima.append(opt)
        if opt.used:
            vertices.append((vertex, sel.size))
            lnD_of.append(ln_D)
    used = [o for o in optima if o.used]
    if len(used) < 2:
        raise FitError(f"approach 2 needs at least 2 budgets with a usable minimum, got {len(used)}")
    lnC = np.log([o.budget for o in used])
    slopes, intercepts = _power_law(lnC, np.log([[o.N_opt for o in used], [o.D_opt for o in used]]))
    result = Approach2Result(a=float(slopes[0]), a_ci=None, k_N=float(math.exp(intercepts[0])), b=float(slopes[1]),
                             b_ci=None, k_D=float(math.exp(intercepts[1])), optima=optima,
                             bootstrap=config.bootstrap, warnings=warnings)  # fmt: skip
    if config.bootstrap:
        _bootstrap_approach2(result, config, lnC, vertices, lnD_of, warn)
    return result


def _bootstrap_approach2(result: Approach2Result, config: Approach2Config, lnC: np.ndarray, vertices: list,
                         lnD_of: list[Callable], warn: Callable[[str], None]) -> None:  # fmt: skip
    """Resample points within each budget, refit every parabola and both power laws; fills intervals in place.

    A resampled budget without a minimum (fewer than 3 distinct sizes drawn, or a downward parabola) is left out
    of that resample's power law; a resample with fewer than 2 budgets left is dropped. Both are counted.
    """
    rng = np.random.default_rng(config.seed)
    fits = [vertex(_resample_counts(rng, n, config.bootstrap)) for vertex, n in vertices]
    lnN_star = np.stack([x for x, _ in fits], axis=1)  # (R, J)
    ok = np.stack([v for _, v in fits], axis=1)  # (R, J)
    lnD_star = np.stack([f(lnN_star[:, j]) for j, f in enumerate(lnD_of)], axis=1)
    keep = ok.sum(axis=1) >= 2
    if (~ok).any():
        dropped = f"{int((~keep).sum())} of {config.bootstrap} resamples were dropped (fewer than 2 budgets left)"
        warn(f"{int((~ok).sum())} of {ok.size} resampled IsoFLOP curves had no minimum (too few distinct sizes "
             f"drawn or a downward parabola) and were left out of their resample's power law; {dropped}")  # fmt: skip
    if keep.sum() < 2:
        warn("fewer than 2 usable bootstrap resamples: no intervals")
        return
    a, ln_kN = _power_law(lnC, lnN_star[keep], ok[keep])
    b, ln_kD = _power_law(lnC, lnD_star[keep], ok[keep])
    result.samples = np.stack([a, ln_kN, b, ln_kD], axis=1)
    result.a_ci, result.b_ci = _interval(np.stack([a, b], axis=1), config.level)
    result.a_se, result.b_se = float(a.std(ddof=1)), float(b.std(ddof=1))


# ------------------------------------------------------------------------------------------- approach 3


def _grid(*values: float) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass(kw_only=True)
class Approach3Config:
    """Parametric fit. The default starting grid is Hoffmann et al.'s (4500 points, their appendix D.2)."""

    bootstrap: int = 200
    seed: int = 0
    level: float = 0.95
    huber_delta: float = 1e-3
    grid_alpha: tuple[float, ...] = _grid(0, 0.5, 1, 1.5, 2)
    grid_beta: tuple[float, ...] = _grid(0, 0.5, 1, 1.5, 2)
    grid_e: tuple[float, ...] = _grid(-1, -0.5, 0, 0.5, 1)
    grid_a: tuple[float, ...] = _grid(0, 5, 10, 15, 20, 25)
    grid_b: tuple[float, ...] = _grid(0, 5, 10, 15, 20, 25)
    max_iter: int = 1000
    memory: int = 10
    gtol: float = 1e-9  # on the gradient of the mean Huber loss divided by delta
    ftol: float = 1e-13  # relative decrease per iteration
    # every start runs screen_iter iterations, then only the screen_keep lowest continue (None: all run to the end)
    screen_iter: int | None = 30
    screen_keep: int = 100

    def __post_init__(self) -> None:
        if self.bootstrap < 0:
            raise FitError(f"bootstrap must be >= 0, got {self.bootstrap}")
        if not 0 < self.level < 1:
            raise FitError(f"level must be in (0, 1), got {self.level}")
        if not (self.huber_delta > 0 and math.isfinite(self.huber_delta)):
            raise FitError(f"huber_delta must be a positive number, got {self.huber_delta}")
        for name in ("grid_alpha", "grid_beta", "grid_e", "grid_a", "grid_b"):
            values = getattr(self, name)
            if not values or not all(math.isfinite(v) for v in values):
                raise FitError(f"{name} must be a non-empty tuple of finite numbers, got {values!r}")
        if self.max_iter < 1 or self.memory < 1:
            raise FitError(f"max_iter and memory must be >= 1, got {self.max_iter} and {self.memory}")
        if (self.screen_iter is not None and self.screen_iter < 1) or self.screen_keep < 1:
            raise FitError(f"screen_iter (or None) and screen_keep must be >= 1, got {self.screen_iter}, "
                           f"{self.screen_keep}")  # fmt: skip

    def starts(self) -> np.ndarray:
        """(S, 5) starting points as (a, b, e, alpha, beta)."""
        grid = itertools.product(self.grid_a, self.grid_b, self.grid_e, self.grid_alpha, self.grid_beta)
        return np.array(list(grid), dtype=np.float64)


@dataclass(kw_only=True)
class Approach3Result:
    """L(N, D) = E + A / N^alpha + B / D^beta with bootstrap standard errors (``se``) and intervals (``ci``)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    se: dict[str, float] | None
    a: float
    b: float
    n_points: int
    huber_delta: float
    converged: bool
    warnings: list[str] = field(default_factory=list)
    ci: dict[str, list[float]] | None = None
    bootstrap: int = 0
    objective: float | None = None  # sum of Huber losses of the log residuals at the optimum

    def predict(self, N: np.ndarray | float, D: np.ndarray | float) -> np.ndarray:
        """Predicted loss at model size(s) N and token count(s) D (broadcast)."""
        N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
        return self.E + self.A * N**-self.alpha + self.B * D**-self.beta

    def optimal(self, C: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Compute-optimal (N, D) at budget(s) C under C = 6 N D (Hoffmann et al. eq. 4)."""
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        C6 = np.asarray(C, dtype=np.float64) / 6
        return G * C6**self.a, C6**self.b / G


def _huber_objective(theta, x_N, x_D, lnL, W, delta) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of ln L_hat - ln L (weighted mean, over delta) and its gradient for (S, 5) centred parameters.

    theta = (a', b', e, alpha, beta) with ln L_hat = LSE(a' - alpha x_N, b' - beta x_D, e)
    = e + ln(1 + exp(a' - e - alpha x_N) + exp(b' - e - beta x_D)); x_N, x_D, lnL: (P,); W: (P,) or (S, P).
    """
    a, b, e, alpha, beta = (theta[:, i : i + 1] for i in range(5))  # each (S, 1)
    with np.errstate(over="ignore", invalid="ignore"):  # overflowing trial steps come back inf/nan and are refused
        p1 = np.exp(a - e - alpha * x_N)  # (S, P)
        p2 = np.exp(b - e - beta * x_D)
        total = 1.0 + p1 + p2
        r = np.log(total) + e - lnL  # log residuals
        p1 /= total  # softmax weights = d LSE / d (first, second term)
        p2 /= total
        c = np.clip(r, -delta, delta)  # Huber derivative
        h = c * (r - 0.5 * c)  # = r^2 / 2 inside [-delta, delta], delta (|r| - delta / 2) outside
        norm = delta * np.broadcast_to(W, r.shape).sum(axis=1, keepdims=True)  # (S, 1)
        c *= W
        q1, q2 = c * p1, c * p2
        s1, s2 = q1.sum(axis=1), q2.sum(axis=1)
        grad = np.stack([s1, s2, c.sum(axis=1) - s1 - s2, -(q1 @ x_N), -(q2 @ x_D)], axis=1) / norm
        return (h * W).sum(axis=1) / norm[:, 0], grad


def fit_approach3(table: Table, config: Approach3Config | None = None) -> Approach3Result:
    """Hoffmann et al.'s Approach 3 on ``table`` (``budget`` is not used).

    Raises:
        FitError: fewer than 5 points, or N or D constant (the exponents are then undetermined).
    """
    config = config or Approach3Config()
    if len(table) < 5:
        raise FitError(f"approach 3 fits 5 parameters and needs at least 5 points, got {len(table)}")
    lnN, lnD, lnL = np.log(table.N), np.log(table.D), np.log(table.loss)
    for name, values in (("N", lnN), ("D", lnD)):
        if np.ptp(values) == 0:
            raise FitError(f"approach 3: {name} is the same in every row, so its exponent is undetermined")
    warnings: list[str] = []

    def warn(message: str) -> None:
        log.warning("approach 3: %s", message)
        warnings.append(message)

    # centring ln N and ln D (a' = a - alpha mean ln N) is an exact reparametrisation that decorrelates a and alpha
    mean = np.array([lnN.mean(), lnD.mean()])
    shift = np.zeros((5, 5))
    shift[3, 0], shift[4, 1] = mean

    def solve(theta0: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grid (W: (P,), one problem from many starts) or bootstrap (W: (S, P), one start per problem)."""

        def fun(theta, rows):
            return _huber_objective(theta, lnN - mean[0], lnD - mean[1], lnL, W if W.ndim == 1 else W[rows],
                                    config.huber_delta)  # fmt: skip

        if W.ndim == 1:
            x, f, status = multistart(fun, theta0 - theta0 @ shift, max_iter=config.max_iter, memory=config.memory,
                                      gtol=config.gtol, ftol=config.ftol, screen_iter=config.screen_iter,
                                      screen_keep=config.screen_keep)  # fmt: skip
        else:
            x, f, status = lbfgs(fun, theta0 - theta0 @ shift, memory=config.memory, max_iter=config.max_iter,
                                 gtol=config.gtol, ftol=config.ftol)  # fmt: skip
        return x + x @ shift, f, status

    theta, f, status = solve(config.starts(), np.ones(len(table)))
    if not np.isfinite(f).any():
        raise FitError("approach 3: no starting point gave a finite loss")
    best = int(np.argmin(np.where(np.isfinite(f), f, np.inf)))
    if np.abs(theta[best, :3]).max() > 700:
        raise FitError(f"approach 3 diverged: ln A, ln B, ln E = {theta[best, :3].tolist()} overflow")
    converged = bool(status[best] in (CONVERGED, STALLED))
    if not converged:
        warn(f"L-BFGS did not converge in {config.max_iter} iterations; the parameters are not a minimum")
    a, b, e, alpha, beta = theta[best]
    if alpha <= 0 or beta <= 0:
        warn(f"fitted alpha = {alpha:.4g}, beta = {beta:.4g}: loss does not fall with both N and D")
    result = Approach3Result(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=float(alpha), beta=float(beta),
                             se=None, a=float(beta / (alpha + beta)), b=float(alpha / (alpha + beta)),
                             n_points=len(table), huber_delta=config.huber_delta, converged=converged,
                             warnings=warnings, bootstrap=config.bootstrap,
                             objective=float(f[best] * config.huber_delta * len(table)))  # fmt: skip
    if config.bootstrap:
        _bootstrap_approach3(result, config, solve, theta[best], warn)
    return result


def _bootstrap_approach3(result: Approach3Result, config: Approach3Config, solve: Callable, theta: np.ndarray,
                         warn: Callable[[str], None]) -> None:  # fmt: skip
    """Refit resamples (points drawn with replacement) warm-started at ``theta``; fills ``se`` and ``ci``."""
    W = _resample_counts(np.random.default_rng(config.seed), result.n_points, config.bootstrap)
    boot, _, status = solve(np.tile(theta, (config.bootstrap, 1)), W)
    good = np.isin(status, (CONVERGED, STALLED))
    if (~good).any():
        warn(f"{int((~good).sum())} of {config.bootstrap} bootstrap fits did not converge and were left out")
    if good.sum() < 2:
        warn("fewer than 2 converged bootstrap fits: no standard errors")
        return
    a, b, e, alpha, beta = boot[good].T
    samples = np.stack([np.exp(e), np.exp(a), np.exp(b), alpha, beta, beta / (alpha + beta)], axis=1)
    samples = np.concatenate([samples, 1 - samples[:, 5:]], axis=1)  # b = 1 - a
    result.se = dict(zip(STATISTICS, samples.std(axis=0, ddof=1).tolist()))
    result.ci = dict(zip(STATISTICS, _interval(samples, config.level)))
