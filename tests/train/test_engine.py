import json

import pytest
import torch
from safetensors.torch import load_file

from tests.train.toy import ToyModelConfig, ToyRunConfig, ToyTask
from wavefoundry.train import checkpoint as ckpt
from wavefoundry.train.engine import TrainConfig, Trainer, TrainingDiverged, train
from wavefoundry.train.logging import read_metrics
from wavefoundry.train.optim import OptimConfig
from wavefoundry.train.tasks import load_run_config


def _cfg(**train_kw) -> ToyRunConfig:
    base = dict(steps=12, batch_size=8, log_every=1, progress=False, tensorboard=False, ckpt_every=0)
    base.update(train_kw)
    return ToyRunConfig(
        train=TrainConfig(**base), optim=OptimConfig(lr=1e-2), model=ToyModelConfig(dropout=0.1), noise=0.05
    )


def _weights(run_dir):
    return load_file(str(ckpt.latest_checkpoint(run_dir) / "model.safetensors"))


def test_loss_decreases(tmp_path):
    result = train(ToyTask(_cfg(steps=60)), tmp_path / "run")
    records = read_metrics(tmp_path / "run", "train")
    assert len(records) == 60
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]
    assert result.eval_metrics["loss"] < records[0]["loss"]


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_is_exact(tmp_path, ema):
    cfg = _cfg(steps=12, ema_decay=ema, grad_accum=2)
    train(ToyTask(cfg), tmp_path / "straight")
    train(ToyTask(cfg), tmp_path / "split", until=5)
    assert ckpt.latest_checkpoint(tmp_path / "split").name == "step-00000005"
    train(ToyTask(cfg), tmp_path / "split", resume=True)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    if ema:
        ea = load_file(str(ckpt.latest_checkpoint(tmp_path / "straight") / "ema.safetensors"))
        eb = load_file(str(ckpt.latest_checkpoint(tmp_path / "split") / "ema.safetensors"))
        assert all(torch.equal(ea[k], eb[k]) for k in ea)
    la = [r["loss"] for r in read_metrics(tmp_path / "straight", "train")]
    lb = [r["loss"] for r in read_metrics(tmp_path / "split", "train")]
    assert la == lb


def test_refuses_to_overwrite_run(tmp_path):
    train(ToyTask(_cfg(steps=2)), tmp_path / "run")
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(ToyTask(_cfg(steps=2)), tmp_path / "run")


def test_checkpoint_layout_and_strict_config(tmp_path):
    cfg = _cfg(steps=6, ckpt_every=2, keep_checkpoints=2, ema_decay=0.5)
    train(ToyTask(cfg), tmp_path / "run")
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "run")]
    assert names == ["step-00000004", "step-00000006"]
    last = ckpt.latest_checkpoint(tmp_path / "run")
    assert {p.name for p in last.iterdir()} == {
        "config.json",
        "model.safetensors",
        "ema.safetensors",
        "train_state.pt",
    }
    assert ckpt.read_metadata(last / "model.safetensors")["step"] == "6"
    assert load_run_config(last) == cfg
    state = ckpt.load_train_state(last)
    assert state["step"] == 6 and state["skipped"] == 0
    data = json.loads((tmp_path / "run" / "config.json").read_text())
    data["train"]["stepz"] = 3
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"stepz.*valid keys"):
        load_run_config(tmp_path / "bad.json")


def test_no_leftover_temp_dirs_and_prune(tmp_path):
    train(ToyTask(_cfg(steps=4, ckpt_every=1, keep_checkpoints=1)), tmp_path / "run")
    entries = list((tmp_path / "run" / "checkpoints").iterdir())
    assert [p.name for p in entries] == ["step-00000004"]


