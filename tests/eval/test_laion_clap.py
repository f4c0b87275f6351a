"""LAION-CLAP adapter: the torch front end against transformers' ClapFeatureExtractor, embeddings against ClapModel's
own get_audio_features / get_text_features, all with tiny random models (the checkpoint converter is tested in
tests/formats/test_formats_laion_clap.py)."""

import json

import numpy as np
import pytest
import torch

from wavefoundry.eval.embedders import TextAudioModel, file_sha256
from wavefoundry.eval.laion_clap import (
    ClapFrontend,
    ClapFrontendConfig,
    LaionClap,
    load_laion_clap,
    quantize_int16,
    truncation_of,
)

transformers = pytest.importorskip("transformers")
from tests.laion_clap_fixtures import (  # noqa: E402  (needs transformers)
    WORDS,
    make_t5_like_tokenizer,
    make_tokenizer,
    randomise_norms,
    tiny_config,
)

SR, N_MAX = 48000, 480000


def save_tiny(directory, fusion):
    torch.manual_seed(0)
    model = transformers.ClapModel(tiny_config(fusion)).eval()
    randomise_norms(model, 1)
    model.save_pretrained(directory)
    truncation = "fusion" if fusion else "rand_trunc"
    transformers.ClapFeatureExtractor(frequency_min=50, frequency_max=14000, truncation=truncation).save_pretrained(
        directory
    )
    make_tokenizer(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("clap")
    return {fusion: save_tiny(root / ("fused" if fusion else "unfused"), fusion) for fusion in (False, True)}


@pytest.fixture(scope="module")
def clap(tiny_dirs):
    return load_laion_clap(tiny_dirs[False], batch_size=2)


def noise(n, length, seed=0):
    rs = np.random.RandomState(seed)
    x = (rs.randn(n, 1, length) * 0.2).astype(np.float32)
    x[-1, :, : length // 4] = 0.0  # a silent stretch
    return x


def hf_features(fe, audio, seed=0):
    np.random.seed(seed)  # ClapFeatureExtractor draws its crops from np.random
    return fe(list(audio), sampling_rate=SR, return_tensors="pt")


def hf_audio(model, inputs, *, longer=None):
    is_longer = inputs["is_longer"] if longer is None else torch.full((len(inputs["is_longer"]), 1), longer)
    with torch.no_grad():
        out = model.get_audio_features(input_features=inputs["input_features"], is_longer=is_longer)
    return getattr(out, "pooler_output", out).double().numpy()


# --- front end ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("truncation", ["rand_trunc", "fusion"])
def test_filterbank_matches_feature_extractor(truncation):
    fe = transformers.ClapFeatureExtractor(frequency_min=50, frequency_max=14000)
    ref = fe.mel_filters if truncation == "fusion" else fe.mel_filters_slaney
    got = ClapFrontend(ClapFrontendConfig(truncation=truncation)).fb.numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("truncation", "padding", "length"),
    [
        ("rand_trunc", "repeatpad", N_MAX),  # the metric's 10 s window
        ("rand_trunc", "repeatpad", 123457),
        ("rand_trunc", "repeat", 200001),
        ("rand_trunc", "pad", 99999),
        ("rand_trunc", "repeatpad", 700001),  # random crop
        ("fusion", "repeatpad", N_MAX),
        ("fusion", "repeat", 150000),
        ("fusion", "repeatpad", 900001),  # global view + 3 random crops
        ("fusion", "repeatpad", N_MAX + 100),  # longer by less than a hop: one view
    ],
)
def test_frontend_matches_feature_extractor(truncation, padding, length):
    fe = transformers.ClapFeatureExtractor(
        frequency_min=50, frequency_max=14000, truncation=truncation, padding=padding
    )
    x = noise(2 if length > N_MAX else 1, length)[:, 0]  # two long clips: crops are drawn in order
    np.random.seed(3)
    ref = fe(list(x), sampling_rate=SR, return_tensors="np")
    feats, longer = ClapFrontend(ClapFrontendConfig(truncation=truncation, padding=padding))(
        x, np.random.RandomState(3)
    )
    assert feats.dtype == torch.float32 and tuple(feats.shape) == ref["input_features"].shape
    assert tuple(feats.shape) == (len(x), 4 if truncation == "fusion" else 1, 1001, 64)
    np.testing.assert_allclose(feats.numpy(), ref["input_features"], rtol=0, atol=1e-4)  # dB
    if length > N_MAX + 480 or truncation == "rand_trunc":  # HF marks a random short clip "longer" under fusion
        np.testing.assert_array_equal(longer.numpy(), ref["is_longer"].ravel())
    else:
        assert not longer.any()  # laion_clap at inference: no clip is fused unless it is longer than 10 s


def test_frontend_closed_forms():
    front = ClapFrontend(ClapFrontendConfig())
    silent, _ = front(np.zeros((1, N_MAX)))
    assert torch.all(silent == -100.0)  # 10 log10 of the 1e-10 floor
    x = noise(1, 100000)[:, 0]
    padded = front.pad(x)
    assert padded.shape == (1, N_MAX)
    np.testing.assert_array_equal(padded[0, :400000], np.tile(x[0], 4))  # repeatpad: 4 whole copies, then zeros
    assert not padded[0, 400000:].any()


def test_frontend_config_rejects_bad_values():
    with pytest.raises(ValueError, match="truncation"):
        ClapFrontendConfig(truncation="crop")
    with pytest.raises(ValueError, match="padding"):
        ClapFrontendConfig(padding="zeros")
    with pytest.raises(ValueError, match="f_max"):
        ClapFrontendConfig(f_max=30000.0)
    with pytest.raises(ValueError, match=r"\(N, T\)"):
        ClapFrontend(ClapFrontendConfig())(np.zeros(10))


def test_feature_extractor_kwargs_round_trip(tmp_path):
    c = ClapFrontendConfig(f_min=30.0, f_max=12000.0, hop_length=320, padding="pad", top_db=80.0, truncation="fusion")
    fe = transformers.ClapFeatureExtractor(**c.feature_extractor_kwargs())
    assert (fe.frequency_min, fe.hop_length, fe.padding, fe.top_db, fe.truncation) == (30.0, 320, "pad", 80.0, "fusion")
    assert ClapFrontendConfig.from_feature_extractor(fe, truncation="fusion") == c
    fe.save_pretrained(tmp_path)  # through preprocessor_config.json: JSON numbers come back as the field types
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    back = ClapFrontendConfig.from_feature_extractor(saved, truncation="fusion")
    assert back == c and isinstance(back.f_min, float) and isinstance(back.n_mels, int)
    assert ClapFrontendConfig.from_feature_extractor({}, truncation="rand_trunc") == ClapFrontendConfig()
    assert truncation_of(tiny_config(True)) == "fusion" and truncation_of(tiny_config(False)) == "rand_trunc"


def test_quantize_int16_round_trip():
    x = np.array([0.5, -0.25, 1.7, -3.0, 1e-6, 0.99999], dtype=np.float32)
    ref = (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16) / 32767.0  # laion_clap's float32_to_int16 and back
    np.testing.assert_array_equal(quantize_int16(x), ref.astype(np.float32))
    assert quantize_int16(x).dtype == np.float32 and quantize_int16(x)[2] == 1.0 and quantize_int16(x)[4] == 0.0


# --- adapter ----------------------------------------------------------------------------------------------------


def test_adapter_is_a_text_audio_model(clap, tiny_dirs):
    assert isinstance(clap, TextAudioModel)
    info = clap.info
    assert (info.sample_rate, info.window_s, info.channel_mode, clap.dim) == (48000, 10.0, "mono", 16)
    assert info.name == "laion-clap-rand_trunc-int16"
    assert info.weights_sha256 == file_sha256(tiny_dirs[False] / "model.safetensors")


@pytest.mark.parametrize("fusion", [False, True])
def test_audio_embeddings_match_clap_model(tiny_dirs, fusion):
    clap = load_laion_clap(tiny_dirs[fusion], batch_size=2)
    model = transformers.ClapModel.from_pretrained(tiny_dirs[fusion]).eval()
    fe = transformers.ClapFeatureExtractor.from_pretrained(tiny_dirs[fusion])
    x = noise(2, N_MAX, seed=1)
    got = clap.embed_audio(x)
    ref = hf_audio(model, hf_features(fe, quantize_int16(x[:, 0])), longer=False)  # laion_clap: 10 s never fused
    assert got.shape == (2, 16) and got.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert np.abs(got[0] - got[1]).max() > 1e-3  # different audio, different embeddings


def test_fused_long_windows_match_clap_model(tiny_dirs):
    # Windows longer than 10 s go through the fusion branch (global view + 3 crops, AFF block).
    clap = load_laion_clap(tiny_dirs[True], quantize=False, seed=7)
    model = transformers.ClapModel.from_pretrained(tiny_dirs[True]).eval()
    fe = transformers.ClapFeatureExtractor.from_pretrained(tiny_dirs[True])
    x = noise(1, 700000, seed=2)
    got = clap.embed_audio(x)
    inputs = hf_features(fe, x[:, 0], seed=7)
    assert inputs["is_longer"].all()
    np.testing.assert_allclose(got, hf_audio(model, inputs), atol=1e-5)
    assert np.abs(got - hf_audio(model, inputs, longer=False)).max() > 1e-4  # the fusion branch changed it


def test_quantize_flag_and_silence(clap):
    raw = LaionClap(clap.model, clap.tokenizer, weights_sha256="0" * 64, quantize=False)
    assert raw.info.name == "laion-clap-rand_trunc" != clap.info.name
    x = noise(1, N_MAX, seed=4) * 8  # clips: the int16 round trip saturates at +-1
    quant, silent = clap.embed_audio(np.concatenate([x, np.zeros_like(x)]))
    loud, clipped = raw.embed_audio(np.concatenate([x, np.clip(x, -1, 1)]))
    assert np.abs(loud - quant).max() > 1e-4
    np.testing.assert_allclose(quant, clipped, atol=1e-4)  # int16 steps barely move it; the clipping does
    assert np.isfinite(silent).all() and abs(np.linalg.norm(silent) - 1) < 1e-12


def test_file_window_like_stable_audio_metrics(clap):
    librosa = pytest.importorskip("librosa")
    rs = np.random.RandomState(5)
    stereo = (rs.randn(2, 44100 * 3) * 0.1).astype(np.float32)  # 3 s at 44.1 kHz
    win = clap.file_window(stereo, 44100)
    assert win.shape == (1, 1, 48000 * 3) and win.dtype == np.float32
    np.testing.assert_allclose(np.abs(win).max(), 10 ** (-1 / 20), rtol=1e-6)  # -1 dBFS peak
    ref = librosa.resample(stereo.mean(axis=0), orig_sr=44100, target_sr=48000, res_type="soxr_hq")
    np.testing.assert_allclose(win[0, 0], ref * (10 ** (-1 / 20) / np.abs(ref).max()), atol=1e-5)
    assert not clap.file_window(np.zeros((1, 48000), np.float32), 48000).any()  # silence stays silent
    with pytest.raises(ValueError, match="NaN"):
        clap.file_window(np.full((1, 100), np.nan, np.float32), 48000)


def test_text_embeddings_match_clap_model(clap):
    model = clap.model
    texts = ["a dog barks", "soft rain on the roof", "piano chord", ""]
    got = clap.embed_text(texts)
    tok = clap.tokenizer(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        out = model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
    ref = getattr(out, "pooler_output", out).double().numpy()
    assert got.shape == (4, 16) and got.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # Bounded length: 200 words embed like their first 75 (77 tokens with <s> and </s>), without error.
    words = [WORDS[i % len(WORDS)] for i in range(200)]
    long, head = clap.embed_text([" ".join(words), " ".join(words[:75])])
    np.testing.assert_allclose(long, head, atol=1e-6)
    assert np.abs(clap.embed_text([" ".join(words[:74])])[0] - head).max() > 1e-4


def test_processor_input(clap, tiny_dirs):
    model = clap.model
    fe = transformers.ClapFeatureExtractor(frequency_min=0, frequency_max=12000, truncation="fusion")
    tok = transformers.AutoTokenizer.from_pretrained(tiny_dirs[False])
    proc = transformers.ClapProcessor(feature_extractor=fe, tokenizer=tok)
    clap = LaionClap(model, proc, weights_sha256="0" * 64)
    c = clap.frontend.config
    assert (c.f_min, c.f_max, c.truncation) == (0.0, 12000.0, "rand_trunc")  # truncation follows the model
    assert clap.tokenizer is tok
    with pytest.raises(ValueError, match="enable_fusion"):
        LaionClap(model, tok, weights_sha256="0", frontend=ClapFrontendConfig(truncation="fusion"))


def test_bad_audio_and_text(clap):
    x = np.zeros((3, 1, N_MAX), np.float32)
    x[1, 0, 5] = np.nan
    x[2, 0, 9] = np.inf
    with pytest.raises(ValueError, match=r"windows \[1, 2\].*NaN"):
        clap.embed_audio(x)
    with pytest.raises(ValueError, match=r"mono windows \(N, 1, T\)"):
        clap.embed_audio(np.zeros((2, 2, N_MAX), np.float32))
    with pytest.raises(ValueError, match=r"mono windows"):
        clap.embed_audio(np.zeros((0, 1, N_MAX), np.float32))
    with pytest.raises(TypeError, match="sequence of strings"):
        clap.embed_text("a dog barks")
    with pytest.raises(ValueError, match="no texts"):
        clap.embed_text([])


def test_load_errors(tmp_path, tiny_dirs):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_laion_clap(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_laion_clap(tmp_path)
    (tmp_path / "config.json").write_text((tiny_dirs[False] / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        load_laion_clap(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "t5"}')
    with pytest.raises(ValueError, match="not a CLAP model"):
        load_laion_clap(tmp_path)
    with pytest.raises(ValueError, match="max_text_tokens"):
        load_laion_clap(tiny_dirs[False], max_text_tokens=100)  # 80 positions
    weights_only = tmp_path / "weights_only"
    weights_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        (weights_only / name).write_bytes((tiny_dirs[False] / name).read_bytes())
    with pytest.raises(FileNotFoundError, match=r"no tokenizer.*tokenizer_path="):
        load_laion_clap(weights_only)
    with pytest.raises(ValueError, match="pad id"):  # a tokenizer of another vocabulary
        load_laion_clap(weights_only, tokenizer_path=make_t5_like_tokenizer(tmp_path / "t5tok"))


def test_pytorch_bin_directory(clap, tiny_dirs, tmp_path):
    # A directory with pytorch_model.bin only goes through transformers' own (weights_only) .bin loader.
    for f in tiny_dirs[False].iterdir():
        if f.name != "model.safetensors":
            (tmp_path / f.name).write_bytes(f.read_bytes())
    torch.save(clap.model.state_dict(), tmp_path / "pytorch_model.bin")
    from_bin = load_laion_clap(tmp_path)
    assert from_bin.info.weights_sha256 == file_sha256(tmp_path / "pytorch_model.bin")
    texts = ["a dog barks", "piano chord"]
    np.testing.assert_allclose(from_bin.embed_text(texts), clap.embed_text(texts), atol=1e-12)
