"""KL between class distributions: windowing, aggregation and direction against hand-computed values, the two
reference conventions re-derived from their code, closed forms against scipy, and bad input."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
import torch.nn.functional as F

from wavefoundry.eval.embedders import AudioClassifier, EmbedderInfo
from wavefoundry.eval.kl import (
    KL_POLICIES,
    KLPolicy,
    distributions,
    file_distribution,
    kl_divergence,
    kl_policy,
    paired_kl,
    window_plan,
)

RATE = 10  # Hz: a 10 s window is 100 samples, so every number below is computed by hand
SAM = KL_POLICIES["stable-audio-metrics"]
AC = KL_POLICIES["audiocraft"]
SAM_FLAT = dataclasses.replace(SAM, peak_dbfs=None)  # the same windows without peak normalisation


class LevelClassifier:
    """Logits (m, 2m, -m, 0) of each window's mean sample m (zero padding included): a known function of level."""

    labels = ("a", "b", "c", "d")

    def __init__(self, rate: int = RATE, window_s: float = 10.0, channel_mode: str = "mono"):
        self.info = EmbedderInfo(name="level", weights_sha256="0" * 64, sample_rate=rate, window_s=window_s,
                                 hop_s=window_s, channel_mode=channel_mode)  # fmt: skip
        self.calls: list[tuple[int, ...]] = []

    def logits(self, windows: np.ndarray) -> np.ndarray:
        self.calls.append(windows.shape)
        m = windows.mean(axis=(1, 2), dtype=np.float64)  # (N,)
        return np.stack([m, 2 * m, -m, np.zeros_like(m)], axis=1)  # (N, 4)


def logits_of(m: float) -> np.ndarray:
    return np.array([m, 2 * m, -m, 0.0])


def blocks(*levels: float, block: int = 50) -> np.ndarray:
    """(1, T) audio of constant 5 s blocks."""
    return np.repeat(np.asarray(levels, np.float32), block)[None]


def test_fake_implements_the_protocol():
    assert isinstance(LevelClassifier(), AudioClassifier)


# --- windowing: our plan equals the loops of the reference code, re-written here from their source ---


def sam_plan(n: int, window: int = 100, hop: int = 50) -> list[tuple[int, int]]:
    """passt_kld.return_probabilities: starts range(0, max(step, len - step), step); window audio[i:i+window]."""
    return [(i, min(window, n - i)) for i in range(0, max(hop, n - hop), hop)]


def audiocraft_plan(n: int, window: int = 100, min_frames: int = int(0.15 * RATE)) -> list[tuple[int, int]]:
    """kld._process_audio: torch.split(wav, max_input_frames), segments with size > min_input_frames kept."""
    pieces = torch.split(torch.arange(n), window)
    return [(int(p[0]), p.numel()) for p in pieces if p.numel() > min_frames]


def test_window_plan_matches_stable_audio_metrics():
    for T in range(1, 420):
        ours = window_plan(T, RATE, SAM)
        if T <= 15:  # <= 1.5 s: stable-audio-metrics feeds it unpadded; we reject (documented)
            assert ours == [], T
        else:
            assert ours == sam_plan(T), T
    assert window_plan(250, RATE, SAM) == [(0, 100), (50, 100), (100, 100), (150, 100)]


def test_window_plan_matches_audiocraft():
    for T in range(1, 420):
        assert window_plan(T, RATE, AC) == audiocraft_plan(T), T
    assert window_plan(250, RATE, AC) == [(0, 100), (100, 100), (200, 50)]
    assert window_plan(201, RATE, AC) == [(0, 100), (100, 100)]  # a 0.1 s tail is dropped


def test_window_plan_drop_and_shorter_than_a_window():
    drop = KLPolicy(window_s=10, hop_s=10, aggregate="mean-probs", direction="generated||reference",
                    last_window="drop")  # fmt: skip
    assert window_plan(250, RATE, drop) == [(0, 100), (100, 100)]
    assert window_plan(40, RATE, drop) == [(0, 40)]  # one (padded) window, never nothing


