"""Compute planner: closed forms against numeric optima, inversions, hardware time, fit files."""

import json
import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from wavefoundry.scaling import plan
from wavefoundry.scaling.fit_file import load_fit
from wavefoundry.scaling.plan import (
    HARDWARE,
    ComputeOptimalLaw,
    ParametricLoss,
    besiroglu,
    chinchilla,
    get_hardware,
    get_law,
    law_from_fit,
    soda,
    training_flops,
    training_time,
)
from wavefoundry.scaling.table import FitError

BUDGETS = [1e18, 1e20, 1.2e22, 5.76e23]


def numeric_n_opt(loss: ParametricLoss, c: float) -> float:
    """argmin_N L(N, C / 6N) by a bounded 1-D search in log N (the reference for the closed form)."""
    res = minimize_scalar(lambda x: loss(math.exp(x), c / (6 * math.exp(x))), bounds=(5, 40), method="bounded",
                          options={"xatol": 1e-10})  # fmt: skip
    return math.exp(res.x)


@pytest.mark.parametrize("make", [chinchilla, besiroglu])
@pytest.mark.parametrize("c", BUDGETS)
def test_closed_form_is_the_numeric_optimum(make, c):
    law = make()
    assert law.n_opt(c) == pytest.approx(numeric_n_opt(law.loss, c), rel=1e-6)
    assert 6 * law.n_opt(c) * law.d_opt(c) == pytest.approx(c, rel=1e-12)  # a + b = 1: on the budget exactly


def test_chinchilla_constants_by_hand():
    law = chinchilla()
    g = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62)
    assert law.loss.g == pytest.approx(g) and g == pytest.approx(1.3447, abs=1e-4)
    assert law.a == pytest.approx(0.28 / 0.62) and law.b == pytest.approx(0.34 / 0.62)
    c = 5.76e23  # Gopher's budget: N_opt = G (C/6)^a
    assert law.n_opt(c) == pytest.approx(g * (c / 6) ** (0.28 / 0.62))
    assert law.d_opt(c) == pytest.approx((c / 6) ** (0.34 / 0.62) / g)


def test_besiroglu_refit_is_near_20_tokens_per_parameter():
    law = besiroglu()
    for c in (1e21, 1.2e22, 1e24):
        assert 17 < law.d_opt(c) / law.n_opt(c) < 24  # Besiroglu et al.: their refit agrees with the ~20 rule


@pytest.mark.parametrize("make", [chinchilla, besiroglu])
def test_budget_for_inverts_n_opt(make):
    law = make()
    for c in BUDGETS:
        assert law.budget_for(law.n_opt(c)) == pytest.approx(c, rel=1e-10)


def test_rule_of_thumb():
    n, d = plan.rule_of_thumb(1.2e22)
    assert n == pytest.approx(1e10) and d == pytest.approx(2e11) and 6 * n * d == pytest.approx(1.2e22)


def test_soda_has_exponents_only():
    law = soda()
    assert (law.a, law.b) == (0.367, 0.579) and law.b / law.a == pytest.approx(1.6, abs=0.03)  # "1.6x faster"
    with pytest.raises(ValueError, match="k_N"):
        law.n_opt(1e21)
    with pytest.raises(ValueError, match="k_N"):
        law.budget_for(4e9)


def test_anchored_law_passes_through_its_anchor_and_scales_by_the_exponents():
    law = soda().anchored(3e20, 1.7e9)
    assert law.n_opt(3e20) == pytest.approx(1.7e9) and law.d_opt(3e20) == pytest.approx(3e20 / (6 * 1.7e9))
    assert law.n_opt(1.2e22) / law.n_opt(3e20) == pytest.approx(40**0.367)
    assert law.d_opt(1.2e22) / law.d_opt(3e20) == pytest.approx(40**0.579)
    assert law.budget_for(law.n_opt(1e23)) == pytest.approx(1e23)


def test_coefficients_without_k_d_read_d_off_6nd():
    law = soda().with_coefficients(k_n=50.0)
    assert law.n_opt(1e21) == pytest.approx(50.0 * 1e21**0.367)
    assert law.d_opt(1e21) == pytest.approx(1e21 / (6 * law.n_opt(1e21)))
    law = soda().with_coefficients(k_n=50.0, k_d=0.04)
    assert law.d_opt(1e21) == pytest.approx(0.04 * 1e21**0.579)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "1e21", True])
