"""Retrieval recall@k and mean rank on closed cases, against a brute-force reference, and bad input."""

import numpy as np
import pytest

from wavefoundry.eval.retrieval import positive_ranks, retrieval_recall


def test_perfect_pairs_rank_first():
    emb = np.eye(6)
    out = retrieval_recall(emb, 3.0 * emb, ks=(1, 5))  # the scale of a row does not matter (cosine)
    for direction in ("text_to_audio", "audio_to_text"):
        assert out[f"{direction}_recall@1"] == 1.0 and out[f"{direction}_mean_rank"] == 1.0
    assert out["n"] == 6 and out["chance_recall@1"] == pytest.approx(1 / 6) and out["chance_recall@5"] == 5 / 6
    assert out["chance_mean_rank"] == 3.5


def test_ties_count_against_the_positive():
    n = 5
    flat = np.ones((n, 3))  # every candidate scores the same as the positive
    out = retrieval_recall(flat, flat, ks=(1, 4, 5))
    assert out["text_to_audio_recall@1"] == 0.0 and out["text_to_audio_recall@4"] == 0.0
    assert out["text_to_audio_recall@5"] == 1.0 and out["audio_to_text_mean_rank"] == n


def test_shifted_pairs_closed_form():
    # audio i = e_i, text i = e_{i+1}: each audio's positive scores 0 and exactly one other text scores 1;
    # with ties against, every positive also ties with the N - 2 other zeros: rank N.
    n = 4
    audio = np.eye(n)
    text = np.roll(np.eye(n), 1, axis=0)
    out = retrieval_recall(audio, text, ks=(1, 3))
    assert out["audio_to_text_mean_rank"] == n and out["text_to_audio_mean_rank"] == n
    assert out["audio_to_text_recall@3"] == 0.0


def test_hand_case_directions_differ():
    # 2-d unit vectors at angles: audio 0, 90, 180 deg; text 10, 100, 265 deg.
    ang_a, ang_t = np.deg2rad([0, 90, 180]), np.deg2rad([10, 100, 265])
    a = np.stack([np.cos(ang_a), np.sin(ang_a)], 1)
    t = np.stack([np.cos(ang_t), np.sin(ang_t)], 1)
    out = retrieval_recall(a, t, ks=(1, 2))
    # audio->text: 0 deg -> t0 best (10 deg); 90 -> t1 best (10 deg away); 180 -> t1 at 80 deg beats t2 at 85:
    # rank 2. text->audio: 10 -> a0; 100 -> a1; 265 -> a2 at 85 beats a0 at 95 and a1 at 175: rank 1.
    assert out["audio_to_text_recall@1"] == pytest.approx(2 / 3) and out["audio_to_text_mean_rank"] == pytest.approx(
        4 / 3
    )
    assert out["text_to_audio_recall@1"] == 1.0 and out["text_to_audio_recall@2"] == 1.0


def test_matches_brute_force_reference():
    rng = np.random.default_rng(0)
    a, t = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    out = retrieval_recall(a, t, ks=(1, 5, 10))
    an, tn = a / np.linalg.norm(a, axis=1, keepdims=True), t / np.linalg.norm(t, axis=1, keepdims=True)
    s = an @ tn.T
    ref_a2t = [1 + sum(s[i, j] >= s[i, i] for j in range(40) if j != i) for i in range(40)]
    ref_t2a = [1 + sum(s[j, i] >= s[i, i] for j in range(40) if j != i) for i in range(40)]
    np.testing.assert_array_equal(positive_ranks(s), ref_a2t)
    assert out["audio_to_text_mean_rank"] == pytest.approx(np.mean(ref_a2t))
    assert out["text_to_audio_mean_rank"] == pytest.approx(np.mean(ref_t2a))
    for k in (1, 5, 10):
        assert out[f"text_to_audio_recall@{k}"] == pytest.approx(np.mean(np.array(ref_t2a) <= k))


def test_k_above_n_is_capped():
    out = retrieval_recall(np.eye(3), np.eye(3), ks=(10,))
    assert out["chance_recall@10"] == 1.0 and out["text_to_audio_recall@10"] == 1.0


@pytest.mark.parametrize(
    ("audio", "text", "match"),
    [
        (np.ones((3, 2)), np.ones((4, 2)), "same"),
        (np.eye(3)[0], np.eye(3)[0], r"\(N, D\)"),
        (np.zeros((0, 3)), np.zeros((0, 3)), "non-empty"),
        (np.full((2, 2), np.nan), np.eye(2), "NaN"),
        (np.array([[1.0, 0.0], [0.0, 0.0]]), np.eye(2), "all-zero"),
    ],
)
def test_bad_input(audio, text, match):
    with pytest.raises(ValueError, match=match):
        retrieval_recall(audio, text)


def test_bad_ks():
    with pytest.raises(ValueError, match="ks"):
        retrieval_recall(np.eye(2), np.eye(2), ks=(0,))
