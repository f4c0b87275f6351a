"""Compute planning: compute-optimal N and D for a budget, the budget for a model size, and wall-clock on GPUs.

A law gives the compute-optimal model size and token count as power laws of the training budget C (FLOPs),

    N*(C) = k_N C^a,    D*(C) = k_D C^b,

under a stated FLOP convention (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", Eq. 4 uses
C ~ 6 N D). From the parametric loss L(N, D) = E + A / N^alpha + B / D^beta (their Eq. 2) the optimum under C = 6 N D
has the closed form (their Eq. 4)

    N_opt = G (C/6)^a,  D_opt = G^-1 (C/6)^b,  G = (alpha A / (beta B))^(1 / (alpha + beta)),
    a = beta / (alpha + beta),  b = alpha / (alpha + beta),

so k_N = G 6^-a and k_D = 6^-b / G. Wall-clock on ``n_gpus`` accelerators of peak dense bf16 throughput ``peak`` at a
model-FLOPs utilisation ``mfu``: time = C / (n_gpus peak mfu), GPU-hours = C / (peak mfu) / 3600.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from wavefoundry.scaling.fit import Approach2Result, Approach3Result
from wavefoundry.scaling.fit_file import load_fit
from wavefoundry.scaling.table import FitError

TOKENS_PER_PARAM_RULE = 20.0  # Hoffmann et al. 2022, Approaches 1 and 2: ~20 tokens per parameter
Z95 = 1.959963984540054  # two-sided 95% normal quantile, for intervals from standard errors


def check_positive(name: str, value: float) -> float:
    """``value`` as a float; a ValueError naming ``name`` unless it is a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


