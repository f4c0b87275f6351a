"""Tasks with several optimizers (generator + discriminator): each loss reaches only its own parameters."""

from dataclasses import dataclass, field

import torch
from torch import nn

from tests.train.toy import ToyDataset
from wavefoundry.train import checkpoint as ckpt
from wavefoundry.train.engine import TrainConfig, Trainer, train
from wavefoundry.train.optim import OptimConfig
from wavefoundry.train.tasks import RunConfig, Task, register


@dataclass(kw_only=True)
class PairRunConfig(RunConfig):
    task: str = "pair"
    disc_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-3))
    warmup: int = 2


class Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gen = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
        self.disc = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))


@register
class PairTask(Task):
    name, Config = "pair", PairRunConfig

    def build_model(self):
        return Pair()

    def datasets(self):
        return ToyDataset(32, 0.0, 0), None

    def optimizer_groups(self, model):
        return {"gen": (model.gen, self.config.optim), "disc": (model.disc, self.config.disc_optim)}

    def loss_fn(self, model, batch):
        fake = model.gen(batch["x"])
        g = nn.functional.mse_loss(fake, batch["y"])
        if self.step < self.config.warmup:
            return {"gen": g}, {}
        g = g + 0.1 * model.disc(fake).mean()
        d = (model.disc(fake.detach()) - 1).pow(2).mean() + model.disc(batch["y"]).pow(2).mean()
        return {"gen": g, "disc": d}, {}


def _cfg(steps=6):
    return PairRunConfig(
        train=TrainConfig(steps=steps, batch_size=8, progress=False, tensorboard=False, log_every=1),
        optim=OptimConfig(lr=1e-2),
    )


def test_each_loss_reaches_only_its_parameters(tmp_path):
    trainer = Trainer(PairTask(_cfg()), tmp_path / "run")
    model, task = trainer.model, trainer.task
    task.step = 5
    batch = task.collate([trainer.task.datasets()[0][(i, i)] for i in range(8)])
    losses, _ = task.loss_fn(model, batch)
    want_g = torch.autograd.grad(losses["gen"], list(model.gen.parameters()), retain_graph=True)
    want_d = torch.autograd.grad(losses["disc"], list(model.disc.parameters()), retain_graph=True)
    trainer._backward(losses, accum=1)
    for p, w in zip(model.gen.parameters(), want_g):
        torch.testing.assert_close(p.grad, w)
    for p, w in zip(model.disc.parameters(), want_d):
        torch.testing.assert_close(p.grad, w)


def test_warmup_leaves_discriminator_untouched_and_resume_is_exact(tmp_path):
    cfg = _cfg(steps=6)
    trainer = Trainer(PairTask(cfg), tmp_path / "warm")
    disc0 = {k: v.clone() for k, v in trainer.model.disc.state_dict().items()}
    trainer.fit(until=2)
    assert all(torch.equal(disc0[k], v) for k, v in trainer.model.disc.state_dict().items())
    train(PairTask(cfg), tmp_path / "warm", resume=True)
    train(PairTask(cfg), tmp_path / "straight")
    a = ckpt.load_weights(ckpt.latest_checkpoint(tmp_path / "warm") / "model.safetensors")
    b = ckpt.load_weights(ckpt.latest_checkpoint(tmp_path / "straight") / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["disc.0.weight"], disc0["0.weight"])
    state = ckpt.load_train_state(ckpt.latest_checkpoint(tmp_path / "straight"))
    assert set(state["optimizers"]) == {"gen", "disc"}
