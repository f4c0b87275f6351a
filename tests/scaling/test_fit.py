"""Scaling-law fits (wavefoundry.scaling.fit): closed forms, synthetic laws with noise, scipy reference, bad input.

fit.json is tested in test_fit_file.py.
"""

# ruff: noqa: N803  (the papers' symbols N, D, C)

import logging
import math

import numpy as np
import pytest

from wavefoundry.scaling import fit as sf
from wavefoundry.scaling.fit import (
    Approach2Config,
    Approach3Config,
    FitError,
    fit_approach2,
    fit_approach3,
)
from wavefoundry.scaling.table import REQUIRED_COLUMNS, Table

# Hoffmann et al. 2022's Approach 3 constants: the synthetic truth
LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
A_TRUE = LAW["beta"] / (LAW["alpha"] + LAW["beta"])
BUDGETS = (1e18, 3e18, 1e19, 3e19, 1e20, 3e20)
SMALL_GRID = {"grid_a": (0.0, 10.0, 20.0), "grid_b": (0.0, 10.0, 20.0), "grid_e": (0.0, 1.0)}


def law_loss(N, D, law=LAW):
    return law["E"] + law["A"] / N ** law["alpha"] + law["B"] / D ** law["beta"]


def law_optimum(C, law=LAW):
    """N*(C) of the law under C = 6 N D (Hoffmann et al. eq. 4)."""
    G = (law["alpha"] * law["A"] / (law["beta"] * law["B"])) ** (1 / (law["alpha"] + law["beta"]))
    return G * (C / 6) ** (law["beta"] / (law["alpha"] + law["beta"]))


def law_table(*, sigma=0.0, seed=0, budgets=BUDGETS, sizes=7, span=1.4, law=LAW):
    """IsoFLOP points around each budget's true optimum (ln N within +-span), loss * exp(N(0, sigma))."""
    rng = np.random.default_rng(seed)
    C = np.repeat(budgets, sizes)
    N = np.concatenate([law_optimum(c, law) * np.exp(np.linspace(-span, span, sizes)) for c in budgets])
    D = C / (6 * N)
    return Table(budget=C, N=N, D=D, loss=law_loss(N, D, law) * np.exp(rng.normal(0, sigma, N.size)))


# ------------------------------------------------------------------------------------------- approach 2


def parabola_table(a=0.45, k=0.3, curvature=0.08, sizes=7, budgets=(1e18, 1e19, 1e20, 1e21)):
    """loss = L0(C) + curvature (ln N - ln N*(C))^2 with N*(C) = k C^a exactly, D = C / (6 N)."""
    rows = []
    for C in budgets:
        x0 = math.log(k) + a * math.log(C)
        for x in x0 + np.linspace(-1.2, 1.0, sizes):  # asymmetric: the vertex is not a sampled point
            rows.append((C, math.exp(x), C / (6 * math.exp(x)), 4.0 - 0.1 * math.log10(C) + curvature * (x - x0) ** 2))
    return Table(**dict(zip(("budget", "N", "D", "loss"), map(np.array, zip(*rows)))))


def test_approach2_exact_parabolas_give_the_power_law_exactly():
    fit = fit_approach2(parabola_table(), Approach2Config(bootstrap=50))
    assert fit.a == pytest.approx(0.45, abs=1e-9)
    assert fit.k_N == pytest.approx(0.3, rel=1e-7)
    assert fit.b == pytest.approx(0.55, abs=1e-9)  # D* = C / (6 N*) = C^(1-a) / (6 k)
    assert fit.k_D == pytest.approx(1 / (6 * 0.3), rel=1e-7)
    for o in fit.optima:
        assert o.N_opt == pytest.approx(0.3 * o.budget**0.45, rel=1e-9)
        assert o.D_opt == pytest.approx(o.budget / (6 * o.N_opt), rel=1e-9)
        assert o.loss_min == pytest.approx(4.0 - 0.1 * math.log10(o.budget), abs=1e-9)
        assert o.flags == [] and o.n_points == 7
        x = math.log(o.N_opt) + 0.5
        assert np.polyval(o.parabola, x) == pytest.approx(o.loss_min + 0.08 * 0.25, abs=1e-9)
    # without noise every resample with >= 3 distinct sizes is the same parabola: the intervals collapse
    assert fit.a_ci == pytest.approx([0.45, 0.45], abs=1e-8)
    assert fit.a_se < 1e-8 and fit.samples.shape[1] == 4


