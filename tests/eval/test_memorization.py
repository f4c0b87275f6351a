"""Memorization analysis: exact blockwise nearest neighbours (against scipy's brute force), leave-one-out
distances, the copy threshold, and the report's flags, rejects and errors."""

import json

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from wavefoundry.eval.memorization import (
    EXACT_COSINE_EPS,
    copy_threshold,
    memorization_report,
    nearest_neighbours,
    self_duplicate_distances,
)


def _brute_force(q, keys, k, metric):
    d = cdist(q, keys, metric=metric)  # (M, N) float64
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]  # ties: lower index first
    return idx, np.take_along_axis(d, idx, 1)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("chunk", [1, 7, 50, 101, 4096])
def test_nearest_neighbours_equal_brute_force_across_chunk_boundaries(metric, chunk):
    rng = np.random.default_rng(0)
    q, keys = rng.normal(size=(53, 12)), 3 * rng.normal(size=(101, 12)).astype(np.float32)
    keys[60:70] = keys[3]  # exact ties spread over blocks: must go to the lower index, as in a stable sort
    q[5] = keys[3]
    idx, dist = nearest_neighbours(q, keys, 13, metric=metric, chunk=chunk)
    ref_idx, ref_dist = _brute_force(q, keys.astype(np.float64), 13, metric)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=0, atol=1e-12)
    assert idx.dtype == np.int64 and dist.dtype == np.float64 and idx.shape == (53, 13)


def test_nearest_neighbours_k_equal_to_n_sorts_everything():
    rng = np.random.default_rng(1)
    q, keys = rng.normal(size=(4, 3)), rng.normal(size=(9, 3))
    idx, dist = nearest_neighbours(q, keys, 9, metric="euclidean", chunk=4)
    np.testing.assert_array_equal(idx, _brute_force(q, keys, 9, "euclidean")[0])
    assert (np.diff(dist, axis=1) >= 0).all()


def test_close_euclidean_pairs_do_not_cancel():
    """|q|^2 + |k|^2 - 2 q.k loses ~1e-8 at norm 1 for close pairs; the kept pairs are recomputed directly."""
    keys = np.full((3, 4), 100.0)
    keys[1] += [1e-7, 0, 0, 0]
    keys[2] += 1.0
    _, dist = nearest_neighbours(keys[1:2], keys, 2, metric="euclidean")
    np.testing.assert_allclose(dist[0], [0.0, 1e-7], rtol=1e-6, atol=0)


def test_self_duplicate_distances_leave_one_out_by_index():
    rng = np.random.default_rng(2)
    keys = rng.normal(size=(40, 6))
    keys[30] = keys[10]  # a duplicate: distance 0 to its copy, not to itself
    d = self_duplicate_distances(keys, chunk=8)
    ref = cdist(keys, keys, "cosine")
    np.fill_diagonal(ref, np.inf)
    np.testing.assert_allclose(d, ref.min(axis=1), atol=1e-12)
    assert d[10] == d[30] == 0.0 and (np.delete(d, [10, 30]) > 1e-3).all()
    sampled = self_duplicate_distances(keys, sample=15, seed=3)
    assert sampled.shape == (15,) and set(np.round(sampled, 12)) <= set(np.round(d, 12))
    np.testing.assert_array_equal(sampled, self_duplicate_distances(keys, sample=15, seed=3))


def test_copy_threshold_is_the_inverted_cdf_quantile():
    d = np.array([5.0, 0.1, 3.0, 0.2, 4.0, 0.0, 2.0, 1.0, 6.0, 7.0])
    assert copy_threshold(d, 0.3) == 0.2  # ceil(0.3 * 10) = 3rd smallest of 0, 0.1, 0.2, ...
    assert copy_threshold(d, 0.31) == 1.0  # 4th smallest
    assert copy_threshold(d, 0.99) == 7.0
    for bad, message in [([], "non-empty"), ([0.1, np.nan], "finite"), ([-1.0], ">= 0")]:
        with pytest.raises(ValueError, match=message):
            copy_threshold(bad)
    with pytest.raises(ValueError, match="quantile"):
        copy_threshold(d, 1.0)


def _training_set_with_duplicates(rng, n=300, dim=16, n_dups=15, noise=1e-3):
    """Random training embeddings where rows n-n_dups.. are near-copies (relative noise) of rows 0..n_dups-1."""
    train = rng.normal(size=(n, dim))
    train[n - n_dups :] = train[:n_dups] * (1 + noise * rng.normal(size=(n_dups, dim)))
    return train


