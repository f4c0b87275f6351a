"""fit.json (wavefoundry.scaling.fit_file): round trip, schema, strict reading of every key and value, file errors."""

import dataclasses
import json

import pytest

from tests.scaling.test_fit import SMALL_GRID, law_table
from wavefoundry.scaling import fit as sf
from wavefoundry.scaling import fit_file as ff
from wavefoundry.scaling.fit import Approach2Config, Approach3Config, fit_approach2, fit_approach3
from wavefoundry.scaling.fit_file import ScalingFit, load_fit, save_fit
from wavefoundry.scaling.table import FitError


@pytest.fixture(scope="module")
def both_fits():
    table = law_table(sigma=0.005, seed=7)
    return ScalingFit(approach2=fit_approach2(table, Approach2Config(bootstrap=30)),
                      approach3=fit_approach3(table, Approach3Config(bootstrap=10, **SMALL_GRID)))  # fmt: skip


def test_fit_json_round_trip_and_schema(tmp_path, both_fits):
    path = save_fit(both_fits, tmp_path / "sub" / "fit.json")
    data = json.loads(path.read_text())
    assert data["format"] == "wavefoundry-scaling-fit" and data["version"] == 1
    a2, a3 = data["approach2"], data["approach3"]
    assert {"a", "a_ci", "k_N", "b", "b_ci", "k_D", "optima", "bootstrap", "warnings"} <= a2.keys()
    assert {"budget", "N_opt", "D_opt", "loss_min", "flags"} <= a2["optima"][0].keys()
    assert "samples" not in a2
    assert {
        "E",
        "A",
        "B",
        "alpha",
        "beta",
        "se",
        "a",
        "b",
        "n_points",
        "huber_delta",
        "converged",
        "warnings",
    } <= a3.keys()
    assert set(sf.PARAMS) <= a3["se"].keys() and a3["huber_delta"] == 1e-3
    loaded = load_fit(path)
    assert loaded == both_fits
    assert loaded.approach2.N_opt(1e19) == pytest.approx(both_fits.approach2.N_opt(1e19))
    assert ScalingFit.from_dict(ScalingFit(approach3=both_fits.approach3).to_dict()).approach2 is None


def test_load_fit_accepts_the_minimal_schema(tmp_path):
    """A file with only the documented keys (as another tool might write it) loads."""
    data = {"format": "wavefoundry-scaling-fit", "version": 1,
            "approach2": {"a": 0.5, "a_ci": [0.4, 0.6], "k_N": 0.1, "b": 0.5, "b_ci": [0.4, 0.6], "k_D": 1.0,
                          "optima": [{"budget": 1e18, "N_opt": 1e8, "D_opt": 1e9, "loss_min": 3.0, "flags": []}],
                          "bootstrap": 10, "warnings": []},
            "approach3": {"E": 1.8, "A": 400.0, "B": 400.0, "alpha": 0.3, "beta": 0.3,
                          "se": {"E": 0.1, "A": 1.0, "B": 1.0, "alpha": 0.01, "beta": 0.01}, "a": 0.5, "b": 0.5,
                          "n_points": 40, "huber_delta": 1e-3, "converged": True, "warnings": []}}  # fmt: skip
    (tmp_path / "fit.json").write_text(json.dumps(data))
    fit = load_fit(tmp_path / "fit.json")
    assert fit.approach2.optima[0].N_opt == 1e8 and fit.approach3.optimal(6e18)[0] > 0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="other"), "not a scaling fit: format is 'other'"),
        (lambda d: d.update(version=2), "unsupported scaling fit version 2"),
        (lambda d: d["approach3"].pop("alpha"), "approach3: missing keys ['alpha']"),
        (lambda d: d["approach2"].update(extra=1), "approach2: missing keys [], unknown keys ['extra']"),
        (lambda d: d["approach2"]["optima"][0].pop("flags"), "approach2.optima[0]: missing keys ['flags']"),
        (lambda d: d.pop("approach3"), "fit: missing keys ['approach3']"),
    ],
)
def test_load_fit_is_strict(tmp_path, both_fits, edit, message):
    data = both_fits.to_dict()
    edit(data)
    (tmp_path / "fit.json").write_text(json.dumps(data))
    with pytest.raises(FitError) as err:
        load_fit(tmp_path / "fit.json")
    assert message in str(err.value)


