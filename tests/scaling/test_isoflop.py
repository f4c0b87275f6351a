"""IsoFLOP planning: the family rule, points within 1% of each budget, left-out points and errors; the sweep loop
(table, failures) with the engine replaced by a stub (the real end-to-end sweep is in test_cli_sweep.py)."""

import dataclasses
import math

import pytest

from wavefoundry.config import ConfigError
from wavefoundry.lm.decoder import DecoderConfig, param_count
from wavefoundry.scaling import isoflop
from wavefoundry.scaling.flops import train_flops_per_token
from wavefoundry.scaling.isoflop import (
    FamilyRule,
    LeftOut,
    SweepConfig,
    SweepPoint,
    family_rule,
    plan_point,
    plan_sweep,
    point_config,
    run_sweep,
)
from wavefoundry.scaling.table import COLUMNS, read_rows
from wavefoundry.train.engine import TrainingDiverged, TrainResult
from wavefoundry.train.lm import lm_speech_tiny

BASE = DecoderConfig(vocab_size=1000, dim=64, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=128, max_seq_len=512)


@pytest.mark.parametrize(
    ("dim", "soda", "marin"),
    # round(d / (64 + 4 log2 d - 7)) and Marin's "- 9": 512/93 = 5.51, 1024/97 = 10.56, 2048/101 = 20.28 (vs
    # 2048/99 = 20.69), 4096/105 = 39.01 (vs 4096/103 = 39.77).
    [(512, 6, 6), (1024, 11, 11), (2048, 20, 21), (4096, 39, 40), (64, 1, 1)],
)
def test_depth_rule(dim, soda, marin):
    assert family_rule("soda").n_layers(dim) == soda
    assert family_rule("marin").n_layers(dim) == marin


def test_rule_shape():
    cfg = family_rule("soda").shape(1024, BASE)
    assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.dh, cfg.ffn_dim) == (1024, 11, 8, 8, 128, 4096)
    assert cfg.vocab_size == BASE.vocab_size and cfg.rope_base == BASE.rope_base  # the rest comes from the base
    gqa = FamilyRule(head_ratio=64, kv_group=2, head_dim=32, ffn_mult=3.0, min_layers=2).shape(256, BASE)
    assert (gqa.n_layers, gqa.n_heads, gqa.n_kv_heads, gqa.dh, gqa.ffn_dim) == (3, 4, 2, 32, 768)
    tiny = FamilyRule().shape(32, BASE)  # d < head_ratio: the minimum of one head, one layer
    assert (tiny.n_layers, tiny.n_heads, tiny.n_kv_heads, tiny.dh) == (1, 1, 1, 32)


def test_points_land_within_one_percent():
    sweep = SweepConfig(budgets=(1e12, 3e12, 1e13), dims=(64, 128, 192, 256), rule=FamilyRule(head_ratio=32),
                        batch_size=8, seq_len=256)  # fmt: skip
    plan = plan_sweep(sweep, BASE)
    assert len(plan.points) + len(plan.left_out) == 12
    for p in plan.points:
        per_token = train_flops_per_token(p.model, 256, "levanter")
        assert p.flops_per_token == per_token
        assert p.tokens == p.steps * 8 * 256 and p.flops == per_token * p.tokens
        assert abs(p.flops / p.budget - 1) <= 0.01
        # steps is the nearest integer: one step more or fewer lands further from the budget
        for other in (p.steps - 1, p.steps + 1):
            assert abs(per_token * other * 8 * 256 - p.budget) >= abs(p.flops - p.budget)
        row = p.row()
        assert row["N"] == param_count(p.model) and row["N_nonemb"] == param_count(p.model, embeddings=False)
        assert row["D"] == p.tokens and math.isclose(row["N_flops"] * 6, per_token)
    for budget in sweep.budgets:  # a bigger model gets fewer tokens on the same budget
        tokens = [p.tokens for p in plan.budget_points(budget)]
        assert tokens == sorted(tokens, reverse=True)


def test_conventions_change_steps():
    sweep = SweepConfig(budgets=(1e13,), dims=(128,), rule=FamilyRule(head_ratio=32), batch_size=8, seq_len=256)
    got = {c: plan_sweep(dataclasses.replace(sweep, convention=c), BASE).points[0] for c in ("kaplan", "levanter")}
    # Kaplan's count leaves out the embedding, head and attention: fewer FLOPs per token, more steps.
    assert got["kaplan"].flops_per_token < got["levanter"].flops_per_token
    assert got["kaplan"].steps > got["levanter"].steps
    assert got["kaplan"].convention == "kaplan"


def test_points_that_cannot_land_are_left_out_with_the_reason():
    rule = FamilyRule(head_ratio=32)
    sweep = SweepConfig(budgets=(1e12,), dims=(64,), rule=rule, batch_size=8, seq_len=256)
    per_step = train_flops_per_token(rule.shape(64, BASE), 256) * 8 * 256
    off = plan_point(sweep, 2.5 * per_step, 64, BASE)  # 2 steps (round half to even): 20% short
    assert isinstance(off, LeftOut) and "-20.00% off, tolerance 1.00%" in off.reason
    assert isinstance(plan_point(sweep, 1.004 * per_step, 64, BASE), SweepPoint)  # 1 step, 0.4% over
    assert isinstance(plan_point(dataclasses.replace(sweep, tolerance=0.25), 2.5 * per_step, 64, BASE), SweepPoint)
    few = plan_point(dataclasses.replace(sweep, min_steps=5), 3 * per_step, 64, BASE)
    assert isinstance(few, LeftOut) and "3 steps (< min_steps 5)" in few.reason
    zero = plan_point(sweep, 0.4 * per_step, 64, BASE)
    assert isinstance(zero, LeftOut) and zero.reason.startswith("0 steps")
    gqa = dataclasses.replace(sweep, rule=FamilyRule(head_ratio=32, kv_group=2))
    bad = plan_point(gqa, 1e15, 288, BASE)  # 9 heads, 4 kv heads: 4 does not divide 9
    assert isinstance(bad, LeftOut) and "no valid decoder" in bad.reason and "must divide" in bad.reason
    odd = plan_point(sweep, 1e15, 66, BASE)  # 2 heads of 33: rotary pairs need an even head_dim
    assert isinstance(odd, LeftOut) and "even" in odd.reason