def test_nan_steps_are_skipped(tmp_path):
    cfg = _cfg(steps=8, max_bad_steps=3)
    cfg.model.nan_at_steps = (2, 3)
    cfg.model.dropout = 0.0
    result = train(ToyTask(cfg), tmp_path / "run")
    assert result.skipped_steps == 2
    records = read_metrics(tmp_path / "run", "train")
    assert [r["step"] for r in records if r["loss"] != r["loss"]] == [3, 4]
    weights = _weights(tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_too_many_nan_steps_stop_with_checkpoint_intact(tmp_path):
    cfg = _cfg(steps=20, max_bad_steps=2, ckpt_every=3)
    cfg.model.nan_at_steps = tuple(range(4, 20))
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(ToyTask(cfg), tmp_path / "run")
    # steps 4 and 5 were skipped (weights untouched), step 6 was the third bad one in a row
    assert ckpt.latest_checkpoint(tmp_path / "run").name == "step-00000006"
    clean = _cfg(steps=20, max_bad_steps=2)
    train(ToyTask(clean), tmp_path / "clean", until=4)
    good, kept = _weights(tmp_path / "clean"), _weights(tmp_path / "run")
    assert all(torch.equal(good[k], kept[k]) for k in good if k != "calls")


def test_bf16_autocast_runs_and_learns_with_tensorboard(tmp_path):
    train(ToyTask(_cfg(steps=30, precision="bf16", tensorboard=True, eval_every=10)), tmp_path / "run")
    records = read_metrics(tmp_path / "run", "train")
    assert records[-1]["loss"] < records[0]["loss"]
    assert [r["step"] for r in read_metrics(tmp_path / "run", "eval")] == [10, 20, 30]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    assert {"train/loss", "train/lr", "train/grad_norm", "eval/loss"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("train/loss")) == 30


def test_partial_checkpoint_from_a_kill_is_ignored_and_removed(tmp_path):
    cfg = _cfg(steps=6, ckpt_every=2)
    train(ToyTask(cfg), tmp_path / "run", until=4)
    partial = tmp_path / "run" / "checkpoints" / ".tmp-step-00000006-abc"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half a file")
    assert ckpt.latest_checkpoint(tmp_path / "run").name == "step-00000004"
    train(ToyTask(cfg), tmp_path / "run", resume=True)
    assert not partial.exists()
    assert ckpt.latest_checkpoint(tmp_path / "run").name == "step-00000006"


def test_init_from_loads_weights_then_trains_and_resume_ignores_it(tmp_path, caplog):
    train(ToyTask(_cfg(steps=20)), tmp_path / "base")
    source = ckpt.latest_checkpoint(tmp_path / "base") / "model.safetensors"
    base = load_file(str(source))
    trainer = Trainer(ToyTask(_cfg(steps=4, init_from=str(source))), tmp_path / "tuned")
    start = trainer.model.state_dict()
    assert all(torch.equal(start[k], base[k]) for k in base)  # the fine-tune starts exactly at the source
    fresh = Trainer(ToyTask(_cfg(steps=4)), tmp_path / "fresh").model.state_dict()
    assert not torch.equal(fresh["inp.weight"], base["inp.weight"])
    trainer.fit(until=2)
    # resume reads the checkpoint, not init_from (which may be gone by then)
    moved = tmp_path / "moved.safetensors"
    source.rename(moved)
    result = train(ToyTask(_cfg(steps=4, init_from=str(source))), tmp_path / "tuned", resume=True)
    assert result.step == 4


def test_init_from_a_model_directory_logs_differing_settings(tmp_path, caplog):
    train(ToyTask(_cfg(steps=2)), tmp_path / "base")
    model_dir = ckpt.latest_checkpoint(tmp_path / "base")  # holds config.json (task config) + model.safetensors
    cfg = _cfg(steps=2, init_from=str(model_dir))
    cfg.model.dropout = 0.3  # same shapes, another setting: allowed, and said
    with caplog.at_level("WARNING"):
        Trainer(ToyTask(cfg), tmp_path / "tuned")
    assert "differ from the run's in dropout" in caplog.text


def test_init_from_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(ckpt.ModelLoadError, match=r"exported model directory or a \.safetensors file"):
        Trainer(ToyTask(_cfg(steps=2, init_from=str(tmp_path / "missing"))), tmp_path / "a")
    train(ToyTask(ToyRunConfig(train=TrainConfig(steps=1, batch_size=4, progress=False, tensorboard=False),
                               model=ToyModelConfig(width=8))), tmp_path / "narrow")  # fmt: skip
    narrow = ckpt.latest_checkpoint(tmp_path / "narrow") / "model.safetensors"
    with pytest.raises(ckpt.ModelLoadError, match=r"wrong shape: inp\.weight"):
        Trainer(ToyTask(_cfg(steps=2, init_from=str(narrow))), tmp_path / "b")
