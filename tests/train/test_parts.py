"""Schedules, optimizer groups, EMA and step-indexed batches against closed forms and invariants."""

import math

import pytest
import torch
from torch import nn

from wavefoundry.train.batches import StepBatchSampler, eval_keys
from wavefoundry.train.ema import EMA
from wavefoundry.train.optim import OptimConfig, build_optimizer, decay_groups
from wavefoundry.train.schedules import ScheduleConfig, lr_factor_fn


def test_cosine_schedule_closed_form():
    f = lr_factor_fn(ScheduleConfig(name="cosine", warmup_steps=10, min_ratio=0.1), total_steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


def test_inverse_sqrt_and_constant():
    f = lr_factor_fn(ScheduleConfig(name="inverse_sqrt", warmup_steps=100), total_steps=1000)
    assert f(99) == pytest.approx(1.0)
    assert f(399) == pytest.approx(0.5)
    g = lr_factor_fn(ScheduleConfig(name="constant", warmup_steps=4), total_steps=10)
    assert [g(s) for s in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_wsd_schedule_shape():
    f = lr_factor_fn(ScheduleConfig(name="wsd", warmup_steps=10, decay_fraction=0.2, min_ratio=0.0), 100)
    assert f(50) == 1.0 and f(79) == 1.0
    assert f(80) == pytest.approx(1 - 1 / 20) and f(99) == pytest.approx(0.0)
    assert all(f(s) >= f(s + 1) for s in range(10, 99))


def test_schedule_total_steps_override_and_validation():
    f = lr_factor_fn(ScheduleConfig(name="cosine", total_steps=20), total_steps=1000)
    assert f(20) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="min_ratio"):
        ScheduleConfig(min_ratio=2.0)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.lin = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.scale = nn.Parameter(torch.ones(4))


def test_no_weight_decay_on_norms_biases_embeddings():
    net = _Net()
    decay, no_decay = decay_groups(net)
    assert decay == ["lin.weight"]
    assert sorted(no_decay) == ["emb.weight", "lin.bias", "norm.bias", "norm.weight", "scale"]
    opt = build_optimizer(net, OptimConfig(lr=0.1, weight_decay=0.5))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5, 0.0]
    # zero gradients: only decayed weights move, by lr * wd * w (decoupled decay)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt.step()
    after = dict(net.named_parameters())
    torch.testing.assert_close(after["lin.weight"], before["lin.weight"] * (1 - 0.1 * 0.5))
    assert torch.equal(after["emb.weight"], before["emb.weight"])


def test_ema_closed_form():
    state = {"w": torch.zeros(3)}
    ema = EMA(state, decay=0.5)
    ema.update({"w": torch.ones(3)})  # warm-up decay min(0.5, 1/10) = 0.1
    torch.testing.assert_close(ema.shadow["w"], torch.full((3,), 0.9))
    ema.update({"w": torch.ones(3)})  # min(0.5, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.shadow["w"], torch.full((3,), d * 0.9 + (1 - d)))
    with pytest.raises(ValueError):
        EMA(state, decay=1.0)


@pytest.mark.parametrize(("world", "accum"), [(1, 1), (2, 1), (2, 2), (4, 2)])
def test_step_batches_partition_the_global_batch(world, accum):
    n, global_batch, steps = 37, 8, 12
    per_rank = [
        StepBatchSampler(n, global_batch=global_batch, seed=3, start_step=0, total_steps=steps,
                         rank=r, world_size=world, grad_accum=accum)
        for r in range(world)
    ]  # fmt: skip
    single = StepBatchSampler(n, global_batch=global_batch, seed=3, start_step=0, total_steps=steps)
    for step in range(steps):
        keys = sorted(k for s in per_rank for m in range(accum) for k in s.keys(step, m))
        assert keys == sorted(single.keys(step, 0))
    stream = [k[0] for b in single for k in b]
    for epoch in range(len(stream) // n):  # every epoch is a permutation
        assert sorted(stream[epoch * n : (epoch + 1) * n]) == list(range(n))


def test_step_batches_resume_and_validation():
    full = list(StepBatchSampler(20, global_batch=4, seed=1, start_step=0, total_steps=10))
    tail = list(StepBatchSampler(20, global_batch=4, seed=1, start_step=6, total_steps=10))
    assert tail == full[6:]
    other = list(StepBatchSampler(20, global_batch=4, seed=2, start_step=0, total_steps=10))
    assert other != full
    with pytest.raises(ValueError, match="divisible"):
        StepBatchSampler(20, global_batch=6, seed=0, start_step=0, total_steps=1, world_size=4)
    with pytest.raises(ValueError, match="empty"):
        StepBatchSampler(0, global_batch=4, seed=0, start_step=0, total_steps=1)
    assert [k[0] for b in eval_keys(5, 2, 0, 0, 1) for k in b] == [0, 1, 2, 3, 4]
