"""Public inference API. ``Codec.from_pretrained(dir)`` loads an exported autoencoder for encoding and decoding.

An exported model directory holds ``config.json`` (``{"type": ..., "model": {...}}``, loaded strictly),
``model.safetensors`` and a ``README.md`` model card. Training runs are turned into one by ``wavefoundry export``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from wavefoundry.codecs.autoencoder import Autoencoder, AutoencoderConfig
from wavefoundry.config import ConfigError, from_dict, read_json

#: Longest audio a pipeline accepts in one call (guards memory; chunking keeps peak memory bounded below it).
MAX_SECONDS = 3600.0


class ModelLoadError(ValueError):
    """A model directory is missing, of the wrong type, or its weights do not match its config."""


def read_model_config(path: str | Path, expected_type: str) -> dict:
    """The ``model`` section of an exported ``config.json`` whose ``type`` is ``expected_type``."""
    file = Path(path) / "config.json"
    try:
        data = read_json(file)
    except ConfigError as exc:
        raise ModelLoadError(f"{exc} (a model directory comes from `wavefoundry export`)") from None
    if not isinstance(data, dict) or data.get("type") != expected_type or set(data) != {"type", "model"}:
        raise ModelLoadError(f"{file}: expected {{'type': '{expected_type}', 'model': {{...}}}}")
    return data["model"]


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load weights with every key and shape matching; the error lists the first offending keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = [f"{name}: {', '.join(keys[:5])}" for name, keys in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if keys]  # fmt: skip
        raise ModelLoadError(f"{where}: weights do not match the model ({'; '.join(parts)})")
    module.load_state_dict(state, strict=True)


class Codec:
    """An autoencoder ready for inference (weight norm folded, eval mode)."""

    def __init__(self, model: Autoencoder) -> None:
        self.model = model.eval()

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Codec:
        """Load an exported autoencoder directory (``config.json`` + ``model.safetensors``)."""
        path = Path(path)
        try:
            cfg = from_dict(AutoencoderConfig, read_model_config(path, "autoencoder"))
        except ConfigError as exc:
            raise ModelLoadError(f"{path / 'config.json'}: {exc}") from None
        model = Autoencoder(cfg)
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise ModelLoadError(f"{path}: no model.safetensors")
        load_strict(model, load_file(str(weights)), str(weights))
        return cls(model.remove_weight_norm())

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
