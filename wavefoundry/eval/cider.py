"""CIDEr-D (Vedantam et al. 2015, "CIDEr: Consensus-based Image Description Evaluation"), pure Python.

For each n = 1..4, a caption becomes a tf-idf vector g^n over its n-grams: term frequency times
log(|I| / max(1, df)), with the document frequency df counted over the reference sets of the |I| scored items
(an n-gram counts once per item). CIDEr-D_n(c, S) = 10 / m * sum_j exp(-(l_c - l_j)^2 / (2 sigma^2)) *
sum_g min(g_c, g_j) g_j / (|g_c| |g_j|) over the m references s_j of the item (clipped candidate counts, a
Gaussian length penalty with sigma = 6), and CIDEr-D is the mean of CIDEr-D_n over n. The corpus score is the
mean over items.

This follows coco-caption's ``CiderScorer`` (``pycocoevalcap.cider``) number for number, quirks included:
the length l of a caption is its number of bigram positions (words - 1, so it differs from the word count only
for captions of at most one word, and is 0 when n = 1), and the norms |g| are those of the unclipped vectors.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from wavefoundry.eval.caption_text import CaptionScore, check_caption_sets, tokenize

NGram = tuple[str, ...]


def ngram_counts(tokens: Sequence[str], n: int) -> list[Counter[NGram]]:
    """Counts of the k-grams of ``tokens`` for k = 1..n; entry k - 1 holds the k-grams."""
    return [Counter(tuple(tokens[i : i + k]) for i in range(len(tokens) - k + 1)) for k in range(1, n + 1)]


def _tfidf(counts: list[Counter[NGram]], df: Counter[NGram], log_items: float) -> tuple[list[dict], list[float]]:
    """tf-idf vectors g^k (dict n-gram -> weight) and their Euclidean norms, k = 1..n."""
    vecs, norms = [], []
    for per_k in counts:
        vec = {g: tf * (log_items - math.log(max(1.0, df[g]))) for g, tf in per_k.items()}
        vecs.append(vec)
        norms.append(math.sqrt(sum(w * w for w in vec.values())))
    return vecs, norms


def _length(counts: list[Counter[NGram]]) -> int:
    """coco-caption's caption length: the number of bigram positions (0 when only unigrams are counted)."""
    return sum(counts[1].values()) if len(counts) > 1 else 0


def _similarity(cand: tuple, ref: tuple, sigma: float) -> list[float]:
    """Per-n clipped cosine similarity of a candidate and one reference, times the length penalty."""
    (c_vec, c_norm, c_len), (r_vec, r_norm, r_len) = cand, ref
    penalty = math.exp(-((c_len - r_len) ** 2) / (2 * sigma**2))
    out = []
    for cv, cn, rv, rn in zip(c_vec, c_norm, r_vec, r_norm):
        dot = sum(min(w, rv.get(g, 0.0)) * rv.get(g, 0.0) for g, w in cv.items())
        out.append((dot / (cn * rn) if cn != 0 and rn != 0 else dot) * penalty)
    return out


def cider_d(
    candidates: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    *,
    n: int = 4,
    sigma: float = 6.0,
    tokenizer: Callable[[str], list[str]] = tokenize,
) -> CaptionScore:
    """CIDEr-D of one candidate caption per item against the item's references.

    Args:
        candidates: id -> generated caption.
        references: id -> reference captions (at least one each); the ids must equal those of ``candidates``.
        n: longest n-gram, 1..4 (CIDEr-D uses 4).
        sigma: width of the Gaussian length penalty (6 in CIDEr-D).
        tokenizer: caption -> tokens; the default is :func:`~wavefoundry.eval.caption_text.tokenize`,
            ``str.split`` scores raw strings the way ``pycocoevalcap`` does.

    Returns:
        The corpus CIDEr-D (mean over items) and the per-item scores.

    Raises:
        ValueError: no items, mismatched ids, an empty reference list, or n / sigma out of range.
    """
    if not 1 <= n <= 4:
        raise ValueError(f"n must be in 1..4, got {n}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    ids = check_caption_sets(candidates, references)
    refs = {i: [ngram_counts(tokenizer(r), n) for r in references[i]] for i in ids}
    df: Counter[NGram] = Counter()
    for counts in refs.values():
        df.update({g for ref in counts for per_k in ref for g in per_k})
    log_items = math.log(float(len(ids)))

    def cook(counts: list[Counter[NGram]]) -> tuple:
        return (*_tfidf(counts, df, log_items), _length(counts))

    per_id = {}
    for i in ids:
        cand = cook(ngram_counts(tokenizer(candidates[i]), n))
        total = [0.0] * n
        for ref in refs[i]:
            total = [a + b for a, b in zip(total, _similarity(cand, cook(ref), sigma))]
        per_id[i] = 10.0 * (sum(total) / n) / len(refs[i])
    return CaptionScore(score=sum(per_id.values()) / len(per_id), per_id=per_id)
