"""Reconstruction metrics: auraloss 0.4.0 defaults as the reference, plus closed forms and bad input."""

from __future__ import annotations

import math

import auraloss
import numpy as np
import pytest
import torch

from wavefoundry.eval.recon import (
    METRICS,
    MIN_SAMPLES,
    ReconInputError,
    evaluate_pair,
    evaluate_pairs,
    recon_metrics,
    si_sdr,
    summarize,
)


def broadband_pair(channels: int, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise and a low-passed copy of it plus noise: a codec-like reconstruction."""
    g = torch.Generator().manual_seed(seed)
    ref = 0.3 * torch.randn(channels, samples, generator=g)
    kernel = torch.tensor([[[0.05, 0.9, 0.05]]])  # gentle low-pass: gain 0.9 + 0.1 cos(w)
    est = torch.nn.functional.conv1d(ref[:, None], kernel, padding=1)[:, 0]
    return ref, est + 0.02 * torch.randn(channels, samples, generator=g)


def auraloss_metrics(ref: torch.Tensor, est: torch.Tensor, sample_rate: int) -> dict[str, float]:
    """auraloss with default parameters, channels as a (C, 1, T) batch."""
    r, e = ref[:, None], est[:, None]
    return {
        "stft": float(auraloss.freq.MultiResolutionSTFTLoss()(e, r)),
        "mel": float(auraloss.freq.MelSTFTLoss(sample_rate)(e, r)),
        "sisdr": -float(auraloss.time.SISDRLoss()(e, r)),
    }


@pytest.mark.parametrize(
    ("sample_rate", "channels", "samples"), [(16000, 1, 16000), (44100, 2, 22050), (22050, 2, 9001)]
)
def test_matches_auraloss_defaults(sample_rate, channels, samples):
    ref, est = broadband_pair(channels, samples, seed=samples)
    ours = recon_metrics(ref, est, sample_rate)
    theirs = auraloss_metrics(ref, est, sample_rate)
    assert set(ours) == set(METRICS)
    for k in METRICS:
        assert ours[k] == pytest.approx(theirs[k], rel=1e-5), k
    assert ours["sisdr"] > 5  # a sane reconstruction, not a degenerate pair


def test_numpy_input_and_float64_give_the_same_numbers():
    ref, est = broadband_pair(2, 8000, seed=1)
    a = recon_metrics(ref, est, 16000)
    b = recon_metrics(ref.numpy(), est.double().numpy(), np.int64(16000))
    for k in METRICS:
        assert a[k] == pytest.approx(b[k], rel=1e-6)


def test_identical_signals():
    ref, _ = broadband_pair(2, 8000, seed=2)
    m = recon_metrics(ref, ref.clone(), 16000)
    assert m["stft"] == pytest.approx(0.0, abs=1e-9) and m["mel"] == pytest.approx(0.0, abs=1e-9)
    assert m["sisdr"] > 80  # only the 1e-8 guard keeps it finite


def test_si_sdr_is_scale_invariant():
    ref, est = broadband_pair(2, 8000, seed=3)
    base = recon_metrics(ref, est, 16000)["sisdr"]
    assert recon_metrics(ref, 0.1 * est, 16000)["sisdr"] == pytest.approx(base, abs=1e-6)
    assert recon_metrics(ref, 3.0 * est, 16000)["sisdr"] == pytest.approx(base, abs=1e-6)


def test_si_sdr_closed_form_with_orthogonal_noise():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4000, generator=g, dtype=torch.float64)
    n = torch.randn(2, 4000, generator=g, dtype=torch.float64)
    x, n = x - x.mean(-1, keepdim=True), n - n.mean(-1, keepdim=True)
    n = n - ((n * x).sum(-1) / (x * x).sum(-1))[:, None] * x  # orthogonal to x, still zero-mean
    n = n * torch.tensor([[0.1], [0.5]], dtype=torch.float64)  # a different SNR per channel
    expected = (10 * torch.log10((x * x).sum(-1) / (n * n).sum(-1))).mean()
    assert si_sdr(x, x + n) == pytest.approx(float(expected), abs=1e-6)
    assert si_sdr(x, 2 * (x + n) + 0.7) == pytest.approx(float(expected), abs=1e-6)  # gain and DC offset


def test_channel_reduction_follows_auraloss():
    ref, est = broadband_pair(2, 8000, seed=9)
    ref = ref * torch.tensor([[1.0], [0.05]])  # a quiet right channel
    est = est * torch.tensor([[1.0], [0.05]])
    both = recon_metrics(ref, est, 16000)
    mono = [recon_metrics(ref[i : i + 1], est[i : i + 1], 16000) for i in range(2)]
    assert both["sisdr"] == pytest.approx((mono[0]["sisdr"] + mono[1]["sisdr"]) / 2)  # mean over channels
    # Spectral convergence is one norm ratio over both channels, so the loud channel dominates the stft value.
    assert both["stft"] != pytest.approx((mono[0]["stft"] + mono[1]["stft"]) / 2, rel=1e-3)


def test_lengths_within_tolerance_are_trimmed():
    ref, est = broadband_pair(1, 8000, seed=5)
    entry = evaluate_pair("a", ref, est[:, :7900], 16000)
    assert entry["trimmed"] == 100 and entry["samples"] == 7900
    assert entry["stft"] == pytest.approx(recon_metrics(ref[:, :7900], est[:, :7900], 16000)["stft"])
    with pytest.raises(ReconInputError, match="lengths differ by 256"):
        recon_metrics(ref, est[:, :-256], 16000)
    assert recon_metrics(ref, est[:, :-300], 16000, length_tolerance=2048)["sisdr"] > 5


@pytest.mark.parametrize(
    ("reference", "estimate", "match"),
    [
        (torch.randn(2, 4000), torch.randn(1, 4000), "channel counts differ"),
        (torch.randn(4000), torch.randn(4000), "\\(C, T\\)"),
        (torch.randn(1, 4000), torch.full((1, 4000), math.nan), "NaN or inf"),
        (torch.randn(1, 4000), torch.randint(0, 9, (1, 4000)), "floating point"),
        (torch.randn(1, MIN_SAMPLES - 1), torch.randn(1, MIN_SAMPLES - 1), "too short"),
        (torch.zeros(1, 4000), torch.randn(1, 4000), "silent reference \\(channel 0\\)"),
        (torch.stack([torch.randn(4000), torch.full((4000,), 0.5)]), torch.randn(2, 4000), "channel 1"),
    ],
)
def test_bad_pairs_raise(reference, estimate, match):
    with pytest.raises(ReconInputError, match=match):
        recon_metrics(reference, estimate, 16000)


def test_bad_sample_rate_raises():
    ref, est = broadband_pair(1, 4000, seed=6)
    for rate in (0, 16000.0, True):
        with pytest.raises(ReconInputError, match="sample_rate"):
            recon_metrics(ref, est, rate)
    # auraloss' mel filters (librosa) have empty bands from 88.2 kHz on and its loss is NaN there.
    with pytest.warns(UserWarning, match="Empty filters"):
        theirs = auraloss.freq.MelSTFTLoss(96000)
    assert math.isnan(float(theirs(est[None], ref[None])))
    with pytest.raises(ReconInputError, match="96000 Hz is too high"):
        recon_metrics(ref, est, 96000)
    assert recon_metrics(ref, est, 48000)["mel"] > 0


def test_evaluate_pairs_reports_errors_per_file_and_means_the_rest():
    good = [broadband_pair(2, 6000, seed=s) for s in (7, 8)]
    pairs = [
        ("good0", good[0][0], good[0][1], 16000),
        ("silent", np.zeros((2, 6000), np.float32), good[0][1].numpy(), 16000),
        ("good1", good[1][0], good[1][1], 16000),
    ]
    report = evaluate_pairs(iter(pairs))
    names = [e["name"] for e in report["per_file"]]
    assert names == ["good0", "silent", "good1"]
    assert "silent reference" in report["per_file"][1]["error"] and "sisdr" not in report["per_file"][1]
    assert (report["num_files"], report["num_scored"], report["num_errors"]) == (3, 2, 1)
    singles = [recon_metrics(r, e, 16000) for r, e in good]
    for k in METRICS:
        assert report["mean"][k] == pytest.approx((singles[0][k] + singles[1][k]) / 2)
    assert report["per_file"][0]["channels"] == 2 and report["per_file"][0]["sample_rate"] == 16000


def test_summarize_with_no_scored_file():
    summary = summarize([{"name": "x", "error": "unreadable"}])
    assert summary["mean"] == {k: None for k in METRICS} and summary["num_errors"] == 1
