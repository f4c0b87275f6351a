"""``Codec``: an exported autoencoder for encoding and decoding audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wavefoundry.codecs.autoencoder import Autoencoder
from wavefoundry.train.export import load_autoencoder

#: Longest audio a pipeline accepts in one call (guards memory; chunking keeps peak memory bounded below it).
MAX_SECONDS = 3600.0


class Codec:
    """An autoencoder ready for inference (weight norm folded, eval mode)."""

    def __init__(self, model: Autoencoder) -> None:
        self.model = model.eval()

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Codec:
        """Load an exported autoencoder directory (``config.json`` + ``model.safetensors``)."""
        return cls(load_autoencoder(path))

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def channels(self) -> int:
        return self.model.audio_channels

    def _audio_tensor(self, audio: np.ndarray, sample_rate: int) -> torch.Tensor:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 2:
            raise ValueError(f"expected audio shaped (channels, samples), got {audio.shape}")
        if audio.shape[1] > MAX_SECONDS * sample_rate:
            raise ValueError(f"audio is longer than {MAX_SECONDS:g} s")
        x = torch.from_numpy(audio)[None]  # (1, C, T)
        self.model.check_input(x, sample_rate)
        return x

    @torch.inference_mode()
    def encode(self, audio: np.ndarray, sample_rate: int, *, chunk_seconds: float | None = 10.0) -> np.ndarray:
        """Audio (C, T) -> latents (D, L) float32 for a VAE, codes (K, L) int64 for RVQ/FSQ.

        The VAE posterior mean is returned (deterministic); pass it to :meth:`decode` as is.
        """
        x = self._audio_tensor(audio, sample_rate)
        out = self.model.encode(x, chunk_seconds=chunk_seconds, sample=False)
        return (out.codes if self.model.is_discrete else out.latents)[0].numpy()

    @torch.inference_mode()
    def decode(self, latents_or_codes: np.ndarray, *, chunk_seconds: float | None = 10.0) -> np.ndarray:
        """Latents (D, L) or codes (K, L) -> audio (C, L * hop) float32."""
        z = torch.from_numpy(np.asarray(latents_or_codes))[None]
        if self.model.is_discrete:
            if z.is_floating_point():
                raise ValueError("this codec is discrete: decode integer codes (K, L), not float latents")
            return self.model.decode_codes(z.long(), chunk_seconds=chunk_seconds)[0].numpy()
        return self.model.decode(z.float(), chunk_seconds=chunk_seconds)[0].numpy()

    def reconstruct(self, audio: np.ndarray, sample_rate: int, *, chunk_seconds: float | None = 10.0) -> np.ndarray:
        """Encode then decode; the output is trimmed to the input length."""
        out = self.decode(self.encode(audio, sample_rate, chunk_seconds=chunk_seconds), chunk_seconds=chunk_seconds)
        return out[:, : np.asarray(audio).shape[1]]
