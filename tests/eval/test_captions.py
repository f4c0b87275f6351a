"""Caption metrics against pycocoevalcap (CIDEr-D, BLEU, ROUGE-L) and closed forms (token F1, normaliser)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wavefoundry.eval.caption_text import normalize_caption, tokenize
from wavefoundry.eval.captions import bleu, caption_metrics, lcs_length, rouge_l, token_f1
from wavefoundry.eval.cider import cider_d

pytest.importorskip("pycocoevalcap")
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

REFS = {
    "a": ["A sawtooth lead plays a C4 note, panned left.", "Saw synth holding C4 on the left!", "a saw lead, left"],
    "b": ["Heavy rain on a tin roof.", "Rain pouring on a metal roof", "steady rain falling on a roof"],
    "c": ["A funky drum beat at 120 BPM.", "Drums playing a funk groove, 120 bpm", "funky drums at 120 BPM"],
    "d": ["Three red circles on a blue background", "three red dots, blue background", "red circles on blue"],
    "e": ["An FM bell playing an A minor chord", "a glassy FM bell striking an A minor chord"],
}
CANDS = {
    "a": "a saw lead playing C4 on the left",
    "b": "rain on a tin roof",
    "c": "a drum beat at 120 BPM",
    "d": "two green squares on a red background",
    "e": "an fm bell",
}


def _coco(refs, cands, norm=normalize_caption):
    return {i: [norm(r) for r in refs[i]] for i in refs}, {i: [norm(cands[i])] for i in cands}


def test_normaliser_lowercases_strips_punctuation_keeps_inner_hyphens_and_decimals():
    assert tokenize("A Sine-wave, 1.5 s long; it's LOUD!  (1,000 Hz)") == [
        "a", "sine-wave", "1.5", "s", "long", "it's", "loud", "1,000", "hz"
    ]  # fmt: skip
    assert tokenize("end. Start -- x_y") == ["end", "start", "x", "y"]
    assert normalize_caption("  Hello,   World. ") == "hello world"


def test_cider_d_matches_pycocoevalcap():
    gts, res = _coco(REFS, CANDS)
    ref_score, ref_per = Cider().compute_score(gts, res)
    ours = cider_d(CANDS, REFS)
    assert ours.score == pytest.approx(ref_score, abs=1e-6)
    ids = sorted(REFS)  # pycocoevalcap keeps dict order; ours is by id, REFS is already sorted
    np.testing.assert_allclose([ours.per_id[i] for i in ids], ref_per, atol=1e-6)
    assert ours.score > 0.1 and ours.per_id["d"] < ours.per_id["a"]


def test_cider_d_matches_pycocoevalcap_on_random_sets():
    rng = np.random.default_rng(0)
    vocab = [
        "a",
        "the",
        "saw",
        "lead",
        "rain",
        "roof",
        "drum",
        "beat",
        "red",
        "blue",
        "circle",
        "left",
        "right",
        "loud",
        "quiet",
        "bell",
        "chord",
    ]
    for _ in range(5):
        refs = {f"i{k}": [" ".join(rng.choice(vocab, rng.integers(1, 12))) for _ in range(rng.integers(1, 5))]
                for k in range(int(rng.integers(2, 8)))}  # fmt: skip
        cands = {k: " ".join(rng.choice(vocab, rng.integers(1, 12))) for k in refs}
        gts, res = _coco(refs, cands)
        ref_score, ref_per = Cider().compute_score(gts, res)
        ours = cider_d(cands, refs)
        assert ours.score == pytest.approx(ref_score, abs=1e-6)
        np.testing.assert_allclose([ours.per_id[k] for k in gts], ref_per, atol=1e-6)


def test_cider_d_raw_strings_with_str_split_match_pycocoevalcap_and_differ_from_normalised():
    gts, res = _coco(REFS, CANDS, norm=lambda s: s)
    raw = Cider().compute_score(gts, res)[0]
    assert cider_d(CANDS, REFS, tokenizer=str.split).score == pytest.approx(raw, abs=1e-6)
    assert abs(raw - cider_d(CANDS, REFS).score) > 1e-3  # "roof." != "roof": normalising matters


def test_cider_d_identical_caption_and_length_penalty_closed_form():
    # Two items with disjoint words: every n-gram has df = 1, idf = log 2 for all; a candidate equal to its only
    # reference has cosine 1 for every n that has n-grams, so CIDEr-D = 10 * (#n with n-grams) / 4.
    refs = {"x": ["one two three"], "y": ["four five six seven"]}
    score = cider_d({"x": "one two three", "y": "four five six seven"}, refs)
    assert score.per_id["x"] == pytest.approx(10 * 3 / 4)
    assert score.per_id["y"] == pytest.approx(10.0)
    # Candidate "one two" vs "one two three": unigram and bigram similarities times exp(-1 / 72).
    s = cider_d({"x": "one two", "y": "four five six seven"}, refs).per_id["x"]
    cos1, cos2 = 2 / math.sqrt(2 * 3), 1 / math.sqrt(1 * 2)
    assert s == pytest.approx(10 * (cos1 + cos2) / 4 * math.exp(-1 / 72))


def test_cider_d_bad_input():
    with pytest.raises(ValueError, match="empty reference list"):
        cider_d({"a": "x"}, {"a": []})
    with pytest.raises(ValueError, match="same ids"):
        cider_d({"a": "x", "b": "y"}, {"a": ["x"]})
    with pytest.raises(ValueError, match="no candidate"):
        cider_d({}, {})
    with pytest.raises(ValueError, match=r"n must be in 1\.\.4"):
        cider_d({"a": "x"}, {"a": ["x"]}, n=5)
    with pytest.raises(ValueError, match="list of strings"):
        cider_d({"a": "x"}, {"a": "x"})


def test_bleu_matches_pycocoevalcap():
    gts, res = _coco(REFS, CANDS)
    ref_scores, ref_lists = Bleu(4).compute_score(gts, res, verbose=0)
    for n in (1, 2, 4):
        ours = bleu(CANDS, REFS, n=n)
        assert ours.score == pytest.approx(ref_scores[n - 1], abs=1e-9)
        np.testing.assert_allclose([ours.per_id[i] for i in sorted(REFS)], ref_lists[n - 1], atol=1e-9)


def test_bleu_closed_form():
    # One item, candidate equals the reference but is shorter than the closest: BP = exp(1 - 6/4).
    refs = {"x": ["a b c d e f"]}
    assert bleu({"x": "a b c d e f"}, refs).score == pytest.approx(1.0)
    assert bleu({"x": "a b c d"}, refs).score == pytest.approx(math.exp(1 - 6 / 4), rel=1e-6)


def test_rouge_l_matches_pycocoevalcap_and_lcs():
    gts, res = _coco(REFS, CANDS)
    ref_score, ref_per = Rouge().compute_score(gts, res)
    ours = rouge_l(CANDS, REFS)
    assert ours.score == pytest.approx(ref_score, abs=1e-9)
    np.testing.assert_allclose([ours.per_id[i] for i in sorted(REFS)], ref_per, atol=1e-9)
    assert lcs_length(["a", "b", "c", "d"], ["x", "b", "d", "y"]) == 2
    assert rouge_l({"x": ""}, {"x": ["a b"]}).score == 0.0


def test_token_f1_squad_closed_form():
    assert token_f1("The red circle", ["red circle"]) == 1.0  # articles and case dropped
    # pred {red, big, circle} vs gold {red, circle}: P = 2/3, R = 1 -> F1 = 0.8; best over answers.
    assert token_f1("a big red circle", ["red circle", "blue"]) == pytest.approx(0.8)
    assert token_f1("", [""]) == 1.0 and token_f1("x", [""]) == 0.0
    with pytest.raises(ValueError, match="non-empty list"):
        token_f1("x", [])


def test_caption_metrics_bundle():
    out = caption_metrics(CANDS, REFS)
    assert set(out["corpus"]) == {"cider_d", "bleu_4", "rouge_l"}
    assert out["corpus"]["cider_d"] == pytest.approx(cider_d(CANDS, REFS).score)
    assert out["per_id"]["a"]["rouge_l"] == pytest.approx(rouge_l(CANDS, REFS).per_id["a"])
