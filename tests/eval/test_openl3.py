"""OpenL3 in torch: front end against numpy/librosa, Keras 'same' pooling, openl3 framing, Keras .h5 / safetensors
loading with random weights, lr-concat stereo, resampling and bad input."""

import logging
import math
import sys

import librosa
import numpy as np
import pytest
import scipy.signal
import torch

from wavefoundry.audio.io import ChannelError, EmptyAudioError, NonFiniteAudioError
from wavefoundry.audio.resample import resample
from wavefoundry.eval.embedders import FrameEmbedder, file_sha256, prepare
from wavefoundry.eval.openl3 import (
    KERAS_LAYERS,
    OpenL3Embedder,
    convert_openl3_h5,
    frame_audio,
    load_openl3,
    load_openl3_network,
    read_keras_h5,
)
from wavefoundry.understanding.openl3 import OpenL3Config, OpenL3MelFrontend, OpenL3Network, max_pool2d_same

h5py = pytest.importorskip("h5py")
SR = 48000
FILTERS = (64, 128, 256, 512)


# --- Keras-layout weight files built here (random arrays, the shapes of openl3/models.py) ---------------------------


def keras_arrays(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """{layer: {weight: array}} for the 16 weight layers, in Keras shapes (conv kernels HWIO)."""
    rng = np.random.default_rng(seed)
    layers, c_in, convs = {}, 1, []
    for c_out in FILTERS:
        convs += [(c_in, c_out), (c_out, c_out)]
        c_in = c_out

    def bn(c):
        return {
            "gamma": rng.uniform(0.5, 1.5, c),
            "beta": rng.normal(0, 0.1, c),
            "moving_mean": rng.normal(0, 0.1, c) if c > 1 else np.array([-40.0]),
            "moving_variance": rng.uniform(0.5, 1.5, c) if c > 1 else np.array([300.0]),
        }

    conv_iter = iter(convs)
    for name, _, kind in KERAS_LAYERS:
        if kind == "bn":
            c = 1 if name == "batch_normalization_1" else layers[list(layers)[-1]]["bias"].shape[0]
            layers[name] = bn(c)
        else:
            i, o = next(conv_iter)
            kernel = rng.normal(0, math.sqrt(2 / (9 * i)), (3, 3, i, o))  # he_normal-like, as openl3 initialises
            layers[name] = {"kernel": kernel, "bias": rng.normal(0, 0.01, o)}
    return {n: {w: a.astype(np.float32) for w, a in ws.items()} for n, ws in layers.items()}


def write_keras_h5(path, layers, *, nested=False, names=None, extra=()):
    """Write ``layers`` the way Keras 2 ``save_weights`` (or ``save``, with ``nested``) lays an HDF5 file out.

    ``names`` renames the layers (same order); ``extra`` adds (name, {weight: array}) layers, before the rest.
    Weightless layers (input, activation, pooling) are listed too, as Keras does.
    """
    items = list(extra) + [(n, ws) for n, ws in zip(names or list(layers), layers.values(), strict=True)]
    items = [("input_1", {}), *items[:3], ("activation_1", {}), ("max_pooling2d_1", {}), *items[3:]]
    with h5py.File(path, "w") as fh:
        root = fh.create_group("model_weights") if nested else fh
        root.attrs["layer_names"] = np.array([n.encode() for n, _ in items])
        for name, weights in items:
            group = root.create_group(name)
            group.attrs["weight_names"] = np.array([f"{name}/{w}:0".encode() for w in weights], dtype="S")
            for w, arr in weights.items():
                group.create_dataset(f"{name}/{w}:0", data=arr)
    return path


@pytest.fixture(scope="module")
def weights_h5(tmp_path_factory):
    path = tmp_path_factory.mktemp("openl3") / "openl3_audio_mel256_music.h5"
    return write_keras_h5(path, keras_arrays())


@pytest.fixture(scope="module")
def network(weights_h5):
    return load_openl3_network(weights_h5)


def noise(shape, seed=0, scale=0.3):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


# --- Front end and network pieces -------------------------------------------------------------------------------------


def reference_frontend(x: np.ndarray, n_mels: int) -> np.ndarray:
    """kapre 0.3.7 mel (tf.signal.stft pad_end, |X|, librosa mel) + openl3's magnitude-to-dB, in numpy float64."""
    n_fft, hop = 2048, 242
    n = math.ceil(x.size / hop)
    padded = np.zeros((n - 1) * hop + n_fft)
    padded[: x.size] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]  # (n, n_fft)
    mag = np.abs(np.fft.rfft(frames * scipy.signal.get_window("hann", n_fft), axis=1))  # periodic Hann
    mel = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=n_mels) @ mag.T  # (M, n)
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    return np.maximum(db - db.max(), -80.0)