def set_in(path: str, value):
    """An edit of a fit dict that sets the value at a dotted path ("approach2.optima.0.budget")."""

    def edit(data):
        *keys, last = path.split(".")
        for key in keys:
            data = data[int(key)] if isinstance(data, list) else data[key]
        data[int(last) if isinstance(data, list) else last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (set_in("approach2.a", "0.45"), "approach2.a must be a finite number, got '0.45'"),
        (set_in("approach2.a", True), "approach2.a must be a finite number, got True"),
        (set_in("approach2.k_N", -1.0), "approach2.k_N must be positive, got -1.0"),
        (set_in("approach2.k_D", 0), "approach2.k_D must be positive, got 0"),
        (set_in("approach2.a_ci", [0.5, 0.4]), "approach2.a_ci must be [lo, hi] with lo <= hi, got [0.5, 0.4]"),
        (set_in("approach2.b_ci", [0.5]), "approach2.b_ci must be a list of 2 numbers, got [0.5]"),
        (set_in("approach2.b_ci", [0.5, None]), "approach2.b_ci[1] must be a finite number, got None"),
        (set_in("approach2.a_se", -0.1), "approach2.a_se must be non-negative, got -0.1"),
        (set_in("approach2.bootstrap", 2.5), "approach2.bootstrap must be a non-negative integer, got 2.5"),
        (set_in("approach2.warnings", "none"), "approach2.warnings must be a list of strings, got 'none'"),
        (set_in("approach2.optima.0.budget", 0.0), "approach2.optima[0].budget must be positive, got 0.0"),
        (set_in("approach2.optima.1.N_opt", -5.0), "approach2.optima[1].N_opt must be positive, got -5.0"),
        (set_in("approach2.optima.0.flags", [1]), "approach2.optima[0].flags must be a list of strings, got [1]"),
        (
            set_in("approach2.optima.0.parabola", [1.0, 2.0]),
            "approach2.optima[0].parabola must be a list of 3 numbers, got [1.0, 2.0]",
        ),
        (set_in("approach3.E", float("inf")), "approach3.E must be a finite number, got inf"),
        (set_in("approach3.A", -406.4), "approach3.A must be positive, got -406.4"),
        (set_in("approach3.alpha", float("nan")), "approach3.alpha must be a finite number, got nan"),
        (set_in("approach3.huber_delta", 0.0), "approach3.huber_delta must be positive, got 0.0"),
        (set_in("approach3.converged", "yes"), "approach3.converged must be true or false, got 'yes'"),
        (set_in("approach3.n_points", -1), "approach3.n_points must be a non-negative integer, got -1"),
        (set_in("approach3.se.beta", -0.01), "approach3.se.beta must be non-negative, got -0.01"),
        (
            set_in("approach3.se.gamma", 0.01),
            "approach3.se: unknown keys ['gamma']; valid keys: " + str(list(sf.STATISTICS)),
        ),
        (set_in("approach3.se", [0.1]), "approach3.se must be an object, got list"),
        (set_in("approach3.ci.a", [0.6, 0.4]), "approach3.ci.a must be [lo, hi] with lo <= hi, got [0.6, 0.4]"),
        (set_in("approach3.objective", -1.0), "approach3.objective must be non-negative, got -1.0"),
    ],
)
def test_load_fit_checks_every_value(tmp_path, both_fits, edit, message):
    data = both_fits.to_dict()
    edit(data)
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(data))  # Python's json writes (and reads) NaN and Infinity
    with pytest.raises(FitError) as err:
        load_fit(path)
    assert str(err.value) == f"{path}: {message}"
    with pytest.raises(FitError):
        ScalingFit.from_dict(data)


def test_value_checks_cover_every_field():
    assert set(ff.APPROACH2_VALUES) == ff._field_names(sf.Approach2Result) - {"optima", "samples"}
    assert set(ff.OPTIMUM_VALUES) == ff._field_names(sf.BudgetOptimum)
    assert set(ff.APPROACH3_VALUES) == ff._field_names(sf.Approach3Result)


def test_load_fit_accepts_what_the_fitter_can_write(tmp_path, both_fits):
    """Exponents of any sign (the fit warns, the file keeps them), null optima and intervals all load."""
    a3 = dataclasses.replace(both_fits.approach3, alpha=-0.1, a=2.0, b=-1.0, se=None, ci=None, objective=None)
    a2 = dataclasses.replace(both_fits.approach2, a=-0.2, a_ci=None, b_ci=None, a_se=None, b_se=None,
                             optima=[sf.BudgetOptimum(budget=1e18, N_opt=None, D_opt=None, loss_min=None,
                                                      flags=[sf.OPENS_DOWNWARD], parabola=None)])  # fmt: skip
    fit = ScalingFit(approach2=a2, approach3=a3)
    assert load_fit(save_fit(fit, tmp_path / "fit.json")) == fit


def test_load_fit_file_errors(tmp_path):
    with pytest.raises(FitError, match="fit file not found"):
        load_fit(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FitError, match="not valid JSON"):
        load_fit(tmp_path / "bad.json")
    with pytest.raises(FitError, match="format is 'list'"):
        ScalingFit.from_dict([])
    (tmp_path / "latin1.json").write_bytes(b'{"format": "\xe9"}')
    with pytest.raises(FitError, match="not valid JSON"):
        load_fit(tmp_path / "latin1.json")
    with pytest.raises(FitError, match="cannot read fit file"):
        load_fit(tmp_path)  # a directory


def test_save_fit_refuses_non_finite_numbers(tmp_path, both_fits):
    broken = ScalingFit(approach3=dataclasses.replace(both_fits.approach3, E=float("nan")))
    with pytest.raises(FitError, match="non-finite number"):
        save_fit(broken, tmp_path / "fit.json")
    assert not (tmp_path / "fit.json").exists()
