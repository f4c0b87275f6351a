"""Fréchet distance: closed forms, scipy's sqrtm formula, streaming statistics, saved metadata, FAD-inf, bad input."""

from __future__ import annotations

import dataclasses
import itertools
import json
import warnings

import numpy as np
import pytest
import scipy.linalg
from safetensors import safe_open
from safetensors.numpy import save_file

from wavefoundry.eval.embedders import EmbedderInfo
from wavefoundry.eval.frechet import (
    EmbeddingStats,
    FewSamplesWarning,
    RunningStats,
    StatsFileError,
    StatsMismatchError,
    check_comparable,
    extrapolate_fd,
    fad_inf,
    frechet_distance,
    psd_sqrt,
    stats_fd,
)

INFO = EmbedderInfo(
    name="toy", weights_sha256="ab" * 32, sample_rate=16000, window_s=0.96, hop_s=0.48, channel_mode="mono"
)


def random_spd(dim: int, rng: np.random.Generator, rank: int | None = None) -> np.ndarray:
    """A = G G^T / r with G (dim, r) Gaussian: full rank for r >= dim, rank r below."""
    g = rng.standard_normal((dim, rank or dim + 3))
    return g @ g.T / g.shape[1]


def sqrtm_fd(mu1, s1, mu2, s2) -> float:
    """The usual pytorch-fid / fadtk formula: tr sqrtm(S1 S2) of the non-symmetric product."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def stats_of(x: np.ndarray, info: EmbedderInfo = INFO, **extra) -> EmbeddingStats:
    return RunningStats(x.shape[1]).update(x).to_stats(info, **extra)


# ---------------------------------------------------------------------------------------------------------------
# Closed forms and the scipy reference


def test_commuting_covariances_closed_form():
    rng = np.random.default_rng(1)
    D = 10
    a, b = rng.uniform(0.1, 3.0, D), rng.uniform(0.1, 3.0, D)
    q, _ = np.linalg.qr(rng.standard_normal((D, D)))  # shared eigenvectors: S1 and S2 commute
    mu1, mu2 = rng.standard_normal(D), rng.standard_normal(D)
    expected_trace = float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    for s1, s2 in ((np.diag(a), np.diag(b)), ((q * a) @ q.T, (q * b) @ q.T)):
        result = frechet_distance(mu1, s1, mu2, s2)
        assert result.mean_term == pytest.approx(float(((mu1 - mu2) ** 2).sum()), rel=1e-12)
        assert result.trace_term == pytest.approx(expected_trace, rel=1e-9)
        assert result.fd == pytest.approx(result.mean_term + result.trace_term, rel=1e-12)
        assert float(result) == result.fd


def test_pure_translation_has_zero_trace_term():
    rng = np.random.default_rng(2)
    s = random_spd(16, rng)
    mu1 = rng.standard_normal(16)
    shift = rng.standard_normal(16)
    result = frechet_distance(mu1, s, mu1 + shift, s)
    assert result.trace_term == pytest.approx(0.0, abs=1e-9)
    assert result.fd == pytest.approx(float(shift @ shift), rel=1e-9)


@pytest.mark.parametrize("c", [0.25, 1.0, 3.0])
def test_scaled_covariance(c):
    rng = np.random.default_rng(3)
    s = random_spd(12, rng)
    mu = rng.standard_normal(12)
    result = frechet_distance(mu, s, mu, c**2 * s)
    assert result.mean_term == 0.0
    assert result.trace_term == pytest.approx((1 - c) ** 2 * np.trace(s), rel=1e-9, abs=1e-9)


def test_fd_of_a_set_with_itself_is_zero_and_fd_is_symmetric():
    rng = np.random.default_rng(4)
    a = stats_of(rng.standard_normal((500, 24)) * 3 + 5)
    b = stats_of(rng.standard_normal((400, 24)) @ rng.standard_normal((24, 24)))
    assert abs(stats_fd(a, a).fd) < 1e-8
    ab, ba = stats_fd(a, b), stats_fd(b, a)
    assert ab.fd == pytest.approx(ba.fd, rel=1e-10)
    assert ab.trace_term == pytest.approx(ba.trace_term, rel=1e-10)
    few = stats_of(rng.standard_normal((20, 64)))  # N < D: rank 19, where sqrtm(S S) is off by ~1e-5
    with pytest.warns(FewSamplesWarning):
        assert abs(stats_fd(few, few).fd) < 1e-8


@pytest.mark.parametrize("dim", [1, 2, 16, 64, 128])
def test_matches_scipy_sqrtm_on_random_spd(dim):
    rng = np.random.default_rng(dim)
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    s1, s2 = random_spd(dim, rng), random_spd(dim, rng) * 2.0
    result = frechet_distance(mu1, s1, mu2, s2)
    assert result.fd == pytest.approx(sqrtm_fd(mu1, s1, mu2, s2), rel=1e-9)


@pytest.mark.parametrize(("dim", "rank1", "rank2"), [(32, 8, 32), (32, 5, 7), (64, 3, 3), (100, 50, 20)])
def test_rank_deficient_matches_svd_closed_form(dim, rank1, rank2):
    """For S_i = A_i A_i^T the nonzero eigenvalues of S1^(1/2) S2 S1^(1/2) are those of (A1^T A2)(A1^T A2)^T,
    so tr sqrt(...) is the sum of singular values of the small matrix A1^T A2: exact, with no square root of a
    singular matrix."""
    rng = np.random.default_rng(dim + rank1)
    a1 = rng.standard_normal((dim, rank1)) / np.sqrt(rank1)
    a2 = rng.standard_normal((dim, rank2)) / np.sqrt(rank2)
    s1, s2 = a1 @ a1.T, a2 @ a2.T
    expected = np.trace(s1) + np.trace(s2) - 2 * np.linalg.svd(a1.T @ a2, compute_uv=False).sum()
    result = frechet_distance(np.zeros(dim), s1, np.zeros(dim), s2)
    assert result.trace_term == pytest.approx(expected, rel=1e-12)  # sqrtm and unclipped eigh: ~3e-8
    assert frechet_distance(np.zeros(dim), s2, np.zeros(dim), s1).fd == pytest.approx(expected, rel=1e-12)
    same = frechet_distance(np.zeros(dim), s1, np.zeros(dim), s1)
    assert abs(same.fd) < 1e-9  # sqrtm(S1 S1): ~1e-6 to 3e-5


def test_psd_sqrt_squares_back_and_clips_rounding_negatives():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((20, 4))
    s = a @ a.T  # rank 4: eigh gives tiny negative eigenvalues
    root = psd_sqrt(s)
    np.testing.assert_allclose(root @ root, s, atol=1e-10)
    np.testing.assert_allclose(root, root.T, atol=0)
    assert np.isfinite(root).all()


# ---------------------------------------------------------------------------------------------------------------
# Streaming statistics


def test_streaming_equals_np_cov_for_random_chunks():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2000, 9)) * rng.uniform(0.1, 10, 9) + 1e4  # a large offset tests the centring
    running = RunningStats(9)
    start = 0
    while start < len(x):
        stop = start + int(rng.integers(0, 300))  # includes empty chunks
        running.update(x[start:stop], chunk_rows=int(rng.integers(1, 100)))
        start = stop
    assert running.count == len(x)
    np.testing.assert_allclose(running.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(running.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    assert np.array_equal(running.cov, running.cov.T)


def test_merge_in_any_order_equals_the_concatenation():
    rng = np.random.default_rng(7)
    parts = [rng.standard_normal((n, 5)) + i for i, n in enumerate((1, 17, 250, 3, 90))]
    expected_mean, expected_cov = np.concatenate(parts).mean(axis=0), np.cov(np.concatenate(parts), rowvar=False)
    for order in itertools.islice(itertools.permutations(range(len(parts))), 0, None, 17):
        pieces = [RunningStats(5).update(parts[i]) for i in order]
        left = RunningStats(5)
        for piece in pieces:
            left.merge(piece)
        tree = pieces[0].merge(pieces[1]).merge(pieces[2].merge(pieces[3]).merge(pieces[4]))
        for merged in (left, tree):
            np.testing.assert_allclose(merged.mean, expected_mean, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(merged.cov, expected_cov, rtol=1e-10, atol=1e-12)


def test_merge_leaves_the_other_unchanged_and_from_stats_resumes():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((60, 3)) + 2
    other = RunningStats(3).update(y)
    before = other.cov
    resumed = RunningStats.from_stats(stats_of(x)).merge(other)
    np.testing.assert_array_equal(other.cov, before)
    np.testing.assert_allclose(resumed.cov, np.cov(np.concatenate([x, y]), rowvar=False), rtol=1e-10)
    assert resumed.count == 100


def test_float32_input_is_accumulated_in_float64():
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((3000, 4)) + 300).astype(np.float32)
    running = RunningStats(4).update(x, chunk_rows=64)
    np.testing.assert_allclose(running.cov, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# Saved statistics and metadata


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(10)
    stats = stats_of(rng.standard_normal((50, 6)), n_files=3, source="gen/")
    path = tmp_path / "ref.safetensors"
    stats.save(path)
    loaded = EmbeddingStats.load(path)
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    assert loaded.count == 50 and loaded.info == INFO and loaded.extra == {"n_files": 3, "source": "gen/"}
    assert loaded.metadata == stats.metadata
    with safe_open(str(path), framework="numpy") as fh:  # readable by any safetensors reader: JSON strings
        header = fh.metadata()
    assert json.loads(header["hop_s"]) == 0.48 and json.loads(header["name"]) == "toy"
    assert stats_fd(stats, loaded).fd == pytest.approx(0.0, abs=1e-10)


def test_mismatched_metadata_names_every_field():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((30, 4))
    a = stats_of(x)
    other = dataclasses.replace(INFO, name="other", hop_s=0.24, channel_mode="stereo")
    b = stats_of(x, other)
    with pytest.raises(StatsMismatchError, match="name: 'toy' \\(ref\\) vs 'other' \\(gen\\)") as err:
        stats_fd(a, b, labels=("ref", "gen"))
    assert err.value.fields == ("name", "hop_s", "channel_mode")
    assert "0.48" in str(err.value) and "stereo" in str(err.value)
    with pytest.raises(StatsMismatchError, match=r"dim: 4 .* vs 5") as err:
        check_comparable(a, stats_of(rng.standard_normal((30, 5))))
    assert err.value.fields == ("dim",)
    assert isinstance(err.value, ValueError)
    check_comparable(a, stats_of(x, dataclasses.replace(INFO)))  # equal infos pass


def test_fewer_samples_than_dimensions_warns():
    rng = np.random.default_rng(12)
    small, large = stats_of(rng.standard_normal((5, 8))), stats_of(rng.standard_normal((50, 8)))
    with pytest.warns(FewSamplesWarning, match="5 embeddings for dimension 8"):
        stats_fd(large, small)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats_fd(large, large)


def test_bad_files_give_clear_errors(tmp_path):
    rng = np.random.default_rng(13)
    stats = stats_of(rng.standard_normal((20, 3)))
    with pytest.raises(StatsFileError, match="no such statistics file"):
        EmbeddingStats.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(StatsFileError, match="not a readable safetensors"):
        EmbeddingStats.load(junk)
    path = tmp_path / "s.safetensors"
    stats.save(path)
    with safe_open(str(path), framework="numpy") as fh:
        header = dict(fh.metadata())
    tensors = {"mu": stats.mu.copy(), "sigma": stats.sigma.copy()}

    def write(tensors, header, name):
        save_file(tensors, str(tmp_path / name), metadata=header)
        return tmp_path / name

    cases = {
        "format": ({**tensors}, {**header, "format": '"something.else"'}),
        "lacks name": ({**tensors}, {k: v for k, v in header.items() if k != "name"}),
        "not symmetric": ({**tensors, "sigma": stats.sigma + np.triu(np.ones((3, 3)), 1)}, header),
        "NaN": ({**tensors, "mu": np.array([0.0, np.nan, 1.0])}, header),
        "expected tensors": ({**tensors, "extra": np.zeros(2)}, header),
        "header says dim": ({**tensors, "mu": np.zeros(4)}, header),
        "channel_mode": ({**tensors}, {**header, "channel_mode": '"quad"'}),
        "not JSON": ({**tensors}, {**header, "source": "{oops"}),
    }
    for i, (message, (t, h)) in enumerate(cases.items()):
        with pytest.raises(StatsFileError, match=message):
            EmbeddingStats.load(write(t, h, f"bad{i}.safetensors"))


def test_extra_metadata_is_checked():
    rng = np.random.default_rng(14)
    running = RunningStats(2).update(rng.standard_normal((10, 2)))
    with pytest.raises(ValueError, match="reserved"):
        running.to_stats(INFO, count=3)
    with pytest.raises(ValueError, match="JSON"):
        running.to_stats(INFO, when=object())


# ---------------------------------------------------------------------------------------------------------------
# Bad input


def test_bad_embeddings_and_covariances_raise():
    running = RunningStats(4)
    x = np.ones((10, 4))
    x[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf \(row 7\)"):
        running.update(x, chunk_rows=3)
    with pytest.raises(ValueError, match="row 1"):
        running.update(np.array([[0.0] * 4, [np.inf, 0, 0, 0]]))
    with pytest.raises(ValueError, match="dimension 5, expected 4"):
        running.update(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"must be \(N, D\)"):
        running.update(np.zeros(4))
    with pytest.raises(ValueError, match="real numbers"):
        running.update(np.zeros((3, 4), dtype=complex))
    with pytest.raises(ValueError, match="chunk_rows must be >= 1"):
        running.update(np.zeros((3, 4)), chunk_rows=0)
    with pytest.raises(ValueError, match="need at least 2 embeddings, got 0"):
        running.to_stats(INFO)
    running.update(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="need at least 2 embeddings, got 1"):
        _ = running.cov
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        RunningStats(0)
    with pytest.raises(ValueError, match="cannot merge statistics of dimension 3"):
        RunningStats(4).merge(RunningStats(3))

    eye = np.eye(3)
    with pytest.raises(ValueError, match="different dimensions: 3 vs 2"):
        frechet_distance(np.zeros(3), eye, np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match=r"sigma2 must be \(3, 3\)"):
        frechet_distance(np.zeros(3), eye, np.zeros(3), np.eye(2))
    with pytest.raises(ValueError, match="mu1 contains NaN"):
        frechet_distance(np.array([0, np.nan, 0]), eye, np.zeros(3), eye)
    with pytest.raises(ValueError, match="sigma2 contains NaN"):
        frechet_distance(np.zeros(3), eye, np.zeros(3), np.full((3, 3), np.inf))
    with pytest.raises(ValueError, match="sigma1 is not symmetric"):
        frechet_distance(np.zeros(3), np.triu(np.ones((3, 3))), np.zeros(3), eye)
    with pytest.raises(ValueError, match="sigma1 is not positive semi-definite"):
        frechet_distance(np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="sigma2 has a negative variance"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), -np.eye(2))
    good = EmbeddingStats(mu=np.zeros(2), sigma=np.eye(2), count=10, info=INFO)
    indefinite = EmbeddingStats(mu=np.zeros(2), sigma=np.array([[1.0, 2.0], [2.0, 1.0]]), count=10, info=INFO)
    with pytest.raises(ValueError, match="gen sigma is not positive semi-definite"):
        stats_fd(good, indefinite, labels=("ref", "gen"))
    with pytest.raises(ValueError, match=r"non-empty \(D,\)"):
        frechet_distance(np.zeros(0), np.zeros((0, 0)), np.zeros(0), np.zeros((0, 0)))


# ---------------------------------------------------------------------------------------------------------------
# FAD-inf


def test_fad_inf_recovers_the_true_fd_where_the_plug_in_is_biased():
    """Samples of N(0, I) against the exact reference N(0, diag(b)): true FD = sum (1 - sqrt b)^2. The plug-in FD
    of M samples is biased upward by about c / M; the 1/N intercept removes it (mean over a few pools)."""
    D, M = 32, 2000
    b = np.linspace(0.5, 2.0, D)
    true_fd = float(((1 - np.sqrt(b)) ** 2).sum())
    plug_errors, inf_errors, r2 = [], [], []
    for seed in range(5):
        x = np.random.default_rng(seed).standard_normal((M, D))
        result = extrapolate_fd(x, np.zeros(D), np.diag(b), min_size=200, steps=10, seed=seed)
        plug = frechet_distance(x.mean(axis=0), np.cov(x, rowvar=False), np.zeros(D), np.diag(b)).fd
        plug_errors.append(plug - true_fd)
        inf_errors.append(result.fd_inf - true_fd)
        r2.append(result.r2)
        assert result.points[-1] == (M, pytest.approx(plug, rel=1e-9))  # largest subset = all, no replacement
        assert result.slope > 0
    assert np.mean(plug_errors) > 0.12  # about 0.17: the bias the extrapolation removes
    assert abs(np.mean(inf_errors)) < 0.06
    assert min(r2) > 0.8


def test_fad_inf_is_seeded_and_checks_the_reference(tmp_path):
    rng = np.random.default_rng(15)
    x = rng.standard_normal((600, 4)).astype(np.float32)
    reference = stats_of(rng.standard_normal((300, 4)))
    first = fad_inf(x, INFO, reference, min_size=100, steps=6, seed=3)
    assert first == fad_inf(x, INFO, reference, min_size=100, steps=6, seed=3)
    assert first != fad_inf(x, INFO, reference, min_size=100, steps=6, seed=4)
    assert [n for n, _ in first.points] == [100, 200, 300, 400, 500, 600]
    with_replacement = fad_inf(x, INFO, reference, sizes=[50, 100, 600, 900], replace=True)
    assert [n for n, _ in with_replacement.points] == [50, 100, 600, 900]
    with pytest.raises(StatsMismatchError, match="sample_rate: 44100 \\(embeddings\\) vs 16000 \\(reference\\)"):
        fad_inf(x, dataclasses.replace(INFO, sample_rate=44100), reference)
    with pytest.raises(StatsMismatchError, match="dim"):
        fad_inf(x[:, :3], INFO, reference)


def test_fad_inf_bad_input():
    mu, sigma = np.zeros(3), np.eye(3)
    x = np.random.default_rng(16).standard_normal((50, 3))
    with pytest.raises(ValueError, match="at least min_size=500 embeddings, got 50"):
        extrapolate_fd(x, mu, sigma)
    with pytest.raises(ValueError, match="at least min_size=500 embeddings, got 0"):
        extrapolate_fd(np.zeros((0, 3)), mu, sigma)
    with pytest.raises(ValueError, match="distinct"):
        extrapolate_fd(x, mu, sigma, sizes=[10, 10])
    with pytest.raises(ValueError, match=r"in 2\.\.50"):
        extrapolate_fd(x, mu, sigma, sizes=[10, 60])
    bad = x.copy()
    bad[42, 0] = np.inf
    with pytest.raises(ValueError, match="row 42"):
        extrapolate_fd(bad, mu, sigma, min_size=10, steps=3)
    with pytest.raises(ValueError, match="reference has 3"):
        extrapolate_fd(x[:, :2], mu, sigma, min_size=10)
    with pytest.warns(FewSamplesWarning, match="smallest subset"):
        extrapolate_fd(x, mu, sigma, sizes=[2, 50])
