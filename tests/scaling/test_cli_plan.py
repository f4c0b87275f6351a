"""``wavefoundry scaling plan`` in-process: printed numbers against the library, errors as one line, the docs table."""

import json
import re
from pathlib import Path

import pytest

from tests.scaling.test_plan import BUDGETS_FIT, approach2_from, approach3_block, write_fit
from wavefoundry.cli import main
from wavefoundry.scaling.plan import besiroglu, chinchilla, soda
from wavefoundry.scaling.published import checks_table, published_checks

DOCS = Path(__file__).parents[2] / "docs" / "scaling_plan.md"


def run(capsys, *argv):
    rc = main(["scaling", "plan", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def number_after(text: str, label: str) -> float:
    """The last number on the first line that starts with ``label`` (the result of a printed formula)."""
    line = next(ln for ln in text.splitlines() if ln.strip().startswith(label))
    return float(re.findall(r"[-+]?\d[\d,]*\.?\d*(?:e[-+]?\d+)?", line.split("=")[-1])[0].replace(",", ""))


def test_budget_plan_prints_the_law_and_the_time(capsys):
    rc, out, _ = run(
        capsys, "--budget", "1e21", "--law", "chinchilla", "--gpu", "h100", "--n-gpus", "64", "--mfu", "0.4"
    )
    assert rc == 0
    law = chinchilla()
    assert number_after(out, "N* = k_N C^a") == pytest.approx(law.n_opt(1e21), rel=1e-3)
    assert number_after(out, "D* = k_D C^b") == pytest.approx(law.d_opt(1e21), rel=1e-3)
    assert "1.000e+21 / (64 x 9.890e+14 x 0.4)" in out
    assert number_after(out, "GPU-hours") == pytest.approx(1e21 / (989e12 * 0.4) / 3600, abs=1)
    assert "G = (alpha A / (beta B))^(1/(alpha+beta)) = 1.3447" in out
    assert "20 tokens/parameter" in out and "N = sqrt(C / 120) = 2.887e+09" in out


def test_reverse_plan_inverts_the_law(capsys):
    rc, out, _ = run(capsys, "--model-size", "1e9", "--law", "besiroglu")
    assert rc == 0
    c = besiroglu().budget_for(1e9)
    line = next(ln for ln in out.splitlines() if ln.startswith("budget where N is optimal"))
    assert f"= {c:.3e} FLOPs" in line
    assert "time: pass --gpu" in out


def test_reverse_plan_with_tokens_compares_with_the_optimum(capsys):
    rc, out, _ = run(capsys, "--model-size", "4e9", "--tokens", "5e11", "--law", "besiroglu", "--gpu", "h200",
                     "--mfu", "0.4")  # fmt: skip
    assert rc == 0
    assert "6 N D = 1.200e+22" in out
    assert number_after(out, "N / N*") == pytest.approx(4e9 / besiroglu().n_opt(1.2e22), abs=1e-3)
    assert number_after(out, "GPU-hours") == pytest.approx(1.2e22 / (989e12 * 0.4) / 3600, abs=1)


def test_flops_per_token_replaces_6n(capsys):
    rc, out, _ = run(capsys, "--model-size", "1e9", "--tokens", "2e10", "--flops-per-token", "7.5e9")
    assert rc == 0 and "7.500e+09 x D = 1.500e+20" in out
    rc, out, _ = run(capsys, "--budget", "1.5e20", "--flops-per-token", "7.5e9")
    assert rc == 0 and "C buys D = C / 7.500e+09 = 2.000e+10 tokens" in out


def test_soda_without_coefficient_says_so_and_anchor_fills_it(capsys):
    rc, out, _ = run(capsys, "--budget", "1e21", "--law", "soda", "--gpu", "a100", "--mfu", "0.3")
    assert rc == 0 and "N*, D*: not available" in out and "--anchor" in out
    assert number_after(out, "GPU-hours") == pytest.approx(1e21 / (312e12 * 0.3) / 3600, abs=1)
    rc, out, _ = run(capsys, "--budget", "1e21", "--law", "soda", "--anchor", "3e20,1.7e9")
    assert rc == 0
    law = soda().anchored(3e20, 1.7e9)
    assert number_after(out, "N* = k_N C^a") == pytest.approx(law.n_opt(1e21), rel=1e-3)
    assert "6 N* D* / C = 0.937" in out and "anchored at C0 = 3e+20" in out
    rc, out, _ = run(capsys, "--budget", "1e21", "--law", "soda", "--k-n", "50")
    assert rc == 0 and "D* = C / (6 N*)" in out


def test_fit_file(capsys, tmp_path):
    ref = chinchilla()
    path = write_fit(tmp_path / "fit.json", approach2_from(ref, BUDGETS_FIT), approach3_block(ref.loss))
    rc, out, _ = run(capsys, "--budget", "1e22", "--fit", str(path))
    assert rc == 0 and "law: fit:approach3" in out
    assert number_after(out, "N* = k_N C^a") == pytest.approx(ref.n_opt(1e22), rel=1e-3)
    assert "N* range [" in out and "exponent in [" in out  # se of alpha/beta and the approach-2 pivot
    rc, out, _ = run(capsys, "--budget", "1e22", "--fit", str(path), "--approach", "2")
    assert rc == 0 and "law: fit:approach2" in out and "note: approach2 warning: budget 1e+17 left out" in out


def test_check_published_matches_the_docs_table(capsys):
    rc, out, _ = run(capsys, "--check-published", "--mfu", "0.4")
    assert rc == 0 and out.strip() == checks_table(published_checks(0.4))
    assert out.strip() in DOCS.read_text()  # docs/scaling_plan.md shows what the command prints


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budget", "0"], "--budget must be a positive finite number"),
        (["--budget", "1e21", "--gpu", "h100", "--mfu", "1.5"], "MFU is a fraction of peak in (0, 1]"),
        (["--budget", "1e21", "--gpu", "v100", "--mfu", "0.4"], "unknown GPU 'v100'"),
        (["--budget", "1e21", "--gpu", "h100"], "need an assumed --mfu"),
        (["--budget", "1e21", "--mfu", "0.4"], "--mfu needs --gpu or --peak-flops"),
        (["--budget", "1e21", "--law", "gpt"], "unknown law 'gpt'; valid: chinchilla, besiroglu, soda"),
        (["--budget", "1e21", "--law", "soda", "--anchor", "3e20"], "--anchor must be C,N"),
        (["--budget", "1e21", "--k-d", "0.1"], "--k-d needs --k-n"),
        (["--budget", "1e21", "--approach", "2"], "--approach needs --fit"),
        (["--budget", "1e21", "--tokens", "1e10"], "--tokens goes with --model-size"),
        (["--model-size", "4e9", "--law", "soda"], "has no k_N"),
        (["--budget", "1e21", "--peak-flops", "-1", "--mfu", "0.4"], "peak FLOP/s must be a positive"),
        (["--check-published", "--mfu", "2"], "MFU is a fraction"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, argv, message):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_bad_fit_file_is_one_clear_line(capsys, tmp_path):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"format": "wavefoundry-scaling-fit", "version": 7}))
    rc, _, err = run(capsys, "--budget", "1e21", "--fit", str(path))
    assert rc == 2 and err == f"error: {path}: unsupported scaling fit version 7 (this code reads 1)\n"
    rc, _, err = run(capsys, "--budget", "1e21", "--fit", str(tmp_path / "none.json"))
    assert rc == 2 and "fit file not found" in err
    write_fit(path, approach3=approach3_block(chinchilla().loss, se={"alpha": -0.01}))  # from fit_file.load_fit
    rc, out, err = run(capsys, "--budget", "1e21", "--fit", str(path))
    assert rc == 2 and out == "" and err == f"error: {path}: approach3.se.alpha must be non-negative, got -0.01\n"
    write_fit(path, approach3=approach3_block(chinchilla().loss, alpha=-0.3))  # loads, but has no law
    rc, _, err = run(capsys, "--budget", "1e21", "--fit", str(path), "--approach", "3")
    assert rc == 2 and err.startswith(f"error: {path}: approach3 gives no compute-optimal law: loss.alpha")
    assert err.count("\n") == 1
    rc, _, err = run(capsys, "--budget", "1e21", "--fit", str(path), "--approach", "2")
    assert rc == 2 and err == f"error: fit file {path} has no approach2 result (null)\n"