def test_bad_budgets_and_coefficients(bad):
    with pytest.raises(ValueError):
        chinchilla().n_opt(bad)
    with pytest.raises(ValueError):
        soda().with_coefficients(k_n=bad)
    with pytest.raises(ValueError):
        training_flops(1e9, bad)


def test_law_validation():
    with pytest.raises(ValueError, match="a_ci"):
        ComputeOptimalLaw(name="x", a=0.5, b=0.5, a_ci=(0.6, 0.4))
    with pytest.raises(ValueError, match="b"):
        ComputeOptimalLaw(name="x", a=0.5, b=-0.5)
    with pytest.raises(ValueError, match="alpha"):
        ParametricLoss(E=1.0, A=1.0, B=1.0, alpha=0.0, beta=0.3)
    with pytest.raises(ValueError, match="unknown law 'gpt'"):
        get_law("gpt")


def test_training_flops():
    assert training_flops(1e9, 2e10) == pytest.approx(1.2e20)
    assert training_flops(1e9, 2e10, flops_per_token=7.5e9) == pytest.approx(1.5e20)


def test_time_and_gpu_hours():
    t = training_time(1e21, HARDWARE["h100"], n_gpus=64, mfu=0.4)
    assert t.seconds == pytest.approx(1e21 / (64 * 989e12 * 0.4))
    assert t.gpu_hours == pytest.approx(1e21 / (989e12 * 0.4) / 3600)
    assert t.gpu_hours == pytest.approx(64 * t.seconds / 3600)
    text = t.formula()
    assert "1.000e+21 / (64 x 9.890e+14 x 0.4)" in text and f"{t.seconds / 3600:,.1f} h" in text
    assert HARDWARE["h200"].peak_bf16_flops == HARDWARE["h100"].peak_bf16_flops == 989e12
    assert HARDWARE["a100"].peak_bf16_flops == 312e12
    assert get_hardware("H100") is HARDWARE["h100"]
    assert get_hardware(peak_flops=5e14).peak_bf16_flops == 5e14


@pytest.mark.parametrize(("kw", "match"), [({"mfu": 1.5}, "MFU"), ({"mfu": 0.0}, "MFU"), ({"mfu": float("nan")}, "MFU"),
                                           ({"mfu": 0.4, "n_gpus": 0}, "n_gpus")])  # fmt: skip
def test_bad_time_inputs(kw, match):
    with pytest.raises(ValueError, match=match):
        training_time(1e21, HARDWARE["a100"], **kw)


def test_unknown_gpu():
    with pytest.raises(ValueError, match="unknown GPU 'v100'; valid: a100, h100, h200"):
        get_hardware("v100")


def test_implied_mfu_round_trip():
    t = training_time(2e22, HARDWARE["a100"], n_gpus=64, mfu=0.35)
    assert plan.implied_mfu(2e22, HARDWARE["a100"], 64, t.seconds / 3600) == pytest.approx(0.35)


# --- fit files ------------------------------------------------------------------------------------------------------


def approach2_from(law: ComputeOptimalLaw, budgets: list[float]) -> dict:
    """An approach2 block fitted (least squares in log-log) to the law's own optima."""
    logc = np.log(budgets)
    a, log_kn = np.polyfit(logc, np.log([law.n_opt(c) for c in budgets]), 1)
    b, log_kd = np.polyfit(logc, np.log([law.d_opt(c) for c in budgets]), 1)
    return {"a": a, "a_ci": [a - 0.02, a + 0.03], "k_N": math.exp(log_kn), "b": b, "b_ci": [b - 0.03, b + 0.02],
            "k_D": math.exp(log_kd), "bootstrap": 100, "warnings": ["budget 1e+17 left out"],
            "optima": [{"budget": c, "N_opt": law.n_opt(c), "D_opt": law.d_opt(c), "loss_min": 3.0, "flags": []}
                       for c in budgets]}  # fmt: skip


def approach3_block(loss: ParametricLoss, **kw) -> dict:
    block = {"E": loss.E, "A": loss.A, "B": loss.B, "alpha": loss.alpha, "beta": loss.beta, "n_points": 40,
             "se": {"E": 0.01, "A": 5.0, "B": 9.0, "alpha": 0.01, "beta": 0.02}, "huber_delta": 1e-3,
             "a": loss.beta / (loss.alpha + loss.beta), "b": loss.alpha / (loss.alpha + loss.beta), "converged": True,
             "warnings": []}  # fmt: skip
    return block | kw