def test_threshold_from_a_training_set_with_known_duplicates():
    rng = np.random.default_rng(4)
    train = _training_set_with_duplicates(rng)
    d = self_duplicate_distances(train)
    dup_rows = np.r_[0:15, 285:300]
    assert d[dup_rows].max() < 1e-5 < 0.05 < np.delete(d, dup_rows).min()  # the planted pairs stand apart
    thr = copy_threshold(d, quantile=30 / 300)  # the known share of duplicated rows
    assert thr == d[dup_rows].max()  # the largest duplicate distance: every duplicate pair is within it


def test_report_flags_planted_exact_and_near_copies_and_nothing_else():
    rng = np.random.default_rng(5)
    train = _training_set_with_duplicates(rng)
    train_ids = [f"t{i:03d}" for i in range(len(train))]
    gen = rng.normal(size=(40, 16))
    gen[7] = train[100]  # an exact copy
    gen[21] = train[200] * (1 + 1e-7 * rng.normal(size=16))  # float noise: still exact
    gen[33] = train[50] * (1 + 3e-4 * rng.normal(size=16))  # as close as the training duplicates: near
    gen_ids = [f"g{i:02d}" for i in range(40)]
    rep = memorization_report(gen_ids, gen, train_ids, train, k=3, top=5, quantile=30 / 300)
    assert {f["id"]: (f["flag"], f["nearest"]) for f in rep["flagged"]} == {
        "g07": ("exact", "t100"), "g21": ("exact", "t200"), "g33": ("near", "t050")}  # fmt: skip
    summary = rep["summary"]
    assert summary["counts"] == {"exact": 2, "near": 1, "none": 37}
    assert summary["threshold"] == rep["threshold"]["value"]
    assert rep["metric"] == "memorization" and rep["distance"] == "cosine"
    assert rep["per_item"]["g33"] == {"nearest": "t050", "distance": rep["distances"][33], "flag": "near"}
    assert len(rep["distances"]) == 40 and min(rep["distances"]) == summary["nearest_distance"]["min"] == 0.0
    closest = rep["closest"]
    assert [c["id"] for c in closest[:3]] == ["g07", "g21", "g33"] and len(closest) == 5
    assert closest[0]["neighbours"][0] == {"id": "t100", "distance": 0.0} and len(closest[0]["neighbours"]) == 3
    assert all(c["flag"] is None for c in closest[3:])
    dists = [c["neighbours"][0]["distance"] for c in closest]
    assert dists == sorted(dists) and closest[1]["neighbours"][0]["distance"] <= EXACT_COSINE_EPS
    thr = rep["threshold"]
    assert thr["source"] == "training leave-one-out quantile" and thr["n_queries"] == 300
    assert thr["training_exact_duplicate_pairs"] == 0  # the planted training pairs are near, not exact
    assert summary["n_scored"] == 40 and rep["rejected"] == []
    json.dumps(rep)  # JSON-ready: plain Python types only


def test_report_with_a_given_threshold_and_the_euclidean_metric():
    rng = np.random.default_rng(6)
    train = rng.normal(size=(50, 8))
    gen = rng.normal(size=(6, 8))
    gen[2] = train[9] + 0.01
    rep = memorization_report(list("abcdef"), gen, [str(i) for i in range(50)], train, metric="euclidean",
                              threshold=0.05, k=2, top=2)  # fmt: skip
    assert rep["threshold"] == {"value": 0.05, "source": "given"}
    assert [(f["id"], f["flag"], f["nearest"]) for f in rep["flagged"]] == [("c", "near", "9")]
    np.testing.assert_allclose(rep["flagged"][0]["distance"], 0.01 * np.sqrt(8), rtol=1e-12)


