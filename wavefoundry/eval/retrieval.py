"""Cross-modal retrieval recall@k and mean rank over a set of paired embeddings.

Item i's audio and text are the only positive pair of row i. Similarity is the cosine (rows are L2-normalised
here). The rank of a positive is 1 + the number of other candidates scoring at least as high, so ties count
against the positive (a model that scores everything equally gets rank N, not 1). recall@k is the share of
queries whose positive has rank <= k; chance is k / N, and the chance mean rank is (N + 1) / 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DIRECTIONS: tuple[str, ...] = ("text_to_audio", "audio_to_text")


def _normalised(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (N, 1)
    if (norms == 0).any():
        raise ValueError(f"{name} has {int((norms == 0).sum())} all-zero rows (no direction to compare)")
    return x / norms


def positive_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank (N,) of each row's diagonal entry in square scores (N, N): 1 + #{j != i: scores[i, j] >= scores[i, i]}."""
    diag = np.diagonal(scores)[:, None]  # (N, 1)
    return (scores >= diag).sum(axis=1)  # the diagonal itself counts once: the rank starts at 1


def retrieval_recall(audio_emb: np.ndarray, text_emb: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Text->audio and audio->text recall@k and mean rank of paired embeddings.

    Args:
        audio_emb: (N, D) audio embeddings; row i pairs with ``text_emb[i]``.
        text_emb: (N, D) text embeddings.
        ks: cut-offs (each >= 1; a k above N is reported and equals 1.0).

    Returns:
        ``{direction}_recall@{k}`` and ``{direction}_mean_rank`` for both directions, ``chance_recall@{k}`` (k / N,
        capped at 1), ``chance_mean_rank`` ((N + 1) / 2) and ``n``.

    Raises:
        ValueError: shapes differ or are not (N, D), NaN/inf values, all-zero rows, or a k < 1.
    """
    a, t = _normalised(audio_emb, "audio_emb"), _normalised(text_emb, "text_emb")
    if a.shape != t.shape:
        raise ValueError(f"audio_emb {a.shape} and text_emb {t.shape} must have the same (N, D) shape")
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be cut-offs >= 1, got {ks}")
    n = a.shape[0]
    scores = a @ t.T  # (N audio, N text)
    ranks = {"text_to_audio": positive_ranks(scores.T), "audio_to_text": positive_ranks(scores)}
    out: dict[str, float] = {"n": float(n)}
    for direction in DIRECTIONS:
        for k in ks:
            out[f"{direction}_recall@{k}"] = float((ranks[direction] <= k).mean())
        out[f"{direction}_mean_rank"] = float(ranks[direction].mean())
    for k in ks:
        out[f"chance_recall@{k}"] = min(1.0, k / n)
    out["chance_mean_rank"] = (n + 1) / 2
    return out
