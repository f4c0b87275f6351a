"""Memorization analysis: how close do generations come to the training set?

Following the memorization study of Stable Audio Open (Evans et al. 2024, "Stable Audio Open", memorization
analysis), every generation and every training clip is embedded with one audio embedder (CLAP there), each
generation's nearest training clips are found, and the generations closest to the training set are listed with
their neighbours so that a person can listen to the pairs. Two flags point at the pairs worth a listen:

* ``"exact"``: the embeddings are the same up to float rounding (see :data:`EXACT_COSINE_EPS`);
* ``"near"``: closer than ``threshold``, by default a low quantile of the training set's own leave-one-out
  nearest-neighbour distances (:func:`copy_threshold`): a generation is flagged when it is as close to a training
  clip as the closest training clips are to each other (duplicated uploads, re-encodes, loops of one recording).

Arrays in, numbers out: the caller embeds the audio (docs/memorization.md). Distances are computed in float64 in
blocks of ``chunk`` x ``chunk`` pairs, so memory stays bounded for a large training set, and the search is exact
(every pair is scored; ties go to the lower training index).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

METRICS: tuple[str, ...] = ("cosine", "euclidean")
#: Cosine distance (1 - cos) at or below which two embeddings count as the same ("exact"). A relative change r of
#: an embedding moves the cosine distance by about r^2 / 2: float32 rounding of one clip embedded twice (r ~ 1e-6)
#: gives ~1e-12, so 1e-8 (r up to ~1.4e-4, an angle of 0.008 degrees) means "the same clip up to float noise".
#: For the euclidean metric the same rule scaled by the neighbour's norm: d <= sqrt(2 * EXACT_COSINE_EPS) * |key|
#: (the two agree for unit vectors, where d_euclid = sqrt(2 d_cos)).
EXACT_COSINE_EPS = 1e-8
_EXACT_RULES = {
    "cosine": f"cosine distance <= {EXACT_COSINE_EPS:g}",
    "euclidean": f"euclidean distance <= {math.sqrt(2 * EXACT_COSINE_EPS):.6g} x the neighbour's norm",
}
#: Default quantile of the training set's leave-one-out distances that sets the "near" threshold.
DEFAULT_QUANTILE = 0.01
#: Relative rounding allowance of the matmul scores when proposing candidates (float64 eps is 2.2e-16).
_SCORE_RTOL = 1e-9
#: Rows per block: a block holds chunk x (chunk + k) float64 distances and int64 indices (~70 MB at 2048).
DEFAULT_CHUNK = 2048


def _matrix(x: Any, name: str, device: torch.device) -> Tensor:
    """(N, D) floating tensor on ``device`` (float32 stays float32: blocks are cast to float64 when scored)."""
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must hold real numbers, got dtype {t.dtype}")
    return t.to(device=device, dtype=t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float64)


def _bad_rows(x: Tensor, metric: str) -> dict[int, str]:
    """Row index -> why it cannot be searched: non-finite values, or (cosine) a zero vector."""
    bad: dict[int, str] = {}
    finite = torch.isfinite(x)
    for i in torch.nonzero(~finite.all(dim=1)).flatten().tolist():
        n_nan = int(torch.isnan(x[i]).sum())
        bad[i] = f"embedding has {n_nan} NaN and {int((~finite[i]).sum()) - n_nan} infinite values"
    if metric == "cosine":
        zero = (x.abs().sum(dim=1) == 0) & finite.all(dim=1)
        for i in torch.nonzero(zero).flatten().tolist():
            bad[i] = "zero vector (no direction for the cosine distance)"
    return bad


def _check_searchable(x: Tensor, name: str, metric: str) -> None:
    bad = _bad_rows(x, metric)
    if bad:
        first = ", ".join(f"row {i}: {why}" for i, why in list(bad.items())[:3])
        raise ValueError(f"{name}: {len(bad)} rows cannot be searched ({first})")


def _prep(x: Tensor, metric: str) -> Tensor:
    """Rows in float64, scaled to unit norm for cosine (a per-row operation: the same in any block)."""
    x = x.to(torch.float64)
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True) if metric == "cosine" else x


def _scores(q: Tensor, keys: Tensor, metric: str) -> tuple[Tensor, Tensor]:
    """Block scores (m, n) that order like the distances (1 - cos, or squared euclidean by |q|^2 + |k|^2 - 2 q.k)
    and a per-row bound (m, 1) of their matmul rounding error."""
    dot = q @ keys.T  # (m, n)
    if metric == "cosine":
        return 1.0 - dot, torch.full((q.shape[0], 1), _SCORE_RTOL, dtype=dot.dtype, device=dot.device)
    q_sq, k_sq = (q * q).sum(dim=1, keepdim=True), (keys * keys).sum(dim=1)  # (m, 1), (n,)
    return q_sq + k_sq[None, :] - 2.0 * dot, _SCORE_RTOL * (q_sq + k_sq.max())


def _pair_distances(q: Tensor, keys: Tensor, cand: Tensor, metric: str, chunk: int) -> Tensor:
    """Distances (m, c) of query rows to the keys ``cand`` (m, c), each pair computed on its own (elementwise, not
    by a matmul whose rounding depends on the block), so equal keys get bit-equal distances."""
    step = max(1, chunk * chunk // max(1, cand.shape[1] * q.shape[1]))  # bound the (rows, c, D) tensor
    out = []
    for r in range(0, q.shape[0], step):
        kc = _prep(keys[cand[r : r + step]].flatten(0, 1), metric).view(*cand[r : r + step].shape, -1)  # (s, c, D)
        qr = q[r : r + step, None, :]  # (s, 1, D)
        if metric == "cosine":
            out.append((1.0 - (qr * kc).sum(dim=-1)).clamp_min(0.0))
        else:
            out.append(torch.linalg.vector_norm(qr - kc, dim=-1))
    return torch.cat(out)


def _block_candidates(q: Tensor, kb: Tensor, k: int, metric: str, exclude: Tensor | None, k0: int) -> Tensor:
    """Indices (m, c) into ``kb`` of every key whose score is within rounding of the k-th smallest, c >= k."""
    score, tol = _scores(q, kb, metric)
    if exclude is not None:
        own = torch.arange(k0, k0 + kb.shape[0], device=q.device)[None, :] == exclude[:, None]  # (m, n)
        score = score.masked_fill(own, math.inf)
    kth = torch.topk(score, min(k, kb.shape[0]), dim=1, largest=False).values[:, -1:]  # (m, 1)
    c = int((score <= kth + tol).sum(dim=1).max())
    return torch.topk(score, min(c, kb.shape[0]), dim=1, largest=False).indices  # (m, c), any order


def _knn(queries: Tensor, keys: Tensor, k: int, metric: str, chunk: int,
         exclude: Tensor | None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Exact k nearest keys of every query, blockwise; ``exclude[i]`` is a key index query i may not match.

    Each key block proposes its candidates by a matmul (fast, rounded); the candidates' distances are then
    computed pair by pair and merged with the best so far, sorted by (distance, index).
    """
    M = queries.shape[0]
    out_i = torch.empty(M, k, dtype=torch.int64, device=queries.device)
    out_d = torch.empty(M, k, dtype=torch.float64, device=queries.device)
    for q0 in range(0, M, chunk):
        q = _prep(queries[q0 : q0 + chunk], metric)  # (m, D)
        ex = exclude[q0 : q0 + chunk] if exclude is not None else None
        best_d = torch.empty(q.shape[0], 0, dtype=torch.float64, device=q.device)  # (m, <= k)
        best_i = torch.empty(q.shape[0], 0, dtype=torch.int64, device=q.device)
        for k0 in range(0, keys.shape[0], chunk):
            kb = _prep(keys[k0 : k0 + chunk], metric)  # (n, D)
            cand = torch.sort(_block_candidates(q, kb, k, metric, ex, k0), dim=1).values + k0  # (m, c) by index
            cand_d = _pair_distances(q, keys, cand, metric, chunk)
            if ex is not None:
                cand_d = cand_d.masked_fill(cand == ex[:, None], math.inf)
            # Kept candidates have lower indices than this block's, so a stable sort breaks ties by index.
            merged_d, merged_i = torch.cat([best_d, cand_d], 1), torch.cat([best_i, cand], 1)  # (m, <= k + c)
            order = torch.sort(merged_d, dim=1, stable=True).indices[:, :k]  # (m, k)
            best_d, best_i = merged_d.gather(1, order), merged_i.gather(1, order)
        out_d[q0 : q0 + q.shape[0]], out_i[q0 : q0 + q.shape[0]] = best_d, best_i
    return out_i, out_d


