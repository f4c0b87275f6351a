"""Figures of a scaling-law fit, drawn with matplotlib's Agg canvas (no display, no global pyplot state), as PNG.

* :func:`plot_isoflop`: loss against N per budget (log x) with each budget's parabola and minimum (Approach 2).
* :func:`plot_frontier`: N*(C) and D*(C) with the fitted power laws and their bootstrap bands (Approach 2),
  and the parametric fit's frontier for comparison when given (Approach 3).
* :func:`plot_parametric`: contours of L(N, D) = E + A / N^alpha + B / D^beta over the data, with the
  efficient frontier and the IsoFLOP lines C = 6 N D of the table's budgets (Approach 3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from wavefoundry.scaling.fit import Approach2Result, Approach3Result
from wavefoundry.scaling.table import Table

MAX_ISOFLOP_LINES = 12


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    FigureCanvasAgg(fig).print_png(tmp)
    tmp.replace(path)  # a reader never sees half a PNG
    return path


def _budget_colors(budgets: np.ndarray):
    """A colour per budget, from the viridis map in log C."""
    norm = LogNorm(vmin=budgets.min(), vmax=max(budgets.max(), budgets.min() * 1.0001))
    cmap = colormaps["viridis"]
    return lambda budget: cmap(0.9 * norm(budget))


def plot_isoflop(table: Table, fit: Approach2Result, path: str | Path) -> Path:
    """IsoFLOP curves: the points of each budget, its parabola in ln N and its minimum (flagged ones hollow).

    Budgets that Approach 2 left out (too few sizes) are drawn in grey.
    """
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.add_subplot()
    budgets = np.unique(table.budget)
    color = _budget_colors(budgets)
    fitted = {o.budget: o for o in fit.optima}
    for C in budgets:
        sel = table.budget == C
        opt = fitted.get(float(C))
        c = color(C) if opt is not None else "0.6"
        label = f"C = {C:.2g}" + ("" if opt is not None else " (left out)")
        ax.scatter(table.N[sel], table.loss[sel], color=c, s=22, label=label, zorder=3)
        if opt is None or opt.parabola is None:
            continue
        lo, hi = np.log(table.N[sel].min()), np.log(table.N[sel].max())
        x = np.linspace(lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo), 200)
        ax.plot(np.exp(x), np.polyval(opt.parabola, x), color=c, lw=1.2)
        if opt.N_opt is not None:
            hollow = bool(opt.flags)
            ax.scatter([opt.N_opt], [opt.loss_min], marker="*", s=140, zorder=4, edgecolors="k",
                       facecolors="none" if hollow else c)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("loss")
    ax.set_title("IsoFLOP curves: parabola in ln N per budget, star = minimum (hollow: flagged)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    return _save(fig, path)


def _band(fit: Approach2Result, budgets: np.ndarray, which: int, level: float = 0.95) -> np.ndarray | None:
    """(2, len(budgets)) percentile band of ln N*(C) (which=0) or ln D*(C) (which=1) over the bootstrap replicates."""
    if fit.samples is None or len(fit.samples) < 2:
        return None
    slope, intercept = fit.samples[:, 2 * which], fit.samples[:, 2 * which + 1]
    curves = intercept[:, None] + slope[:, None] * np.log(budgets)[None, :]  # (R, len(budgets))
    return np.percentile(curves, [50 * (1 - level), 50 * (1 + level)], axis=0)


def plot_frontier(fit: Approach2Result, path: str | Path, *, parametric: Approach3Result | None = None) -> Path:
    """N*(C) and D*(C): the budget optima, the power laws with their bootstrap band, and Approach 3's frontier."""
    fig = Figure(figsize=(10.0, 4.4), layout="constrained")
    axes = fig.subplots(1, 2)
    used = [o for o in fit.optima if o.N_opt is not None]
    budgets = np.array([o.budget for o in fit.optima])
    C = np.geomspace(budgets.min() / 3, budgets.max() * 3, 100)
    laws = ((fit.N_opt(C), fit.a, fit.a_ci, "N", "parameters"), (fit.D_opt(C), fit.b, fit.b_ci, "D", "tokens"))
    for which, (ax, (line, slope, ci, sym, unit)) in enumerate(zip(axes, laws)):
        band = _band(fit, C, which)
        if band is not None:
            ax.fill_between(C, np.exp(band[0]), np.exp(band[1]), alpha=0.25, color="C0", label="95% bootstrap band")
        ci_text = "" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]"
        ax.plot(C, line, color="C0", label=f"approach 2: {sym}* ∝ C^{slope:.3f}{ci_text}")
        for o in used:
            value = o.N_opt if which == 0 else o.D_opt
            ax.scatter([o.budget], [value], color="C0", zorder=3, facecolors="none" if o.flags else "C0")
        if parametric is not None:
            exponent = parametric.a if which == 0 else parametric.b
            ax.plot(C, parametric.optimal(C)[which], color="C3", ls="--",
                    label=f"approach 3: {sym}* ∝ C^{exponent:.3f} (C = 6ND)")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C (FLOP)")
        ax.set_ylabel(f"optimal {unit} {sym}*")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Compute-optimal frontier (hollow: flagged budget)")
    return _save(fig, path)