@dataclass(kw_only=True)
class ParametricLoss:
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, Eq. 2); N, D in parameters and tokens."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __post_init__(self) -> None:
        for name in ("E", "A", "B", "alpha", "beta"):
            check_positive(f"loss.{name}", getattr(self, name))

    def __call__(self, n: float, d: float) -> float:
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    @property
    def g(self) -> float:
        """G = (alpha A / (beta B))^(1 / (alpha + beta)) (Hoffmann et al. 2022, Eq. 4)."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))


@dataclass(kw_only=True)
class ComputeOptimalLaw:
    """N*(C) = k_N C^a and D*(C) = k_D C^b, with the FLOP convention C is measured in.

    ``k_n`` (k_N) None: the source publishes the exponents only (set it with ``with_coefficients`` or ``anchored``).
    ``k_d`` (k_D) None: D* = C / (flops_per_param_token N*), i.e. D* is read off the convention C = 6 N D.
    ``a_ci``/``b_ci``: 95% intervals of the exponents; with ``pivot_budget`` (the budget the fitted lines pass
    through) they give an N*/D* range: the line is turned about the pivot, N*(C) (C / pivot)^(a' - a), a' in a_ci.
    """

    name: str
    a: float
    b: float
    k_n: float | None = None
    k_d: float | None = None
    convention: str = "C = 6 N D"
    flops_per_param_token: float = 6.0
    source: str = ""
    loss: ParametricLoss | None = None
    a_ci: tuple[float, float] | None = None
    b_ci: tuple[float, float] | None = None
    pivot_budget: float | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("a", "b", "flops_per_param_token"):
            check_positive(f"law {self.name!r}: {name}", getattr(self, name))
        for name in ("k_n", "k_d", "pivot_budget"):
            if getattr(self, name) is not None:
                check_positive(f"law {self.name!r}: {name}", getattr(self, name))
        for name in ("a_ci", "b_ci"):
            ci = getattr(self, name)
            if ci is not None:
                lo, hi = (float(x) for x in ci)
                if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                    raise ValueError(f"law {self.name!r}: {name} must be [lo, hi] with lo <= hi, got {ci!r}")
                setattr(self, name, (lo, hi))

    def with_coefficients(self, *, k_n: float, k_d: float | None = None) -> ComputeOptimalLaw:
        """This law with user-given coefficients (N* = k_N C^a; D* = k_D C^b, or from C = 6 N D when None)."""
        k_n, k_d = check_positive("k_N", k_n), None if k_d is None else check_positive("k_D", k_d)
        note = f"k_N = {k_n:.4g}" + (f", k_D = {k_d:.4g}" if k_d is not None else "") + " given by the user"
        return replace(self, k_n=k_n, k_d=k_d, notes=[*self.notes, note])

    def anchored(self, budget: float, n_opt: float) -> ComputeOptimalLaw:
        """This law through a known optimum (C0, N0): k_N = N0 / C0^a, k_D = D0 / C0^b with D0 = C0 / (6 N0)."""
        c0, n0 = check_positive("anchor budget", budget), check_positive("anchor N", n_opt)
        d0 = c0 / (self.flops_per_param_token * n0)
        note = f"anchored at C0 = {c0:.4g} FLOPs, N0 = {n0:.4g}, D0 = C0 / ({self.flops_per_param_token:g} N0)"
        return replace(self, k_n=n0 / c0**self.a, k_d=d0 / c0**self.b, notes=[*self.notes, note])

    def with_pivot(self, budget: float) -> ComputeOptimalLaw:
        """This law with the budget its fitted lines pass through (for the N*/D* ranges)."""
        return replace(self, pivot_budget=check_positive("pivot budget", budget))

    def _require_k(self) -> float:
        if self.k_n is None:
            raise ValueError(
                f"law {self.name!r} publishes exponents only (a = {self.a}, b = {self.b}), no coefficient k_N; "
                "pass --k-n K (N* = K C^a) or --anchor C,N (a known optimum)"
            )
        return self.k_n

    def n_opt(self, budget: float) -> float:
        """N*(C) = k_N C^a."""
        return self._require_k() * check_positive("budget", budget) ** self.a

    def d_opt(self, budget: float) -> float:
        """D*(C) = k_D C^b, or C / (6 N*) when the law has no k_D."""
        if self.k_d is None:
            return budget / (self.flops_per_param_token * self.n_opt(budget))
        self._require_k()
        return self.k_d * check_positive("budget", budget) ** self.b

    def budget_for(self, n: float) -> float:
        """The budget whose optimum is N: C = (N / k_N)^(1/a), the inverse of N*(C)."""
        return (check_positive("model size", n) / self._require_k()) ** (1.0 / self.a)

    def ranges(self, budget: float) -> dict[str, tuple[float, float]]:
        """N*/D* ranges at ``budget`` from the exponent intervals turned about ``pivot_budget`` (empty if unknown)."""
        if self.pivot_budget is None:
            return {}
        out = {}
        ratio = budget / self.pivot_budget
        for key, fn, exp, ci in (("N", self.n_opt, self.a, self.a_ci), ("D", self.d_opt, self.b, self.b_ci)):
            if ci is not None:
                ends = sorted(fn(budget) * ratio ** (e - exp) for e in ci)
                out[key] = (ends[0], ends[1])
        return out


def chinchilla() -> ComputeOptimalLaw:
    """Hoffmann et al. 2022, Approach 3 (their Eq. 10 fit): E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28."""
    return law_from_loss(
        ParametricLoss(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
        name="chinchilla",
        convention="C = 6 N D, N = all parameters (Hoffmann et al. 2022)",
        source="Hoffmann et al. 2022, arXiv 2203.15556, Approach 3",
    )


def besiroglu() -> ComputeOptimalLaw:
    """Besiroglu et al. 2024 ("Chinchilla Scaling: A replication attempt") refit of Hoffmann et al.'s Figure 4 data."""
    return law_from_loss(
        ParametricLoss(E=1.817, A=482.0, B=2085.4, alpha=0.348, beta=0.366),
        name="besiroglu",
        convention="C = 6 N D, N = all parameters (the Chinchilla data)",
        source="Besiroglu et al. 2024, arXiv 2404.10102, Approach 3 refit",
    )


def soda() -> ComputeOptimalLaw:
    """Manakul et al. 2026 (SODA, arXiv 2602.16687) IsoFLOP fit, Approach 2: N* ~ C^0.367, D* ~ C^0.579.

    The paper (its Figure 4) and project page give the exponents; we found no published coefficient k_N or
    compute-optimal (C, N*) point, so k_N is left unset rather than guessed.
    """
    return ComputeOptimalLaw(
        name="soda",
        a=0.367,
        b=0.579,
        convention="C = SODA's IsoFLOP budgets (Levanter's analytic FLOPs, ~6 N D); N = non-embedding parameters",
        source="Manakul et al. 2026, arXiv 2602.16687, Approach 2 (exponents only; k_N not published)",
        notes=["a + b = 0.946 != 1: 6 N* D* drifts from C away from where the law is anchored"],
    )


LAWS = {"chinchilla": chinchilla, "besiroglu": besiroglu, "soda": soda}


def get_law(name: str) -> ComputeOptimalLaw:
    """A built-in law by name; an unknown name raises ValueError listing the valid ones."""
    if name not in LAWS:
        raise ValueError(f"unknown law {name!r}; valid: {', '.join(LAWS)} (or --fit fit.json)")
    return LAWS[name]()


def law_from_loss(loss: ParametricLoss, *, name: str, convention: str, source: str, **kw) -> ComputeOptimalLaw:
    """The closed-form optimum of a parametric loss under C = 6 N D: k_N = G 6^-a, k_D = 6^-b / G."""
    a = loss.beta / (loss.alpha + loss.beta)
    b = loss.alpha / (loss.alpha + loss.beta)
    return ComputeOptimalLaw(
        name=name, a=a, b=b, k_n=loss.g * 6.0**-a, k_d=6.0**-b / loss.g, convention=convention, source=source,
        loss=loss, **kw,
    )  # fmt: skip


def _pivot(result: Approach2Result | None) -> float | None:
    """Geometric mean of the budgets of the Approach-2 optima the power law was fitted to (``BudgetOptimum.used``):
    the least-squares line in log-log passes through it."""
    budgets = [o.budget for o in result.optima if o.used] if result is not None else []
    if not budgets:
        return None
    return math.exp(sum(math.log(c) for c in budgets) / len(budgets))


def _exponent_interval(result: Approach3Result, loss: ParametricLoss) -> tuple[float, float] | None:
    """The 95% interval of a = beta / (alpha + beta) from an Approach-3 result (see ``law_from_fit``)."""
    ci, se = result.ci or {}, result.se or {}
    if "a" in ci:
        lo, hi = ci["a"]
        return lo, hi
    a = loss.beta / (loss.alpha + loss.beta)
    if "a" in se:
        se_a = se["a"]
    elif "alpha" in se and "beta" in se:
        # delta method: da/dalpha = -beta / (alpha + beta)^2, da/dbeta = alpha / (alpha + beta)^2
        se_a = math.hypot(loss.beta * se["alpha"], loss.alpha * se["beta"]) / (loss.alpha + loss.beta) ** 2
    else:
        return None
    return a - Z95 * se_a, a + Z95 * se_a


def law_from_fit(path: str | Path, approach: int | None = None) -> ComputeOptimalLaw:
    """A law from ``fit.json`` (read by ``fit_file.load_fit``): Approach 3 when present (else 2), or the one asked for.

    Approach 2: N* = k_N C^a, D* = k_D C^b in the sweep table's FLOP convention, intervals a_ci/b_ci as fitted.
    Approach 3: the closed form under C = 6 N D. The exponent interval, in order of preference: the bootstrap
    percentile interval ``ci["a"]``; a +- 1.96 ``se["a"]``; or a +- 1.96 se(a) by the delta method from se(alpha) and
    se(beta) taken as independent (no covariance in the file; alpha and beta usually correlate positively, which
    narrows the true interval, so this one errs wide). b's interval is 1 - a's.

    Raises:
        FitError: the file is not a valid fit, lacks the approach asked for, or its law is unusable (for example a
            fitted exponent <= 0); the message names the file.
    """
    if approach not in (None, 2, 3):
        raise ValueError(f"approach must be 2 or 3, got {approach!r}")
    fit = load_fit(path)
    if fit.approach2 is None and fit.approach3 is None:
        raise FitError(f"fit file {path} has neither an approach2 nor an approach3 result")
    if approach is None:
        approach = 3 if fit.approach3 is not None else 2
    result = fit.approach3 if approach == 3 else fit.approach2
    if result is None:
        raise FitError(f"fit file {path} has no approach{approach} result (null)")
    where = f"approach{approach}"
    notes = [f"{where} warning: {w}" for w in result.warnings]
    kw = {"name": f"fit:{where}", "source": f"{Path(path)} ({where})", "pivot_budget": _pivot(fit.approach2),
          "notes": notes}  # fmt: skip
    try:
        if isinstance(result, Approach2Result):
            return ComputeOptimalLaw(
                a=result.a, b=result.b, k_n=result.k_N, k_d=result.k_D, a_ci=result.a_ci, b_ci=result.b_ci,
                convention="C = the sweep table's budget column", **kw,
            )  # fmt: skip
        loss = ParametricLoss(**{k: getattr(result, k) for k in ("E", "A", "B", "alpha", "beta")})
    except ValueError as exc:  # a file load_fit accepts can still hold a fit without a compute-optimal law
        raise FitError(f"{path}: {where} gives no compute-optimal law: {exc}") from None
    if not result.converged:
        notes.append("approach3 fit did not converge: treat these numbers with caution")
    a_ci = _exponent_interval(result, loss)
    b_ci = None if a_ci is None else (1.0 - a_ci[1], 1.0 - a_ci[0])
    return law_from_loss(loss, convention="C = 6 N D (closed form of the parametric fit)", a_ci=a_ci, b_ci=b_ci,
                         **kw)  # fmt: skip


def rule_of_thumb(budget: float, tokens_per_param: float = TOKENS_PER_PARAM_RULE) -> tuple[float, float]:
    """(N, D) with D = r N and C = 6 N D: N = sqrt(C / (6 r)) (Hoffmann et al. 2022, Approaches 1-2: r ~ 20)."""
    n = math.sqrt(check_positive("budget", budget) / (6.0 * tokens_per_param))
    return n, tokens_per_param * n


def training_flops(n: float, d: float, flops_per_token: float | None = None) -> float:
    """Training FLOPs of N parameters on D tokens: 6 N D, or ``flops_per_token`` x D when that figure is given."""
    d = check_positive("tokens", d)
    if flops_per_token is not None:
        return check_positive("flops per token", flops_per_token) * d
    return 6.0 * check_positive("model size", n) * d


@dataclass(frozen=True, kw_only=True)
class HardwareProfile:
    """An accelerator by its peak dense bf16 throughput (FLOP/s, no sparsity), from the vendor's datasheet."""

    name: str
    peak_bf16_flops: float
    note: str = ""

    def __post_init__(self) -> None:
        check_positive(f"{self.name}: peak_bf16_flops", self.peak_bf16_flops)


HARDWARE = {
    "a100": HardwareProfile(name="A100", peak_bf16_flops=312e12, note="NVIDIA A100 SXM/PCIe, 312 TFLOP/s dense bf16"),
    "h100": HardwareProfile(name="H100 SXM", peak_bf16_flops=989e12, note="NVIDIA H100 SXM, 989 TFLOP/s dense bf16"),
    "h200": HardwareProfile(name="H200", peak_bf16_flops=989e12, note="NVIDIA H200, 989 TFLOP/s dense bf16 (as H100)"),
}


def get_hardware(name: str | None = None, peak_flops: float | None = None) -> HardwareProfile:
    """A built-in profile (a100, h100, h200) or a custom one from ``peak_flops``; unknown names raise ValueError."""
    if peak_flops is not None:
        return HardwareProfile(name=name or "custom", peak_bf16_flops=check_positive("peak FLOP/s", peak_flops))
    key = (name or "").lower()
    if key not in HARDWARE:
        raise ValueError(f"unknown GPU {name!r}; valid: {', '.join(HARDWARE)} (or --peak-flops F)")
    return HARDWARE[key]


def check_mfu(mfu: float) -> float:
    """``mfu`` as a float; a ValueError unless it is a fraction of peak in (0, 1]."""
    mfu = check_positive("MFU", mfu)
    if mfu > 1:
        raise ValueError(f"MFU is a fraction of peak in (0, 1], got {mfu}")
    return mfu


@dataclass(frozen=True, kw_only=True)
class TimeEstimate:
    """Wall-clock of ``flops`` on ``n_gpus`` x ``hardware`` at utilisation ``mfu``."""

    flops: float
    hardware: HardwareProfile
    n_gpus: int
    mfu: float

    @property
    def seconds(self) -> float:
        return self.flops / (self.n_gpus * self.hardware.peak_bf16_flops * self.mfu)

    @property
    def gpu_hours(self) -> float:
        return self.flops / (self.hardware.peak_bf16_flops * self.mfu) / 3600.0

    def formula(self) -> str:
        """The two formulas with the numbers substituted."""
        c, p, m, g = self.flops, self.hardware.peak_bf16_flops, self.mfu, self.n_gpus
        s = self.seconds
        return (
            f"time = C / (n_gpus x peak x MFU) = {c:.3e} / ({g} x {p:.3e} x {m:g}) = {s:.3e} s"
            f" = {s / 3600:,.1f} h = {s / 86400:,.2f} days\n"
            f"GPU-hours = C / (peak x MFU) / 3600 = {c:.3e} / ({p:.3e} x {m:g}) / 3600 = {self.gpu_hours:,.0f}"
        )


def training_time(flops: float, hardware: HardwareProfile, *, n_gpus: int = 1, mfu: float) -> TimeEstimate:
    """time = C / (n_gpus peak MFU); checks C > 0, n_gpus >= 1, 0 < MFU <= 1."""
    if isinstance(n_gpus, bool) or not isinstance(n_gpus, int) or n_gpus < 1:
        raise ValueError(f"n_gpus must be a positive integer, got {n_gpus!r}")
    return TimeEstimate(flops=check_positive("budget", flops), hardware=hardware, n_gpus=n_gpus, mfu=check_mfu(mfu))


def cluster_flops(hardware: HardwareProfile, n_gpus: int, hours: float) -> float:
    """FLOPs the cluster can do at peak in ``hours``: n_gpus x peak x hours x 3600."""
    return n_gpus * hardware.peak_bf16_flops * check_positive("hours", hours) * 3600.0


def implied_mfu(flops: float, hardware: HardwareProfile, n_gpus: int, hours: float) -> float:
    """The utilisation a run of ``flops`` in ``hours`` on ``n_gpus`` implies: C / (n_gpus peak hours 3600)."""
    return check_positive("flops", flops) / cluster_flops(hardware, n_gpus, hours)
