"""The planner against published runs (wavefoundry.scaling.published): every check against its closed form."""

import pytest

from wavefoundry.scaling.plan import besiroglu, chinchilla
from wavefoundry.scaling.published import checks_table, published_checks


def test_published_checks_against_closed_forms():
    rows = {r.what: r for r in published_checks(0.4)}
    cap = 64 * 312e12 * 338 * 3600
    per_step = 64 * 4 * 1024
    assert rows["SAO DiT: latents per step"].value == 262_144
    assert rows["SAO DiT: 64 A100 x 338 h at peak"].value == pytest.approx(cap)
    steps = 0.4 * cap / (6 * 1.06e9 * per_step)
    assert rows["SAO DiT: steps at MFU 0.4 (6ND)"].value == pytest.approx(steps)
    assert rows["SAO DiT: latents seen at MFU 0.4"].value == pytest.approx(steps * per_step)
    assert rows["SAO DiT: implied MFU of 338 h at 6ND"].value == pytest.approx(6 * 1.06e9 * per_step / cap)
    c = 6 * 4e9 * 5e11
    assert rows["SODA 4B on 500B tokens: C = 6ND"].value == pytest.approx(1.2e22)
    assert rows["SODA law N* at that C"].value is None  # no k_N published: no number
    assert rows["what-if: k_N if SODA-4B were optimal"].value == pytest.approx(4e9 / c**0.367)
    n_w = rows["what-if: SODA N* through the 3e20/1.7B ablation"].value
    assert n_w == pytest.approx(1.7e9 * (c / 3e20) ** 0.367)
    assert rows["chinchilla N*, D* at 1.2e+22"].value == pytest.approx(chinchilla().n_opt(c))
    assert rows["besiroglu N*, D* at 1.2e+22"].value == pytest.approx(besiroglu().n_opt(c))
    assert rows["20 tokens per parameter at that C"].value == pytest.approx(1e10)
    gpu_hours = c / (989e12 * 0.4) / 3600
    assert rows["SODA 4B: H100 SXM GPU-hours at MFU 0.4"].value == pytest.approx(gpu_hours)
    assert rows["SODA 4B: H200 GPU-hours at MFU 0.4"].value == pytest.approx(gpu_hours)
    assert rows["SODA 4B: A100 GPU-hours at MFU 0.4"].value == pytest.approx(c / (312e12 * 0.4) / 3600)
    assert rows["SODA 4B: implied MFU, ~1 week on v5p-256"].value == pytest.approx(c / (128 * 459e12 * 168 * 3600))
    table = checks_table(list(rows.values()))
    assert table.count("\n") == len(rows) + 1 and table.startswith("| check | published | planner | note |")


def test_published_checks_follow_the_mfu():
    a, b = (next(r.value for r in published_checks(m) if r.what.startswith("SAO DiT: steps")) for m in (0.2, 0.4))
    assert b == pytest.approx(2 * a)
    with pytest.raises(ValueError, match="MFU"):
        published_checks(1.2)
