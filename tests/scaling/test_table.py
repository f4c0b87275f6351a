"""The sweep table (wavefoundry.scaling.table): the fitter's reader, the sweep's writer, and the two agreeing."""

import json

import numpy as np
import pytest

from wavefoundry.scaling.table import (
    COLUMNS,
    REQUIRED_COLUMNS,
    FitError,
    Table,
    read_rows,
    read_table,
    read_tables,
    write_jsonl,
    write_table,
)


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header), *(",".join(map(str, r)) for r in rows)]) + "\n")
    return path


def test_read_table_keeps_columns_and_line_numbers(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["run", "budget", "N", "steps", "D", "loss"],
                     [["x", 1e18, 1e8, 3, 1.6e9, 3.1], ["y", 1e18, 2e8, 4, 8e8, 3.0]])  # fmt: skip
    table = read_table(path)
    np.testing.assert_array_equal(table.N, [1e8, 2e8])
    np.testing.assert_array_equal(table.loss, [3.1, 3.0])
    assert table.rows == [f"{path} line 2", f"{path} line 3"]


def test_read_tables_concatenates_in_order_with_labels(tmp_path):
    header = ["budget", "N", "D", "loss"]
    a = write_csv(tmp_path / "a.csv", header, [[1e12, 1e5, 1.6e6, 3.1], [1e12, 2e5, 8e5, 3.0]])
    b = write_csv(tmp_path / "b.csv", header, [[3e12, 4e5, 1.2e6, 2.9]])
    table = read_tables([a, b])
    np.testing.assert_array_equal(table.budget, [1e12, 1e12, 3e12])
    np.testing.assert_array_equal(table.loss, [3.1, 3.0, 2.9])
    assert table.rows == [f"{a} line 2", f"{a} line 3", f"{b} line 2"]
    with pytest.raises(FitError, match="no table given"):
        read_tables([])


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (["budget", "N", "loss"], [[1, 2, 3]], "missing column(s) D; found: budget, N, loss"),
        (["budget", "N", "D", "loss"], [[1, 2, 3, 4], [1, 2, 3, "abc"]], "line 3: loss = 'abc' is not a number"),
        (["budget", "N", "D", "loss"], [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, "nan"]], "line 4: loss = nan is not"),
        (["budget", "N", "D", "loss"], [[1, 2, 3, "inf"]], "line 2: loss = inf is not finite"),
        (["budget", "N", "D", "loss"], [[1, 2, 3, ""]], "line 2: loss = '' is not a number"),
        (["budget", "N", "D", "loss"], [[1, -2, 3, 4]], "line 2: N = -2.0 is not positive"),
        (["budget", "N", "D", "loss"], [], "no data rows"),
    ],
)  # fmt: skip
def test_read_table_errors_name_the_row(tmp_path, header, rows, message):
    path = write_csv(tmp_path / "t.csv", header, rows)
    with pytest.raises(FitError) as err:
        read_table(path)
    assert message in str(err.value)


def test_read_table_missing_file(tmp_path):
    with pytest.raises(FitError, match="table not found"):
        read_table(tmp_path / "absent.csv")


def test_table_rejects_nan_in_memory():
    with pytest.raises(FitError, match="row 2: loss = nan is not finite"):
        Table(budget=[1, 1], N=[1, 2], D=[1, 2], loss=[1.0, float("nan")])


def test_exclude_highest_loss_drops_the_k_largest_in_order():
    table = Table(budget=[1] * 5, N=[1, 2, 3, 4, 5], D=[1] * 5, loss=[3.0, 9.0, 1.0, 7.0, 2.0])
    kept = table.exclude_highest_loss(2)
    np.testing.assert_array_equal(kept.loss, [3.0, 1.0, 2.0])
    assert kept.rows == ["row 1", "row 3", "row 5"]
    assert table.exclude_highest_loss(0) is table
    with pytest.raises(FitError, match="cannot leave out 5 highest-loss points of 5"):
        table.exclude_highest_loss(5)
    with pytest.raises(FitError, match="cannot leave out -1"):
        table.exclude_highest_loss(-1)


# ------------------------------------------------------------------------------------------ sweep writer


def sweep_rows():
    """Two rows as the sweep writes them: every column, ints, floats and text."""
    base = {c: i + 1 for i, c in enumerate(COLUMNS)}
    return [
        {**base, "budget": 1e13, "N": 123456, "D": 8192, "loss": 2.5, "convention": "levanter", "run_dir": "r/a"},
        {**base, "budget": 3e13, "N": 654321, "D": 16384, "loss": 2.25, "convention": "levanter", "run_dir": "r/b",
         "budget_error": -0.0042},
    ]  # fmt: skip


def test_write_table_round_trips_through_read_rows(tmp_path):
    rows = sweep_rows()
    path = tmp_path / "table.csv"
    write_table(path, [{**r, "extra": "dropped"} for r in rows])
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    back = read_rows(path)
    assert back == rows  # ints stay int, floats float, text text; keys beyond COLUMNS are dropped
    assert isinstance(back[0]["N"], int) and isinstance(back[0]["loss"], float)
    assert list(back[0]) == list(COLUMNS)


def test_the_fitter_reads_what_the_sweep_writes(tmp_path):
    rows = sweep_rows()
    write_table(tmp_path / "table.csv", rows)
    table = read_table(tmp_path / "table.csv")
    for c in REQUIRED_COLUMNS:
        np.testing.assert_array_equal(getattr(table, c), [float(r[c]) for r in rows])
    assert table.rows == [f"{tmp_path / 'table.csv'} line 2", f"{tmp_path / 'table.csv'} line 3"]


def test_write_table_with_other_columns_and_no_rows(tmp_path):
    columns = [c for c in COLUMNS if c != "loss"]
    write_table(tmp_path / "plan.csv", sweep_rows(), columns=columns)
    back = read_rows(tmp_path / "plan.csv")
    assert list(back[0]) == columns and len(back) == 2
    write_table(tmp_path / "empty.csv", [])
    assert read_rows(tmp_path / "empty.csv") == []
    with pytest.raises(FitError, match="no data rows"):
        read_table(tmp_path / "empty.csv")


def test_write_jsonl_one_object_per_line(tmp_path):
    rows = sweep_rows()
    write_jsonl(tmp_path / "table.jsonl", rows)
    lines = (tmp_path / "table.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == rows


def test_read_rows_missing_file(tmp_path):
    with pytest.raises(FitError, match="table not found"):
        read_rows(tmp_path / "absent.csv")