def test_approach2_d_opt_follows_the_tables_flop_convention():
    """D per point from C = 6 N D (1 + (N0 / N)^0.3) (an attention-like extra term): D* must use the same rule."""
    table = parabola_table()
    D = table.budget / (6 * table.N * (1 + (3e7 / table.N) ** 0.3))
    fit = fit_approach2(Table(budget=table.budget, N=table.N, D=D, loss=table.loss), Approach2Config(bootstrap=0))
    for o in fit.optima:
        assert o.D_opt == pytest.approx(o.budget / (6 * o.N_opt * (1 + (3e7 / o.N_opt) ** 0.3)), rel=2e-3)
    assert fit.a_ci is None and fit.a_se is None and fit.samples is None


def test_approach2_recovers_a_noisy_law():
    fit = fit_approach2(law_table(sigma=0.005, seed=3), Approach2Config(bootstrap=200))
    # Monte Carlo over 40 seeds of this design: a = 0.454 +- 0.014 (true 0.452); tolerance ~3.5 sd
    assert fit.a == pytest.approx(A_TRUE, abs=0.05)
    assert fit.a + fit.b == pytest.approx(1.0, abs=1e-6)  # D* = C / (6 N*) on these IsoFLOP points
    assert fit.a_ci[0] <= A_TRUE <= fit.a_ci[1]
    assert fit.a_ci[0] < fit.a < fit.a_ci[1] and fit.b_ci[0] < fit.b < fit.b_ci[1]
    C = 1e19
    assert fit.N_opt(C) == pytest.approx(law_optimum(C), rel=0.15)


def test_approach2_bootstrap_is_seeded():
    table = law_table(sigma=0.01, seed=1)
    one, two = (fit_approach2(table, Approach2Config(bootstrap=40, seed=5)) for _ in range(2))
    other = fit_approach2(table, Approach2Config(bootstrap=40, seed=6))
    assert one.a_ci == two.a_ci and one.a_se == two.a_se
    assert other.a_ci != one.a_ci
    assert other.a == one.a  # the point estimate does not depend on the seed


def test_approach2_leaves_out_budgets_with_too_few_sizes(caplog):
    table = parabola_table()
    extra = Table(budget=[1e22, 1e22], N=[1e9, 2e9], D=[1e22 / 6e9, 1e22 / 1.2e10], loss=[2.0, 2.1])
    both = Table(**{c: np.concatenate([getattr(table, c), getattr(extra, c)]) for c in REQUIRED_COLUMNS})
    with caplog.at_level(logging.WARNING):
        fit = fit_approach2(both, Approach2Config(bootstrap=0))
    assert [o.budget for o in fit.optima] == [1e18, 1e19, 1e20, 1e21]
    assert fit.a == pytest.approx(0.45, abs=1e-9)
    assert any("budget 1e+22: 2 distinct model size(s) (< 3); left out" in w for w in fit.warnings)
    assert "left out" in caplog.text


def test_approach2_needs_two_budgets():
    table = parabola_table(budgets=(1e18,))
    with pytest.raises(FitError, match="at least 2 budgets with a usable minimum, got 1"):
        fit_approach2(table)
    few = Table(budget=[1, 1, 2, 2], N=[1, 2, 1, 2], D=[1, 1, 1, 1], loss=[3, 2, 3, 2])
    with pytest.raises(FitError, match="got 0"):
        fit_approach2(few)


def test_approach2_flags_a_downward_parabola_and_a_minimum_outside_the_range():
    table = parabola_table(budgets=(1e18, 1e19, 1e20, 1e21))
    loss = table.loss.copy()
    sel = table.budget == 1e19
    loss[sel] = 3.0 - 0.05 * (np.log(table.N[sel]) - np.log(table.N[sel]).mean()) ** 2  # opens downward
    out = table.budget == 1e21
    loss[out] = 3.0 - 0.1 * np.log(table.N[out])  # still falling at the largest size
    loss[out] += 0.001 * np.log(table.N[out]) ** 2
    fit = fit_approach2(Table(budget=table.budget, N=table.N, D=table.D, loss=loss), Approach2Config(bootstrap=20))
    by_budget = {o.budget: o for o in fit.optima}
    down, outside = by_budget[1e19], by_budget[1e21]
    assert down.flags == [sf.OPENS_DOWNWARD] and down.N_opt is None and down.loss_min is None
    assert outside.flags == [sf.OUTSIDE_RANGE] and outside.N_opt > table.N[out].max()
    assert any("1e+19: the parabola opens downward" in w for w in fit.warnings)
    assert any("1e+21: the minimum N" in w and "outside the sampled sizes; extrapolated" in w for w in fit.warnings)
    # the downward budget is not in the power law; the exact budgets 1e18 and 1e20 and the extrapolated one are
    lnC = np.log([1e18, 1e20, 1e21])
    slope = np.polyfit(lnC, np.log([by_budget[c].N_opt for c in (1e18, 1e20, 1e21)]), 1)[0]
    assert fit.a == pytest.approx(slope, abs=1e-9)
    dropped = fit_approach2(Table(budget=table.budget, N=table.N, D=table.D, loss=loss),
                            Approach2Config(bootstrap=0, drop_outside_range=True))  # fmt: skip
    assert sf.EXCLUDED in dropped.optima[-1].flags
    assert dropped.a == pytest.approx(0.45, abs=1e-9)  # only the two exact budgets remain


