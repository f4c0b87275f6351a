"""Mimi adapter: a tiny random-weight MimiModel saved to tmp_path, compared with calling MimiModel directly."""

import json

import numpy as np
import pytest
import torch

from wavefoundry.audio.resample import resample
from wavefoundry.codecs.mimi import MimiTokenizer
from wavefoundry.codecs.tokenizer import AudioTokenizer

transformers = pytest.importorskip("transformers")

K_TOTAL, CODEBOOK = 4, 64


@pytest.fixture(scope="module")
def mimi_dir(tmp_path_factory):
    cfg = transformers.MimiConfig(
        hidden_size=32, num_filters=4, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, head_dim=16,
        intermediate_size=64, codebook_size=CODEBOOK, codebook_dim=16, vector_quantization_hidden_dimension=16,
        num_quantizers=K_TOTAL, upsample_groups=32, sliding_window=16, max_position_embeddings=256,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.MimiModel(cfg).eval()
    with torch.no_grad():  # random codebooks (the init is all zeros, which gives only code 0)
        for name, buf in model.named_buffers():
            if name.endswith("codebook.embed_sum"):
                buf.copy_(0.05 * torch.randn_like(buf))
    path = tmp_path_factory.mktemp("mimi")
    model.save_pretrained(path)
    return path


def _audio(batch=2, samples=24000, seed=0):
    return 0.1 * torch.randn(batch, 1, samples, generator=torch.Generator().manual_seed(seed))


def test_codes_and_audio_match_mimi_called_directly(mimi_dir):
    tok = MimiTokenizer(mimi_dir, num_quantizers=3)
    assert isinstance(tok, AudioTokenizer)
    assert (tok.sample_rate, tok.frame_rate, tok.hop_length) == (24000, 12.5, 1920)
    assert (tok.n_codebooks, tok.codebook_size) == (3, CODEBOOK)
    x = _audio()
    codes = tok.encode(x)
    assert codes.shape == (2, 3, 13) and codes.dtype == torch.int64  # ceil(24000 / 1920) frames
    assert int(codes.min()) >= 0 and int(codes.max()) < CODEBOOK
    assert len(codes.unique()) > 1
    ref = transformers.MimiModel.from_pretrained(mimi_dir, local_files_only=True).eval()
    with torch.no_grad():
        want = ref.encode(x, num_quantizers=3).audio_codes
        want_audio = ref.decode(want).audio_values
    assert torch.equal(codes, want)
    audio = tok.decode(codes)
    assert audio.shape == (2, 1, 13 * 1920)
    torch.testing.assert_close(audio, want_audio)


def test_resampling_in_and_out(mimi_dir):
    tok = MimiTokenizer(mimi_dir, num_quantizers=2)
    x16 = _audio(batch=1, samples=16000, seed=1)
    x24 = torch.from_numpy(resample(x16[0].numpy(), 16000, 24000))[None]
    assert torch.equal(tok.encode(x16, sample_rate=16000), tok.encode(x24))
    codes = tok.encode(x24)
    out = tok.decode(codes, sample_rate=16000)
    assert out.shape == (1, 1, round(codes.shape[-1] * 1920 * 16000 / 24000))
    np.testing.assert_allclose(out[0].numpy(), resample(tok.decode(codes)[0].numpy(), 24000, 16000), atol=1e-6)


def test_missing_and_wrong_directories(tmp_path, mimi_dir):
    with pytest.raises(FileNotFoundError, match="Mimi directory not found"):
        MimiTokenizer(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        MimiTokenizer(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(FileNotFoundError, match="safetensors"):
        MimiTokenizer(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="'t5' model, not 'mimi'"):
        MimiTokenizer(tmp_path)
    with pytest.raises(ValueError, match=r"valid: 1\.\.4"):
        MimiTokenizer(mimi_dir, num_quantizers=5)


def test_bad_audio_rates_and_codes(mimi_dir):
    tok = MimiTokenizer(mimi_dir, num_quantizers=2)
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        tok.encode(torch.zeros(1, 2, 100))
    with pytest.raises(ValueError, match="finite"):
        tok.encode(torch.full((1, 1, 100), float("nan")))
    for rate in (0, 16000.5):
        with pytest.raises(ValueError, match="orig_sr must be a positive integer"):
            tok.encode(_audio(1, 1000), sample_rate=rate)
    with pytest.raises(ValueError, match="out of range"):
        tok.decode(torch.full((1, 2, 3), CODEBOOK))
    with pytest.raises(ValueError, match="K=3"):
        tok.decode(torch.zeros(1, 3, 3, dtype=torch.long))