@pytest.mark.parametrize("n_mels", [256, 128])
def test_frontend_matches_numpy_librosa_reference(n_mels):
    x = noise((2, SR), seed=n_mels).astype(np.float64)
    x[1, : SR // 2] *= 1e-3  # a quiet half: more of the 80 dB range in use
    front = OpenL3MelFrontend(n_mels)
    got = front(torch.from_numpy(x)).numpy()  # float64 path
    assert got.shape == (2, 1, n_mels, 199)  # ceil(48000 / 242) frames
    for b in range(2):
        ref = reference_frontend(x[b], n_mels)
        np.testing.assert_allclose(got[b, 0], ref, atol=1e-6)  # 1e-6 dB: one float32 ulp of librosa's filterbank
    got32 = front(torch.from_numpy(x.astype(np.float32))).numpy()
    np.testing.assert_allclose(got32[1, 0], reference_frontend(x[1], n_mels), atol=2e-3)


def test_frontend_normalises_each_window_alone():
    x = noise((1, SR), seed=3)
    batch = torch.from_numpy(np.concatenate([x, 0.01 * x, np.zeros_like(x)]))  # (3, 48000)
    spec = OpenL3MelFrontend(256)(batch)
    assert spec.amax(dim=(1, 2, 3)).tolist() == [0.0, 0.0, 0.0]  # each window's peak is 0 dB
    np.testing.assert_allclose(spec[1].numpy(), spec[0].numpy(), atol=1e-4)  # scale drops out: max taken per window
    assert torch.equal(spec[2], torch.zeros_like(spec[2]))  # silence: -100 dB everywhere minus its max
    assert spec[0].min() >= -80.0


def test_max_pool2d_same_follows_tensorflow_padding():
    x = torch.randn(2, 3, 5, 7)
    got = max_pool2d_same(x, (2, 3))
    assert got.shape == (2, 3, 3, 3)  # ceil(5 / 2), ceil(7 / 3)
    # TF 'SAME': total pad = (out - 1) * k + k - n, total // 2 before: rows (0, 1), cols (1, 1).
    top, left = 0, 1
    ref = torch.empty_like(got)
    for i in range(3):
        for j in range(3):
            r0, c0 = i * 2 - top, j * 3 - left
            ref[..., i, j] = x[..., max(r0, 0) : r0 + 2, max(c0, 0) : c0 + 3].amax(dim=(-2, -1))
    assert torch.equal(got, ref)


def test_pool_flatten_uses_keras_hwc_order():
    net = OpenL3Network(OpenL3Config(embedding_size=6144))
    x = torch.randn(1, 512, 32, 24)
    out = net.pool_flatten(x)
    assert out.shape == (1, 6144)  # (32 / 8) * (24 / 8) * 512
    for h, w, c in [(0, 0, 5), (3, 2, 511), (1, 2, 100)]:
        block = x[0, c, h * 8 : h * 8 + 8, w * 8 : w * 8 + 8]
        assert out[0, (h * 3 + w) * 512 + c] == block.max()


def test_network_shapes_and_input_checks():
    net = OpenL3Network(OpenL3Config(input_repr="mel128")).eval()
    spec = torch.zeros(1, 1, 128, 199)
    assert net.features(spec).shape == (1, 512, 16, 24)
    with pytest.raises(ValueError, match="48000"):
        net(torch.zeros(1, 44100))
    with pytest.raises(ValueError, match="input_repr"):
        OpenL3Config(input_repr="linear")
    with pytest.raises(ValueError, match="embedding_size"):
        OpenL3Config(embedding_size=128)


# --- Framing ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_samples", "hop"), [(1, 24000), (24000, 24000), (24001, 24000), (48000, 24000),
                                                (144000, 24000), (100_000, 4800), (7, 4800)])  # fmt: skip
