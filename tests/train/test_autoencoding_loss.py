"""The autoencoder task's generator loss: the optional waveform L1 term adds exactly weight * mean |y - x|."""

import dataclasses

import pytest
import torch

from wavefoundry.codecs.losses import LossWeights
from wavefoundry.presets import get_preset
from wavefoundry.train.tasks import build_task


def _loss(waveform: float):
    cfg = get_preset("codec-tiny")
    cfg.model.oobleck.channels = 4
    cfg.loss.weights = dataclasses.replace(cfg.loss.weights, waveform=waveform, adversarial_warmup_steps=10)
    task = build_task(cfg)
    torch.manual_seed(0)
    model = task.build_model()
    x = 0.1 * torch.randn(2, 1, 4096, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)  # the VAE's posterior sample
    loss, metrics = task.loss_fn(model, {"audio": x})
    return loss["generator"], metrics


def test_waveform_term_is_weight_times_l1():
    base, metrics = _loss(0.0)
    weighted, _ = _loss(10.0)
    torch.testing.assert_close(weighted - base, 10.0 * metrics["waveform_l1"], rtol=1e-4, atol=1e-6)
    assert metrics["waveform_l1"] > 0


def test_negative_waveform_weight_is_rejected():
    with pytest.raises(ValueError, match="waveform"):
        LossWeights(waveform=-1.0)