# --- aggregation: mean logits then softmax vs mean of softmaxes vs per segment ---


def test_stable_audio_metrics_mean_logits_by_hand():
    clf = LevelClassifier()
    audio = blocks(0.2, 0.4, 0.6, 0.1, 0.3)  # 25 s: windows start at 0, 5, 10, 15 s
    p = file_distribution(clf, audio, RATE, SAM_FLAT)
    means = [0.3, 0.5, 0.35, 0.2]  # window means of the blocks (each window is two blocks)
    assert clf.calls == [(4, 1, 100)]
    expected = scipy.special.softmax(np.mean([logits_of(m) for m in means], axis=0))
    np.testing.assert_allclose(p, expected, rtol=1e-6)
    assert p.dtype == np.float64 and p.shape == (4,)


def test_last_window_is_zero_padded():
    clf = LevelClassifier()
    audio = blocks(0.2, 0.4, 0.6, 0.1, 0.1)[:, :230]  # 23 s: last window 15-23 s holds 8 s of 0.1 and 2 s of zeros
    p = file_distribution(clf, audio, RATE, SAM_FLAT)
    means = [0.3, 0.5, 0.35, 0.1 * 80 / 100]
    expected = scipy.special.softmax(np.mean([logits_of(m) for m in means], axis=0))
    np.testing.assert_allclose(p, expected, rtol=1e-6)


def test_mean_logits_and_mean_probs_differ_measurably():
    clf = LevelClassifier()
    audio = blocks(-2.0, -2.0, 3.0, 3.0)  # windows of mean -2, 0.5, 3
    policy = dataclasses.replace(SAM_FLAT, aggregate="mean-probs")
    probs = file_distribution(clf, audio, RATE, policy)
    expected = np.mean([scipy.special.softmax(logits_of(m)) for m in (-2.0, 0.5, 3.0)], axis=0)
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    logit_mean = file_distribution(clf, audio, RATE, SAM_FLAT)
    np.testing.assert_allclose(logit_mean, scipy.special.softmax(logits_of(0.5)), rtol=1e-6)
    assert np.abs(probs - logit_mean).max() > 0.1


def test_audiocraft_segments_softmax_each_and_last_segment_unpadded():
    clf = LevelClassifier()
    audio = blocks(0.2, 0.4, 0.6, 0.1, 0.3)  # 25 s: segments 0-10, 10-20 and 20-25 s (not padded)
    p = file_distribution(clf, audio, RATE, AC)
    assert clf.calls == [(2, 1, 100), (1, 1, 50)]
    expected = np.stack([scipy.special.softmax(logits_of(m)) for m in (0.3, 0.35, 0.3)])  # padded would be 0.15
    np.testing.assert_allclose(p, expected, rtol=1e-6)


def test_peak_normalisation_of_stable_audio_metrics():
    clf = LevelClassifier()
    audio = blocks(0.2, 0.4, 0.6, 0.1, 0.3)
    p = file_distribution(clf, audio, RATE, SAM)
    np.testing.assert_allclose(p, file_distribution(clf, 0.25 * audio, RATE, SAM), rtol=1e-5)  # level-invariant
    g = 10 ** (-1 / 20) / 0.6  # the peak is 0.6, brought to -1 dBFS
    expected = scipy.special.softmax(np.mean([logits_of(g * m) for m in (0.3, 0.5, 0.35, 0.2)], axis=0))
    np.testing.assert_allclose(p, expected, rtol=1e-5)


def test_resampling_and_channels_go_through_prepare():
    clf = LevelClassifier(rate=8000, window_s=0.5)
    policy = KLPolicy(window_s=0.5, hop_s=0.25, aggregate="mean-logits", direction="generated||reference")
    t = np.arange(16000 * 2) / 16000
    stereo = np.stack([0.3 + 0.0 * t, 0.1 + 0.0 * t]).astype(np.float32)  # 2 s at 16 kHz, mono mix 0.2
    p = file_distribution(clf, stereo, 16000, policy)
    assert clf.calls == [(7, 1, 4000)]  # 2 s at 8 kHz: starts every 0.25 s up to 1.5 s
    np.testing.assert_allclose(p, scipy.special.softmax(logits_of(0.2)), atol=1e-4)