def test_nan_rows_are_rejected_with_their_id_and_reason():
    rng = np.random.default_rng(7)
    train, gen = rng.normal(size=(30, 4)), rng.normal(size=(5, 4))
    train[3, 1], gen[1, 0], gen[4] = np.nan, np.inf, 0.0  # gen 4: a zero vector has no cosine direction
    gen[2] = train[3]
    gen[2, 1] = 1.0
    rep = memorization_report(list("vwxyz"), gen, [f"t{i}" for i in range(30)], train, k=2, threshold=0.0)
    assert rep["rejected"] == [
        {"set": "generations", "id": "w", "reason": "embedding has 0 NaN and 1 infinite values"},
        {"set": "generations", "id": "z", "reason": "zero vector (no direction for the cosine distance)"},
        {"set": "training", "id": "t3", "reason": "embedding has 1 NaN and 0 infinite values"},
    ]
    assert (rep["summary"]["n_generations"], rep["summary"]["n_scored"], rep["summary"]["n_training"]) == (5, 3, 30)
    assert list(rep["per_item"]) == ["v", "x", "y"] and len(rep["distances"]) == 3
    ids = {c["id"] for c in rep["closest"]}
    assert ids == {"v", "x", "y"} and all(n["id"] != "t3" for c in rep["closest"] for n in c["neighbours"])
    assert all(np.isfinite(n["distance"]) for c in rep["closest"] for n in c["neighbours"])
    with pytest.raises(ValueError, match="no valid generation embeddings"):
        memorization_report(["a"], np.full((1, 4), np.nan), ["t"], train[:1], k=1, threshold=0.1)
    with pytest.raises(ValueError, match=r"queries: 2 rows cannot be searched \(row 1: embedding has 0 NaN"):
        nearest_neighbours(gen, train[:5], 1)


def test_bad_input_is_a_clear_error():
    rng = np.random.default_rng(8)
    train, gen = rng.normal(size=(10, 4)), rng.normal(size=(3, 4))
    ids = ["a", "b", "c"]
    train_ids = [f"t{i}" for i in range(10)]
    cases = [
        (dict(gen_ids=["a", "b", "a"]), "generations: duplicate ids a"),
        (dict(train_ids=[*train_ids[:9], "t0"]), "training: duplicate ids t0"),
        (dict(gen_ids=["a", "b"]), "2 ids for 3 embedding rows"),
        (dict(train_emb=rng.normal(size=(10, 5))), "dimension 4 but training embeddings 5"),
        (dict(gen_emb=np.zeros((0, 4))), "non-empty"),
        (dict(gen_emb=rng.normal(size=(3,))), r"\(N, D\) array"),
        (dict(k=11), r"k must be in \[1, 10\]"),
        (dict(top=0), "top must be >= 1"),
        (dict(metric="manhattan"), "unknown metric 'manhattan'; valid: cosine, euclidean"),
        (dict(threshold=float("nan")), "threshold must be finite"),
    ]
    for change, message in cases:
        kw = dict(gen_ids=ids, gen_emb=gen, train_ids=train_ids, train_emb=train) | change
        with pytest.raises(ValueError, match=message):
            memorization_report(kw.pop("gen_ids"), kw.pop("gen_emb"), kw.pop("train_ids"), kw.pop("train_emb"), **kw)
    with pytest.raises(ValueError, match="at least 2 training rows"):
        memorization_report(ids, gen, ["t0"], train[:1], k=1)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        nearest_neighbours(gen, train, 1, chunk=0)


def test_report_is_reproducible_and_independent_of_training_order_and_chunk():
    rng = np.random.default_rng(9)
    train = _training_set_with_duplicates(rng, n=120)
    gen = rng.normal(size=(12, 16))
    gen[4] = train[17]
    ids, train_ids = [f"g{i}" for i in range(12)], [f"t{i}" for i in range(120)]
    kw = dict(k=4, top=6, threshold_sample=60, seed=1)
    first = memorization_report(ids, gen, train_ids, train, **kw)
    assert json.dumps(first) == json.dumps(memorization_report(ids, gen, train_ids, train, **kw))
    perm = rng.permutation(120)
    shuffled = memorization_report(ids, gen, [train_ids[i] for i in perm], train[perm], k=4, top=6, threshold=0.01,
                                   chunk=7)  # fmt: skip
    same = memorization_report(ids, torch.from_numpy(gen), train_ids, torch.from_numpy(train), k=4, top=6,
                               threshold=0.01)  # fmt: skip
    assert [c["id"] for c in shuffled["closest"]] == [c["id"] for c in same["closest"]]
    for a, b in zip(shuffled["closest"], same["closest"]):
        assert [n["id"] for n in a["neighbours"]] == [n["id"] for n in b["neighbours"]]
        np.testing.assert_allclose([n["distance"] for n in a["neighbours"]],
                                   [n["distance"] for n in b["neighbours"]], atol=1e-12)  # fmt: skip
    assert same["closest"][0]["flag"] == "exact" and same["closest"][0]["id"] == "g4"
    assert first["threshold"]["n_queries"] == 60 and first["threshold"]["sample_seed"] == 1
