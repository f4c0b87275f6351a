"""PaSST in pure torch: Kaldi mel banks, the front end against librosa, the network against an explicit re-computation
of hear21passt's forward, checkpoint loading (key names, wrappers, safetensors), and the classifier adapter."""

import functools
import math

import librosa
import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from wavefoundry.eval.embedders import AudioClassifier, FrameEmbedder, file_sha256, prepare, split_windows
from wavefoundry.eval.passt import (
    PaSSTClassifier,
    PaSSTEmbedder,
    PaSSTLoadError,
    load_passt,
    load_passt_model,
    read_audioset_labels,
)
from wavefoundry.understanding.passt import PaSST, PaSSTConfig, PaSSTMel, PaSSTMelConfig, kaldi_mel_banks

SR = 32000


def tiny_config(**kw) -> PaSSTConfig:
    return PaSSTConfig(embed_dim=64, depth=2, num_heads=2, **kw)


def random_model(seed: int = 0, **kw) -> PaSST:
    """A tiny PaSST whose every parameter (LayerNorm gains and biases included) is random."""
    torch.manual_seed(seed)
    model = PaSST(tiny_config(**kw))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
        for name, p in model.named_parameters():
            if ("norm" in name and name.endswith("weight")) or name == "head.0.weight":
                p.add_(1.0)  # gains near 1 keep activations in range
    return model.eval()


def reference_key_names(depth: int) -> set[str]:
    """hear21passt PaSST state-dict names (passt_s_swa_p16_128_ap476: distilled, no pre_logits, norm-free patches)."""
    names = {"cls_token", "dist_token", "new_pos_embed", "freq_new_pos_embed", "time_new_pos_embed"}
    for layer in ("patch_embed.proj", "norm", "head.0", "head.1", "head_dist"):
        names |= {f"{layer}.weight", f"{layer}.bias"}
    for i in range(depth):
        for layer in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            names |= {f"blocks.{i}.{layer}.weight", f"blocks.{i}.{layer}.bias"}
    return names


# ---------------------------------------------------------------- Kaldi mel banks


