"""WAR / UAR / mAP against sklearn (when installed) and closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from wavefoundry.eval.classification import average_precision, mean_average_precision, per_class_recall, uar, war


def test_war_uar_closed_form():
    t = ["a", "a", "a", "b"]
    p = ["a", "a", "b", "b"]
    assert war(t, p) == 0.75
    assert per_class_recall(t, p) == {"a": 2 / 3, "b": 1.0}
    assert uar(t, p) == pytest.approx((2 / 3 + 1) / 2)
    with pytest.raises(ValueError, match="2 predictions"):
        war(t, p[:2])
    with pytest.raises(ValueError, match="no targets"):
        uar([], [])


def test_war_uar_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    t = rng.integers(0, 5, 200).tolist()
    p = [x if rng.random() < 0.6 else int(rng.integers(0, 5)) for x in t]
    assert war(t, p) == pytest.approx(metrics.accuracy_score(t, p))
    assert uar(t, p) == pytest.approx(metrics.balanced_accuracy_score(t, p))


def test_average_precision_closed_form_and_ties():
    # Ranking 1, 0, 1: P@1 = 1 (R 0.5), P@3 = 2/3 (R 1) -> AP = 0.5 + 0.5 * 2/3.
    assert average_precision(np.array([1, 0, 1]), np.array([0.9, 0.8, 0.1])) == pytest.approx(0.5 + 1 / 3)
    # All scores tied: one threshold, AP = prevalence.
    assert average_precision(np.array([1, 0, 0, 1]), np.zeros(4)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="without positive"):
        average_precision(np.array([0, 0]), np.array([0.1, 0.2]))


def test_map_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = (rng.random((60, 6)) < 0.3).astype(int)
    y[0] = 1  # every class has a positive
    s = np.round(y * 0.5 + rng.random((60, 6)), 1)  # rounded: ties
    ours, skipped = mean_average_precision(y, s)
    assert skipped == 0
    assert ours == pytest.approx(metrics.average_precision_score(y, s, average="macro"), abs=1e-12)
    y[:, 2] = 0
    ours, skipped = mean_average_precision(y, s)
    keep = [0, 1, 3, 4, 5]
    assert skipped == 1
    assert ours == pytest.approx(metrics.average_precision_score(y[:, keep], s[:, keep], average="macro"))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        mean_average_precision(y[:, 0], s[:, 0])
