"""Objectives of the audio+vision -> text model: MLM masking rates, loss values against closed forms, weights."""

import pytest
import torch

from wavefoundry.understanding.encdec import AVTextModel, av_tiny
from wavefoundry.understanding.objectives import (
    MultiTaskConfig,
    caption_loss,
    classification_losses,
    mlm_mask,
    multitask_loss,
)
from wavefoundry.understanding.text_decoder import Specials

V = 50
SP = Specials.after(V)


def _captions(batch=2, length=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (batch, length), generator=g)
    ids[:, 0] = SP.bos
    ids[0, -1] = SP.eos
    ids[1, 4], ids[1, 5:] = SP.eos, SP.pad  # a shorter caption, right-padded
    return ids


def test_mlm_mask_rates_and_specials():
    ids = torch.randint(0, V, (400, 60), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1], ids[:, -5:-1] = SP.bos, SP.eos, SP.pad
    inputs, targets = mlm_mask(ids, SP, V, MultiTaskConfig(), torch.Generator().manual_seed(1))
    chosen = targets != -100
    text = ids < V
    assert not bool(chosen[~text].any())  # specials are never chosen
    assert bool((inputs[:, 0] == SP.enc).all()) and bool((inputs[:, -1] == SP.eos).all())
    assert torch.equal(targets[chosen], ids[chosen])
    rate = chosen.sum() / text.sum()
    assert abs(float(rate) - 0.15) < 0.01
    masked = (inputs[chosen] == SP.mask).float().mean()
    same = (inputs[chosen] == ids[chosen]).float().mean()  # 10% kept + random draws that hit the same id (1/50)
    assert abs(float(masked) - 0.8) < 0.02
    assert abs(float(same) - (0.1 + 0.1 / V)) < 0.02
    assert bool((inputs[chosen] < V).logical_or(inputs[chosen] == SP.mask).all())


def _model(**kw):
    torch.manual_seed(0)
    return AVTextModel(av_tiny(text_vocab=V, **kw))


def _batch():
    g = torch.Generator().manual_seed(3)
    return {
        "audio": torch.randn(2, 6000, generator=g),
        "audio_lengths": torch.tensor([6000, 4000]),
        "images": torch.rand(2, 3, 64, 64, generator=g),
        "caption": _captions(),
        "label": torch.tensor([0, 2]),
        "labels": torch.tensor([[1.0, 0, 1], [0, 0, 1]]),
    }


def test_caption_loss_matches_loop():
    model = _model().eval()
    batch = _batch()
    with torch.no_grad():
        enc = model.encode(audio=batch["audio"], images=batch["images"])
        loss = caption_loss(model, enc, batch["caption"])
        logp = model.caption_logits(batch["caption"], enc).log_softmax(-1)
    terms = [
        -logp[b, t, batch["caption"][b, t + 1]]
        for b in range(2)
        for t in range(6)
        if batch["caption"][b, t + 1] != SP.pad
    ]
    torch.testing.assert_close(loss, torch.stack(terms).mean(), atol=1e-5, rtol=1e-5)


def test_classification_losses_closed_form():
    single, multi = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]]), torch.tensor([[0.0, 1.0, -2.0]])
    out = classification_losses((single, multi), {"label": torch.tensor([0, 2]), "labels": torch.tensor([[1.0, 0, 0]])})
    ce = -(single.log_softmax(-1)[0, 0] + single.log_softmax(-1)[1, 2]) / 2
    sig = torch.sigmoid(multi[0])
    bce = -(torch.log(sig[0]) + torch.log(1 - sig[1]) + torch.log(1 - sig[2])) / 3
    torch.testing.assert_close(out["classify"], ce)
    torch.testing.assert_close(out["multilabel"], bce)
    assert classification_losses((None, None), {"label": torch.tensor([0])}) == {}


def test_multitask_loss_is_the_weighted_sum_and_trains():
    model = _model(num_classes=3, num_labels=3).train()
    cfg = MultiTaskConfig(caption=1.0, contrastive=0.5, mlm=0.25, classify=2.0, multilabel=1.0)
    loss, metrics = multitask_loss(model, _batch(), cfg, torch.Generator().manual_seed(0))
    assert set(metrics) == {"caption", "mlm", "contrastive", "classify", "multilabel"}
    expected = sum(getattr(cfg, k) * v for k, v in metrics.items())
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    for part in (model.audio_encoder, model.video_encoder, model.fusion, model.decoder):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0
    off = MultiTaskConfig(caption=1.0, contrastive=0.0, mlm=0.0, classify=0.0, multilabel=0.0)
    _, metrics = multitask_loss(model, _batch(), off)
    assert set(metrics) == {"caption"}


def test_tiny_model_overfits_one_batch():
    model = _model().train()
    model.cfg.modality_dropout = 0.0
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    cfg = MultiTaskConfig(mlm=0.0, contrastive=0.0)
    batch = _batch()
    losses = []
    for _ in range(15):
        loss, metrics = multitask_loss(model, batch, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(metrics["caption"]))
    assert losses[-1] < 0.5 * losses[0]


def test_bad_config_and_batch():
    with pytest.raises(ValueError, match="mask_prob"):
        MultiTaskConfig(mask_prob=0.0)
    with pytest.raises(ValueError, match="caption"):
        MultiTaskConfig(caption=-1.0)
    model = _model()
    with pytest.raises(ValueError, match="neither modality"):
        multitask_loss(model, {"caption": _captions()}, MultiTaskConfig())
    with pytest.raises(ValueError, match="no loss term"):
        multitask_loss(model, {"audio": torch.randn(1, 4000)}, MultiTaskConfig())
