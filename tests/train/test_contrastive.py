"""The contrastive text-audio task on a tiny generated SynthCaps set: InfoNCE, training, export and reload."""

import math

import numpy as np
import pytest
import torch

from wavefoundry.config import ConfigError, apply_overrides
from wavefoundry.data.manifest import read_manifest
from wavefoundry.data.synth import SynthConfig, generate_synthcaps
from wavefoundry.presets import clap_synthcaps, get_preset, tagger_tiny
from wavefoundry.train.contrastive import (
    ContrastiveTask,
    export_embedder,
    heldout_set,
    load_contrastive,
    load_tagger,
    tokenizer_path,
)
from wavefoundry.train.engine import train
from wavefoundry.train.tasks import build_task, load_model
from wavefoundry.understanding.contrastive import ContrastiveConfig, in_batch_recall_at_1, info_nce

TINY = [
    "model.audio.width=4", "model.audio.depth=2", "model.audio.embed_dim=16", "model.text.dim=32",
    "model.text.depth=1", "model.text.heads=2", "model.text.out_dim=32", "model.contrastive.embed_dim=16",
    "data.clip.seconds=1.0", "train.batch_size=8", "train.progress=false", "train.tensorboard=false",
    "train.log_every=1", "schedule.warmup_steps=2", "optim.lr=3e-3",
]  # fmt: skip


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(n_items=20, seconds=1.0, channels=1, seed=3, valid_fraction=0.2)
    return generate_synthcaps(out, cfg, workers=1, progress=False)


def tiny_config(manifest, cache, *extra):
    return apply_overrides(clap_synthcaps(), [*TINY, f"data.manifest={manifest}", f"data.cache_dir={cache}", *extra])


def test_info_nce_closed_forms():
    B = 4
    assert float(info_nce(torch.zeros(B, B))) == pytest.approx(math.log(B))  # uniform scores: log B both ways
    assert float(info_nce(100.0 * torch.eye(B))) == pytest.approx(0.0, abs=1e-6)
    logits = torch.randn(5, 5)
    ref = 0.5 * (torch.nn.functional.cross_entropy(logits, torch.arange(5))
                 + torch.nn.functional.cross_entropy(logits.T, torch.arange(5)))  # fmt: skip
    torch.testing.assert_close(info_nce(logits), ref)
    with pytest.raises(ValueError, match="square"):
        info_nce(torch.zeros(2, 3))


def test_in_batch_recall_counts_strict_wins():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 3.0, 1.0]])
    a2t, t2a = in_batch_recall_at_1(logits)
    # rows: 0 wins, 1 ties (against), 2 loses; columns: 0 wins, 1 loses to 3, 2 ties with row 1's 1.0
    assert float(a2t) == pytest.approx(1 / 3) and float(t2a) == pytest.approx(1 / 3)


def test_config_validation():
    with pytest.raises(ValueError, match="init_temperature"):
        ContrastiveConfig(init_temperature=0.0)
    with pytest.raises(ValueError, match="max_logit_scale"):
        ContrastiveConfig(init_temperature=0.07, max_logit_scale=5.0)
    with pytest.raises(ConfigError, match="sample_rate"):
        apply_overrides(clap_synthcaps(), ["data.clip.sample_rate=22050"])
    assert get_preset("clap-synthcaps").task == "contrastive"


def test_tokenizer_is_built_from_training_captions(manifest, tmp_path):
    task = ContrastiveTask(tiny_config(manifest, tmp_path))
    task.prepare_data()
    tok = task.tokenizer()
    assert tokenizer_path(task.config.data).is_file() and tok.max_length == task.config.model.text.max_length
    train, valid = task.datasets()
    sample = train[(0, 5)]
    assert sample["audio"].shape == (1, 16000) and isinstance(sample["text"], str)
    batch = task.collate([train[(i, 7)] for i in range(3)])
    assert batch["ids"].shape == batch["mask"].shape == (3, task.config.model.text.max_length)
    assert valid[(0, 1)]["text"] == valid.items[0].prompt  # evaluation pairs a clip with its prompt
    texts = {train[(0, seed)]["text"] for seed in range(30)}
    assert len(texts) > 1 and texts <= set(train.texts[0])  # training draws among the caption variants


