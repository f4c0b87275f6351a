"""Cautious AdamW (closed forms, a reference with disagreeing signs), weight decay vs schedule, state round trips.

Also a torchrun worker: ``torchrun --nproc_per_node 2 tests/train/test_optim.py RUN`` trains the toy task under FSDP2
with Cautious AdamW (used by the slow test at the end).
"""

import dataclasses
import io
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from tests.train.toy import ToyModelConfig, ToyRunConfig, ToyTask
from wavefoundry.config import ConfigError, apply_overrides
from wavefoundry.train import checkpoint as ckpt
from wavefoundry.train import dist as D
from wavefoundry.train.engine import TrainConfig, train
from wavefoundry.train.logging import read_metrics
from wavefoundry.train.optim import (
    MIN_MASK_MEAN,
    CautiousAdamW,
    OptimConfig,
    PeakDecayAdamW,
    build_optimizer,
)
from wavefoundry.train.schedules import ScheduleConfig

LR, BETAS, EPS, WD = 0.1, (0.9, 0.95), 1e-8, 0.5


def _step(opt: torch.optim.Optimizer, p: torch.Tensor, grad: torch.Tensor) -> None:
    p.grad = grad.clone()
    opt.step()


def _cautious(p: torch.Tensor, **kw) -> CautiousAdamW:
    return CautiousAdamW([p], **{"lr": LR, "betas": BETAS, "eps": EPS, "weight_decay": WD, **kw})


def _reference(p0: torch.Tensor, grads: list[torch.Tensor], *, cautious: bool) -> tuple[torch.Tensor, list[float]]:
    """Liang et al. 2024 Alg. 1 written out in float64 from the formulas; also returns each step's mask mean."""
    p, m, v = p0.double().clone(), torch.zeros_like(p0, dtype=torch.float64), torch.zeros_like(p0, dtype=torch.float64)
    b1, b2 = BETAS
    means = []
    for t, g in enumerate(grads, start=1):
        g = g.double()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1**t)) / (torch.sqrt(v / (1 - b2**t)) + EPS)
        phi = (u * g > 0).double() if cautious else torch.ones_like(u)
        means.append(float(phi.mean()))
        p = p * (1 - LR * WD) - LR * u * phi / max(float(phi.mean()), MIN_MASK_MEAN)
    return p, means


# ------------------------------------------------------------------------------------------ cautious maths
def test_one_step_closed_form():
    # step 1: m_hat = g, v_hat = g^2, so u = g / (|g| + eps) and every sign agrees
    p0, g = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.3, -0.2, 4.0])
    p = p0.clone()
    _step(_cautious(p), p, g)
    expected = [p0[i].item() * (1 - LR * WD) - LR * g[i].item() / (abs(g[i].item()) + EPS) for i in range(3)]
    torch.testing.assert_close(p, torch.tensor(expected), rtol=0, atol=1e-7)


def test_all_agreeing_mask_is_adamw_bit_for_bit():
    torch.manual_seed(0)
    p_c, shape = torch.randn(4, 5), (4, 5)
    p_a = p_c.clone()
    cautious = _cautious(p_c)
    adamw = torch.optim.AdamW([p_a], lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, foreach=False)
    sign = torch.randn(shape).sign()
    grads = [sign * (torch.rand(shape) + 0.1) for _ in range(6)]  # fixed signs: exp_avg always agrees with g
    for g in grads:
        _step(cautious, p_c, g)
        _step(adamw, p_a, g)
        assert torch.equal(p_c, p_a)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(cautious.state[p_c][key], adamw.state[p_a][key]), key
    # the same gradients through the reference written from the formulas
    p0 = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    p = p0.clone()
    opt = _cautious(p)
    for g in grads:
        _step(opt, p, g)
    expected, means = _reference(p0, grads, cautious=True)
    assert means == [1.0] * len(grads)
    torch.testing.assert_close(p.double(), expected, rtol=1e-6, atol=1e-6)


def test_disagreeing_signs_match_reference():
    torch.manual_seed(1)
    p0 = torch.randn(3, 8, dtype=torch.float64)
    g1 = torch.randn(3, 8, dtype=torch.float64)
    # step 2 flips the sign of half the entries with a small magnitude: the momentum keeps the old sign there
    flip = torch.arange(24).reshape(3, 8) % 2 == 0
    g2 = torch.where(flip, -0.05 * g1, g1)
    grads = [g1, g2, torch.randn(3, 8, dtype=torch.float64)]
    p = p0.clone()
    opt = _cautious(p)
    for g in grads:
        _step(opt, p, g)
    expected, means = _reference(p0, grads, cautious=True)
    assert means[0] == 1.0 and means[1] == 0.5 and 0.0 < means[2] < 1.0
    torch.testing.assert_close(p, expected, rtol=1e-12, atol=1e-12)
    plain, _ = _reference(p0, grads, cautious=False)
    assert not torch.allclose(p, plain)  # the mask changed the trajectory


