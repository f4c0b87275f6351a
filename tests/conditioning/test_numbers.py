"""Number conditioner: closed-form Fourier features, clamping, normalisation and the user-facing seconds check."""

import math

import pytest
import torch

from wavefoundry.conditioning.numbers import FourierFeatures, NumberConditioner, validate_seconds


def test_fourier_features_closed_form():
    ff = FourierFeatures(8)
    x = torch.tensor([0.0, 0.25, 1.0])
    w = ff.weights.detach()
    expected = torch.cat(
        [x[:, None], torch.sin(2 * math.pi * x[:, None] * w), torch.cos(2 * math.pi * x[:, None] * w)], 1
    )
    assert torch.allclose(ff(x), expected, atol=1e-6)
    assert ff(x).shape == (3, 9)
    with pytest.raises(ValueError, match="even"):
        FourierFeatures(7)


def test_number_conditioner_normalises_and_clamps():
    nc = NumberConditioner(6, min_value=0.0, max_value=512.0, fourier_dim=8)
    out = nc(torch.tensor([256.0, 512.0, 900.0, -3.0, 0.0]))
    assert out.shape == (5, 1, 6)
    manual = nc.proj(nc.fourier(torch.tensor([0.5])))[:, None]
    assert torch.allclose(out[:1], manual)
    assert torch.allclose(out[1], out[2], atol=1e-6) and torch.allclose(out[3], out[4], atol=1e-6)
    assert not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError, match="max_value > min_value"):
        NumberConditioner(4, min_value=5, max_value=5)


def test_number_conditioner_dtype_follows_weights():
    nc = NumberConditioner(4, fourier_dim=8).to(torch.float64)
    assert nc(torch.tensor([1.0])).dtype == torch.float64


def test_validate_seconds():
    start, total = validate_seconds([0.0, 1.5], torch.tensor([10.0, 30.0]))
    assert start.dtype == total.dtype == torch.float32 and total.tolist() == [10.0, 30.0]
    assert validate_seconds(0, 512)[1].item() == 512
    with pytest.raises(ValueError, match=r"seconds_start must be within \[0, 512\]"):
        validate_seconds(-1.0, 10.0)
    with pytest.raises(ValueError, match="seconds_total must be within"):
        validate_seconds(0.0, 600.0)
    with pytest.raises(ValueError, match="seconds_total must be within"):
        validate_seconds(0.0, 60.0, max_seconds=47.0)
    with pytest.raises(ValueError, match="finite"):
        validate_seconds(0.0, float("nan"))
    with pytest.raises(ValueError, match="exceeds seconds_total"):
        validate_seconds([5.0], [4.0])
    with pytest.raises(ValueError, match="differ"):
        validate_seconds([1.0, 2.0], [4.0, 5.0, 6.0])