def test_frame_audio_matches_openl3_centred_framing(n_samples, hop):
    T = n_samples
    x = np.arange(1, T + 1, dtype=np.float32)[None]  # nonzero samples, so that every sample can be traced
    frames = frame_audio(x, hop)
    # openl3 core._preprocess_audio_batch(center=True): T + 24000 samples after centring, all covered.
    n = 1 if T + 24000 <= SR else 1 + math.ceil((T - 24000) / hop)
    assert frames.shape == (n, 1, SR)
    for k in {0, n // 2, n - 1}:
        idx = k * hop + np.arange(SR) - SR // 2  # sample index under each position of window k
        want = np.where((idx >= 0) & (idx < T), idx + 1, 0)
        np.testing.assert_array_equal(frames[k, 0], want)


# --- Weight loading ---------------------------------------------------------------------------------------------------


def _assert_landed(net, layers, names=None):
    state = net.state_dict()
    for (keras_name, prefix, kind), name in zip(KERAS_LAYERS, names or [k for k, _, _ in KERAS_LAYERS], strict=True):
        ws = layers[keras_name]
        if kind == "conv":
            k = ws["kernel"]
            w = state[f"{prefix}.weight"].numpy()
            assert w.shape == (k.shape[3], k.shape[2], 3, 3), name
            np.testing.assert_array_equal(w, np.moveaxis(k, (3, 2), (0, 1)))  # (kh, kw, in, out) -> (out, in, kh, kw)
            np.testing.assert_array_equal(state[f"{prefix}.bias"].numpy(), ws["bias"])
        else:
            for keras_w, ours in [("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                                  ("moving_variance", "running_var")]:  # fmt: skip
                np.testing.assert_array_equal(state[f"{prefix}.{ours}"].numpy(), ws[keras_w])


@pytest.mark.parametrize("nested", [False, True])
def test_h5_every_tensor_lands(tmp_path, nested):
    layers = keras_arrays(seed=1)
    old_frontend = ("melspectrogram_1", {"real_kernels": np.zeros((4, 2), np.float32)})  # pre-0.4 weight files
    path = write_keras_h5(tmp_path / "w.h5", layers, nested=nested, extra=[old_frontend])
    assert len(read_keras_h5(path)) == 17
    net = load_openl3_network(path)
    _assert_landed(net, layers)
    assert not net.training
    assert net.input_norm.eps == 1e-3 and net.blocks[2].norm2.eps == 1e-3  # Keras BN epsilon


def test_loaded_conv_is_keras_cross_correlation(network, weights_h5):
    # Keras Conv2D 'same' on an HWC image, written out: out[h, w, o] = sum K[a, b, i, o] * x[h + a - 1, w + b - 1, i].
    kernel = read_keras_h5(weights_h5)["conv2d_1"]["kernel"]  # (3, 3, 1, 64)
    bias = read_keras_h5(weights_h5)["conv2d_1"]["bias"]
    img = np.random.default_rng(4).standard_normal((5, 4, 1)).astype(np.float32)
    padded = np.pad(img, ((1, 1), (1, 1), (0, 0)))
    ref = np.zeros((5, 4, 64), np.float32)
    for a in range(3):
        for b in range(3):
            ref += np.einsum("hwi,io->hwo", padded[a : a + 5, b : b + 4], kernel[a, b])
    ref += bias
    got = network.blocks[0].conv1(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0)
    np.testing.assert_allclose(got.detach().numpy(), ref, atol=1e-5)


def test_h5_other_keras_names_load_by_order(tmp_path):
    layers = keras_arrays(seed=2)
    # tf.keras numbering starts without a suffix ('conv2d', 'conv2d_1', ...): names overlap but mean other layers.
    tf2 = ["batch_normalization" + (f"_{i}" if i else "") for i in range(8)]
    convs = ["conv2d" + (f"_{i}" if i else "") for i in range(7)] + ["audio_embedding_layer"]
    names = [tf2.pop(0) if kind == "bn" else convs.pop(0) for _, _, kind in KERAS_LAYERS]
    path = write_keras_h5(tmp_path / "w.h5", layers, names=names)
    _assert_landed(load_openl3_network(path), layers)


def _edit(layers, fn):
    layers = {n: dict(ws) for n, ws in layers.items()}
    fn(layers)
    return layers


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda ls: ls.pop("conv2d_3"), "missing: conv2d_3"),
        (lambda ls: ls["batch_normalization_4"].pop("moving_variance"), "batch_normalization_4.*moving_variance"),
        (lambda ls: ls.__setitem__("dense_1", {"kernel": np.zeros((2, 2), np.float32)}), "unexpected: dense_1"),
        (lambda ls: ls["conv2d_5"].__setitem__("kernel", np.zeros((3, 3, 64, 256), np.float32)),
         r"blocks.2.conv1.weight \(256, 64, 3, 3\) != \(256, 128, 3, 3\)"),
        (lambda ls: ls["conv2d_2"].__setitem__("kernel", np.zeros((3, 64, 64), np.float32)), "conv2d_2/kernel"),
    ],
)  # fmt: skip
def test_h5_bad_weights_name_the_problem(tmp_path, edit, match):
    path = write_keras_h5(tmp_path / "w.h5", _edit(keras_arrays(), edit))
    with pytest.raises(ValueError, match=match):
        load_openl3_network(path)


