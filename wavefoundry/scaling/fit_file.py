"""The ``fit.json`` file: :class:`ScalingFit` (both approaches' results), :func:`save_fit` and :func:`load_fit`.

The result classes and the fits live in ``scaling/fit.py``; this module only writes and reads them. Reading is
strict: format, version, keys and every value are checked (``*_VALUES`` below), so a hand-edited or foreign file
fails with a message naming the file and the field rather than as a wrong plan later.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wavefoundry.config import atomic_write_bytes
from wavefoundry.scaling.fit import STATISTICS, Approach2Result, Approach3Result, BudgetOptimum
from wavefoundry.scaling.table import FitError

FORMAT = "wavefoundry-scaling-fit"
VERSION = 1


@dataclass(kw_only=True)
class ScalingFit:
    """Everything ``fit.json`` holds; either approach may be absent (None)."""

    approach2: Approach2Result | None = None
    approach3: Approach3Result | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict (format, version, approach2, approach3)."""
        out: dict[str, Any] = {"format": FORMAT, "version": VERSION, "approach2": None, "approach3": None}
        if self.approach2 is not None:
            out["approach2"] = {k: v for k, v in dataclasses.asdict(self.approach2).items() if k != "samples"}
        if self.approach3 is not None:
            out["approach3"] = dataclasses.asdict(self.approach3)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ScalingFit:
        """Build from a dict written by :meth:`to_dict`; strict on format, version, keys and values.

        Values: numbers finite, positive where the fit makes them so (k_N, k_D, A, B, E, budgets, sizes), spreads
        non-negative, intervals [lo, hi] with lo <= hi. A fitted exponent of any sign loads: the fit can produce one
        (with a warning), and whoever uses the law decides whether it is usable.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise FitError(f"not a scaling fit: format is {got!r}, expected {FORMAT!r}")
        if data.get("version") != VERSION:
            raise FitError(f"unsupported scaling fit version {data.get('version')!r} (this code reads {VERSION})")
        _check_keys(data, {"format", "version", "approach2", "approach3"}, set(), "fit")
        fit = cls()
        if data["approach2"] is not None:
            _check_keys(data["approach2"], _field_names(Approach2Result) - {"samples"}, {"a_se", "b_se"}, "approach2")
            a2 = dict(data["approach2"])
            optima = a2.pop("optima")
            _check_values(a2, APPROACH2_VALUES, "approach2")
            if not isinstance(optima, list):
                raise FitError("approach2.optima must be a list")
            for i, o in enumerate(optima):
                _check_keys(o, _field_names(BudgetOptimum), {"n_points", "parabola"}, f"approach2.optima[{i}]")
                _check_values(o, OPTIMUM_VALUES, f"approach2.optima[{i}]")
            fit.approach2 = Approach2Result(**a2, optima=[BudgetOptimum(**o) for o in optima])
        if data["approach3"] is not None:
            a3 = data["approach3"]
            _check_keys(a3, _field_names(Approach3Result), {"ci", "bootstrap", "objective"}, "approach3")
            _check_values(a3, APPROACH3_VALUES, "approach3")
            fit.approach3 = Approach3Result(**a3)
        return fit


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _check_keys(data: Any, allowed: set[str], optional: set[str], where: str) -> None:
    if not isinstance(data, dict):
        raise FitError(f"{where} must be an object, got {type(data).__name__}")
    missing, unknown = sorted(allowed - optional - data.keys()), sorted(data.keys() - allowed)
    if missing or unknown:
        raise FitError(f"{where}: missing keys {missing}, unknown keys {unknown}; valid keys: {sorted(allowed)}")


Check = Callable[[Any, str], None]


def _finite(value: Any, where: str) -> None:
    # Python's json reads NaN and Infinity, which save_fit never writes
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FitError(f"{where} must be a finite number, got {value!r}")


def _positive(value: Any, where: str) -> None:
    _finite(value, where)
    if value <= 0:
        raise FitError(f"{where} must be positive, got {value!r}")


def _non_negative(value: Any, where: str) -> None:
    _finite(value, where)
    if value < 0:
        raise FitError(f"{where} must be non-negative, got {value!r}")


def _count(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FitError(f"{where} must be a non-negative integer, got {value!r}")


def _flag(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise FitError(f"{where} must be true or false, got {value!r}")


def _strings(value: Any, where: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FitError(f"{where} must be a list of strings, got {value!r}")


def _numbers(length: int) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, (list, tuple)) or len(value) != length:
            raise FitError(f"{where} must be a list of {length} numbers, got {value!r}")
        for i, v in enumerate(value):
            _finite(v, f"{where}[{i}]")

    return check


def _lo_hi(value: Any, where: str) -> None:
    _numbers(2)(value, where)
    if value[0] > value[1]:
        raise FitError(f"{where} must be [lo, hi] with lo <= hi, got {value!r}")


def _per_statistic(check: Check) -> Check:
    """A check of a {name: value} object over the Approach-3 statistics (``se``, ``ci``)."""

    def run(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise FitError(f"{where} must be an object, got {type(value).__name__}")
        unknown = sorted(value.keys() - set(STATISTICS))
        if unknown:
            raise FitError(f"{where}: unknown keys {unknown}; valid keys: {list(STATISTICS)}")
        for name, v in value.items():
            check(v, f"{where}.{name}")

    return run


def _nullable(check: Check) -> Check:
    def run(value: Any, where: str) -> None:
        if value is not None:
            check(value, where)

    return run


# what each value of fit.json must be; a test checks these cover every field of the result classes
APPROACH2_VALUES: dict[str, Check] = {
    "a": _finite, "a_ci": _nullable(_lo_hi), "k_N": _positive, "b": _finite, "b_ci": _nullable(_lo_hi),
    "k_D": _positive, "bootstrap": _count, "warnings": _strings, "a_se": _nullable(_non_negative),
    "b_se": _nullable(_non_negative),
}  # fmt: skip
OPTIMUM_VALUES: dict[str, Check] = {
    "budget": _positive, "N_opt": _nullable(_positive), "D_opt": _nullable(_positive), "loss_min": _nullable(_finite),
    "flags": _strings, "n_points": _count, "parabola": _nullable(_numbers(3)),
}  # fmt: skip
APPROACH3_VALUES: dict[str, Check] = {
    "E": _positive, "A": _positive, "B": _positive, "alpha": _finite, "beta": _finite,
    "se": _nullable(_per_statistic(_non_negative)), "a": _finite, "b": _finite, "n_points": _count,
    "huber_delta": _positive, "converged": _flag, "warnings": _strings, "ci": _nullable(_per_statistic(_lo_hi)),
    "bootstrap": _count, "objective": _nullable(_non_negative),
}  # fmt: skip


def _check_values(data: dict, checks: dict[str, Check], where: str) -> None:
    for key, check in checks.items():
        if key in data:  # optional keys may be absent (_check_keys has seen to the rest)
            check(data[key], f"{where}.{key}")


def save_fit(fit: ScalingFit, path: str | Path) -> Path:
    """Write ``fit`` as JSON (atomically). Non-finite numbers are refused: JSON has none."""
    path = Path(path)
    try:
        text = json.dumps(fit.to_dict(), indent=2, allow_nan=False)
    except ValueError as exc:
        raise FitError(f"fit contains a non-finite number and cannot be saved: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (text + "\n").encode())
    return path


def load_fit(path: str | Path) -> ScalingFit:
    """Read a ``fit.json`` written by :func:`save_fit` (strict, see :meth:`ScalingFit.from_dict`).

    Raises:
        FitError: the file is missing, unreadable, not JSON, or not a valid fit; the message names the file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FitError(f"fit file not found: {path}") from None
    except OSError as exc:
        raise FitError(f"cannot read fit file {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FitError(f"{path}: not valid JSON ({exc})") from None
    try:
        return ScalingFit.from_dict(data)
    except FitError as exc:
        raise FitError(f"{path}: {exc}") from None
