"""Span masking: the closed-form expected masked fraction against Monte Carlo, and the realised mask rate against
the cosine schedule at several rates (the naive span count falls short; the correction does not)."""

import math

import pytest
import torch

from wavefoundry.lm.masking import cosine_schedule, expected_masked_fraction, span_counts, span_mask


def test_cosine_schedule_end_points():
    torch.testing.assert_close(cosine_schedule(torch.tensor([0.0, 1 / 3, 1.0])),
                               torch.tensor([1.0, math.cos(math.pi / 6), 0.0]), atol=1e-6, rtol=0)  # fmt: skip


@pytest.mark.parametrize("n", [1, 5, 12, 30])
def test_expected_fraction_closed_form_matches_monte_carlo(n):
    T, span = 40, 3
    N = T + span - 1
    g = torch.Generator().manual_seed(n)
    starts = torch.zeros(20000, N)
    starts.scatter_(1, torch.rand(20000, N, generator=g).argsort(-1)[:, :n], 1.0)
    masked = torch.nn.functional.max_pool1d(starts[:, None], span, 1)[:, 0] > 0  # (draws, T)
    assert abs(masked.float().mean().item() - expected_masked_fraction(torch.tensor(n), T, span).item()) < 0.005
    # every frame has the same probability (no edge effect)
    assert masked.float().mean(0).sub(masked.float().mean()).abs().max() < 0.02


@pytest.mark.parametrize("gamma", [0.05, 0.2, 0.5, 0.8, 0.95])
@pytest.mark.parametrize("span", [1, 3, 5])
def test_realised_mask_rate_matches_the_schedule(gamma, span):
    mask = span_mask(torch.full((4000,), gamma), 50, span, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (4000, 50) and mask.dtype == torch.bool
    assert abs(mask.float().mean().item() - gamma) < 0.006


def test_mean_rate_over_the_training_distribution_is_two_over_pi():
    g = torch.Generator().manual_seed(1)
    gamma = cosine_schedule(torch.rand(20000, generator=g))
    mask = span_mask(gamma, 64, 3, generator=g)
    assert abs(mask.float().mean().item() - 2 / math.pi) < 0.005


def test_naive_span_count_undershoots_and_the_correction_is_needed():
    T, span, gamma = 60, 3, 0.7
    naive = round(gamma * T / span)  # ignores overlaps
    assert expected_masked_fraction(torch.tensor(naive), T, span).item() < gamma - 0.1
    n = span_counts(torch.full((1000,), gamma), T, span, generator=torch.Generator().manual_seed(0))
    assert n.float().mean() > naive  # more starts than the naive count


def test_span_mask_extremes_and_runs():
    assert not span_mask(torch.zeros(8), 30, 3).any()
    assert span_mask(torch.ones(8), 30, 3).all()
    mask = span_mask(torch.full((200,), 0.2), 100, 4, generator=torch.Generator().manual_seed(0))
    # runs of masked frames are at least one span long, except where cut by the sequence ends
    for row in mask:
        padded = torch.cat((torch.tensor([False]), row, torch.tensor([False]))).int()
        edges = padded.diff()
        starts, ends = (edges == 1).nonzero()[:, 0], (edges == -1).nonzero()[:, 0]
        for a, b in zip(starts.tolist(), ends.tolist()):
            assert b - a >= 4 or a == 0 or b == 100


def test_bad_arguments():
    with pytest.raises(ValueError, match="frames and span must be >= 1"):
        span_counts(torch.tensor([0.5]), 10, 0)