def test_vocab_larger_than_the_table_is_a_clear_error(manifest, tmp_path):
    task = ContrastiveTask(tiny_config(manifest, tmp_path, "model.text.vocab_size=16"))
    with pytest.raises(ConfigError, match="vocab_size"):
        task.prepare_data()


def _train_loss(task, model) -> float:
    """InfoNCE of the first 8 training clips with their prompts, in eval mode."""
    train_set, _ = task.datasets()
    train_set.random_text = False
    batch = task.collate([train_set[(i, 0)] for i in range(8)])
    with torch.no_grad():
        return float(task.loss_fn(model.eval(), batch)[0])


def test_trains_exports_and_reloads(manifest, tmp_path):
    cfg = tiny_config(manifest, tmp_path / "cache", "train.steps=40", "train.eval_every=20")
    task = build_task(cfg)
    task.prepare_data()
    torch.manual_seed(cfg.train.seed)
    before = _train_loss(task, task.build_model())
    result = train(task, tmp_path / "run")
    assert result.step == 40 and 0.0 <= result.eval_metrics["recall1_a2t"] <= 1.0
    assert (tmp_path / "run" / "tokenizer.json").is_file()  # the run is self-contained
    _, model = load_model(tmp_path / "run")
    after = _train_loss(task, model)
    assert after < 0.8 * before, (before, after)  # it learns to pair its training clips with their captions

    out = export_embedder(tmp_path / "run", tmp_path / "exported")
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json"}
    exported, tokenizer = load_contrastive(out)
    with pytest.raises(ValueError, match="not a tagger"):
        load_tagger(out)
    audio = torch.randn(2, 1, 16000)
    ids, mask = tokenizer.encode(["a soft piano note", "rain on a window"])
    with torch.no_grad():
        torch.testing.assert_close(exported(audio, ids, mask), model(audio, ids, mask))
        assert torch.allclose(exported.embed_audio(audio).norm(dim=-1), torch.ones(2))
    half, _ = load_contrastive(export_embedder(tmp_path / "run", tmp_path / "half", half=True))
    with torch.no_grad():
        np.testing.assert_allclose(half.embed_audio(audio).numpy(), model.embed_audio(audio).numpy(), atol=2e-2)

    held = heldout_set(manifest, cfg.data.clip)
    n_valid = sum(item.split == "valid" for item in read_manifest(manifest))
    assert held.clips.shape == (n_valid, 1, 16000) and len(held.texts) == len(held.labels) == len(held.ids) == n_valid
    assert held.texts[0] == read_manifest(manifest)[int(held.ids[0].rsplit("-", 1)[1])].prompt


def test_tagger_export_reproduces_the_run(manifest, tmp_path):
    cfg = apply_overrides(
        tagger_tiny(),
        [f"data.manifest={manifest}", "data.clip.seconds=1.0", "train.steps=2", "train.batch_size=4",
         "train.progress=false", "train.tensorboard=false", "model.width=4", "model.depth=2"],
    )  # fmt: skip
    train(build_task(cfg), tmp_path / "run")
    _, model = load_model(tmp_path / "run")
    out = export_embedder(tmp_path / "run", tmp_path / "tagger")
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors"}
    exported = load_tagger(out)
    audio = torch.randn(2, 1, 16000)
    with torch.no_grad():
        torch.testing.assert_close(exported(audio), model(audio))
    with pytest.raises(ValueError, match="not a contrastive"):
        load_contrastive(out)


def test_export_and_heldout_errors(manifest, tmp_path):
    with pytest.raises(Exception, match=r"no model\.safetensors"):
        export_embedder(tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(ValueError, match="no items in split"):
        heldout_set(manifest, clap_synthcaps().data.clip, split="test")