def _check_args(k: int, metric: str, chunk: int, n_keys: int) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if not 1 <= k <= n_keys:
        raise ValueError(f"k must be in [1, {n_keys}] (the number of keys that can be matched), got {k}")


def nearest_neighbours(
    queries: np.ndarray | Tensor,
    keys: np.ndarray | Tensor,
    k: int,
    *,
    metric: str = "cosine",
    chunk: int = DEFAULT_CHUNK,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest keys of every query row.

    Args:
        queries: (M, D) embeddings (generations).
        keys: (N, D) embeddings (the training set).
        k: neighbours per query, 1 <= k <= N.
        metric: "cosine" (1 - cos, in [0, 2]) or "euclidean".
        chunk: rows of each set per block; bounds memory to O(chunk * (chunk + k)).
        device: where to compute (default CPU).

    Returns:
        (indices (M, k) int64 into ``keys``, distances (M, k) float64), nearest first; ties go to the lower index.

    Raises:
        ValueError: bad shapes, a dimension mismatch, NaN/inf rows, zero rows under "cosine", or a bad k/metric.
    """
    device = torch.device(device or "cpu")
    q, keys_t = _matrix(queries, "queries", device), _matrix(keys, "keys", device)
    if q.shape[1] != keys_t.shape[1]:
        raise ValueError(f"queries have dimension {q.shape[1]} but keys {keys_t.shape[1]}")
    _check_args(k, metric, chunk, keys_t.shape[0])
    _check_searchable(q, "queries", metric)
    _check_searchable(keys_t, "keys", metric)
    idx, dist = _knn(q, keys_t, k, metric, chunk, None)
    return idx.cpu().numpy(), dist.cpu().numpy()


def _self_knn(keys: Tensor, metric: str, chunk: int, sample: int | None, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """(query rows (S,), nearest other row (S,), its distance (S,)) of the training set against itself."""
    N = keys.shape[0]
    if N < 2:
        raise ValueError(f"leave-one-out distances need at least 2 training rows, got {N}")
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be >= 1, got {sample}")
    if sample is None or sample >= N:
        rows = torch.arange(N, device=keys.device)
    else:  # a seeded subset of queries, each still searched against every other row
        picked = np.sort(np.random.default_rng(seed).choice(N, size=sample, replace=False))
        rows = torch.from_numpy(picked).to(keys.device)
    idx, dist = _knn(keys[rows], keys, 1, metric, chunk, rows)
    return rows, idx[:, 0], dist[:, 0]


def self_duplicate_distances(
    keys: np.ndarray | Tensor,
    *,
    metric: str = "cosine",
    chunk: int = DEFAULT_CHUNK,
    sample: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Leave-one-out nearest-neighbour distance of each training row to the rest of the training set.

    A row's own index is excluded (not its value), so a duplicated clip gets distance 0 to its copy.

    Args:
        keys: (N, D) training embeddings, N >= 2.
        metric, chunk, device: as in :func:`nearest_neighbours`.
        sample: only this many rows (drawn without replacement with ``seed``) are queried, each against all N:
            O(sample * N) work instead of O(N^2) for a large training set.

    Returns:
        (S,) float64 distances, S = N or ``sample``, in row order.
    """
    keys_t = _matrix(keys, "keys", torch.device(device or "cpu"))
    _check_args(1, metric, chunk, keys_t.shape[0])
    _check_searchable(keys_t, "keys", metric)
    return _self_knn(keys_t, metric, chunk, sample, seed)[2].cpu().numpy()


def copy_threshold(train_nn_distances: np.ndarray | Sequence[float], quantile: float = DEFAULT_QUANTILE) -> float:
    """The "near copy" distance: the ``quantile`` of the training set's leave-one-out nearest-neighbour distances.

    With n distances the result is the ceil(quantile * n)-th smallest (numpy's "inverted_cdf" quantile), an
    observed distance: the closest ``quantile`` fraction of training clips are at most this far from another
    training clip. Set ``quantile`` to the expected share of duplicated clips in the training set (Freesound-like
    sets hold re-uploads and re-encodes); the default 0.01 flags generations as close to the training set as the
    closest 1 % of training pairs.

    Raises:
        ValueError: empty, non-finite or negative distances, or a quantile outside (0, 1).
    """
    d = np.asarray(train_nn_distances, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"train_nn_distances must be a non-empty 1-D array, got shape {d.shape}")
    if not np.isfinite(d).all() or (d < 0).any():
        raise ValueError("train_nn_distances must be finite and >= 0")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    return float(np.quantile(d, quantile, method="inverted_cdf"))


def _is_exact(dist: Tensor, key_norms: Tensor, metric: str) -> Tensor:
    """Bool mask: distances at the float-rounding level (:data:`EXACT_COSINE_EPS`)."""
    if metric == "cosine":
        return dist <= EXACT_COSINE_EPS
    return dist <= math.sqrt(2 * EXACT_COSINE_EPS) * key_norms


def _check_ids(ids: Sequence[str], n_rows: int, name: str) -> list[str]:
    ids = list(ids)
    if len(ids) != n_rows:
        raise ValueError(f"{name}: {len(ids)} ids for {n_rows} embedding rows")
    if not all(isinstance(i, str) and i for i in ids):
        raise ValueError(f"{name}: ids must be non-empty strings")
    dups = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dups:
        raise ValueError(f"{name}: duplicate ids {', '.join(dups[:5])}" + (" ..." if len(dups) > 5 else ""))
    return ids


def _split_valid(ids: list[str], x: Tensor, metric: str, name: str) -> tuple[list[int], list[dict[str, str]]]:
    """(indices of searchable rows, rejects with id and reason)."""
    bad = _bad_rows(x, metric)
    rejects = [{"set": name, "id": ids[i], "reason": why} for i, why in sorted(bad.items())]
    return [i for i in range(len(ids)) if i not in bad], rejects


def _threshold(threshold: float | None, train: Tensor, train_ids: list[str], metric: str, quantile: float,
               chunk: int, sample: int | None, seed: int) -> dict[str, Any]:  # fmt: skip
    """The "near" threshold, given or from the training set, with how it was set."""
    if threshold is not None:
        if not (math.isfinite(threshold) and threshold >= 0):
            raise ValueError(f"threshold must be finite and >= 0, got {threshold}")
        return {"value": float(threshold), "source": "given"}
    rows, nn, dist = _self_knn(train, metric, chunk, sample, seed)
    exact = _is_exact(dist, train[nn].to(torch.float64).norm(dim=1), metric)
    pairs = sorted({tuple(sorted((train_ids[int(a)], train_ids[int(b)]))) for a, b in zip(rows[exact], nn[exact])})
    return {"value": copy_threshold(dist.cpu().numpy(), quantile), "source": "training leave-one-out quantile",
            "quantile": quantile, "n_queries": int(rows.numel()),
            "sample_seed": seed if rows.numel() < train.shape[0] else None,
            "training_nn_distance": _summary(dist), "training_exact_duplicate_pairs": len(pairs),
            "training_exact_duplicate_examples": [list(p) for p in pairs[:10]]}  # fmt: skip


def _summary(d: Tensor) -> dict[str, float]:
    """Min, 1 % / 5 % quantiles, median and mean of nearest-neighbour distances."""
    q = np.quantile(d.cpu().numpy(), [0.0, 0.01, 0.05, 0.5]).tolist()
    return {"min": q[0], "q01": q[1], "q05": q[2], "median": q[3], "mean": float(d.mean())}


def memorization_report(
    gen_ids: Sequence[str],
    gen_emb: np.ndarray | Tensor,
    train_ids: Sequence[str],
    train_emb: np.ndarray | Tensor,
    *,
    k: int = 5,
    top: int = 20,
    threshold: float | None = None,
    quantile: float = DEFAULT_QUANTILE,
    metric: str = "cosine",
    chunk: int = DEFAULT_CHUNK,
    threshold_sample: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """The generations closest to the training set, their neighbours, and exact/near copy flags (JSON-ready).

    Args:
        gen_ids, gen_emb: M unique ids and (M, D) embeddings of the generations.
        train_ids, train_emb: N unique ids and (N, D) embeddings of the training clips.
        k: training neighbours listed per generation.
        top: how many generations to list, closest first (all exact and near copies are also under "flagged").
        threshold: "near" distance; None sets it with :func:`copy_threshold` (``quantile``) from the training
            set's leave-one-out distances (``threshold_sample`` queries, seeded by ``seed``, or all N).
        metric, chunk, device: as in :func:`nearest_neighbours`.

    Returns:
        ``metric`` ("memorization"), ``distance`` (the distance metric), ``k``, ``exact_rule``, ``threshold``
        (value and how it was set), ``summary`` (n_generations, n_training, n_scored, counts of exact / near /
        none, the threshold value, nearest_distance min / quantiles / mean), ``flagged`` (every exact or near
        generation, closest first: id, flag, nearest id and distance), ``closest`` (the ``top`` generations: id,
        flag and their ``k`` neighbours as {id, distance}), ``per_item`` (scored generation id -> nearest id,
        distance, flag), ``distances`` (the nearest distances in the same order) and ``rejected`` (rows left
        out: set, id, reason). Laid out for ``wavefoundry eval report``, which also reads a ``path`` in the
        ``closest`` rows and their first neighbour, for players; the caller adds those.

    Raises:
        ValueError: duplicate or missing ids, a dimension mismatch, nothing left to search after the rejects,
            or bad k / top / threshold / metric.
    """
    device = torch.device(device or "cpu")
    gen, train = _matrix(gen_emb, "generation embeddings", device), _matrix(train_emb, "training embeddings", device)
    if gen.shape[1] != train.shape[1]:
        raise ValueError(f"generation embeddings have dimension {gen.shape[1]} but training embeddings "
                         f"{train.shape[1]} (were they made by the same embedder?)")  # fmt: skip
    gen_ids = _check_ids(gen_ids, gen.shape[0], "generations")
    train_ids = _check_ids(train_ids, train.shape[0], "training")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    g_ok, g_rej = _split_valid(gen_ids, gen, metric, "generations")
    t_ok, t_rej = _split_valid(train_ids, train, metric, "training")
    if not g_ok or not t_ok:
        which = "generation" if not g_ok else "training"
        raise ValueError(f"no valid {which} embeddings: all rows were rejected ({(g_rej or t_rej)[0]['reason']})")
    _check_args(k, metric, chunk, len(t_ok))
    gen = gen if len(g_ok) == gen.shape[0] else gen[g_ok]  # no copy of a large training set without rejects
    train = train if len(t_ok) == train.shape[0] else train[t_ok]
    gen_ids, train_ids = [gen_ids[i] for i in g_ok], [train_ids[i] for i in t_ok]
    thr = _threshold(threshold, train, train_ids, metric, quantile, chunk, threshold_sample, seed)
    idx, dist = _knn(gen, train, k, metric, chunk, None)  # (M, k) each
    exact = _is_exact(dist[:, 0], train[idx[:, 0]].to(torch.float64).norm(dim=1), metric).tolist()
    nearest = dist[:, 0].tolist()
    flags = ["exact" if e else "near" if d <= thr["value"] else None for e, d in zip(exact, nearest)]
    order = sorted(range(len(gen_ids)), key=lambda i: nearest[i])  # stable: ties keep the input order

    def entry(i: int) -> dict[str, Any]:
        neighbours = [{"id": train_ids[j], "distance": d} for j, d in zip(idx[i].tolist(), dist[i].tolist())]
        return {"id": gen_ids[i], "flag": flags[i], "neighbours": neighbours}

    flagged = [{"id": gen_ids[i], "flag": flags[i], "nearest": train_ids[int(idx[i, 0])], "distance": nearest[i]}
               for i in order if flags[i]]  # fmt: skip
    counts = {"exact": flags.count("exact"), "near": flags.count("near"), "none": flags.count(None)}
    summary = {"n_generations": len(g_ok) + len(g_rej), "n_training": len(t_ok) + len(t_rej), "n_scored": len(g_ok),
               "counts": counts, "threshold": thr["value"], "nearest_distance": _summary(dist[:, 0])}  # fmt: skip
    per_item = {gen_ids[i]: {"nearest": train_ids[int(idx[i, 0])], "distance": nearest[i], "flag": flags[i]}
                for i in range(len(gen_ids))}  # fmt: skip
    return {
        "metric": "memorization",
        "distance": metric,
        "k": k,
        "exact_rule": _EXACT_RULES[metric],
        "threshold": thr,
        "summary": summary,
        "flagged": flagged,
        "closest": [entry(i) for i in order[:top]],
        "per_item": per_item,
        "distances": nearest,
        "rejected": g_rej + t_rej,
    }