def test_budget_with_no_valid_model():
    sweep = SweepConfig(budgets=(1e6, 1e13), dims=(64, 128), batch_size=8, seq_len=256)
    with pytest.raises(ValueError, match=r"no valid model for budget\(s\) 1e\+06: e.g. d=64: 0 steps"):
        plan_sweep(sweep, BASE)


def test_few_points_warn(caplog):
    sweep = SweepConfig(budgets=(1e13,), dims=(64,), rule=FamilyRule(head_ratio=32), batch_size=8, seq_len=256)
    plan_sweep(sweep, BASE)
    assert "only 1 point(s); an IsoFLOP fit needs >= 3" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budgets": ()}, "no budgets"),
        ({"budgets": (1e12, 0.0)}, "finite and > 0"),
        ({"budgets": (-1e12,)}, "finite and > 0"),
        ({"budgets": (float("inf"),)}, "finite and > 0"),
        ({"budgets": (1e12, 1e12)}, "repeat"),
        ({"dims": (64, 64)}, "distinct widths"),
        ({"dims": (1,)}, "distinct widths"),
        ({"convention": "palm"}, "unknown FLOP convention 'palm'"),
        ({"tolerance": 0.0}, "tolerance"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_sweep_config(kwargs, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        SweepConfig(**{"budgets": (1e12,), "dims": (64,), **kwargs})


def test_bad_rules():
    with pytest.raises(ValueError, match="unknown family rule 'chinchilla'; valid: soda, marin"):
        family_rule("chinchilla")
    with pytest.raises(ConfigError, match="head_ratio"):
        FamilyRule(head_ratio=0)
    with pytest.raises(ConfigError, match="ffn_mult"):
        FamilyRule(ffn_mult=-1.0)
    with pytest.raises(ConfigError, match=r"layer_offset must be > 0 for d >= 2"):
        FamilyRule(layer_base=1.0, layer_offset=10.0)
    with pytest.raises(ConfigError, match="depth divisor is -143 <= 0 at width 1024"):
        FamilyRule(layer_slope=-20.0).n_layers(1024)  # fine at d = 2, not at 1024


def test_point_config_sets_shape_steps_batch_and_final_eval():
    base = lm_speech_tiny()
    base.model = dataclasses.replace(base.model, vocab_size=BASE.vocab_size)
    base_steps = base.train.steps
    sweep = SweepConfig(budgets=(1e13,), dims=(128,), batch_size=4, seq_len=base.data.seq_len)
    point = plan_sweep(sweep, base.model).points[0]
    cfg = point_config(base, point)
    assert cfg.model == point.model and cfg.train.steps == point.steps and cfg.train.batch_size == 4
    assert cfg.train.eval_every == 0 and cfg.optim == base.optim and base.train.steps == base_steps  # base untouched
    with pytest.raises(ConfigError, match="seq_len"):
        point_config(dataclasses.replace(base, data=dataclasses.replace(base.data, seq_len=256)), point)


def _stub_train(losses):
    """An engine stand-in: returns the next loss (or raises it) and records the configs it got."""
    seen = []

    def train(task, run_dir, *, resume=False, until=None):
        seen.append(task.config)
        loss = losses[len(seen) - 1]
        if isinstance(loss, Exception):
            raise loss
        return TrainResult(run_dir, task.config.train.steps, None, {}, {"nll": loss}, 0)

    return train, seen


def test_run_sweep_table_and_failures(tmp_path, monkeypatch):
    base = lm_speech_tiny()
    base.model = dataclasses.replace(base.model, vocab_size=BASE.vocab_size)
    sweep = SweepConfig(budgets=(1e13, 3e13), dims=(64, 128), rule=FamilyRule(head_ratio=32), batch_size=4,
                        seq_len=base.data.seq_len)  # fmt: skip
    plan = plan_sweep(sweep, base.model)
    assert len(plan.points) == 4
    stub, seen = _stub_train([2.0, TrainingDiverged("nan"), float("nan"), 1.5])
    monkeypatch.setattr(isoflop, "train", stub)
    result = run_sweep(plan, base, tmp_path, progress=False)
    assert [c.train.steps for c in seen] == [p.steps for p in plan.points]
    assert [c.model.dim for c in seen] == [p.model.dim for p in plan.points]
    assert result.trained == 2 and len(result.failed) == 2
    assert "nan" in result.failed[0][1] and "non-finite" in result.failed[1][1]
    rows = read_rows(tmp_path / "table.csv")
    assert list(rows[0]) == list(COLUMNS)
    assert [r["loss"] for r in rows] == [2.0, 1.5]
    assert [r["run_dir"] for r in rows] == [str(tmp_path / "runs" / plan.points[i].name) for i in (0, 3)]
    for row, point in zip(rows, (plan.points[0], plan.points[3])):
        assert row["budget"] == point.budget and row["N"] == param_count(point.model) and row["D"] == point.tokens
    assert len(read_rows(tmp_path / "plan.csv")) == 4
    assert (tmp_path / "table.jsonl").read_text().count("\n") == 2