def test_batches_do_not_change_the_result():
    clf = LevelClassifier()
    audio = np.random.default_rng(0).uniform(-1, 1, (1, 777)).astype(np.float32)
    a = file_distribution(clf, audio, RATE, SAM, batch_size=2)
    b = file_distribution(clf, audio, RATE, SAM, batch_size=64)
    np.testing.assert_array_equal(a, b)
    assert [c[0] for c in clf.calls] == [2, 2, 2, 2, 2, 2, 2, 1, 15]


# --- KL closed forms ---


def test_kl_two_point_and_asymmetry():
    p, q = np.array([0.9, 0.1]), np.array([0.5, 0.5])
    assert kl_divergence(p, q) == pytest.approx(0.9 * math.log(1.8) + 0.1 * math.log(0.2), abs=1e-12)
    assert kl_divergence(q, p) == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(5.0), abs=1e-12)
    assert kl_divergence(p, q) != pytest.approx(kl_divergence(q, p), abs=0.1)


def test_kl_matches_scipy_and_zero_on_itself():
    rng = np.random.default_rng(1)
    for _ in range(20):
        p, q = rng.dirichlet(np.ones(7)), rng.dirichlet(np.full(7, 0.3))
        assert kl_divergence(p, q) == pytest.approx(scipy.special.rel_entr(p, q).sum(), rel=1e-12)
        assert kl_divergence(p, q) == pytest.approx(scipy.stats.entropy(p, q), rel=1e-12)
        assert kl_divergence(p, p) == 0.0
    p = np.array([0.5, 0.5, 0.0])
    assert kl_divergence(p, np.array([0.25, 0.25, 0.5])) == pytest.approx(math.log(2))  # 0 log 0 = 0
    assert kl_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == math.inf


def test_kl_epsilon_is_added_to_q_only():
    p = np.array([0.7, 0.2, 0.1])
    eps = 1e-6
    assert kl_divergence(p, p, eps=eps) == pytest.approx(-(p * np.log1p(eps / p)).sum(), rel=1e-9)
    assert kl_divergence(p, p, eps=eps) < 0  # the reference's eps biases KL(p, p) by about -n_labels * eps
    q = np.array([0.5, 0.5, 0.0])
    torch_value = F.kl_div((torch.tensor(q) + eps).log(), torch.tensor(p), reduction="sum").item()
    assert kl_divergence(p, q, eps=eps) == pytest.approx(torch_value, rel=1e-12)


# --- paired KL: direction, the reference reductions, missing ids ---


def test_paired_kl_direction():
    gen, ref = {"x": np.array([0.9, 0.1])}, {"x": np.array([0.5, 0.5])}
    g_r = dataclasses.replace(SAM, eps=0.0)
    r_g = dataclasses.replace(g_r, direction="reference||generated")
    kl_gr, kl_rg = 0.9 * math.log(1.8) + 0.1 * math.log(0.2), 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(5.0)
    res = paired_kl(gen, ref, g_r)
    assert res.mean == pytest.approx(kl_gr) and res.mean_reverse == pytest.approx(kl_rg)
    res = paired_kl(gen, ref, r_g)
    assert res.mean == pytest.approx(kl_rg) and res.mean_reverse == pytest.approx(kl_gr)
    assert res.direction == "reference||generated" and res.per_item == {"x": pytest.approx(kl_rg)}


def test_paired_kl_equals_stable_audio_metrics_reduction():
    rng = np.random.default_rng(2)
    ids = [f"id{i}" for i in range(6)]
    gen = {k: rng.dirichlet(np.ones(5)) for k in ids}
    ref = {k: rng.dirichlet(np.ones(5)) for k in ids}
    # passt_kld: passt_kl += F.kl_div((ref_p[id] + 1e-6).log(), eval_p, reduction='sum'); passt_kl / count
    theirs = sum(F.kl_div((torch.tensor(ref[k]) + 1e-6).log(), torch.tensor(gen[k]), reduction="sum") for k in ids)
    res = paired_kl(gen, ref, SAM)
    assert res.mean == pytest.approx(float(theirs) / len(ids), rel=1e-10)
    assert res.n_items == 6 and res.n_segments == 6


