"""Caption metrics: BLEU-n, ROUGE-L, SQuAD token F1, and all of them with CIDEr-D at once (docs/captions.md).

BLEU (Papineni et al. 2002) is the corpus score: clipped n-gram precisions p_k summed over the corpus,
BLEU-n = BP * (prod_{k<=n} p_k)^(1/n), brevity penalty BP = exp(1 - r/c) when the candidate length c is below
the reference length r (each candidate takes its closest reference length, ties to the shorter). As in
``pycocoevalcap.bleu`` the precisions are (matches + 1e-15) / (guesses + 1e-9), so a corpus with no 4-gram
match scores ~0 rather than failing. ROUGE-L (Lin 2004) per item: LCS precision and recall against each
reference, the largest of each over the references, F_beta with beta = 1.2 (coco-caption's choice).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from wavefoundry.eval.caption_text import CaptionScore, check_caption_sets, tokenize
from wavefoundry.eval.cider import cider_d, ngram_counts

_TINY, _SMALL = 1e-15, 1e-9  # pycocoevalcap's BLEU smoothing constants
ROUGE_BETA = 1.2


def _bleu_stats(cand: list[str], refs: list[list[str]], n: int) -> tuple[int, int, list[int], list[int]]:
    """(candidate length, closest reference length, clipped matches per k, candidate k-grams per k)."""
    c = len(cand)
    r = min((abs(len(ref) - c), len(ref)) for ref in refs)[1]
    max_ref: Counter = Counter()
    for ref in refs:
        for per_k in ngram_counts(ref, n):
            max_ref |= per_k  # elementwise max of counts
    correct = [sum(min(cnt, max_ref[g]) for g, cnt in per_k.items()) for per_k in ngram_counts(cand, n)]
    guess = [max(0, c - k + 1) for k in range(1, n + 1)]
    return c, r, correct, guess


def _bleu_value(c: float, r: float, correct: Sequence[float], guess: Sequence[float]) -> float:
    log_p = sum(math.log((m + _TINY) / (g + _SMALL)) for m, g in zip(correct, guess)) / len(correct)
    ratio = (c + _TINY) / (r + _SMALL)
    return math.exp(log_p + (1 - 1 / ratio if ratio < 1 else 0.0))


def bleu(
    candidates: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    *,
    n: int = 4,
    tokenizer: Callable[[str], list[str]] = tokenize,
) -> CaptionScore:
    """Corpus BLEU-n (``score``) and sentence BLEU-n of each item (``per_id``).

    Raises:
        ValueError: as :func:`~wavefoundry.eval.cider.cider_d`, or n < 1.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ids = check_caption_sets(candidates, references)
    total_c = total_r = 0
    total_m, total_g = [0] * n, [0] * n
    per_id = {}
    for i in ids:
        c, r, m, g = _bleu_stats(tokenizer(candidates[i]), [tokenizer(x) for x in references[i]], n)
        per_id[i] = _bleu_value(c, r, m, g)
        total_c, total_r = total_c + c, total_r + r
        total_m = [a + b for a, b in zip(total_m, m)]
        total_g = [a + b for a, b in zip(total_g, g)]
    return CaptionScore(score=_bleu_value(total_c, total_r, total_m, total_g), per_id=per_id)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a) len(b)) dynamic programme)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        row = [0]
        for j, y in enumerate(b):
            row.append(prev[j] + 1 if x == y else max(prev[j + 1], row[j]))
        prev = row
    return prev[-1]


def rouge_l_item(cand: list[str], refs: list[list[str]], beta: float = ROUGE_BETA) -> float:
    """ROUGE-L F_beta of one tokenised candidate against its references (0 for an empty candidate)."""
    if not cand:
        return 0.0
    lcs = [lcs_length(ref, cand) for ref in refs]
    prec = max(x / len(cand) for x in lcs)
    rec = max((x / len(ref) if ref else 0.0) for x, ref in zip(lcs, refs))
    if prec == 0 or rec == 0:
        return 0.0
    return (1 + beta**2) * prec * rec / (rec + beta**2 * prec)


def rouge_l(
    candidates: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    *,
    beta: float = ROUGE_BETA,
    tokenizer: Callable[[str], list[str]] = tokenize,
) -> CaptionScore:
    """Mean ROUGE-L over items and the score of each item."""
    ids = check_caption_sets(candidates, references)
    per_id = {i: rouge_l_item(tokenizer(candidates[i]), [tokenizer(r) for r in references[i]], beta) for i in ids}
    return CaptionScore(score=sum(per_id.values()) / len(per_id), per_id=per_id)


_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> list[str]:
    """SQuAD's answer normaliser (Rajpurkar et al. 2016): lowercase, drop punctuation and a/an/the, split."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return _ARTICLES_RE.sub(" ", text).split()


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """SQuAD token F1 of a short answer: the best over ``answers`` of 2PR/(P+R) on the bag of tokens.

    Two empty answers match (F1 = 1); an empty one against a non-empty one scores 0.

    Raises:
        ValueError: no reference answers.
    """
    if isinstance(answers, str) or len(answers) == 0:
        raise ValueError("token_f1 needs a non-empty list of reference answers")
    pred = normalize_answer(prediction)
    best = 0.0
    for answer in answers:
        gold = normalize_answer(answer)
        if not pred or not gold:
            best = max(best, float(pred == gold))
            continue
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


def caption_metrics(candidates: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict:
    """CIDEr-D, BLEU-4 and ROUGE-L (normalised tokens) as ``{"corpus": {...}, "per_id": {id: {...}}}``."""
    scores = {
        "cider_d": cider_d(candidates, references),
        "bleu_4": bleu(candidates, references, n=4),
        "rouge_l": rouge_l(candidates, references),
    }
    per_id = {i: {k: s.per_id[i] for k, s in scores.items()} for i in sorted(candidates)}
    return {"corpus": {k: s.score for k, s in scores.items()}, "per_id": per_id}