def test_h5_bad_files(tmp_path):
    listed = tmp_path / "listed.h5"
    write_keras_h5(listed, keras_arrays())
    with h5py.File(listed, "a") as fh:
        del fh["conv2d_6"]
    with pytest.raises(ValueError, match="'conv2d_6' is listed"):
        load_openl3_network(listed)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as fh:
        fh.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="layer_names"):
        load_openl3_network(plain)


def test_h5py_missing_gives_install_hint(weights_h5, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(ImportError, match=r"h5py.*wavefoundry\[eval\]"):
        load_openl3_network(weights_h5)


def test_metadata_and_path_checks(tmp_path, weights_h5):
    env = write_keras_h5(tmp_path / "openl3_audio_mel256_env.h5", keras_arrays())
    with pytest.raises(ValueError, match=r"'env'.*content_type='music'"):
        load_openl3_network(env, content_type="music")
    assert load_openl3_network(env, content_type="env") is not None
    with pytest.raises(ValueError, match=r"'mel256'.*input_repr='mel128'"):
        load_openl3_network(weights_h5, input_repr="mel128")
    linear = write_keras_h5(tmp_path / "openl3_audio_linear_music.h5", keras_arrays())
    with pytest.raises(ValueError, match="linear"):
        load_openl3_network(linear)
    with pytest.raises(FileNotFoundError, match=r"nope\.h5"):
        load_openl3_network(tmp_path / "nope.h5")
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.pt"):
        load_openl3_network(tmp_path / "w.pt")
    with pytest.raises(ValueError, match="content_type"):
        load_openl3_network(weights_h5, content_type="speech")


def test_safetensors_round_trip(tmp_path, weights_h5, network):
    out = convert_openl3_h5(weights_h5, tmp_path / "openl3.safetensors")
    again = load_openl3_network(out)
    for key, value in network.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    with pytest.raises(ValueError, match=r"'music'.*content_type='env'"):
        load_openl3_network(out, content_type="env")
    from safetensors.torch import load_file, save_file

    state = load_file(out)
    state.pop("blocks.1.norm2.running_var")
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys: blocks\.1\.norm2\.running_var"):
        load_openl3_network(tmp_path / "broken.safetensors")


# --- The embedder -----------------------------------------------------------------------------------------------------


def test_embedder_info_and_bad_arguments(network, weights_h5):
    emb = load_openl3(weights_h5)
    assert isinstance(emb, FrameEmbedder)
    assert emb.dim == 1024
    info = emb.info
    assert (info.name, info.sample_rate, info.window_s, info.hop_s, info.channel_mode) == (
        "openl3-mel256-music-512", 48000, 1.0, 0.5, "lr-concat")  # fmt: skip
    assert info.weights_sha256 == file_sha256(weights_h5)
    with pytest.raises(ValueError, match="lr-concat, mono"):
        OpenL3Embedder(network, weights_sha256="0", channel_mode="stereo")
    with pytest.raises(ValueError, match="hop_s"):
        OpenL3Embedder(network, weights_sha256="0", hop_s=1e-6)


def test_embed_bad_audio(network):
    emb = OpenL3Embedder(network, weights_sha256="0")
    bad = np.zeros((2, SR), np.float32)
    bad[1, 5] = np.nan
    with pytest.raises(NonFiniteAudioError, match="NaN"):
        emb.embed(bad, SR)
    with pytest.raises(EmptyAudioError, match="no samples"):
        emb.embed(np.zeros((2, 0), np.float32), SR)
    with pytest.raises(ChannelError, match="shape"):
        emb.embed(np.zeros(SR, np.float32), SR)
    with pytest.raises(ChannelError, match="3 channels"):
        emb.embed(np.zeros((3, SR), np.float32), SR)
    with pytest.raises(ValueError, match="orig_sr"):
        emb.embed(np.zeros((1, SR), np.float32), 0)


class Probe(torch.nn.Module):
    """Stand-in for the network in tests of the adapter's own logic: 'embeds' a window as 512 of its samples."""

    cfg = OpenL3Config()

    def forward(self, windows):
        return windows[:, ::93][:, :512]  # (B, 512): cheap, and tells every window apart


def test_lr_concat_is_left_then_right_per_window():
    stereo = np.stack([noise(57600, seed=10), noise(57600, seed=11)])  # (2, 1.2 s)
    lr = OpenL3Embedder(Probe(), weights_sha256="0", batch_size=2).embed(stereo, SR)
    assert lr.shape == (3, 1024) and lr.dtype == np.float64  # windows centred on 0, 0.5 and 1.0 s
    for ch, half in [(0, slice(0, 512)), (1, slice(512, 1024))]:
        windows = frame_audio(stereo[ch : ch + 1], 24000)[:, 0]  # (3, 48000)
        np.testing.assert_array_equal(lr[:, half], windows[:, ::93][:, :512])
    mono = OpenL3Embedder(Probe(), weights_sha256="0", channel_mode="mono").embed(stereo, SR)
    np.testing.assert_allclose(mono, (lr[:, :512] + lr[:, 512:]) / 2, atol=1e-6)  # openl3 downmix: channel mean
    dup = OpenL3Embedder(Probe(), weights_sha256="0").embed(stereo[:1], SR)
    np.testing.assert_array_equal(dup[:, :512], dup[:, 512:])  # a mono file is duplicated to L and R
    np.testing.assert_array_equal(dup[:, :512], lr[:, :512])


def test_lr_concat_with_the_network(network):
    stereo = np.stack([noise(SR // 3, seed=10), noise(SR // 3, seed=11, scale=0.05)])  # one window
    lr = OpenL3Embedder(network, weights_sha256="0").embed(stereo, SR)
    assert lr.shape == (1, 1024) and np.isfinite(lr).all()
    with torch.inference_mode():
        left = network(torch.from_numpy(frame_audio(stereo[:1], 24000)[:, 0])).numpy()
    np.testing.assert_allclose(lr[:, :512], left, rtol=1e-5, atol=1e-5)
    assert not np.allclose(lr[:, :512], lr[:, 512:], atol=1e-3)


def test_embed_resamples_from_44k(network):
    t = np.arange(22050) / 44100
    x44 = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None]  # 0.5 s, 1 kHz
    emb = OpenL3Embedder(Probe(), weights_sha256="0", channel_mode="mono")
    x48 = prepare(x44, 44100, emb.info)
    assert x48.shape == (1, 24000)
    # The 1 kHz tone lands in the mel band centred nearest 1 kHz at 48 kHz.
    spec = network.frontend(torch.from_numpy(frame_audio(x48, emb.hop)[:, 0]))[0, 0]  # (256, 199)
    centres = librosa.mel_frequencies(n_mels=258, fmax=SR / 2)[1:-1]
    assert abs(centres[int(spec[:, 120].argmax())] - 1000) < 30
    got = emb.embed(x44, 44100)
    assert got.shape == (1, 512)  # 24000 + 24000 samples after centring fit one window
    np.testing.assert_array_equal(got, emb.embed(resample(x44, 44100, SR), SR))
    assert emb.embed(noise((1, 3 * 44100)), 44100).shape == (6, 512)  # 3 s: ceil(144000 / 24000) windows


def test_embed_silence_warns_and_stays_finite(network, caplog):
    emb = OpenL3Embedder(network, weights_sha256="0", channel_mode="mono")
    with caplog.at_level(logging.WARNING, logger="wavefoundry.eval.openl3"):
        out = emb.embed(np.zeros((1, SR // 5), np.float32), SR)
    assert "all zeros" in caplog.text
    assert out.shape == (1, 512) and np.isfinite(out).all()