def test_masked_entries_only_decay():
    p0 = torch.tensor([1.0, 2.0, -3.0, 4.0])
    p = p0.clone()
    opt = _cautious(p)
    _step(opt, p, torch.tensor([1.0, 1.0, 1.0, 1.0]))
    after_one = p.clone()
    # a gradient opposite to the momentum everywhere but small: mask all zeros, only the weight decay acts
    _step(opt, p, torch.tensor([-0.01, -0.01, -0.01, -0.01]))
    torch.testing.assert_close(p, after_one * (1 - LR * WD), rtol=0, atol=0)


def test_sparse_or_bad_hyperparameters_raise():
    with pytest.raises(ValueError, match="bad hyper-parameters"):
        CautiousAdamW([torch.zeros(2, requires_grad=True)], lr=-1.0)


# ------------------------------------------------------------------------------------ weight decay vs schedule
class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)


@pytest.mark.parametrize("name", ["adamw", "cautious_adamw"])
@pytest.mark.parametrize("follows", [True, False])
def test_weight_decay_at_scheduled_lr(name, follows):
    net = _Net()
    peak, factor, wd = 0.2, 0.25, 0.3
    opt = build_optimizer(net, OptimConfig(name=name, lr=peak, weight_decay=wd, weight_decay_follows_lr=follows))
    for group in opt.param_groups:  # what the engine does each step
        group["lr"] = peak * factor
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p)  # zero moments: the Adam update is zero, only the decay moves weights
    opt.step()
    eta = peak * factor if follows else peak
    torch.testing.assert_close(net.lin.weight, before["lin.weight"] * (1 - eta * wd), rtol=0, atol=0)
    assert torch.equal(net.lin.bias, before["lin.bias"])  # the no-decay group


@pytest.mark.parametrize("name", ["adamw", "cautious_adamw"])
@pytest.mark.parametrize("follows", [True, False])
def test_zero_lr_freezes_parameters(name, follows):
    net = _Net()
    opt = build_optimizer(net, OptimConfig(name=name, lr=0.2, weight_decay=0.3, weight_decay_follows_lr=follows))
    for group in opt.param_groups:
        group["lr"] = 0.0
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    assert all(torch.equal(p, before[n]) for n, p in net.named_parameters())


