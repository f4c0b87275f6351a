"""Kyutai's Mimi codec (Defossez et al. 2024, Moshi) as an :class:`~wavefoundry.codecs.tokenizer.AudioTokenizer`.

SODA (Manakul et al. 2026) tokenizes audio with Mimi: 24 kHz mono -> 12.5 frames/s, codebook 0 distilled from
WavLM (semantic), the next ones acoustic (residual VQ), 2048 ids each; Moshi uses the first 8 codebooks. This
adapter wraps a local ``transformers`` ``MimiModel`` directory (``config.json`` + ``model.safetensors``, e.g. a
``save_pretrained`` copy of ``kyutai/mimi``); nothing is downloaded. The weights are frozen and in eval mode.
Audio and codes must be on the model's device (``.to(device)`` moves it). See docs/semantic_tokens.md.

It lives in ``codecs/`` rather than ``formats/``: it converts no checkpoint, it runs one through transformers, and
``codecs`` may import ``audio`` for the soxr resampling of other input/output rates.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from wavefoundry.codecs.quantizers import check_codes
from wavefoundry.codecs.tokenizer import resample_batch

#: Codebooks kept by default: Moshi's 8 (1 semantic + 7 acoustic) of the checkpoint's 32.
DEFAULT_CODEBOOKS = 8


def _check_dir(path: Path) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"Mimi directory not found: {path} (save kyutai/mimi there with save_pretrained)")
    config = path / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"Mimi files missing: {config}")
    if not any(path.glob("*.safetensors")):
        raise FileNotFoundError(f"Mimi files missing: {path / 'model.safetensors'} (safetensors weights only)")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"{config}: not a valid JSON config") from None
    if model_type != "mimi":
        raise ValueError(f"{config} describes a {model_type!r} model, not 'mimi'")


class MimiTokenizer(nn.Module):
    """Audio (B, 1, T) at 24 kHz <-> Mimi codes (B, K, L) at 12.5 Hz (the rates of the loaded config).

    Args:
        path: local ``MimiModel`` directory.
        num_quantizers: K, the codebooks kept (1..config.num_quantizers; codebook 0 is the semantic one).

    Raises:
        FileNotFoundError: the directory, its ``config.json`` or its safetensors weights are missing.
        ValueError: the config is not a Mimi one, or ``num_quantizers`` is out of range.
    """

    def __init__(self, path: str | Path, *, num_quantizers: int = DEFAULT_CODEBOOKS) -> None:
        super().__init__()
        from transformers import MimiModel  # optional dependency, needed only for this tokenizer

        path = Path(path).expanduser()
        _check_dir(path)
        try:
            model = MimiModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(f"could not load a Mimi model from {path}: {exc}") from exc
        total = model.config.num_quantizers
        if not 1 <= num_quantizers <= total:
            raise ValueError(f"num_quantizers={num_quantizers} is not valid for this Mimi; valid: 1..{total}")
        self.mimi = model.eval().requires_grad_(False)
        self.path = path
        self._k = num_quantizers

    @property
    def sample_rate(self) -> int:
        return int(self.mimi.config.sampling_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.mimi.config.frame_rate)

    @property
    def hop_length(self) -> int:
        """Audio samples per code frame (1920 for Mimi: 24 kHz / 12.5 Hz)."""
        return round(self.sample_rate / self.frame_rate)

    @property
    def n_codebooks(self) -> int:
        return self._k

    @property
    def codebook_size(self) -> int:
        return int(self.mimi.config.codebook_size)

    @property
    def audio_channels(self) -> int:
        return int(self.mimi.config.audio_channels)

    def _check_audio(self, audio: Tensor) -> None:
        C = self.audio_channels
        if not isinstance(audio, Tensor) or audio.ndim != 3 or audio.shape[1] != C or audio.shape[-1] < 1:
            shape = tuple(audio.shape) if isinstance(audio, Tensor) else type(audio).__name__
            raise ValueError(f"Mimi expects audio (B, {C}, T) with T >= 1, got {shape}")
        if not audio.is_floating_point() or not bool(torch.isfinite(audio).all()):
            raise ValueError("Mimi expects finite floating-point audio")

    @torch.no_grad()
    def encode(self, audio: Tensor, *, sample_rate: int | None = None) -> Tensor:
        """Audio (B, 1, T) -> codes (B, K, ceil(T' / hop_length)) int64.

        Args:
            audio: waveform at ``self.sample_rate``, or at ``sample_rate`` (resampled with soxr first; T' is the
                resampled length).
        """
        self._check_audio(audio)
        if sample_rate is not None:
            audio = resample_batch(audio, sample_rate, self.sample_rate)
        audio = audio.to(self.mimi.dtype)
        return self.mimi.encode(audio, num_quantizers=self._k, return_dict=True).audio_codes.long()  # (B, K, L)

    @torch.no_grad()
    def decode(self, codes: Tensor, *, sample_rate: int | None = None) -> Tensor:
        """Codes (B, K, L) -> audio (B, 1, L * hop_length) float32, resampled to ``sample_rate`` when given."""
        check_codes(codes, (self._k, self._k), self.codebook_size)
        audio = self.mimi.decode(codes.long(), return_dict=True).audio_values.float()  # (B, 1, T)
        return audio if sample_rate is None else resample_batch(audio, self.sample_rate, sample_rate)
