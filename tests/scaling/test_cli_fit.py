"""``wavefoundry scaling fit``: fit.json that loads back, non-trivial PNGs, the summary, clear errors."""

import math

import numpy as np
import pytest
from matplotlib.image import imread

from wavefoundry.cli import main
from wavefoundry.scaling.fit_file import load_fit

LAW = (1.69, 406.4, 410.7, 0.34, 0.28)  # E, A, B, alpha, beta (Hoffmann et al. 2022)
BUDGETS = (1e18, 1e19, 1e20, 1e21)


def write_table(path, *, sizes=6, sigma=0.005, seed=0, budgets=BUDGETS, extra_rows=()):
    """A sweep-like CSV (with columns the fitter ignores) of IsoFLOP points of the law with log-normal noise."""
    E, A, B, alpha, beta = LAW
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    rng = np.random.default_rng(seed)
    lines = ["budget,N,N_nonemb,D,steps,loss,run"]
    for C in budgets:
        for z in np.linspace(-1.3, 1.3, sizes):
            n = G * (C / 6) ** (beta / (alpha + beta)) * math.exp(z)
            d = C / (6 * n)
            loss = (E + A / n**alpha + B / d**beta) * math.exp(rng.normal(0, sigma))
            lines.append(f"{C},{n},{0.9 * n},{d},{int(d // 512)},{loss},run-{len(lines)}")
    lines += list(extra_rows)
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_picture(path):
    assert path.stat().st_size > 20_000, path
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 400 and image.shape[2] in (3, 4)
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_fit_both_writes_json_figures_and_summary(tmp_path, capsys):
    table = write_table(tmp_path / "table.csv")
    out = tmp_path / "fit"
    assert main(["scaling", "fit", str(table), "--out", str(out), "--bootstrap", "30", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    fit = load_fit(out / "fit.json")
    assert fit.approach2.bootstrap == 30 and len(fit.approach2.optima) == 4
    assert fit.approach3.n_points == 24 and fit.approach3.converged
    true_a = LAW[4] / (LAW[3] + LAW[4])
    assert abs(fit.approach2.a - true_a) < 0.06 and abs(fit.approach3.a - true_a) < 0.06
    for name in ("isoflop.png", "frontier.png", "parametric.png"):
        assert_picture(out / name)
    assert "approach 2: IsoFLOP parabolas, 30 bootstrap resamples" in printed
    assert f"a = {fit.approach2.a:.3f} [{fit.approach2.a_ci[0]:.3f}, {fit.approach2.a_ci[1]:.3f}]" in printed
    assert f"a = beta/(alpha+beta) = {fit.approach3.a:.3f}" in printed
    assert f"alpha = {fit.approach3.alpha:.4g} ± " in printed
    assert f"wrote {out / 'fit.json'}" in printed


def test_fit_approach_2_only_with_a_budget_left_out(tmp_path, capsys):
    table = write_table(tmp_path / "table.csv", extra_rows=["1e22,1e10,1e10,1.6e11,1,2.0,lonely"])
    out = tmp_path / "fit"
    assert main(["scaling", "fit", str(table), "--out", str(out), "--approach", "2", "--bootstrap", "20",
                 "--no-progress"]) == 0  # fmt: skip
    fit = load_fit(out / "fit.json")
    assert fit.approach3 is None
    assert [o.budget for o in fit.approach2.optima] == list(BUDGETS)
    assert any("budget 1e+22" in w and "left out" in w for w in fit.approach2.warnings)
    assert (out / "isoflop.png").exists() and (out / "frontier.png").exists()
    assert not (out / "parametric.png").exists()
    printed = capsys.readouterr().out
    assert "approach 3" not in printed and "budget 1e+22: 1 distinct model size(s) (< 3); left out" in printed


def test_fit_approach_3_only_leaving_out_the_highest_losses(tmp_path):
    table = write_table(tmp_path / "table.csv")
    out = tmp_path / "fit"
    assert main(["scaling", "fit", str(table), "--out", str(out), "--approach", "3", "--bootstrap", "0",
                 "--exclude-highest-loss", "3", "--no-progress"]) == 0  # fmt: skip
    fit = load_fit(out / "fit.json")
    assert fit.approach2 is None and fit.approach3.n_points == 21 and fit.approach3.se is None
    assert_picture(out / "parametric.png")
    assert not (out / "isoflop.png").exists()


@pytest.mark.parametrize(
    ("extra", "args", "message"),
    [
        (["1e18,1e8,1e8,1e9,1,nan,bad"], [], "line 26: loss = nan is not finite"),
        ([], ["--bootstrap", "-1"], "--bootstrap must be >= 0"),
        ([], ["--exclude-highest-loss", "24"], "cannot leave out 24 highest-loss points of 24"),
    ],
)
def test_fit_errors_are_one_line(tmp_path, capsys, extra, args, message):
    table = write_table(tmp_path / "table.csv", extra_rows=extra)
    assert main(["scaling", "fit", str(table), "--out", str(tmp_path / "fit"), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "fit" / "fit.json").exists()


def test_fit_error_when_approach_2_has_one_budget(tmp_path, capsys):
    table = write_table(tmp_path / "table.csv", budgets=(1e19,))
    assert main(["scaling", "fit", str(table), "--out", str(tmp_path / "fit"), "--approach", "2"]) == 2
    assert "error: approach 2 needs at least 2 budgets with a usable minimum, got 1" in capsys.readouterr().err


def test_fit_missing_table(tmp_path, capsys):
    assert main(["scaling", "fit", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "fit")]) == 2
    assert "error: table not found:" in capsys.readouterr().err


def test_fit_joins_several_tables(tmp_path, capsys):
    low = write_table(tmp_path / "low.csv", budgets=BUDGETS[:2])
    high = write_table(tmp_path / "high.csv", budgets=BUDGETS[2:], seed=1)
    args = ["--out", str(tmp_path / "fit"), "--approach", "2", "--bootstrap", "0", "--no-progress"]
    assert main(["scaling", "fit", str(low), str(high), *args]) == 0
    assert capsys.readouterr().out.startswith("24 points")
    assert [o.budget for o in load_fit(tmp_path / "fit" / "fit.json").approach2.optima] == list(BUDGETS)
