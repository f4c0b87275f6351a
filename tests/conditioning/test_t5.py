"""T5 text encoder from a local directory, tested with a tiny random T5 and a tokenizer built offline."""

import logging
import re
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from tests.conditioning.t5_fixtures import make_tiny_t5  # noqa: E402
from wavefoundry.conditioning.t5 import T5TextEncoder  # noqa: E402


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory) -> Path:
    return make_tiny_t5(tmp_path_factory.mktemp("t5"))


def test_matches_transformers_and_zeroes_padding(t5_dir):
    enc = T5TextEncoder(t5_dir, max_length=12)
    prompts = ["a rock drum beat at 9 7 bpm", "pink noise"]
    emb, mask = enc(prompts)
    assert emb.shape == (2, 12, 32) and emb.dtype == torch.float32 and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [9, 3]  # words + </s>
    assert (emb[~mask] == 0).all()
    ref_model = transformers.T5EncoderModel.from_pretrained(t5_dir).eval()
    ref_tok = transformers.AutoTokenizer.from_pretrained(t5_dir)
    batch = ref_tok(prompts, padding="max_length", max_length=12, return_tensors="pt")
    with torch.no_grad():
        ref = ref_model(**batch).last_hidden_state
    assert torch.equal(mask, batch["attention_mask"].bool())
    assert torch.allclose(emb[mask], ref[mask], atol=1e-5)


def test_padding_does_not_change_valid_outputs(t5_dir):
    short, long = T5TextEncoder(t5_dir, max_length=4), T5TextEncoder(t5_dir, max_length=16)
    a, ma = short(["pink noise"])
    b, mb = long(["pink noise"])
    assert torch.allclose(a[ma], b[mb], atol=1e-5)


def test_frozen_and_outside_the_state_dict(t5_dir):
    enc = T5TextEncoder(t5_dir)
    assert enc.max_length == 128 and enc.out_dim == 32
    assert len(enc.state_dict()) == 0 and not list(enc.parameters())
    enc.train()
    assert not enc.t5.training and not any(p.requires_grad for p in enc.t5.parameters())
    enc.to(torch.float64)
    assert next(enc.t5.parameters()).dtype == torch.float64
    emb, _ = enc(["a chord"])
    assert emb.dtype == torch.float32 and not emb.requires_grad


def test_tokenizer_in_its_own_folder(tmp_path):
    d = make_tiny_t5(tmp_path, split_tokenizer=True)
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json"):
        T5TextEncoder(d)
    emb, mask = T5TextEncoder(d, tokenizer_path=d / "tokenizer", max_length=8)(["rain"])
    assert emb.shape == (1, 8, 32) and mask.sum() == 2


def test_truncation_warns(t5_dir, caplog):
    with caplog.at_level(logging.WARNING):
        _, mask = T5TextEncoder(t5_dir, max_length=3)(["a rock drum beat", "rain"])
    assert "more than 3 T5 tokens" in caplog.text and mask[0].all()


def test_errors_name_the_path(tmp_path, t5_dir):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        T5TextEncoder(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty/config\.json"):
        T5TextEncoder(tmp_path / "empty")
    enc = T5TextEncoder(t5_dir, max_chars=20)
    with pytest.raises(ValueError, match="prompt 0 is empty"):
        enc([""])
    with pytest.raises(ValueError, match="at most 20"):
        enc(["a" * 21])
