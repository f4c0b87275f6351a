"""Semantic first codebook: character vocabulary, CTC head over codebook 0, CTC loss, greedy decoding, CER."""

import json
import math

import pytest
import torch

from wavefoundry.codecs.bottlenecks import ResidualVQ, RVQConfig
from wavefoundry.codecs.semantic import (
    BLANK_ID,
    UNK_ID,
    CharVocab,
    CTCHead,
    CTCHeadConfig,
    char_error_rate,
    ctc_loss,
    edit_distance,
    frames_for_samples,
    greedy_decode,
    min_ctc_frames,
    normalize_transcript,
)
from wavefoundry.config import ConfigError, from_dict

# --- vocabulary -------------------------------------------------------------------------------------------------


def test_vocab_orders_by_frequency_then_alphabet_and_reserves_blank_and_unk():
    vocab = CharVocab.build(["Abba  b", "cab\n"])
    # counts after normalisation ("abba b", "cab"): b 4, a 3, " " 1, c 1 -> ties alphabetical (" " < "c")
    assert vocab.chars == "ba c"
    assert vocab.vocab_size == 6
    assert vocab.encode("AB  c") == [3, 2, 4, 5]
    assert vocab.encode("abz") == [3, 2, UNK_ID]
    assert vocab.decode([BLANK_ID, 3, BLANK_ID, 2, UNK_ID]) == "ab\ufffd"


def test_vocab_min_count_and_max_chars():
    assert CharVocab.build(["aaab"], min_count=2).chars == "a"
    assert CharVocab.build(["aaabbc"], max_chars=2).chars == "ab"
    with pytest.raises(ValueError, match="min_count"):
        CharVocab.build(["a"], min_count=0)


def test_normalize_transcript():
    assert normalize_transcript("  Ｈello\tWORLD \n") == "hello world"  # NFKC folds the full-width H


def test_vocab_save_load_round_trip(tmp_path):
    vocab = CharVocab.build(["héllo wörld", "ça va"])
    path = vocab.save(tmp_path / "vocab.json")
    loaded = CharVocab.load(path)
    assert loaded.chars == vocab.chars
    assert loaded.encode("ça") == vocab.encode("ça")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{", "not valid JSON"),
        (json.dumps({"format": "other", "version": 1, "chars": "ab"}), "not a wavefoundry-char-vocab"),
        (json.dumps({"format": "wavefoundry-char-vocab", "version": 9, "chars": "ab"}), "version 9"),
        (json.dumps({"format": "wavefoundry-char-vocab", "version": 1, "chars": "aa"}), "duplicate"),
        (json.dumps({"format": "wavefoundry-char-vocab", "version": 1, "chars": ""}), "empty"),
    ],
)
def test_bad_vocab_files_raise(tmp_path, content, match):
    path = tmp_path / "v.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        CharVocab.load(path)


def test_missing_vocab_file_and_bad_ids():
    with pytest.raises(FileNotFoundError, match=r"nowhere\.json"):
        CharVocab.load("/nowhere.json")
    with pytest.raises(ValueError, match="single characters"):
        CharVocab(["ab"])
    with pytest.raises(ValueError, match="out of range"):
        CharVocab("ab").decode([4])


# --- edit distance, CER, greedy decoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hyp", "ref", "d"),
    [("kitten", "sitting", 3), ("flaw", "lawn", 2), ("", "abc", 3), ("abc", "", 3), ("abc", "abc", 0),
     ([1, 2, 3], [1, 3], 1)],
)  # fmt: skip
def test_edit_distance_hand_worked(hyp, ref, d):
    assert edit_distance(hyp, ref) == d
    assert edit_distance(ref, hyp) == d


def test_cer_is_total_edits_over_total_reference_length():
    assert char_error_rate(["abc", "a"], ["abd", "ab"]) == pytest.approx(2 / 5)
    assert char_error_rate([""], [""]) == 0.0
    with pytest.raises(ValueError, match="undefined"):
        char_error_rate(["a"], [""])
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        char_error_rate(["a", "b"], ["a"])


def _one_hot_path(path: list[int], vocab: int) -> torch.Tensor:
    lp = torch.full((len(path), 1, vocab), -10.0)
    lp[torch.arange(len(path)), 0, torch.tensor(path)] = 0.0
    return lp


def test_greedy_decode_merges_repeats_then_drops_blanks():
    # frames: a a _ a b b _ c  -> "a a b c" (the blank separates the two a's)
    lp = _one_hot_path([2, 2, 0, 2, 3, 3, 0, 4], vocab=5)
    assert greedy_decode(lp) == [[2, 2, 3, 4]]
    assert greedy_decode(lp, torch.tensor([4])) == [[2, 2]]


def test_min_frames_and_frames_for_samples():
    assert min_ctc_frames([2, 2, 3]) == 4
    assert min_ctc_frames([]) == 0
    assert frames_for_samples(torch.tensor([1, 256, 257]), 256).tolist() == [1, 1, 2]


# --- CTC loss ---------------------------------------------------------------------------------------------------


