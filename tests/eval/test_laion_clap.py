"""LAION-CLAP adapter: the torch front end against transformers' ClapFeatureExtractor, embeddings against ClapModel's
own get_audio_features / get_text_features, and the original-checkpoint key map, all with tiny random models."""

import pickle
import types

import numpy as np
import pytest
import torch

from wavefoundry.eval.embedders import TextAudioModel, file_sha256
from wavefoundry.eval.laion_clap import (
    ClapFrontend,
    ClapFrontendConfig,
    LaionClap,
    convert_laion_clap_checkpoint,
    laion_clap_config,
    load_laion_clap,
    load_laion_clap_state_dict,
    map_laion_clap_state_dict,
    quantize_int16,
)

transformers = pytest.importorskip("transformers")
SR, N_MAX = 48000, 480000
WORDS = ["a", "dog", "barks", "loud", "soft", "rain", "on", "the", "roof", "piano", "chord", "drum", "beat", "bpm"]


def make_tokenizer(directory):
    """A RoBERTa-like WordLevel tokenizer (<s> 0, <pad> 1, </s> 2), saved offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.save_pretrained(directory)
    return fast


def tiny_config(fusion, width=16):
    text = dict(vocab_size=len(WORDS) + 4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    text.update(intermediate_size=64, max_position_embeddings=80, layer_norm_eps=1e-5)
    audio = dict(patch_embeds_hidden_size=width, depths=[2, 2], num_attention_heads=[2, 4], hidden_size=2 * width)
    audio.update(enable_fusion=fusion, fusion_type="aff_2d" if fusion else None)
    return transformers.ClapConfig(text_config=text, audio_config=audio, projection_dim=16)


def randomise_norms(model, seed):
    # Fresh BatchNorms are identities (mean 0, var 1): give them real statistics so the test would see them.
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 10)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 20 + 1)


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


def make_t5_like_tokenizer(directory):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1, "dog": 2}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>").save_pretrained(
        directory
    )
    return directory


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


# --- original checkpoints ---------------------------------------------------------------------------------------


def relative_position_index(ws):
    # Swin's pairwise (dh, dw) offsets in a ws x ws window, flattened (htsat.py WindowAttention).
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)  # (2, ws*ws)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)  # (ws*ws, ws*ws, 2)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


def original_state_dict(cfg, seed=0):
    """Random tensors under laion_clap's own names (model.py CLAP, htsat.py, RobertaModel) for ``cfg``."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def add(name, *shape):
        sd[name] = torch.randn(*shape, generator=g)

    def bn(name, n):
        add(f"{name}.weight", n), add(f"{name}.bias", n), add(f"{name}.running_mean", n)
        sd[f"{name}.running_var"] = torch.rand(n, generator=g) + 0.5
        sd[f"{name}.num_batches_tracked"] = torch.tensor(100)

    a, t, P = cfg.audio_config, cfg.text_config, cfg.projection_dim
    E, ab = a.patch_embeds_hidden_size, "audio_branch"
    add(f"{ab}.spectrogram_extractor.stft.conv_real.weight", 513, 1, 1024)
    add(f"{ab}.spectrogram_extractor.stft.conv_imag.weight", 513, 1, 1024)
    add(f"{ab}.logmel_extractor.melW", 513, 64)
    bn(f"{ab}.bn0", 64)
    add(f"{ab}.patch_embed.proj.weight", E, 1, 4, 4), add(f"{ab}.patch_embed.proj.bias", E)
    add(f"{ab}.patch_embed.norm.weight", E), add(f"{ab}.patch_embed.norm.bias", E)
    if a.enable_fusion:
        add(f"{ab}.patch_embed.mel_conv2d.weight", E, 1, 4, 12), add(f"{ab}.patch_embed.mel_conv2d.bias", E)
        for att, (c1, b1, c2, b2) in {"local_att": (0, 1, 3, 4), "global_att": (1, 2, 4, 5)}.items():
            p = f"{ab}.patch_embed.fusion_model.{att}"
            add(f"{p}.{c1}.weight", E // 4, E, 1, 1), add(f"{p}.{c1}.bias", E // 4), bn(f"{p}.{b1}", E // 4)
            add(f"{p}.{c2}.weight", E, E // 4, 1, 1), add(f"{p}.{c2}.bias", E), bn(f"{p}.{b2}", E)
    for i, depth in enumerate(a.depths):
        d, res = E * 2**i, 64 // 2**i
        ws = min(a.window_size, res)
        for j in range(depth):
            p = f"{ab}.layers.{i}.blocks.{j}"
            add(f"{p}.norm1.weight", d), add(f"{p}.norm1.bias", d)
            add(f"{p}.attn.relative_position_bias_table", (2 * ws - 1) ** 2, a.num_attention_heads[i])
            sd[f"{p}.attn.relative_position_index"] = relative_position_index(ws)
            add(f"{p}.attn.qkv.weight", 3 * d, d), add(f"{p}.attn.qkv.bias", 3 * d)
            add(f"{p}.attn.proj.weight", d, d), add(f"{p}.attn.proj.bias", d)
            add(f"{p}.norm2.weight", d), add(f"{p}.norm2.bias", d)
            add(f"{p}.mlp.fc1.weight", 4 * d, d), add(f"{p}.mlp.fc1.bias", 4 * d)
            add(f"{p}.mlp.fc2.weight", d, 4 * d), add(f"{p}.mlp.fc2.bias", d)
            if j % 2 and res > ws:
                add(f"{p}.attn_mask", (res // ws) ** 2, ws * ws, ws * ws)
        if i < len(a.depths) - 1:
            add(f"{ab}.layers.{i}.downsample.reduction.weight", 2 * d, 4 * d)
            add(f"{ab}.layers.{i}.downsample.norm.weight", 4 * d), add(f"{ab}.layers.{i}.downsample.norm.bias", 4 * d)
    add(f"{ab}.norm.weight", a.hidden_size), add(f"{ab}.norm.bias", a.hidden_size)
    add(f"{ab}.tscam_conv.weight", 527, a.hidden_size, 2, 3), add(f"{ab}.tscam_conv.bias", 527)
    add(f"{ab}.head.weight", 527, 527), add(f"{ab}.head.bias", 527)
    H, tb = t.hidden_size, "text_branch"
    add(f"{tb}.embeddings.word_embeddings.weight", t.vocab_size, H)
    add(f"{tb}.embeddings.position_embeddings.weight", t.max_position_embeddings, H)
    add(f"{tb}.embeddings.token_type_embeddings.weight", 1, H)
    add(f"{tb}.embeddings.LayerNorm.weight", H), add(f"{tb}.embeddings.LayerNorm.bias", H)
    sd[f"{tb}.embeddings.position_ids"] = torch.arange(t.max_position_embeddings)[None]
    for n in range(t.num_hidden_layers):
        p = f"{tb}.encoder.layer.{n}"
        for name, shape in [("attention.self.query", (H, H)), ("attention.self.key", (H, H))]:
            add(f"{p}.{name}.weight", *shape), add(f"{p}.{name}.bias", shape[0])
        for name, shape in [("attention.self.value", (H, H)), ("attention.output.dense", (H, H))]:
            add(f"{p}.{name}.weight", *shape), add(f"{p}.{name}.bias", shape[0])
        for name, shape in [
            ("intermediate.dense", (t.intermediate_size, H)),
            ("output.dense", (H, t.intermediate_size)),
        ]:
            add(f"{p}.{name}.weight", *shape), add(f"{p}.{name}.bias", shape[0])
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            add(f"{p}.{name}.weight", H), add(f"{p}.{name}.bias", H)
    add(f"{tb}.pooler.dense.weight", H, H), add(f"{tb}.pooler.dense.bias", H)
    for branch, width in (("text", H), ("audio", a.hidden_size)):
        add(f"{branch}_projection.0.weight", P, width), add(f"{branch}_projection.0.bias", P)
        add(f"{branch}_projection.2.weight", P, P), add(f"{branch}_projection.2.bias", P)
        for k in (0, 3):  # MLPLayers: Linear, ReLU, Dropout, Linear
            add(f"{branch}_transform.sequential.{k}.weight", P, P), add(f"{branch}_transform.sequential.{k}.bias", P)
    sd["logit_scale_a"], sd["logit_scale_t"] = torch.tensor(2.5), torch.tensor(3.5)
    return sd


class LegacyNumpyPickler(pickle._Pickler):
    """Writes numpy scalars under numpy 1.x's module path, as the 2022-23 LAION checkpoints were written."""

    def save_global(self, obj, name=None):
        if obj is np._core.multiarray.scalar:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\nscalar\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def save_training_checkpoint(path, state_dict):
    ckpt = {
        "epoch": np.int64(15),
        "name": "laion-clap",
        "state_dict": {f"module.{k}": v for k, v in state_dict.items()},
    }
    legacy = types.ModuleType("legacy_pickle")
    legacy.Pickler = LegacyNumpyPickler
    torch.save(ckpt, path, pickle_module=legacy, pickle_protocol=2)
    assert b"numpy.core.multiarray" in path.read_bytes()
    return path


@pytest.mark.parametrize("fusion", [False, True])
def test_convert_original_checkpoint(tmp_path, tiny_dirs, fusion):
    cfg = tiny_config(fusion)
    orig = original_state_dict(cfg)
    pt = save_training_checkpoint(tmp_path / "ckpt.pt", orig)
    out = convert_laion_clap_checkpoint(pt, tmp_path / "hf", config=cfg, tokenizer=tiny_dirs[fusion])
    clap = load_laion_clap(out)
    hf = clap.model.state_dict()
    a = "audio_model.audio_encoder"
    q, k, v = orig["audio_branch.layers.1.blocks.1.attn.qkv.weight"].chunk(3)
    for name, ref in [("query", q), ("key", k), ("value", v)]:
        torch.testing.assert_close(hf[f"{a}.layers.1.blocks.1.attention.self.{name}.weight"], ref, rtol=0, atol=0)
    expected = {
        f"{a}.layers.0.blocks.1.attention.output.dense.bias": "audio_branch.layers.0.blocks.1.attn.proj.bias",
        f"{a}.layers.0.blocks.0.layernorm_after.weight": "audio_branch.layers.0.blocks.0.norm2.weight",
        f"{a}.layers.1.blocks.0.intermediate.dense.weight": "audio_branch.layers.1.blocks.0.mlp.fc1.weight",
        f"{a}.layers.0.downsample.reduction.weight": "audio_branch.layers.0.downsample.reduction.weight",
        f"{a}.batch_norm.running_var": "audio_branch.bn0.running_var",
        f"{a}.norm.bias": "audio_branch.norm.bias",
        "audio_projection.linear2.weight": "audio_projection.2.weight",
        "text_projection.linear1.bias": "text_projection.0.bias",
        "text_model.encoder.layer.1.attention.output.LayerNorm.weight": (
            "text_branch.encoder.layer.1.attention.output.LayerNorm.weight"
        ),
        "text_model.pooler.dense.weight": "text_branch.pooler.dense.weight",
        "logit_scale_t": "logit_scale_t",
    }
    if fusion:
        expected[f"{a}.patch_embed.fusion_model.global_att.5.running_mean"] = (
            "audio_branch.patch_embed.fusion_model.global_att.5.running_mean"
        )
        expected[f"{a}.patch_embed.mel_conv2d.weight"] = "audio_branch.patch_embed.mel_conv2d.weight"
    for new, old in expected.items():
        torch.testing.assert_close(hf[new], orig[old], rtol=0, atol=0)
    fresh = transformers.ClapModel(cfg).state_dict()
    index_keys = [key for key in fresh if key.endswith("relative_position_index")]
    assert len(index_keys) == sum(cfg.audio_config.depths)
    for key in index_keys:  # the original Swin index (from the checkpoint) equals transformers' own
        torch.testing.assert_close(hf[key], fresh[key], rtol=0, atol=0)
    assert clap.info.name == f"laion-clap-{'fusion' if fusion else 'rand_trunc'}-int16"
    emb = clap.embed_audio(noise(1, N_MAX))
    assert emb.shape == (1, 16) and np.isfinite(emb).all()


def test_convert_rejects_bad_checkpoints(tmp_path):
    cfg = tiny_config(False)
    orig = original_state_dict(cfg)
    with pytest.raises(ValueError, match=r"unexpected LAION-CLAP keys.*audio_branch\.mel_conv1d"):
        map_laion_clap_state_dict({**orig, "audio_branch.mel_conv1d.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"1 unexpected.*blocks\.0\.attn\.q_bias"):
        map_laion_clap_state_dict({**orig, "audio_branch.layers.0.blocks.0.attn.q_bias": torch.zeros(1)})
    sd = dict(orig)
    del sd["text_branch.pooler.dense.bias"]
    torch.save(sd, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"missing \['text_model.pooler.dense.bias'\]"):
        convert_laion_clap_checkpoint(tmp_path / "missing.pt", tmp_path / "out", config=cfg)
    torch.save(orig, tmp_path / "ok.pt")
    with pytest.raises(ValueError, match="shapes do not fit the config"):
        convert_laion_clap_checkpoint(tmp_path / "ok.pt", tmp_path / "out", config=tiny_config(False, width=32))
    with pytest.raises(ValueError, match="unknown LAION-CLAP preset"):
        laion_clap_config("HTSAT-huge")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_laion_clap_state_dict(tmp_path / "none.pt")


class Opaque:
    pass


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_untrusted_pickle_is_refused(tmp_path):
    torch.save({"state_dict": {"logit_scale_a": torch.tensor(1.0)}, "args": Opaque()}, tmp_path / "evil.pt")
    with pytest.raises(
        ValueError, match=r"weights_only=True\): .*Opaque was not an allowed global.*Extract its state dict once"
    ):
        load_laion_clap_state_dict(tmp_path / "evil.pt")
    torch.save({"state_dict": {"a": torch.zeros(1)}}, tmp_path / "p4.pt", pickle_protocol=4)
    with pytest.raises(ValueError, match="pickle protocol 4"):
        load_laion_clap_state_dict(tmp_path / "p4.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="no state dict of tensors"):
        load_laion_clap_state_dict(tmp_path / "list.pt")


def test_safetensors_state_dict_and_presets(tmp_path):
    from safetensors.torch import save_file

    orig = original_state_dict(tiny_config(False))
    save_file({k: v.contiguous() for k, v in orig.items()}, tmp_path / "sd.safetensors")
    loaded = load_laion_clap_state_dict(tmp_path / "sd.safetensors")
    assert set(loaded) == set(orig) and torch.equal(loaded["logit_scale_a"], orig["logit_scale_a"])
    base = laion_clap_config("HTSAT-base")
    assert (base.audio_config.patch_embeds_hidden_size, base.audio_config.hidden_size) == (128, 1024)
    assert list(base.audio_config.depths) == [2, 2, 12, 2] and not base.audio_config.enable_fusion
    fused = laion_clap_config("HTSAT-tiny-fusion")
    assert fused.audio_config.enable_fusion and fused.audio_config.hidden_size == 768
    assert (fused.text_config.vocab_size, fused.text_config.layer_norm_eps, fused.projection_dim) == (50265, 1e-5, 512)
