"""2-process torchrun (gloo, CPU): DDP and FSDP2 match a single process on the same global batch."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.train.toy import ToyModelConfig, ToyRunConfig, ToyTask
from wavefoundry.train import checkpoint as ckpt
from wavefoundry.train.engine import TrainConfig, train
from wavefoundry.train.logging import read_metrics
from wavefoundry.train.optim import OptimConfig

WORKER = Path(__file__).with_name("dist_worker.py")
STEPS = 8


def dist_config(strategy: str) -> ToyRunConfig:
    return ToyRunConfig(
        train=TrainConfig(
            steps=STEPS, batch_size=8, grad_accum=2, log_every=1, progress=False, tensorboard=False,
            strategy=strategy, ema_decay=0.8, eval_every=4,
        ),
        optim=OptimConfig(lr=1e-2),
        model=ToyModelConfig(width=16, depth=3, dropout=0.0),
        noise=0.05,
    )  # fmt: skip


def _torchrun(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parents[2])}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
    ]
    proc = subprocess.Popen([*cmd, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun's workers too, never leave them behind
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-4000:]


def _final(run_dir: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return load_file(str(ckpt.latest_checkpoint(run_dir) / name))


def _assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("single") / "run"
    train(ToyTask(dist_config("none")), run)
    return run


@pytest.mark.slow
def test_ddp_matches_single_process(single, tmp_path):
    _torchrun("ddp", str(tmp_path / "ddp"))
    _assert_close(_final(single), _final(tmp_path / "ddp"))
    _assert_close(_final(single, "ema.safetensors"), _final(tmp_path / "ddp", "ema.safetensors"))
    losses_1 = [r["loss"] for r in read_metrics(single, "train")]
    losses_2 = [r["loss"] for r in read_metrics(tmp_path / "ddp", "train")]
    assert losses_1 == pytest.approx(losses_2, rel=1e-5)
    assert read_metrics(single, "eval")[-1]["loss"] == pytest.approx(
        read_metrics(tmp_path / "ddp", "eval")[-1]["loss"], rel=1e-5
    )


@pytest.mark.slow
def test_fsdp2_matches_single_process_across_resume(single, tmp_path):
    run = tmp_path / "fsdp"
    _torchrun("fsdp", str(run), str(STEPS // 2))
    assert ckpt.latest_checkpoint(run).name == f"step-{STEPS // 2:08d}"
    _torchrun("fsdp", str(run), "-", "--resume")
    _assert_close(_final(single), _final(run))
    _assert_close(_final(single, "ema.safetensors"), _final(run, "ema.safetensors"))
    losses_1 = [r["loss"] for r in read_metrics(single, "train")]
    losses_2 = [r["loss"] for r in read_metrics(run, "train")]
    assert len(losses_2) == STEPS
    assert losses_1 == pytest.approx(losses_2, rel=1e-5)