@functools.lru_cache(maxsize=4)
def kaldi_banks_loop(n_mels, n_fft, sr, low, high):
    """Kaldi's ``MelBanks`` constructor (feat/mel-computations.cc), written out bin by bin in plain Python."""
    nyquist = 0.5 * sr
    high = high + nyquist if high <= 0 else high

    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    delta = (mel(high) - mel(low)) / (n_mels + 1)
    out = np.zeros((n_mels, n_fft // 2))
    for b in range(n_mels):
        left, centre, right = (mel(low) + (b + j) * delta for j in range(3))
        for k in range(n_fft // 2):
            m = mel(k * sr / n_fft)
            if left < m < right:
                out[b, k] = (m - left) / (centre - left) if m <= centre else (right - m) / (right - centre)
    return out


@pytest.mark.parametrize(("n_mels", "n_fft", "sr", "low", "high"), [
    (128, 1024, 32000, 0.0, 15000.0),  # PaSST-S
    (23, 512, 16000, 20.0, -400.0),    # Kaldi defaults-like, high edge given as an offset from Nyquist
])  # fmt: skip
def test_kaldi_mel_banks_match_kaldi_definition(n_mels, n_fft, sr, low, high):
    fb = kaldi_mel_banks(n_mels, n_fft, sr, low, high, dtype=torch.float64).numpy()
    ref = kaldi_banks_loop(n_mels, n_fft, sr, low, high)
    assert fb.shape == (n_mels, n_fft // 2)
    np.testing.assert_allclose(fb, ref, rtol=0, atol=1e-12)
    assert fb.max() <= 1.0 and (fb.max(axis=1) > 0).all()  # unit-peak triangles, none empty here
    # Triangles linear in mel: between the first and last centres, neighbouring filters sum to exactly one.
    nyq = sr / 2
    mel = 1127.0 * np.log1p(np.arange(n_fft // 2) * sr / n_fft / 700.0)
    lo, hi = (1127.0 * math.log1p(f / 700.0) for f in (low, high + nyq if high <= 0 else high))
    delta = (hi - lo) / (n_mels + 1)
    inside = (mel >= lo + delta) & (mel <= lo + n_mels * delta)
    np.testing.assert_allclose(fb[:, inside].sum(axis=0), 1.0, atol=1e-12)


def test_kaldi_mel_banks_reject_bad_bands():
    with pytest.raises(ValueError, match="f_min < f_max"):
        kaldi_mel_banks(128, 1024, SR, 0.0, 17000.0)
    with pytest.raises(ValueError, match="n_mels > 3"):
        kaldi_mel_banks(3, 1024, SR, 0.0, 15000.0)


# ---------------------------------------------------------------- front end


def front_end_reference(x: np.ndarray) -> np.ndarray:
    """hear21passt AugmentMelSTFT at eval, from numpy/librosa/scipy and the loop mel banks: (n_mels, frames)."""
    y = x[1:] - 0.97 * x[:-1]
    window = scipy.signal.windows.hann(800, sym=True)  # torch.hann_window(800, periodic=False)
    spec = librosa.stft(y.astype(np.float64), n_fft=1024, hop_length=320, win_length=800, window=window,
                        center=True, pad_mode="reflect")  # fmt: skip
    fb = np.pad(kaldi_banks_loop(128, 1024, SR, 0.0, 15000.0), ((0, 0), (0, 1)))
    return (np.log(fb @ np.abs(spec) ** 2 + 1e-5) + 4.5) / 5.0


def test_front_end_matches_independent_computation():
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(SR)
    mel = PaSSTMel(PaSSTMelConfig())(torch.from_numpy(x[None].astype(np.float32)))[0].numpy()
    ref = front_end_reference(x.astype(np.float32))
    assert mel.shape == ref.shape == (128, 1 + (SR - 1) // 320)
    np.testing.assert_allclose(mel, ref, atol=2e-4)


def test_front_end_frames_for_ten_seconds():
    mel = PaSSTMel(PaSSTMelConfig())(torch.zeros(2, 10 * SR))
    assert mel.shape == (2, 128, 1000)  # pre-emphasis leaves 319999 samples: 1 + 319999 // 320
    np.testing.assert_allclose(mel.numpy(), (math.log(1e-5) + 4.5) / 5, atol=1e-6)  # silence: the log floor


# ---------------------------------------------------------------- network


def reference_forward(sd: dict, spec: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """hear21passt ``PaSST.forward`` at eval written out with functional ops (explicit softmax attention)."""
    x = F.conv2d(spec, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=10)
    x = x + sd["time_new_pos_embed"][:, :, :, : x.shape[-1]]
    x = x + sd["freq_new_pos_embed"]
    x = x.flatten(2).transpose(1, 2)
    B, _, D = x.shape
    cls = sd["cls_token"].expand(B, -1, -1) + sd["new_pos_embed"][:, :1]
    dist = sd["dist_token"].expand(B, -1, -1) + sd["new_pos_embed"][:, 1:]
    x = torch.cat((cls, dist, x), dim=1)
    N = x.shape[1]
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(depth):
        p = {k[len(f"blocks.{i}.") :]: v for k, v in sd.items() if k.startswith(f"blocks.{i}.")}
        h = F.layer_norm(x, (D,), p["norm1.weight"], p["norm1.bias"], eps=1e-6)
        qkv = F.linear(h, p["attn.qkv.weight"], p["attn.qkv.bias"]).reshape(B, N, 3, heads, D // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (D // heads) ** -0.5).softmax(dim=-1)
        x = x + F.linear((attn @ v).transpose(1, 2).reshape(B, N, D), p["attn.proj.weight"], p["attn.proj.bias"])
        h = F.layer_norm(x, (D,), p["norm2.weight"], p["norm2.bias"], eps=1e-6)
        h = F.gelu(F.linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"]))
        x = x + F.linear(h, p["mlp.fc2.weight"], p["mlp.fc2.bias"])
    x = F.layer_norm(x, (D,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
    features = (x[:, 0] + x[:, 1]) / 2
    h = F.layer_norm(features, (D,), sd["head.0.weight"], sd["head.0.bias"], eps=1e-5)
    return F.linear(h, sd["head.1.weight"], sd["head.1.bias"]), features


@pytest.mark.parametrize("frames", [1000, 300, 16])  # 10 s, about 3 s, the shortest input
def test_network_matches_reference_forward(frames):
    model = random_model().double()
    spec = torch.randn(2, 1, 128, frames, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sd = model.state_dict()
    logits, emb = model.forward_spec(spec)
    ref_logits, ref_emb = reference_forward(sd, spec, heads=2)
    assert logits.shape == (2, 527) and emb.shape == (2, 64)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(emb, ref_emb, rtol=1e-9, atol=1e-9)


def test_short_inputs_use_the_first_time_embeddings():
    model = random_model()
    audio = torch.randn(1, 3 * SR, generator=torch.Generator().manual_seed(2))
    t = (model.config.mel.num_frames(3 * SR) - 16) // 10 + 1  # time patches of 3 s: 29
    with torch.inference_mode():
        before = model(audio)[0]
        model.time_new_pos_embed[..., t:] += 100.0  # embeddings a short input must not see
        after = model(audio)[0]
        full = torch.randn(1, 10 * SR)
        changed = model(full)[0]
        model.time_new_pos_embed[..., t:] -= 100.0
        assert not torch.allclose(changed, model(full)[0])
    torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_full_config_has_passt_s_keys_and_parameter_count():
    with torch.device("meta"):
        model = PaSST(PaSSTConfig())
    sd = model.state_dict()
    assert set(sd) == reference_key_names(12)
    assert sd["freq_new_pos_embed"].shape == (1, 768, 12, 1) and sd["time_new_pos_embed"].shape == (1, 768, 1, 99)
    assert sd["patch_embed.proj.weight"].shape == (768, 1, 16, 16)
    D, L, C, hidden, grid = 768, 12, 527, 3072, 12 + 99
    per_block = 2 * 2 * D + (3 * D * D + 3 * D) + (D * D + D) + (D * hidden + hidden) + (hidden * D + D)
    expected = (256 * D + D) + 2 * D + 2 * D + grid * D + L * per_block + 2 * D + 2 * D + 2 * (D * C + C)
    assert sum(p.numel() for p in model.parameters()) == expected == 86_153_758


def test_tiny_model_has_reference_key_names():
    assert set(random_model().state_dict()) == reference_key_names(2)


def test_patchout_only_in_training():
    model = random_model(s_patchout_t=20, s_patchout_f=4)
    spec = torch.randn(1, 1, 128, 1000)
    with torch.no_grad():
        a, b = model.forward_spec(spec)[0], model.forward_spec(spec)[0]
        model.train()
        c, d = model.forward_spec(spec)[0], model.forward_spec(spec)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # eval: deterministic, no patchout
    assert not torch.allclose(c, d)  # training: random columns and rows dropped


def test_network_rejects_bad_shapes():
    model = random_model()
    with pytest.raises(ValueError, match=r"\(B, 1, 128, frames\)"):
        model.forward_spec(torch.zeros(1, 1, 64, 1000))
    with pytest.raises(ValueError, match="4801 samples"):
        model(torch.zeros(1, 4800))
    with pytest.raises(ValueError, match=r"mono audio \(B, T\)"):
        model(torch.zeros(1, 1, SR))
    with pytest.raises(ValueError, match="frequency patches"):
        PaSSTConfig(mel=PaSSTMelConfig(n_mels=64, f_max=15000.0), stride=9)


# ---------------------------------------------------------------- checkpoints


@pytest.fixture
def tiny_ckpt(tmp_path):
    model = random_model()
    path = tmp_path / "passt-tiny.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_round_trip_load(tiny_ckpt, tmp_path):
    model, path = tiny_ckpt
    audio = torch.randn(2, 2 * SR, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        want = model(audio)[0]
    sd = model.state_dict()
    variants = {"plain.pt": sd, "lightning.ckpt": {"state_dict": {f"net.{k}": v for k, v in sd.items()}, "epoch": 3},
                "wrapper.pt": {"device_proxy": torch.zeros(1), **{f"net.{k}": v for k, v in sd.items()}},
                "deit.pth": {"model": sd}}  # fmt: skip
    paths = [path]
    for name, obj in variants.items():
        torch.save(obj, tmp_path / name)
        paths.append(tmp_path / name)
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "passt.safetensors")
    paths.append(tmp_path / "passt.safetensors")
    for p in paths:
        loaded = load_passt_model(p, config=tiny_config())
        assert not loaded.training
        with torch.inference_mode():
            torch.testing.assert_close(loaded(audio)[0], want, rtol=0, atol=0, msg=str(p))


def test_missing_unexpected_and_misshapen_keys_are_named(tiny_ckpt, tmp_path):
    model, _ = tiny_ckpt
    sd = dict(model.state_dict())
    del sd["head_dist.bias"]
    sd["mel.fb"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(PaSSTLoadError, match=r"missing keys: head_dist\.bias; unexpected keys: mel\.fb"):
        load_passt_model(tmp_path / "bad.pt", config=tiny_config())
    sd = dict(model.state_dict(), cls_token=torch.zeros(1, 1, 32))
    torch.save(sd, tmp_path / "shape.pt")
    with pytest.raises(PaSSTLoadError, match=r"wrong shapes: cls_token \(1, 1, 32\) != \(1, 1, 64\)$"):
        load_passt_model(tmp_path / "shape.pt", config=tiny_config())
    with pytest.raises(PaSSTLoadError, match=r"missing keys: blocks\.10\..*wrong shapes: blocks\.0\."):
        load_passt_model(tmp_path / "passt-tiny.pt")  # a tiny checkpoint for the PaSST-S shape


def test_unreadable_checkpoints(tmp_path):
    with pytest.raises(PaSSTLoadError, match="no such checkpoint"):
        load_passt_model(tmp_path / "absent.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PaSSTLoadError, match="cannot read"):
        load_passt_model(tmp_path / "corrupt.pt")
    torch.save({"epoch": 3, "note": "no tensors"}, tmp_path / "empty.pt")
    with pytest.raises(PaSSTLoadError, match="no state dict"):
        load_passt_model(tmp_path / "empty.pt")


def test_non_finite_weights_rejected(tiny_ckpt, tmp_path):
    model, _ = tiny_ckpt
    sd = dict(model.state_dict())
    sd["norm.weight"] = sd["norm.weight"].clone()
    sd["norm.weight"][0] = float("nan")
    torch.save(sd, tmp_path / "nan.pt")
    with pytest.raises(PaSSTLoadError, match=r"non-finite weights in norm\.weight"):
        load_passt_model(tmp_path / "nan.pt", config=tiny_config())


# ---------------------------------------------------------------- labels


def write_labels(path, n=527, bad_index=None):
    lines = ["index,mid,display_name"]
    for i in range(n):
        name = '"Male speech, man speaking"' if i == 1 else f"class {i}"
        lines.append(f"{bad_index if i == 5 and bad_index is not None else i},/m/{i:05d},{name}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_audioset_labels(tmp_path):
    labels = read_audioset_labels(write_labels(tmp_path / "ok.csv"))
    assert len(labels) == 527 and labels[1] == "Male speech, man speaking" and labels[526] == "class 526"
    with pytest.raises(PaSSTLoadError, match="526 labels, but the classifier has 527"):
        read_audioset_labels(write_labels(tmp_path / "short.csv", n=526))
    with pytest.raises(PaSSTLoadError, match="row 6 has index '7'"):
        read_audioset_labels(write_labels(tmp_path / "idx.csv", bad_index=7))
    (tmp_path / "cols.csv").write_text("a,b\n1,2\n")
    with pytest.raises(PaSSTLoadError, match="index,mid,display_name"):
        read_audioset_labels(tmp_path / "cols.csv")


# ---------------------------------------------------------------- adapter


def test_load_passt_classifier(tiny_ckpt, tmp_path):
    model, path = tiny_ckpt
    clf = load_passt(path, labels_csv=write_labels(tmp_path / "labels.csv"), config=tiny_config(), batch_size=3)
    assert isinstance(clf, AudioClassifier)
    assert clf.info.sample_rate == 32000 and clf.info.window_s == 10.0 and clf.info.channel_mode == "mono"
    assert clf.info.weights_sha256 == file_sha256(path) and clf.labels[1] == "Male speech, man speaking"
    windows = np.random.default_rng(4).standard_normal((5, 1, 10 * SR)).astype(np.float32) * 0.1
    logits = clf.logits(windows)
    assert logits.shape == (5, 527) and logits.dtype == np.float64
    with torch.inference_mode():
        direct = model(torch.from_numpy(windows[:, 0]))[0].double().numpy()
    np.testing.assert_allclose(logits, direct, rtol=1e-5, atol=1e-5)  # batches of 3 vs one batch of 5
    np.testing.assert_array_equal(clf.logits(windows), logits)  # deterministic
    assert load_passt(path, config=tiny_config()).labels[:3] == ("0", "1", "2")


@pytest.mark.parametrize("n", [10 * SR, 3 * SR, 4801])
def test_classifier_shapes_for_short_windows(n):
    clf = PaSSTClassifier(random_model(), weights_sha256="0" * 64)
    out = clf.logits(np.zeros((2, 1, n), np.float32))
    emb = clf.embed_windows(np.zeros((2, 1, n), np.float32))
    assert out.shape == (2, 527) and emb.shape == (2, 64) and np.isfinite(out).all()


def test_classifier_sets_eval_mode():
    model = random_model(s_patchout_t=20).train()
    clf = PaSSTClassifier(model, weights_sha256="0" * 64)
    w = np.random.default_rng(5).standard_normal((1, 1, SR)).astype(np.float32)
    np.testing.assert_array_equal(clf.logits(w), clf.logits(w))


@pytest.mark.parametrize(("windows", "match"), [
    (np.zeros((2, 2, SR), np.float32), r"mono windows \(N, 1, T\)"),
    (np.zeros((2, SR), np.float32), r"mono windows \(N, 1, T\)"),
    (np.zeros((0, 1, SR), np.float32), "no windows"),
    (np.zeros((1, 1, 4800), np.float32), "4801 .. 320000 samples"),
    (np.zeros((1, 1, 10 * SR + 1), np.float32), "4801 .. 320000 samples"),
    (np.full((1, 1, SR), np.nan, np.float32), "NaN"),
])  # fmt: skip
def test_classifier_rejects_bad_windows(windows, match):
    clf = PaSSTClassifier(random_model(), weights_sha256="0" * 64)
    with pytest.raises(ValueError, match=match):
        clf.logits(windows)


def test_classifier_rejects_wrong_label_count():
    with pytest.raises(ValueError, match="3 labels for a classifier with 527 outputs"):
        PaSSTClassifier(random_model(), weights_sha256="0" * 64, labels=("a", "b", "c"))


def test_embedder_windows_a_file():
    clf = PaSSTClassifier(random_model(), weights_sha256="0" * 64)
    emb = PaSSTEmbedder(clf)
    assert isinstance(emb, FrameEmbedder) and emb.dim == 64 and emb.info.name.endswith("-embed")
    rng = np.random.default_rng(6)
    audio = 0.1 * rng.standard_normal((2, 12 * 44100)).astype(np.float32)  # 12 s stereo at 44.1 kHz
    out = emb.embed(audio, 44100)
    windows = split_windows(prepare(audio, 44100, emb.info), 10 * SR, 5 * SR)
    assert out.shape == (2, 64) == (len(windows), 64)  # windows at 0 s and 5 s (the second zero-padded)
    np.testing.assert_allclose(out, clf.embed_windows(windows), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        emb.embed(np.full((1, SR), np.nan, np.float32), SR)