def test_default_is_torch_adamw_and_peak_decay_at_peak_lr_is_bit_identical():
    net = _Net()
    assert type(build_optimizer(net, OptimConfig())) is torch.optim.AdamW  # existing runs: unchanged optimizer
    assert "decay_lr" not in build_optimizer(net, OptimConfig()).param_groups[0]
    torch.manual_seed(2)
    p_a = torch.randn(5, 3)
    p_b = p_a.clone()
    ref = torch.optim.AdamW([p_a], lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    peak = PeakDecayAdamW([p_b], lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, decay_lr=LR)
    for _ in range(5):
        g = torch.randn(5, 3)
        _step(ref, p_a, g)
        _step(peak, p_b, g)
        assert torch.equal(p_a, p_b)
    assert peak.param_groups[0]["weight_decay"] == WD  # restored after each step


def test_config_names_and_overrides():
    with pytest.raises(ValueError, match="valid: adamw, cautious_adamw"):
        OptimConfig(name="lion")
    cfg = ToyRunConfig()
    cfg = apply_overrides(cfg, ["optim.name=cautious_adamw", "optim.weight_decay_follows_lr=false"])
    assert cfg.optim.name == "cautious_adamw" and cfg.optim.weight_decay_follows_lr is False
    assert isinstance(build_optimizer(_Net(), cfg.optim), CautiousAdamW)
    with pytest.raises(ConfigError, match="not one of"):
        apply_overrides(ToyRunConfig(), ["optim.name=sgd"])
    bad = OptimConfig()
    bad.name = "lion"  # set after validation: build_optimizer resolves the name again
    with pytest.raises(ValueError, match="valid: adamw, cautious_adamw"):
        build_optimizer(_Net(), bad)


# ------------------------------------------------------------------------------------------------ state
def _run(net: nn.Module, opt: torch.optim.Optimizer, seeds: range) -> None:
    for seed in seeds:
        x = torch.randn(6, 3, generator=torch.Generator().manual_seed(seed))
        opt.zero_grad()
        net.lin(x).pow(2).mean().backward()
        opt.step()


def _through_bytes(obj: dict) -> dict:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("follows", [True, False])
def test_state_dict_round_trip(follows):
    cfg = OptimConfig(name="cautious_adamw", lr=0.05, weight_decay=0.1, weight_decay_follows_lr=follows)
    torch.manual_seed(0)
    net = _Net()
    opt = build_optimizer(net, cfg)
    _run(net, opt, range(3))
    assert set(opt.state[net.lin.weight]) == {"step", "exp_avg", "exp_avg_sq"}  # torch AdamW's layout
    saved = {"model": net.state_dict(), "optim": opt.state_dict(), "full": D.full_optimizer_state(net, opt)}
    saved = {k: _through_bytes(v) for k, v in saved.items()}  # separately: the restored states share no tensors
    # two restores: the plain torch API, and the engine's (torch.distributed.checkpoint, with its initialising step)
    restored = []
    for use_engine_path in (False, True):
        net2 = _Net()
        opt2 = build_optimizer(net2, cfg)
        net2.load_state_dict(saved["model"])
        if use_engine_path:
            D.load_full_state(net2, opt2, None, saved["full"])
        else:
            opt2.load_state_dict(saved["optim"])
        assert all(torch.equal(a, b) for a, b in zip(net.parameters(), net2.parameters(), strict=True))
        restored.append((net2, opt2))
    _run(net, opt, range(3, 6))
    for net2, opt2 in restored:
        _run(net2, opt2, range(3, 6))
        assert all(torch.equal(a, b) for a, b in zip(net.parameters(), net2.parameters(), strict=True))


# ------------------------------------------------------------------------------------------------ engine
def _engine_cfg(steps: int, **optim) -> ToyRunConfig:
    return ToyRunConfig(
        train=TrainConfig(steps=steps, batch_size=8, log_every=1, progress=False, tensorboard=False, ckpt_every=0),
        optim=OptimConfig(name="cautious_adamw", lr=1e-2, **optim),
        schedule=ScheduleConfig(name="wsd", warmup_steps=2, decay_fraction=0.5),
        model=ToyModelConfig(dropout=0.1),
        noise=0.05,
    )


def test_engine_trains_with_cautious_adamw(tmp_path):
    train(ToyTask(_engine_cfg(40)), tmp_path / "run")
    losses = [r["loss"] for r in read_metrics(tmp_path / "run", "train")]
    assert all(map(math.isfinite, losses))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("follows", [True, False])
def test_engine_resume_is_exact(tmp_path, follows):
    cfg = _engine_cfg(10, weight_decay=0.1, weight_decay_follows_lr=follows)
    train(ToyTask(cfg), tmp_path / "straight")
    train(ToyTask(cfg), tmp_path / "split", until=4)
    train(ToyTask(cfg), tmp_path / "split", resume=True)
    a = load_file(str(ckpt.latest_checkpoint(tmp_path / "straight") / "model.safetensors"))
    b = load_file(str(ckpt.latest_checkpoint(tmp_path / "split") / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = [r["loss"] for r in read_metrics(tmp_path / "straight", "train")]
    lb = [r["loss"] for r in read_metrics(tmp_path / "split", "train")]
    assert la == lb


# ------------------------------------------------------------------------------------------------ FSDP2
def _fsdp_cfg(strategy: str) -> ToyRunConfig:
    cfg = _engine_cfg(6, weight_decay=0.1)
    return dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, strategy=strategy, grad_accum=2),
        model=ToyModelConfig(width=16, depth=3, dropout=0.0),
    )


@pytest.mark.slow
def test_fsdp_matches_single_process(tmp_path):
    train(ToyTask(_fsdp_cfg("none")), tmp_path / "single")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__]
    proc = subprocess.Popen([*cmd, str(tmp_path / "fsdp")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-4000:]
    a = load_file(str(ckpt.latest_checkpoint(tmp_path / "single") / "model.safetensors"))
    b = load_file(str(ckpt.latest_checkpoint(tmp_path / "fsdp") / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


if __name__ == "__main__":
    try:
        train(ToyTask(_fsdp_cfg("fsdp")), sys.argv[1])
    finally:
        D.shutdown_distributed()
