"""Chunked coding equals a full pass when the context covers the receptive field, and not otherwise."""

import pytest
import torch
from torch import nn

from wavefoundry.codecs.chunked import decode_chunked, encode_chunked

HOP = 4


def _nets():
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Conv1d(2, 4, 9, padding=4), nn.Tanh(), nn.Conv1d(4, 3, HOP, stride=HOP))
    dec = nn.Sequential(nn.ConvTranspose1d(3, 4, HOP, stride=HOP), nn.Tanh(), nn.Conv1d(4, 2, 9, padding=4))
    return enc.eval(), dec.eval()


@pytest.mark.parametrize("length", [4, 37, 400, 401])
@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_chunked_equals_full(length, chunk):
    enc, dec = _nets()
    audio = torch.randn(2, 2, length)
    padded = nn.functional.pad(audio, (0, -length % HOP))
    with torch.no_grad():
        full_z = enc(padded)
        full_y = dec(full_z)
    z = encode_chunked(enc, audio, hop=HOP, chunk_frames=chunk, context_frames=2)
    y = decode_chunked(dec, full_z, hop=HOP, chunk_frames=chunk, context_frames=2)
    torch.testing.assert_close(z, full_z, rtol=0, atol=1e-6)
    torch.testing.assert_close(y, full_y, rtol=0, atol=1e-6)


def test_too_little_context_is_detectably_wrong():
    enc, _ = _nets()
    audio = torch.randn(1, 2, 400)
    with torch.no_grad():
        full = enc(audio)
    z = encode_chunked(enc, audio, hop=HOP, chunk_frames=8, context_frames=0)
    assert (z - full).abs().max() > 1e-3


def test_bad_arguments():
    enc, _ = _nets()
    with pytest.raises(ValueError, match="chunk must be"):
        encode_chunked(enc, torch.randn(1, 2, 40), hop=HOP, chunk_frames=0, context_frames=1)
    with pytest.raises(ValueError, match="hop is wrong"):
        encode_chunked(enc, torch.randn(1, 2, 40), hop=2, chunk_frames=4, context_frames=1)