def write_fit(path, approach2=None, approach3=None, **top):
    data = {"format": "wavefoundry-scaling-fit", "version": 1, "approach2": approach2, "approach3": approach3} | top
    path.write_text(json.dumps(data))
    return path


BUDGETS_FIT = [1e18, 3e18, 1e19, 3e19, 1e20]


def test_fit_prefers_approach3_and_matches_the_closed_form(tmp_path):
    ref = chinchilla()
    path = write_fit(tmp_path / "fit.json", approach2_from(ref, BUDGETS_FIT), approach3_block(ref.loss))
    law = law_from_fit(path)
    assert law.name == "fit:approach3" and law.convention.startswith("C = 6 N D")
    assert law.n_opt(1e22) == pytest.approx(ref.n_opt(1e22)) and law.d_opt(1e22) == pytest.approx(ref.d_opt(1e22))
    law2 = law_from_fit(path, approach=2)
    assert law2.name == "fit:approach2" and "budget 1e+17 left out" in law2.notes[0]
    assert law2.n_opt(1e22) == pytest.approx(ref.n_opt(1e22), rel=1e-9)  # a power law fitted to power-law optima


def test_approach2_range_turns_about_the_pivot(tmp_path):
    ref = chinchilla()
    block = approach2_from(ref, BUDGETS_FIT)
    law = law_from_fit(write_fit(tmp_path / "f.json", approach2=block))
    pivot = math.exp(np.mean(np.log(BUDGETS_FIT)))
    assert law.pivot_budget == pytest.approx(pivot)
    lo, hi = law.ranges(pivot)["N"]
    assert lo == pytest.approx(law.n_opt(pivot)) and hi == pytest.approx(law.n_opt(pivot))  # no spread at the pivot
    c = 100 * pivot
    lo, hi = law.ranges(c)["N"]
    assert lo == pytest.approx(law.n_opt(c) * 100**-0.02) and hi == pytest.approx(law.n_opt(c) * 100**0.03)
    lo, hi = law.ranges(c)["D"]
    assert lo == pytest.approx(law.d_opt(c) * 100**-0.03) and hi == pytest.approx(law.d_opt(c) * 100**0.02)


def test_approach3_interval_by_the_delta_method(tmp_path):
    loss = besiroglu().loss
    law = law_from_fit(write_fit(tmp_path / "f.json", approach3=approach3_block(loss)))
    # finite differences of a = beta / (alpha + beta) against the analytic gradient in the module
    h = 1e-7
    da_dalpha = (loss.beta / (loss.alpha + h + loss.beta) - loss.beta / (loss.alpha + loss.beta)) / h
    da_dbeta = ((loss.beta + h) / (loss.alpha + loss.beta + h) - loss.beta / (loss.alpha + loss.beta)) / h
    se_a = math.hypot(da_dalpha * 0.01, da_dbeta * 0.02)
    lo, hi = law.a_ci
    assert (hi - lo) / 2 == pytest.approx(1.959964 * se_a, rel=1e-5) and (lo + hi) / 2 == pytest.approx(law.a)
    assert law.b_ci[0] == pytest.approx(1 - hi) and law.b_ci[1] == pytest.approx(1 - lo)
    assert law.ranges(1e22) == {}  # no approach2 optima: no pivot, no range
    assert law.with_pivot(1e20).ranges(1e20)["N"] == pytest.approx((law.n_opt(1e20),) * 2)


def test_approach3_prefers_bootstrap_intervals(tmp_path):
    loss = chinchilla().loss
    block = approach3_block(loss, ci={"a": [0.40, 0.47], "b": [0.53, 0.60]})
    law = law_from_fit(write_fit(tmp_path / "f.json", approach3=block))
    assert law.a_ci == (0.40, 0.47) and law.b_ci == pytest.approx((0.53, 0.60))
    block = approach3_block(loss) | {"se": {"a": 0.01}}
    law = law_from_fit(write_fit(tmp_path / "g.json", approach3=block))
    assert law.a_ci == pytest.approx((law.a - 1.959964 * 0.01, law.a + 1.959964 * 0.01), rel=1e-6)
    block = approach3_block(loss) | {"se": None}
    assert law_from_fit(write_fit(tmp_path / "h.json", approach3=block)).a_ci is None