def plot_parametric(table: Table, fit: Approach3Result, path: str | Path) -> Path:
    """Contours of the fitted loss over (N, D), the data coloured by loss, and the efficient frontier."""
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    lo_N, hi_N = np.log10(table.N.min()) - 0.3, np.log10(table.N.max()) + 0.3
    lo_D, hi_D = np.log10(table.D.min()) - 0.3, np.log10(table.D.max()) + 0.3
    N, D = np.meshgrid(np.logspace(lo_N, hi_N, 160), np.logspace(lo_D, hi_D, 160))
    L = fit.predict(N, D)
    vmin, vmax = min(L.min(), table.loss.min()), max(np.percentile(L, 95), table.loss.max())
    levels = np.linspace(vmin, vmax, 16)
    contours = ax.contourf(N, D, L, levels=levels, cmap="magma_r", extend="max", alpha=0.85)
    ax.contour(N, D, L, levels=levels, colors="k", linewidths=0.3, alpha=0.5)
    ax.scatter(table.N, table.D, c=table.loss, cmap="magma_r", vmin=vmin, vmax=vmax, edgecolors="k",
               linewidths=0.6, s=26, zorder=3, label="runs (colour: loss)")  # fmt: skip
    C = 6 * N.min() * D.min() * np.logspace(0, np.log10(N.max() * D.max() / (N.min() * D.min())), 200)
    N_opt, D_opt = fit.optimal(C)
    ax.plot(N_opt, D_opt, color="C0", lw=2, label=f"efficient frontier (C = 6ND): N* ∝ C^{fit.a:.3f}")
    budgets = np.unique(table.budget)
    if budgets.size <= MAX_ISOFLOP_LINES:  # a sweep's budgets; a table of scattered FLOPs would be all lines
        n_line = np.array([N.min(), N.max()])
        for k, budget in enumerate(budgets):
            ax.plot(n_line, budget / (6 * n_line), color="w", lw=0.7, ls=":",
                    label="C = 6ND of the budgets" if k == 0 else None)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(N.min(), N.max())
    ax.set_ylim(D.min(), D.max())
    ax.set_xlabel("parameters N")
    ax.set_ylabel("tokens D")
    ax.set_title(f"L = {fit.E:.3g} + {fit.A:.3g}/N^{fit.alpha:.3f} + {fit.B:.3g}/D^{fit.beta:.3f}")
    fig.colorbar(contours, ax=ax, label="loss")
    ax.legend(fontsize="small", loc="upper right")
    return _save(fig, path)