def test_paired_kl_equals_audiocraft_reduction_over_segments():
    rng = np.random.default_rng(3)
    counts = {"a": 1, "b": 3, "c": 2}  # segments per file: long files weigh more
    gen = {k: rng.dirichlet(np.ones(5), size=n) for k, n in counts.items()}
    ref = {k: rng.dirichlet(np.ones(5), size=n) for k, n in counts.items()}
    g, r = torch.tensor(np.concatenate(list(gen.values()))), torch.tensor(np.concatenate(list(ref.values())))

    def kl_divergence_ac(pred, target, epsilon=1e-6):  # kld.kl_divergence
        return F.kl_div((pred + epsilon).log(), target, reduction="none").sum(-1)

    res = paired_kl(gen, ref, AC)
    assert res.mean == pytest.approx(kl_divergence_ac(g, r).mean().item(), rel=1e-10)  # kld_pq, 'kld'
    assert res.mean_reverse == pytest.approx(kl_divergence_ac(r, g).mean().item(), rel=1e-10)  # kld_qp
    assert res.n_segments == 6 and res.n_items == 3
    assert res.per_item["b"] == pytest.approx(kl_divergence_ac(torch.tensor(gen["b"]), torch.tensor(ref["b"])).mean())


def test_end_to_end_both_conventions_from_audio():
    clf = LevelClassifier()
    rng = np.random.default_rng(4)
    gen_audio = {k: rng.uniform(-1, 1, (1, 250)).astype(np.float32) for k in "abc"}
    ref_audio = {k: rng.uniform(-1, 1, (1, 250)).astype(np.float32) for k in "abc"}
    for policy in (SAM, AC):
        gen, rej_g = distributions(clf, ((k, a, RATE) for k, a in gen_audio.items()), policy)
        ref, rej_r = distributions(clf, ((k, a, RATE) for k, a in ref_audio.items()), policy)
        assert not rej_g and not rej_r
        first = paired_kl(gen, ref, policy)
        again = paired_kl(*(distributions(clf, ((k, a, RATE) for k, a in d.items()), policy)[0]
                            for d in (gen_audio, ref_audio)), policy)  # fmt: skip
        assert first.mean == again.mean and first.mean > 0  # reproducible, and the sets differ
        assert paired_kl(gen, gen, policy).mean == pytest.approx(-policy.eps * 4, rel=0.1)  # self: only the eps bias


def test_missing_ids_are_listed():
    p = np.array([0.5, 0.5])
    res = paired_kl({"a": p, "b": p}, {"b": p, "c": p, "d": p}, SAM)
    assert res.n_items == 1 and res.missing_reference == ("a",) and res.missing_generated == ("c", "d")
    d = res.to_dict()
    assert d["missing_generated"] == ["c", "d"] and d["policy"]["window_s"] == 10.0


# --- bad input ---


def test_with_window_scales_the_convention():
    small = SAM.with_window(4.0)
    assert (small.window_s, small.hop_s, small.min_window_s) == (4.0, 2.0, pytest.approx(0.6))
    assert small.aggregate == SAM.aggregate and small.direction == SAM.direction and small.peak_dbfs == -1.0
    assert window_plan(100, RATE, small) == [(0, 40), (20, 40), (40, 40), (60, 40)]


def test_policy_names_and_validation():
    assert kl_policy("audiocraft") is AC
    with pytest.raises(ValueError, match="stable-audio-metrics, audiocraft"):
        kl_policy("fadtk")
    with pytest.raises(ValueError, match="direction"):
        KLPolicy(window_s=10, hop_s=5, aggregate="mean-logits", direction="generated->reference")
    with pytest.raises(ValueError, match="aggregate"):
        KLPolicy(window_s=10, hop_s=5, aggregate="max", direction="generated||reference")
    with pytest.raises(ValueError, match="window_s"):
        KLPolicy(window_s=0, hop_s=5, aggregate="mean-logits", direction="generated||reference")


