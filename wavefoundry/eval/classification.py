"""Classification metrics: WAR (accuracy), UAR (balanced accuracy) and macro mAP for multi-label tasks.

WAR, the weighted average recall, is plain accuracy (per-class recalls weighted by class frequency);
UAR, the unweighted average recall, is the mean recall over the classes present in the targets
(sklearn's ``balanced_accuracy_score``). mAP is the macro mean over classes of average precision
AP = sum_k (R_k - R_{k-1}) P_k over the distinct score thresholds (sklearn's ``average_precision_score``);
classes without a positive target have no defined AP and are left out (their count is reported).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def _check_pairs(targets: Sequence[Hashable], predictions: Sequence[Hashable]) -> None:
    if len(targets) == 0:
        raise ValueError("no targets to score")
    if len(targets) != len(predictions):
        raise ValueError(f"got {len(targets)} targets but {len(predictions)} predictions (one each)")


def war(targets: Sequence[Hashable], predictions: Sequence[Hashable]) -> float:
    """Weighted average recall = accuracy: share of items whose prediction equals the target."""
    _check_pairs(targets, predictions)
    return sum(t == p for t, p in zip(targets, predictions)) / len(targets)


def per_class_recall(targets: Sequence[Hashable], predictions: Sequence[Hashable]) -> dict:
    """Recall of every class present in ``targets`` (sorted by its string form)."""
    _check_pairs(targets, predictions)
    hits: dict = {}
    counts: dict = {}
    for t, p in zip(targets, predictions):
        counts[t] = counts.get(t, 0) + 1
        hits[t] = hits.get(t, 0) + (t == p)
    return {c: hits[c] / counts[c] for c in sorted(counts, key=str)}


def uar(targets: Sequence[Hashable], predictions: Sequence[Hashable]) -> float:
    """Unweighted average recall: the mean of the per-class recalls (classes present in ``targets``)."""
    recalls = per_class_recall(targets, predictions)
    return sum(recalls.values()) / len(recalls)


def average_precision(target: np.ndarray, score: np.ndarray) -> float:
    """AP of one class: ``target`` (N,) 0/1, ``score`` (N,) any real; ties share one threshold.

    Raises:
        ValueError: no positive target (AP undefined), non-binary targets, or non-finite scores.
    """
    target, score = np.asarray(target), np.asarray(score, dtype=np.float64)
    if target.shape != score.shape or target.ndim != 1:
        raise ValueError(f"target and score must be 1-D of one length, got {target.shape} and {score.shape}")
    if not np.isin(target, (0, 1)).all():
        raise ValueError("targets must be 0 or 1")
    if not np.isfinite(score).all():
        raise ValueError("scores must be finite")
    n_pos = int(target.sum())
    if n_pos == 0:
        raise ValueError("average precision is undefined for a class without positive targets")
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], target[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(t)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(targets: np.ndarray, scores: np.ndarray) -> tuple[float, int]:
    """Macro mAP of a multi-label task and the number of classes left out for having no positive.

    Args:
        targets: (N, C) 0/1 labels.
        scores: (N, C) scores (probabilities or logits).

    Raises:
        ValueError: shapes differ or are not 2-D, or no class has a positive target.
    """
    targets, scores = np.asarray(targets), np.asarray(scores, dtype=np.float64)
    if targets.ndim != 2 or targets.shape != scores.shape or targets.shape[0] == 0:
        raise ValueError(f"targets and scores must both be (N, C) with N >= 1, got {targets.shape} and {scores.shape}")
    keep = [c for c in range(targets.shape[1]) if targets[:, c].sum() > 0]
    if not keep:
        raise ValueError("no class has a positive target: mAP is undefined")
    aps = [average_precision(targets[:, c], scores[:, c]) for c in keep]
    return float(np.mean(aps)), targets.shape[1] - len(keep)