def test_approach2_config_errors():
    with pytest.raises(FitError, match="bootstrap must be >= 0"):
        Approach2Config(bootstrap=-1)
    with pytest.raises(FitError, match="level must be in"):
        Approach2Config(level=1.0)
    with pytest.raises(FitError, match="min_points must be >= 3"):
        Approach2Config(min_points=2)


# ------------------------------------------------------------------------------------------- approach 3


def huber_sum(params, table, delta=1e-3):
    """The papers' objective in Besiroglu et al.'s parametrisation, written independently with scipy."""
    from scipy.special import huber, logsumexp

    a, b, e, alpha, beta = params
    terms = np.stack([a - alpha * np.log(table.N), b - beta * np.log(table.D), np.full(len(table), e)])
    return float(huber(delta, logsumexp(terms, axis=0) - np.log(table.loss)).sum())


def as_params(fit):
    return np.array([math.log(fit.A), math.log(fit.B), math.log(fit.E), fit.alpha, fit.beta])


def test_huber_objective_gradient_matches_finite_differences():
    table = law_table(sigma=0.01, seed=2)
    x_N, x_D, lnL = np.log(table.N) - 19, np.log(table.D) - 21, np.log(table.loss)
    rng = np.random.default_rng(0)
    theta = np.array([[6.0 - 0.34 * 19, 6.0 - 0.28 * 21, 0.5, 0.34, 0.28]]) + rng.normal(0, 0.05, (3, 5))
    W = rng.integers(0, 3, (3, len(table))).astype(float)
    f, g = sf._huber_objective(theta, x_N, x_D, lnL, W, 1e-3)
    eps = 1e-7
    for i in range(5):
        step = np.zeros(5)
        step[i] = eps
        fd = (sf._huber_objective(theta + step, x_N, x_D, lnL, W, 1e-3)[0]
              - sf._huber_objective(theta - step, x_N, x_D, lnL, W, 1e-3)[0]) / (2 * eps)  # fmt: skip
        np.testing.assert_allclose(g[:, i], fd, rtol=1e-5, atol=1e-9)
    # weights are multiplicities: weight 2 on a point = that point twice
    repeated = np.repeat(np.arange(len(table)), W[0].astype(int))
    f_rep, _ = sf._huber_objective(theta[:1], x_N[repeated], x_D[repeated], lnL[repeated], np.ones(repeated.size), 1e-3)
    assert f_rep[0] == pytest.approx(f[0], rel=1e-12)


def test_approach3_recovers_an_exact_law():
    fit = fit_approach3(law_table(), Approach3Config(bootstrap=20))
    for name, value in LAW.items():
        assert getattr(fit, name) == pytest.approx(value, rel=1e-4), name
    assert fit.a == pytest.approx(A_TRUE, abs=1e-5) and fit.b == pytest.approx(1 - A_TRUE, abs=1e-5)
    assert fit.converged and fit.warnings == [] and fit.n_points == 42
    assert fit.objective < 1e-12
    assert all(fit.se[k] < 1e-4 * max(1.0, abs(getattr(fit, k))) for k in sf.PARAMS)


def test_approach3_recovers_a_noisy_law_with_intervals_that_cover_it():
    fit = fit_approach3(law_table(sigma=0.005, seed=4), Approach3Config(bootstrap=200))
    # Monte Carlo over 40 seeds of this design: alpha 0.339 +- 0.018, beta 0.283 +- 0.014, a 0.455 +- 0.015,
    # E 1.69 +- 0.06; tolerances ~3.5 sd
    assert fit.alpha == pytest.approx(LAW["alpha"], abs=0.065)
    assert fit.beta == pytest.approx(LAW["beta"], abs=0.05)
    assert fit.a == pytest.approx(A_TRUE, abs=0.05)
    assert abs(fit.E - LAW["E"]) < 0.2
    for name in (*LAW, "a"):
        lo, hi = fit.ci[name]
        truth = LAW.get(name, A_TRUE)
        assert lo <= truth <= hi, name
    assert 0.003 < fit.se["a"] < 0.05 and 0.003 < fit.se["alpha"] < 0.06
    assert fit.converged and fit.huber_delta == 1e-3 and fit.bootstrap == 200