def test_paired_kl_errors():
    p = np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="empty"):
        paired_kl({}, {"a": p}, SAM)
    with pytest.raises(ValueError, match="no id in common"):
        paired_kl({"a": p}, {"b": p}, SAM)
    with pytest.raises(ValueError, match=r"no valid pair.*NaN"):
        paired_kl({"a": np.array([np.nan, 1.0])}, {"a": p}, SAM)


def test_paired_kl_rejects_bad_pairs_with_reasons():
    p = np.array([0.5, 0.5])
    gen = {"ok": p, "nan": np.array([np.nan, 0.5]), "sum": np.array([0.5, 0.6]), "neg": np.array([1.5, -0.5]),
           "labels": np.array([0.2, 0.3, 0.5]), "inf": np.array([0.5, 0.5])}  # fmt: skip
    ref = {k: p for k in gen} | {"inf": np.array([1.0, 0.0])}
    res = paired_kl(gen, ref, dataclasses.replace(SAM, eps=0.0))
    assert list(res.per_item) == ["ok"]
    assert "NaN" in res.rejects["nan"] and "sum to 1" in res.rejects["sum"] and "negative" in res.rejects["neg"]
    assert "shape" in res.rejects["labels"] and "infinite" in res.rejects["inf"]


def test_segment_counts_must_match():
    rng = np.random.default_rng(5)
    gen, ref = {"a": rng.dirichlet(np.ones(3), size=3)}, {"a": rng.dirichlet(np.ones(3), size=2)}
    with pytest.raises(ValueError, match="segment counts"):
        paired_kl(gen, ref, AC)
    with pytest.raises(ValueError, match="one distribution per file"):
        paired_kl(gen, {"a": gen["a"]}, SAM)


class NaNClassifier(LevelClassifier):
    def logits(self, windows):
        out = super().logits(windows)
        out[-1, 0] = np.nan
        return out


class WrongShapeClassifier(LevelClassifier):
    def logits(self, windows):
        return super().logits(windows)[:, :3]


def test_file_distribution_errors_name_the_problem():
    clf = LevelClassifier()
    audio = blocks(0.2, 0.4, 0.6)
    with pytest.raises(ValueError, match="NaN or infinite logits for 1 of 2 windows"):
        file_distribution(NaNClassifier(), audio, RATE, SAM)
    with pytest.raises(ValueError, match="shape"):
        file_distribution(WrongShapeClassifier(), audio, RATE, SAM)
    bad = audio.copy()
    bad[0, 7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        file_distribution(clf, bad, RATE, SAM)
    with pytest.raises(ValueError, match="no samples"):
        file_distribution(clf, np.zeros((1, 0), np.float32), RATE, SAM)
    with pytest.raises(ValueError, match="silence"):
        file_distribution(clf, np.zeros((1, 300), np.float32), RATE, SAM)
    assert file_distribution(clf, np.zeros((1, 300), np.float32), RATE, AC).shape == (3, 4)  # no normalisation
    with pytest.raises(ValueError, match=r"no window with more than 1\.5 s"):
        file_distribution(clf, audio[:, :15], RATE, SAM)
    with pytest.raises(ValueError, match="no window"):
        file_distribution(clf, audio[:, :1], RATE, AC)


def test_distributions_stream_rejects_bad_files_and_duplicates():
    clf = LevelClassifier()
    good = blocks(0.2, 0.4, 0.6)
    items = iter([("a", good, RATE), ("b", np.full((1, 300), np.nan, np.float32), RATE), ("c", good, RATE),
                  ("c", good, RATE), ("d", good[:, :5], RATE)])  # fmt: skip
    probs, rejects = distributions(clf, items, SAM)
    assert list(probs) == ["a"]
    assert "NaN" in rejects["b"] and "duplicate" in rejects["c"] and "no window" in rejects["d"]