def _random_log_probs(frames: int, batch: int, vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(frames, batch, vocab, generator=torch.Generator().manual_seed(seed)).log_softmax(-1)


def test_ctc_loss_closed_forms():
    lp = _random_log_probs(2, 1, 4)
    p = lp.exp()[:, 0]  # (T, V)
    c = 2
    # one label in two frames: paths (c, c), (c, _), (_, c)
    want = -math.log(p[0, c] * p[1, c] + p[0, c] * p[1, 0] + p[0, 0] * p[1, c])
    got = ctc_loss(lp, torch.tensor([[c]]), torch.tensor([2]), torch.tensor([1]))
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float32), rtol=1e-5, atol=1e-6)
    # two labels in two frames: the only path; "mean" divides by the target length
    want2 = -math.log(p[0, 2] * p[1, 3]) / 2
    got2 = ctc_loss(lp, torch.tensor([[2, 3]]), torch.tensor([2]), torch.tensor([2]))
    torch.testing.assert_close(got2, torch.tensor(want2, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_ctc_loss_is_infinite_below_the_minimum_frames():
    target = [2, 2, 3]
    need = min_ctc_frames(target)
    lp = _random_log_probs(need, 1, 4)
    args = (torch.tensor([target]), torch.tensor([3]))
    assert torch.isfinite(ctc_loss(lp, args[0], torch.tensor([need]), args[1]))
    assert torch.isinf(ctc_loss(lp, args[0], torch.tensor([need - 1]), args[1]))
    assert ctc_loss(lp, args[0], torch.tensor([need - 1]), args[1], zero_infinity=True) == 0


def test_ctc_loss_ignores_padding_past_the_lengths():
    lp = _random_log_probs(6, 2, 5, seed=1)
    targets = torch.tensor([[2, 3, 4], [4, 2, 3]])
    a = ctc_loss(lp, targets, torch.tensor([6, 4]), torch.tensor([3, 1]))
    targets[1, 1:] = 4  # padding of item 1 changes
    lp2 = lp.clone()
    lp2[4:, 1] = _random_log_probs(2, 1, 5, seed=2)[:, 0]  # frames past item 1's length change
    torch.testing.assert_close(ctc_loss(lp2, targets, torch.tensor([6, 4]), torch.tensor([3, 1])), a)


@pytest.mark.parametrize(
    ("targets", "inputs", "lengths", "match"),
    [
        ([[0, 2]], [3], [2], "blank"),
        ([[2, 3]], [4], [2], "input_lengths"),
        ([[2, 3]], [3], [3], "target_lengths"),
    ],
)
def test_ctc_loss_bad_input(targets, inputs, lengths, match):
    with pytest.raises(ValueError, match=match):
        ctc_loss(_random_log_probs(3, 1, 4), torch.tensor(targets), torch.tensor(inputs), torch.tensor(lengths))


# --- head -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "reach"), [("linear", 0), ("conv", 1)])
def test_head_shape_normalisation_and_receptive_field(kind, reach):
    torch.manual_seed(0)
    head = CTCHead(CTCHeadConfig(kind=kind, kernel_size=3), dim=8, vocab_size=6)
    x = torch.randn(2, 8, 10)
    lp = head(x)
    assert lp.shape == (10, 2, 6) and lp.dtype == torch.float32
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(10, 2))
    x2 = x.clone()
    x2[:, :, 5] += 1.0
    changed = (head(x2) - lp).abs().amax((1, 2)) > 1e-6  # (T,)
    assert changed.nonzero().flatten().tolist() == list(range(5 - reach, 6 + reach))


def test_head_config_errors():
    with pytest.raises(ValueError, match="valid kinds: conv, linear"):
        CTCHeadConfig(kind="gru")
    with pytest.raises(ConfigError, match="gru"):
        from_dict(CTCHeadConfig, {"kind": "gru"})
    with pytest.raises(ValueError, match="odd"):
        CTCHeadConfig(kind="conv", kernel_size=4)
    with pytest.raises(ValueError, match=r"\(B, 8, T\)"):
        CTCHead(CTCHeadConfig(), dim=8, vocab_size=5)(torch.randn(1, 4, 3))


# --- codebook 0 in the residual VQ ------------------------------------------------------------------------------


def test_rvq_exposes_codebook0_vectors_with_a_straight_through_gradient():
    torch.manual_seed(0)
    rvq = ResidualVQ(RVQConfig(dim=4, codebook_size=8, num_quantizers=3, kmeans_iters=2, quantizer_dropout=1.0))
    z = torch.randn(3, 4, 7, requires_grad=True)
    out = rvq.encode(z)  # training: k-means init, all items dropped to 1..3 stages, stage 0 kept
    assert out.first_quantized.shape == (3, 4, 7)
    out.first_quantized.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))  # straight-through: identity gradient to z
    rvq.eval()
    with torch.no_grad():
        out = rvq.encode(z)
        torch.testing.assert_close(out.first_quantized, rvq.codes_to_latents(out.codes[:, :1]))
        torch.testing.assert_close(out.latents, rvq.codes_to_latents(out.codes))
