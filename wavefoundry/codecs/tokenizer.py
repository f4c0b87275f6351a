"""One small interface for audio tokenizers, so the language models can use our RVQ codec or Mimi alike.

:class:`AudioTokenizer` is a structural Protocol: ``sample_rate``, ``frame_rate``, ``n_codebooks``,
``codebook_size``, ``encode(audio (B, C, T)) -> codes (B, K, L)`` and ``decode(codes) -> audio``. Codebook 0 is
the semantic one when the tokenizer has one (Mimi's WavLM-distilled codebook; our ``semantic-codec`` runs).
:class:`CodecTokenizer` adapts an :class:`~wavefoundry.codecs.autoencoder.Autoencoder` with a discrete bottleneck;
``codecs/mimi.py`` adapts Kyutai's Mimi. Both take audio at another rate with ``sample_rate=`` (soxr resampling).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from wavefoundry.audio.resample import resample
from wavefoundry.codecs.autoencoder import Autoencoder
from wavefoundry.codecs.quantizers import check_codes


@runtime_checkable
class AudioTokenizer(Protocol):
    """Audio <-> integer codes (B, K, L): K codebooks of ``codebook_size`` ids at ``frame_rate`` frames per second."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def frame_rate(self) -> float: ...

    @property
    def n_codebooks(self) -> int: ...

    @property
    def codebook_size(self) -> int: ...

    def encode(self, audio: Tensor) -> Tensor:
        """Audio (B, C, T) at ``sample_rate`` -> codes (B, K, L) int64."""
        ...

    def decode(self, codes: Tensor) -> Tensor:
        """Codes (B, K, L) -> audio (B, C, L * sample_rate / frame_rate)."""
        ...


def resample_batch(audio: Tensor, orig_sr: int, target_sr: int) -> Tensor:
    """Resample (B, C, T) audio with soxr (``audio/resample.py``); same dtype and device. Equal rates: no copy."""
    if orig_sr == target_sr:
        return audio
    rows = [resample(x, orig_sr, target_sr) for x in audio.detach().float().cpu().numpy()]  # B x (C, T')
    return torch.from_numpy(np.stack(rows)).to(device=audio.device, dtype=audio.dtype)  # (B, C, T')


class CodecTokenizer(nn.Module):
    """:class:`AudioTokenizer` over our autoencoder with an RVQ (or FSQ) bottleneck; put in eval mode, no gradients.

    Args:
        autoencoder: a discrete :class:`Autoencoder` (e.g. ``load_model(run)[1].autoencoder``).
        n_codebooks: use the first K codebooks (residual VQ: any 1..num_quantizers; FSQ: all). None: all.
        chunk_seconds: encode/decode in exact chunks of about this length (bounded memory); None: one pass.
    """

    def __init__(
        self, autoencoder: Autoencoder, *, n_codebooks: int | None = None, chunk_seconds: float | None = None
    ) -> None:
        super().__init__()
        if not isinstance(autoencoder, Autoencoder) or not autoencoder.is_discrete:
            raise ValueError("CodecTokenizer needs an Autoencoder with a discrete (rvq or fsq) bottleneck")
        total = autoencoder.bottleneck.num_quantizers
        k = total if n_codebooks is None else n_codebooks
        prefix_ok = autoencoder.cfg.bottleneck.kind == "rvq"  # residual stages decode from any prefix
        if not (1 <= k <= total) or (k != total and not prefix_ok):
            valid = f"1..{total}" if prefix_ok else f"{total}"
            raise ValueError(f"n_codebooks={k} is not valid for this {autoencoder.cfg.bottleneck.kind}; valid: {valid}")
        self.autoencoder = autoencoder.eval()
        self.chunk_seconds = chunk_seconds
        self._k = k

    @property
    def sample_rate(self) -> int:
        return self.autoencoder.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.autoencoder.sample_rate / self.autoencoder.hop_length

    @property
    def n_codebooks(self) -> int:
        return self._k

    @property
    def codebook_size(self) -> int:
        return self.autoencoder.bottleneck.codebook_size

    @torch.no_grad()
    def encode(self, audio: Tensor, *, sample_rate: int | None = None) -> Tensor:
        """Audio (B, C, T) -> codes (B, K, ceil(T' / hop)); ``sample_rate``: the input's rate when it is another
        one (resampled first; T' is the resampled length)."""
        if sample_rate is not None:
            audio = resample_batch(audio, sample_rate, self.sample_rate)
        out = self.autoencoder.encode(audio, chunk_seconds=self.chunk_seconds)
        return out.codes[:, : self._k]

    @torch.no_grad()
    def decode(self, codes: Tensor, *, sample_rate: int | None = None) -> Tensor:
        """Codes (B, K, L) -> audio (B, C, L * hop), resampled to ``sample_rate`` when given."""
        check_codes(codes, (self._k, self._k), self.codebook_size)
        audio = self.autoencoder.decode_codes(codes, chunk_seconds=self.chunk_seconds)
        return audio if sample_rate is None else resample_batch(audio, self.sample_rate, sample_rate)