def test_pivot_leaves_out_excluded_budgets(tmp_path):
    block = approach2_from(chinchilla(), BUDGETS_FIT)
    block["optima"][0]["flags"] = ["excluded"]
    block["optima"][1]["N_opt"] = None
    law = law_from_fit(write_fit(tmp_path / "f.json", approach2=block))
    assert law.pivot_budget == pytest.approx(math.exp(np.mean(np.log(BUDGETS_FIT[2:]))))


def test_unconverged_fit_is_flagged(tmp_path):
    path = write_fit(tmp_path / "f.json", approach3=approach3_block(chinchilla().loss, converged=False))
    assert any("did not converge" in note for note in law_from_fit(path).notes)


GOOD_FIT = {"format": "wavefoundry-scaling-fit", "version": 1, "approach2": None,
            "approach3": approach3_block(chinchilla().loss)}  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d | {"format": "something-else"}, "not a scaling fit"),
        (lambda d: d | {"version": 2}, "unsupported scaling fit version 2"),
        (lambda d: d | {"approach3": [1, 2]}, "approach3 must be an object"),
        (lambda d: d | {"approach3": approach3_block(chinchilla().loss, E="1.69")}, r"approach3\.E must be a finite"),
        (
            lambda d: d | {"approach3": approach3_block(chinchilla().loss, A=float("nan"))},
            r"approach3\.A must be a fin",
        ),
        (lambda d: d | {"approach3": approach3_block(chinchilla().loss, B=-1.0)}, r"approach3\.B must be positive"),
        (lambda d: d | {"approach3": approach3_block(chinchilla().loss, ci={"a": [0.5, 0.4]})}, "lo <= hi"),
    ],
)
def test_bad_fit_files_are_refused_by_the_one_loader(tmp_path, mutate, match):
    """law_from_fit reads through fit_file.load_fit: the same FitError, naming the file."""
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(mutate(GOOD_FIT)))
    with pytest.raises(FitError, match=match) as planned:
        law_from_fit(path)
    with pytest.raises(FitError) as loaded:
        load_fit(path)
    assert str(planned.value) == str(loaded.value) and str(path) in str(planned.value)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d | {"approach3": None, "approach2": None}, "neither an approach2 nor an approach3"),
        (lambda d: d | {"approach3": approach3_block(chinchilla().loss, alpha=-0.3)}, "loss.alpha must be a positive"),
        (lambda d: d | {"approach3": approach3_block(chinchilla().loss, beta=0.0)}, "loss.beta must be a positive"),
    ],
)
def test_fit_files_without_a_law(tmp_path, mutate, match):
    """Files the loader accepts (the fitter can write them) that give the planner no compute-optimal law."""
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(mutate(GOOD_FIT)))
    load_fit(path)
    with pytest.raises(FitError, match=match) as err:
        law_from_fit(path)
    assert str(path) in str(err.value)


def test_bad_fit_files_other(tmp_path):
    with pytest.raises(FitError, match="not valid JSON"):
        (tmp_path / "a.json").write_text("{nope")
        law_from_fit(tmp_path / "a.json")
    with pytest.raises(FitError, match="not found"):
        law_from_fit(tmp_path / "missing.json")
    with pytest.raises(FitError, match="not a scaling fit"):
        (tmp_path / "b.json").write_text("[1, 2]")
        law_from_fit(tmp_path / "b.json")
    path = write_fit(tmp_path / "c.json", approach3=approach3_block(chinchilla().loss))
    with pytest.raises(FitError, match="no approach2 result"):
        law_from_fit(path, approach=2)
    with pytest.raises(ValueError, match="approach must be 2 or 3, got 4"):
        law_from_fit(path, approach=4)
    block = approach2_from(chinchilla(), BUDGETS_FIT) | {"a_ci": [0.5, 0.4]}
    with pytest.raises(FitError, match=r"approach2\.a_ci must be \[lo, hi\] with lo <= hi"):
        law_from_fit(write_fit(tmp_path / "d.json", approach2=block))
    block = approach2_from(chinchilla(), BUDGETS_FIT) | {"k_N": -1.0}
    with pytest.raises(FitError, match=r"approach2\.k_N must be positive"):
        law_from_fit(write_fit(tmp_path / "e.json", approach2=block))
    block = approach2_from(chinchilla(), BUDGETS_FIT) | {"a": -0.2}  # loads (a fit can slope down), plans not
    with pytest.raises(FitError, match=r"approach2 gives no compute-optimal law: .*a must be a positive"):
        law_from_fit(write_fit(tmp_path / "f.json", approach2=block))
