"""Batched L-BFGS in numpy: many independent small minimisations advanced together, one row per problem.

Limited-memory BFGS (Nocedal & Wright 2006, "Numerical Optimization", alg. 7.4 and 7.5) with a backtracking
Armijo line search. The Approach-3 fit (``scaling/fit.py``) runs it from thousands of starting points, and over
bootstrap resamples, at once: every step is a few (S, P) array operations instead of S Python-level solver calls.
:func:`multistart` adds a screening pass (a few iterations for every start, then only the best go on).
Library code may not use scipy (DESIGN.md); the tests compare against scipy's L-BFGS-B.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Per-row status: still iterating; converged (gtol or ftol met); stalled (no descent at float64 precision, a
#: numerical minimum); out of iterations.
RUNNING, CONVERGED, STALLED, MAX_ITER = 0, 1, 2, 3


def _two_loop(g: np.ndarray, s_hist, y_hist, rho, gamma, newest: int) -> np.ndarray:
    """-H g for (S, P) gradients with the L-BFGS inverse-Hessian estimate (Nocedal & Wright 2006, alg. 7.4).

    Pairs with rho = 0 (never filled, refused or reset) are no-ops.
    """
    memory = rho.shape[0]
    order = [(newest - j) % memory for j in range(memory)]  # newest pair first
    q, coef = g.copy(), np.zeros((memory, g.shape[0]))
    for j in order:
        coef[j] = rho[j] * np.einsum("sp,sp->s", s_hist[j], q)
        q -= coef[j][:, None] * y_hist[j]
    d = q * gamma[:, None]
    for j in reversed(order):
        d += s_hist[j] * (coef[j] - rho[j] * np.einsum("sp,sp->s", y_hist[j], d))[:, None]
    return -d


def _line_search(fun, x, f, g, d, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backtracking Armijo search from step 1 (halving, c1 = 1e-4). Returns step, f, g and accepted, per row."""
    slope = np.einsum("sp,sp->s", g, d)
    step, f_new, g_new = np.ones(len(rows)), f.copy(), g.copy()
    ok = np.zeros(len(rows), dtype=bool)
    pending = np.arange(len(rows))
    for _ in range(60):
        f_try, g_try = fun(x[pending] + step[pending, None] * d[pending], rows[pending])
        accept = np.isfinite(f_try) & np.isfinite(g_try).all(axis=1)
        accept &= f_try <= f[pending] + 1e-4 * step[pending] * slope[pending]
        done = pending[accept]
        ok[done], f_new[done], g_new[done] = True, f_try[accept], g_try[accept]
        pending = pending[~accept]
        if pending.size == 0:
            break
        step[pending] *= 0.5
    return step, f_new, g_new, ok


def lbfgs(fun: Callable, x0: np.ndarray, *, memory: int, max_iter: int, gtol: float, ftol: float):
    """Independent L-BFGS minimisations of S problems at once (Nocedal & Wright 2006, alg. 7.5).

    ``fun(x, rows) -> (f, g)`` evaluates the problems ``rows`` at (len(rows), P) ``x``. A failed line search first
    drops the row's curvature memory, then stops the row as STALLED: no decrease along steepest descent at
    float64 precision, i.e. a numerical minimum. Returns x (S, P), f (S,) and status (S,).
    """
    x = x0.copy()
    S, P = x.shape
    f, g = fun(x, np.arange(S))
    s_hist, y_hist, rho = np.zeros((memory, S, P)), np.zeros((memory, S, P)), np.zeros((memory, S))

    def reset_scale(rows: np.ndarray) -> None:
        gamma[rows] = 1 / np.maximum(np.linalg.norm(g[rows], axis=1), 1e-300)  # first step of unit length

    gamma = np.ones(S)
    reset_scale(np.arange(S))
    status = np.where(np.isfinite(f) & np.isfinite(g).all(axis=1), RUNNING, STALLED)
    for it in range(max_iter):
        act = np.flatnonzero(status == RUNNING)
        if act.size == 0:
            break
        d = _two_loop(g[act], s_hist[:, act], y_hist[:, act], rho[:, act], gamma[act], (it - 1) % memory)
        uphill = ~(np.einsum("sp,sp->s", g[act], d) < 0)
        d[uphill] = -g[act][uphill] * gamma[act][uphill, None]
        step, f_new, g_new, ok = _line_search(fun, x[act], f[act], g[act], d, act)
        rows, s = act[ok], step[ok, None] * d[ok]
        y = g_new[ok] - g[rows]
        sy, yy, ss = (np.einsum("sp,sp->s", u, v) for u, v in ((s, y), (y, y), (s, s)))
        # keep only pairs that keep the estimate positive definite (and whose 1 / sy is representable)
        curved = (sy > 1e-10 * np.sqrt(ss * yy)) & (sy > 1e-150)
        slot = it % memory
        s_hist[slot, rows], y_hist[slot, rows] = s * curved[:, None], y * curved[:, None]
        rho[slot, rows] = np.where(curved, 1 / np.where(curved, sy, 1.0), 0.0)
        gamma[rows[curved]] = sy[curved] / yy[curved]
        f_old = f[rows]
        x[rows] += s
        f[rows], g[rows] = f_new[ok], g_new[ok]
        small_step = (f_old - f[rows]) <= ftol * np.maximum(np.abs(f_old), np.abs(f[rows]))
        status[rows[small_step | (np.abs(g[rows]).max(axis=1) <= gtol)]] = CONVERGED
        failed = act[~ok]
        had_memory = rho[:, failed].any(axis=0)
        rho[:, failed[had_memory]] = 0.0  # retry from steepest descent before giving up
        reset_scale(failed[had_memory])
        status[failed[~had_memory]] = STALLED
    status[status == RUNNING] = MAX_ITER
    return x, f, status


def multistart(fun: Callable, starts: np.ndarray, *, max_iter: int, memory: int, gtol: float, ftol: float,
               screen_iter: int | None = None, screen_keep: int = 1):  # fmt: skip
    """:func:`lbfgs` from every row of (S, P) ``starts`` of one problem, ``fun(x, rows)`` as for :func:`lbfgs`.

    With ``screen_iter``, every start runs that many iterations and only the ``screen_keep`` lowest (those still
    running) go on to ``max_iter`` in all. Returns x (S, P), f (S,) and status (S,).
    """
    opts = {"memory": memory, "gtol": gtol, "ftol": ftol}
    first = max_iter if screen_iter is None else min(screen_iter, max_iter)
    x, f, status = lbfgs(fun, starts, max_iter=first, **opts)
    if first == max_iter:
        return x, f, status
    ranked = np.argsort(np.where(np.isfinite(f), f, np.inf), kind="stable")[:screen_keep]
    going = ranked[status[ranked] == MAX_ITER]
    if going.size:

        def sub(theta, rows):
            return fun(theta, going[rows])

        x[going], f[going], status[going] = lbfgs(sub, x[going], max_iter=max_iter - first, **opts)
    return x, f, status