def test_approach3_matches_scipy_lbfgs():
    from scipy.optimize import minimize

    table = law_table(sigma=0.01, seed=5)
    fit = fit_approach3(table, Approach3Config(bootstrap=0))
    ours = huber_sum(as_params(fit), table)
    assert fit.objective == pytest.approx(ours, rel=1e-9)  # the reported objective is the papers' Huber sum
    starts = [as_params(fit), np.array([6.0, 6.0, 0.5, 0.3, 0.3]), np.array([5.0, 5.0, 0.0, 0.5, 0.5])]
    ref = min((minimize(huber_sum, x0, args=(table,), method="L-BFGS-B") for x0 in starts), key=lambda r: r.fun)
    assert ours <= ref.fun * (1 + 1e-7)
    np.testing.assert_allclose(as_params(fit), ref.x, rtol=2e-3, atol=2e-4)


def test_approach3_screening_finds_the_same_optimum_as_running_every_start():
    table = law_table(sigma=0.01, seed=6, budgets=BUDGETS[:4])
    screened = fit_approach3(table, Approach3Config(bootstrap=0, **SMALL_GRID))
    full = fit_approach3(table, Approach3Config(bootstrap=0, screen_iter=None, **SMALL_GRID))
    assert screened.objective == pytest.approx(full.objective, rel=1e-8)
    np.testing.assert_allclose(as_params(screened), as_params(full), rtol=1e-4)


def test_approach3_flags_a_fit_that_does_not_converge(caplog):
    with caplog.at_level(logging.WARNING):
        fit = fit_approach3(law_table(sigma=0.01), Approach3Config(bootstrap=5, max_iter=2, **SMALL_GRID))
    assert not fit.converged
    assert any("did not converge in 2 iterations" in w for w in fit.warnings)
    assert any("5 of 5 bootstrap fits did not converge" in w for w in fit.warnings)
    assert fit.se is None  # no silent standard errors from unconverged refits
    assert "did not converge" in caplog.text


def test_approach3_optimal_allocation_minimises_the_law_on_the_isoflop_line():
    fit = fit_approach3(law_table(), Approach3Config(bootstrap=0, **SMALL_GRID))
    C = 1e21
    N_opt, D_opt = fit.optimal(C)
    N = N_opt * np.exp(np.linspace(-0.5, 0.5, 20001))
    best = N[np.argmin(fit.predict(N, C / (6 * N)))]
    assert N_opt == pytest.approx(best, rel=1e-3)
    assert N_opt * D_opt * 6 == pytest.approx(C, rel=1e-12)
    assert N_opt == pytest.approx(law_optimum(C), rel=1e-3)


def test_approach3_bad_input():
    with pytest.raises(FitError, match="at least 5 points, got 4"):
        fit_approach3(Table(budget=[1] * 4, N=[1, 2, 3, 4], D=[4, 3, 2, 1], loss=[3, 2, 2, 3]))
    with pytest.raises(FitError, match="N is the same in every row"):
        fit_approach3(Table(budget=[1] * 5, N=[2] * 5, D=[1, 2, 3, 4, 5], loss=[3, 2, 2, 2, 3]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bootstrap": -1}, "bootstrap must be >= 0"),
        ({"huber_delta": 0.0}, "huber_delta must be a positive number"),
        ({"level": 0.0}, "level must be in"),
        ({"grid_alpha": ()}, "grid_alpha must be a non-empty tuple"),
        ({"grid_e": (float("nan"),)}, "grid_e must be a non-empty tuple of finite numbers"),
        ({"max_iter": 0}, "max_iter and memory must be >= 1"),
        ({"screen_keep": 0}, "screen_keep must be >= 1"),
    ],
)
def test_approach3_config_errors(kwargs, message):
    with pytest.raises(FitError, match=message):
        Approach3Config(**kwargs)


def test_default_grid_is_hoffmanns():
    starts = Approach3Config().starts()
    assert starts.shape == (4500, 5)
    assert sorted(set(starts[:, 3])) == [0, 0.5, 1, 1.5, 2] and sorted(set(starts[:, 0])) == [0, 5, 10, 15, 20, 25]
