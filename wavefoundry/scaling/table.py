"""The sweep table: one row per trained model, written by the IsoFLOP sweep and read by the fitter.

``isoflop.run_sweep`` writes ``table.csv`` (all of :data:`COLUMNS`) with :func:`write_table`, and ``table.jsonl``
with :func:`write_jsonl`; :func:`read_rows` reads any such CSV back as dicts. The fitter needs only
:data:`REQUIRED_COLUMNS` (``budget,N,D,loss``): :func:`read_table` reads them into a :class:`Table` of arrays,
ignoring other columns, so a table from another tool works too. Bad input raises :class:`FitError` naming the row.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wavefoundry.config import atomic_write_bytes

log = logging.getLogger(__name__)

#: Columns of the sweep's ``table.csv`` (``isoflop.SweepPoint.row`` plus ``loss`` and ``run_dir``).
COLUMNS = (
    "budget", "N", "N_nonemb", "N_flops", "D", "steps", "batch_size", "seq_len", "dim", "n_layers", "n_heads",
    "n_kv_heads", "head_dim", "ffn_dim", "vocab_size", "convention", "flops_per_token", "flops", "budget_error",
    "loss", "run_dir",
)  # fmt: skip
#: The columns the fitter reads.
REQUIRED_COLUMNS = ("budget", "N", "D", "loss")


class FitError(ValueError):
    """A table or a fit file is unusable, or too little is left to fit."""


@dataclass(kw_only=True)
class Table:
    """One row per trained model; every array is (P,) float64, finite and positive.

    ``rows`` labels each row for error messages (``"sweep.csv line 4"``); default ``"row i"`` (1-based).
    """

    budget: np.ndarray
    N: np.ndarray
    D: np.ndarray
    loss: np.ndarray
    rows: list[str] | None = None

    def __post_init__(self) -> None:
        for name in REQUIRED_COLUMNS:
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64).reshape(-1))
        sizes = {name: getattr(self, name).size for name in REQUIRED_COLUMNS}
        if len(set(sizes.values())) != 1:
            raise FitError(f"table columns differ in length: {sizes}")
        if self.rows is None:
            self.rows = [f"row {i + 1}" for i in range(len(self))]
        if len(self.rows) != len(self):
            raise FitError(f"table has {len(self)} rows but {len(self.rows)} row labels")
        if len(self) == 0:
            raise FitError("table has no rows")
        for name in REQUIRED_COLUMNS:
            values = getattr(self, name)
            for i in np.flatnonzero(~np.isfinite(values) | (values <= 0)):
                what = "not finite" if not np.isfinite(values[i]) else "not positive"
                raise FitError(f"{self.rows[i]}: {name} = {float(values[i])!r} is {what}")

    def __len__(self) -> int:
        return int(self.loss.size)

    def take(self, index: np.ndarray) -> Table:
        """The rows at integer ``index`` (in that order)."""
        index = np.asarray(index, dtype=np.int64)
        cols = {name: getattr(self, name)[index] for name in REQUIRED_COLUMNS}
        return Table(**cols, rows=[self.rows[i] for i in index])

    def exclude_highest_loss(self, k: int) -> Table:
        """Drop the ``k`` rows with the highest loss (Besiroglu et al. drop 5 outliers), keeping the row order."""
        if k < 0 or k >= len(self):
            raise FitError(f"cannot leave out {k} highest-loss points of {len(self)} (need 0 <= k < {len(self)})")
        if k == 0:
            return self
        dropped = np.argsort(self.loss, kind="stable")[len(self) - k :]
        log.info("left out the %d highest-loss points: %s", k, ", ".join(self.rows[i] for i in sorted(dropped)))
        return self.take(np.setdiff1d(np.arange(len(self)), dropped))


def _read_csv(path: str | Path) -> tuple[list[str], list[tuple[str, dict[str, str]]]]:
    """The header (names stripped) and (``"PATH line L"``, record) per data row of a CSV."""
    path = Path(path)
    if not path.is_file():
        raise FitError(f"table not found: {path}")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = header
        records = [(f"{path} line {reader.line_num}", record) for record in reader]
    return header, records


def read_table(path: str | Path) -> Table:
    """Read a sweep table: a CSV with at least the columns ``budget,N,D,loss`` (others are ignored)."""
    header, records = _read_csv(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise FitError(f"{path}: missing column(s) {', '.join(missing)}; found: {', '.join(header) or 'none'}")
    cols: dict[str, list[float]] = {c: [] for c in REQUIRED_COLUMNS}
    for row, record in records:
        for c in REQUIRED_COLUMNS:
            text = (record.get(c) or "").strip()
            try:
                cols[c].append(float(text))
            except ValueError:
                raise FitError(f"{row}: {c} = {text!r} is not a number") from None
    if not records:
        raise FitError(f"{path}: no data rows")
    return Table(**cols, rows=[row for row, _ in records])


def read_tables(paths: Sequence[str | Path]) -> Table:
    """Several sweep tables as one, rows in order (e.g. sweeps run with their own widths per budget)."""
    if not paths:
        raise FitError("no table given")
    tables = [read_table(p) for p in paths]
    columns = {c: np.concatenate([getattr(t, c) for t in tables]) for c in REQUIRED_COLUMNS}
    return Table(**columns, rows=[row for t in tables for row in t.rows])


def read_rows(path: str | Path) -> list[dict[str, float | str]]:
    """Every row of a table CSV as a dict, all columns; numeric cells as int or float, others as text."""
    return [{k: _number(v) for k, v in record.items()} for _, record in _read_csv(path)[1]]


def _number(text: str) -> float | str:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


def write_table(path: str | Path, rows: Sequence[dict[str, object]], columns: Sequence[str] = COLUMNS) -> None:
    """Write ``rows`` as CSV with ``columns`` (keys beyond them are dropped), atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def write_jsonl(path: str | Path, rows: Sequence[dict[str, object]]) -> None:
    """Write ``rows`` as JSON lines, atomically."""
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())
