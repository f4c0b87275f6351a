"""The SynthCaps tagger task end to end on a tiny set, and load_model."""

import pytest
import torch

from wavefoundry.config import apply_overrides
from wavefoundry.data.datasets import ClipConfig, ClipDataset
from wavefoundry.data.manifest import read_manifest
from wavefoundry.data.synth import SynthConfig, generate_synthcaps
from wavefoundry.presets import tagger_tiny
from wavefoundry.train.engine import train
from wavefoundry.train.tagging import SYNTHCAPS_LABELS, synthcaps_label
from wavefoundry.train.tasks import build_task, load_model


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_synthcaps(out, SynthConfig(n_items=24, seconds=1.5, channels=2, seed=5), workers=1, progress=False)
    return out


def test_clip_dataset_crops_are_keyed_and_padded(synth_dir):
    items = read_manifest(synth_dir / "manifest.jsonl")[:4]
    ds = ClipDataset(items, ClipConfig(sample_rate=8000, channels=1, seconds=1.0))
    a, b, c = ds[(0, 11)], ds[(0, 11)], ds[(0, 12)]
    assert a["audio"].shape == (1, 8000) and a["seconds_total"] == pytest.approx(1.5)
    assert torch.equal(a["audio"], b["audio"]) and a["seconds_start"] == b["seconds_start"]
    assert a["seconds_start"] != c["seconds_start"]
    long = ClipDataset(items, ClipConfig(sample_rate=8000, channels=2, seconds=2.0))
    sample = long[(1, 0)]
    assert sample["audio"].shape == (2, 16000)
    assert sample["padding_mask"].sum() == 12000 and sample["audio"][:, 12000:].abs().sum() == 0


def test_labels_cover_synthcaps(synth_dir):
    for item in read_manifest(synth_dir / "manifest.jsonl"):
        assert synthcaps_label(item.attrs) in SYNTHCAPS_LABELS
    assert synthcaps_label({"label": "x"}) == "x"
    with pytest.raises(ValueError, match="no label"):
        synthcaps_label({})


def test_tagger_trains_and_reloads(tmp_path, synth_dir):
    cfg = apply_overrides(
        tagger_tiny(),
        [f"data.manifest={synth_dir / 'manifest.jsonl'}", "data.clip.seconds=1.0", "train.steps=6",
         "train.batch_size=4", "train.progress=false", "train.tensorboard=false", "train.eval_every=3",
         "train.ema_decay=0.9", "model.width=4", "model.depth=2"],
    )  # fmt: skip
    result = train(build_task(cfg), tmp_path / "run")
    assert result.step == 6 and 0.0 <= result.eval_metrics["accuracy"] <= 1.0
    task, model = load_model(tmp_path / "run")
    assert not model.training and task.config == cfg
    audio = torch.randn(3, 1, 16000)
    assert model(audio).shape == (3, len(SYNTHCAPS_LABELS))
    assert model.embed(audio).shape == (3, cfg.model.embed_dim)


def test_missing_manifest_is_a_clear_error(tmp_path):
    cfg = apply_overrides(tagger_tiny(), [f"data.manifest={tmp_path / 'nope.jsonl'}"])
    with pytest.raises(FileNotFoundError, match=r"data\.manifest not found"):
        build_task(cfg).prepare_data()


def test_mismatched_sample_rates_rejected():
    with pytest.raises(ValueError, match=r"must equal data\.clip\.sample_rate"):
        apply_overrides(tagger_tiny(), ["data.clip.sample_rate=22050"])
