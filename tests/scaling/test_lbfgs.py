"""Batched L-BFGS (wavefoundry.scaling.lbfgs): known minima, independence of the rows, statuses, screening."""

import numpy as np
import pytest

from wavefoundry.scaling.lbfgs import CONVERGED, MAX_ITER, STALLED, lbfgs, multistart

OPTS = {"memory": 10, "gtol": 1e-10, "ftol": 1e-15}


def quadratics(centres, scales):
    """f_s(x) = 0.5 sum_p scale_sp (x_p - centre_sp)^2, one ill-conditioned quadratic per row s."""

    def fun(x, rows):
        r = x - centres[rows]
        return 0.5 * (scales[rows] * r * r).sum(axis=1), scales[rows] * r

    return fun


def rosenbrock(x, rows):
    """f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, the same problem on every row; minimum 0 at (1, 1)."""
    a, b = x[:, 0], x[:, 1]
    f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    g = np.stack([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)], axis=1)
    return f, g


def test_each_row_reaches_its_own_minimum():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (6, 4))
    scales = 10.0 ** rng.uniform(-2, 2, (6, 4))  # condition numbers up to 1e4
    x, f, status = lbfgs(quadratics(centres, scales), np.zeros((6, 4)), max_iter=200, **OPTS)
    np.testing.assert_allclose(x, centres, atol=1e-6)
    assert (f < 1e-12).all()
    assert (status == CONVERGED).all()


def test_rosenbrock_from_several_starts_matches_scipy():
    from scipy.optimize import minimize

    starts = np.array([[-1.2, 1.0], [2.0, -1.0], [0.0, 0.0], [-0.5, 2.5]])
    x, f, status = lbfgs(rosenbrock, starts, max_iter=500, **OPTS)
    for row, x0 in enumerate(starts):
        ref = minimize(lambda v: rosenbrock(v[None], np.arange(1))[0][0], x0, method="L-BFGS-B",
                       jac=lambda v: rosenbrock(v[None], np.arange(1))[1][0])  # fmt: skip
        np.testing.assert_allclose(x[row], ref.x, atol=1e-4)
        assert f[row] <= ref.fun + 1e-12
    np.testing.assert_allclose(x, 1.0, atol=1e-6)
    assert np.isin(status, (CONVERGED, STALLED)).all()


def test_a_row_does_not_change_the_others():
    """Rows are independent problems: solving a row alone gives the same iterates as solving it in a batch."""
    starts = np.array([[-1.2, 1.0], [2.0, -1.0], [0.5, 0.5]])
    together, _, _ = lbfgs(rosenbrock, starts, max_iter=40, **OPTS)
    alone, _, _ = lbfgs(rosenbrock, starts[1:2], max_iter=40, **OPTS)
    np.testing.assert_array_equal(together[1], alone[0])


def test_statuses_out_of_iterations_and_a_non_finite_start():
    starts = np.array([[-1.2, 1.0], [np.nan, 0.0]])
    x, f, status = lbfgs(rosenbrock, starts, max_iter=3, **OPTS)
    assert status.tolist() == [MAX_ITER, STALLED]
    assert f[0] < rosenbrock(starts[:1], np.arange(1))[0][0]  # three iterations still went downhill
    assert np.isnan(x[1, 0])  # a row that cannot be evaluated is left where it is


@pytest.mark.parametrize("keep", [1, 3])
def test_multistart_screening_continues_only_the_best(keep):
    starts = np.array([[-1.2, 1.0], [2.0, -1.0], [0.9, 0.8], [-2.0, 3.0], [1.5, 2.0]])
    f_screen = lbfgs(rosenbrock, starts, max_iter=5, **OPTS)[1]
    x, f, status = multistart(rosenbrock, starts, max_iter=500, screen_iter=5, screen_keep=keep, **OPTS)
    best = np.argsort(f_screen, kind="stable")[:keep]
    rest = np.setdiff1d(np.arange(len(starts)), best)
    np.testing.assert_allclose(x[best], 1.0, atol=1e-6)
    assert np.isin(status[best], (CONVERGED, STALLED)).all()
    np.testing.assert_array_equal(f[rest], f_screen[rest])  # screened out: left after 5 iterations
    assert (status[rest] == MAX_ITER).all()


def test_multistart_without_screening_is_plain_lbfgs():
    starts = np.array([[-1.2, 1.0], [2.0, -1.0]])
    x, f, status = multistart(rosenbrock, starts, max_iter=300, screen_iter=None, **OPTS)
    x_ref, f_ref, status_ref = lbfgs(rosenbrock, starts, max_iter=300, **OPTS)
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(f, f_ref)
    np.testing.assert_array_equal(status, status_ref)
