"""LAION-CLAP text-audio model (Wu et al. 2023, "Large-scale contrastive language-audio pretraining", arXiv
2211.06687) for the CLAP score, in pure torch.

The network is transformers' ``ClapModel`` (HTSAT audio tower + RoBERTa text tower), imported lazily and loaded
from a local Hugging Face directory (``load_laion_clap``); original LAION-AI/CLAP ``.pt`` checkpoints are converted
into that layout by ``wavefoundry/formats/laion_clap.py`` (``wavefoundry eval convert-clap``). The audio front end
(48 kHz mono, STFT, mel, dB, 10 s padding / truncation / fusion) is implemented here in torch (:class:`ClapFrontend`)
and matches ``ClapFeatureExtractor``. Conventions are those of ``laion_clap.CLAP_Module``: int16 round trip of the
waveform, "fusion" truncation for fusion checkpoints and "rand_trunc" otherwise, "repeatpad" padding, text padded
and truncated to 77 RoBERTa tokens. See docs/laion_clap.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from wavefoundry.audio.dsp import peak_normalize
from wavefoundry.audio.features import mel_filterbank, stft
from wavefoundry.eval.clap_score import quantize_int16
from wavefoundry.eval.embedders import EmbedderInfo, file_sha256, prepare

logger = logging.getLogger(__name__)

TRUNCATIONS = ("rand_trunc", "fusion")
PADDINGS = ("repeatpad", "repeat", "pad")
#: Tokens per text, as laion_clap's CLAP_Module.tokenizer (padding="max_length", truncation=True, max_length=77).
MAX_TEXT_TOKENS = 77
#: Mel filters per truncation mode: laion_clap computes non-fusion mels in-model with torchlibrosa (librosa's Slaney
#: scale and area norm) and fusion mels with torchaudio.MelSpectrogram (HTK scale, no norm).
MEL_STYLES = {"rand_trunc": ("slaney", "slaney"), "fusion": ("htk", None)}
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")  # fast tokenizer, or RoBERTa's BPE vocab (+ merges.txt)
#: ClapFrontendConfig field -> ClapFeatureExtractor argument (truncation is set by the model, not the file).
FEATURE_EXTRACTOR_FIELDS = {
    "sample_rate": "sampling_rate",
    "n_fft": "fft_window_size",
    "hop_length": "hop_length",
    "n_mels": "feature_size",
    "f_min": "frequency_min",
    "f_max": "frequency_max",
    "max_length_s": "max_length_s",
    "padding": "padding",
    "top_db": "top_db",
}
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:  # optional dependency: only this adapter needs it
        raise ImportError("LAION-CLAP needs transformers (pip install transformers) for ClapModel") from exc
    return transformers


def truncation_of(model_config: Any) -> str:
    """The truncation mode a ClapModel config needs, as ``CLAP_Module`` chooses: "fusion" iff enable_fusion."""
    return "fusion" if bool(model_config.audio_config.enable_fusion) else "rand_trunc"


@dataclass(kw_only=True)
class ClapFrontendConfig:
    """CLAP audio front end (the ``ClapFeatureExtractor`` fields); lengths in samples, frequencies in Hz."""

    sample_rate: int = 48000
    n_fft: int = 1024
    hop_length: int = 480
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 14000.0
    max_length_s: float = 10.0
    truncation: str = "rand_trunc"
    padding: str = "repeatpad"
    top_db: float | None = None

    def __post_init__(self) -> None:
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"unknown truncation {self.truncation!r}; valid: {', '.join(TRUNCATIONS)}")
        if self.padding not in PADDINGS:
            raise ValueError(f"unknown padding {self.padding!r}; valid: {', '.join(PADDINGS)}")
        if self.sample_rate < 1 or self.n_fft < 2 or self.hop_length < 1 or self.n_mels < 1:
            raise ValueError("ClapFrontendConfig: need sample_rate >= 1, n_fft >= 2, hop_length >= 1, n_mels >= 1")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(
                f"ClapFrontendConfig: need 0 <= f_min < f_max <= sample_rate / 2, got {self.f_min}, {self.f_max}"
            )
        if self.max_samples <= self.n_fft // 2:
            raise ValueError(f"ClapFrontendConfig: max_length_s={self.max_length_s} is shorter than one frame")
        if self.top_db is not None and self.top_db <= 0:
            raise ValueError(f"ClapFrontendConfig: top_db must be > 0 or None, got {self.top_db}")

    @property
    def max_samples(self) -> int:
        return round(self.max_length_s * self.sample_rate)

    @property
    def chunk_frames(self) -> int:
        """Frames of one max-length window (centred STFT: one more than max_samples // hop)."""
        return self.max_samples // self.hop_length + 1

    @classmethod
    def from_feature_extractor(cls, fe: Any, *, truncation: str) -> ClapFrontendConfig:
        """Settings of a ``ClapFeatureExtractor`` (object or its preprocessor_config.json dict)."""
        get = fe.get if isinstance(fe, Mapping) else lambda key, default: getattr(fe, key, default)
        d = cls(truncation=truncation)
        values = {ours: get(theirs, getattr(d, ours)) for ours, theirs in FEATURE_EXTRACTOR_FIELDS.items()}
        # Cast to the field's type (JSON may give 50 for 50.0); top_db (default None) is a float when set.
        typed = {k: v if v is None else type(getattr(d, k) or 0.0)(v) for k, v in values.items()}
        return cls(truncation=truncation, **typed)

    def feature_extractor_kwargs(self) -> dict[str, Any]:
        """``ClapFeatureExtractor`` keyword arguments of these settings (the inverse of from_feature_extractor)."""
        kwargs = {theirs: getattr(self, ours) for ours, theirs in FEATURE_EXTRACTOR_FIELDS.items()}
        return {**kwargs, "truncation": self.truncation}


class ClapFrontend:
    """Waveforms (N, T) at 48 kHz -> log-mel features (N, C, frames, n_mels) and ``is_longer`` (N,).

    C is 1 for "rand_trunc" and 4 for "fusion" (global view + three crops; four copies of the one view when the
    audio fits in max_length_s). Audio shorter than max_length_s is padded by ``padding``; longer audio is cropped at
    random ("rand_trunc") or fused. Log-mels are ``10 log10(max(mel power, 1e-10))`` (ref 1, no top_db by default),
    computed in float64 and returned as float32, like ``ClapFeatureExtractor``.
    """

    def __init__(self, config: ClapFrontendConfig) -> None:
        self.config = config
        scale, norm = MEL_STYLES[config.truncation]
        c = config
        self.fb = mel_filterbank(
            c.n_fft // 2 + 1, c.n_mels, c.sample_rate, c.f_min, c.f_max, norm=norm, mel_scale=scale, dtype=torch.float64
        )  # (F, n_mels)

    def log_mel(self, x: Tensor) -> Tensor:
        """(B, T) waveforms -> (B, frames, n_mels) float32 log-mel in dB."""
        c = self.config
        spec = stft(x.to(torch.float64), c.n_fft, c.hop_length)  # (B, F, frames)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(power.mT, self.fb)  # (B, frames, F) @ (F, M) -> (B, frames, M)
        db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        if c.top_db is not None:
            db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - c.top_db)
        return db.to(torch.float32)

    def pad(self, x: np.ndarray) -> np.ndarray:
        """(N, T) with T < max_samples -> (N, max_samples) by "repeatpad", "repeat" or "pad"."""
        n_max = self.config.max_samples
        n_repeat = n_max // x.shape[1]
        if self.config.padding == "repeat":
            return np.tile(x, (1, n_repeat + 1))[:, :n_max]
        if self.config.padding == "repeatpad":
            x = np.tile(x, (1, n_repeat))
        return np.pad(x, ((0, 0), (0, n_max - x.shape[1])))

    def __call__(self, waveforms: np.ndarray, rng: np.random.RandomState | None = None) -> tuple[Tensor, Tensor]:
        """Features (N, C, frames, n_mels) float32 and is_longer (N,) bool of equal-length waveforms (N, T).

        ``rng`` draws the crops of audio longer than max_length_s in the order ``ClapFeatureExtractor`` draws them
        from ``np.random`` (so a RandomState seeded like np.random gives the same crops).
        """
        if waveforms.ndim != 2 or waveforms.shape[1] < 1:
            raise ValueError(f"ClapFrontend expects (N, T) waveforms with T >= 1, got shape {waveforms.shape}")
        c, (N, length) = self.config, waveforms.shape
        rng = np.random.RandomState(0) if rng is None else rng
        x = waveforms.astype(np.float64)
        if length <= c.max_samples:
            mel = self.log_mel(torch.from_numpy(self.pad(x) if length < c.max_samples else x))  # (N, frames, M)
            channels = 4 if c.truncation == "fusion" else 1
            return mel[:, None].expand(N, channels, *mel.shape[1:]).contiguous(), torch.zeros(N, dtype=torch.bool)
        if c.truncation == "rand_trunc":
            starts = [rng.randint(0, length - c.max_samples + 1) for _ in range(N)]
            crops = np.stack([row[s : s + c.max_samples] for row, s in zip(x, starts)])  # (N, max_samples)
            return self.log_mel(torch.from_numpy(crops))[:, None], torch.ones(N, dtype=torch.bool)
        return self._fuse(self.log_mel(torch.from_numpy(x)), rng)

    def _fuse(self, mel: Tensor, rng: np.random.RandomState) -> tuple[Tensor, Tensor]:
        # Feature fusion (arXiv 2211.06687, sec. 2.3): the whole mel shrunk to one window (global view) plus random
        # window crops from the front, middle and back thirds of the possible start frames.
        N, total, M = mel.shape
        chunk = self.config.chunk_frames
        if total == chunk:  # longer than max_samples by less than one hop: one view, not "longer"
            return mel[:, None].expand(N, 4, total, M).contiguous(), torch.zeros(N, dtype=torch.bool)
        out = []
        for row in mel:
            ranges = np.array_split(np.arange(total - chunk + 1), 3)
            starts = [rng.choice(r if len(r) else [0]) for r in ranges]
            shrunk = F.interpolate(row[None, None], size=[chunk, M], mode="bilinear", align_corners=False)[0, 0]
            out.append(torch.stack([shrunk, *(row[s : s + chunk] for s in starts)]))  # (4, chunk, M)
        return torch.stack(out), torch.ones(N, dtype=torch.bool)  # (N, 4, chunk, M)


def _unit(x: Tensor) -> np.ndarray:
    x = x.detach().to("cpu", torch.float64)
    return (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-300)).numpy()


def _pooled(out: Any) -> Tensor:
    # transformers >= 5 returns a model output whose pooler_output holds the features; 4.x returns the tensor.
    return out if isinstance(out, Tensor) else out.pooler_output


class LaionClap:
    """LAION-CLAP as a :class:`~wavefoundry.eval.embedders.TextAudioModel` (48 kHz, mono, 10 s windows).

    Args:
        model: a transformers ``ClapModel`` (eval mode is set here).
        processor_or_tokenizer: a ``ClapProcessor`` (its tokenizer and feature-extractor settings are used) or a
            RoBERTa tokenizer.
        weights_sha256: hash of the weights file, written into :attr:`info`.
        frontend: front-end settings; default from the processor, else :class:`ClapFrontendConfig` defaults. The
            truncation always follows the model: "fusion" iff ``config.audio_config.enable_fusion``.
        quantize: apply laion_clap's int16 round trip to the waveform before the front end.
        max_text_tokens: texts are padded and truncated to this many tokens.
        batch_size: windows or texts per forward pass.
        seed: seeds the crops of windows longer than max_length_s (none with the metric's 10 s windows).
    """

    def __init__(
        self,
        model: Any,
        processor_or_tokenizer: Any,
        *,
        weights_sha256: str,
        frontend: ClapFrontendConfig | None = None,
        quantize: bool = True,
        max_text_tokens: int = MAX_TEXT_TOKENS,
        batch_size: int = 8,
        seed: int = 0,
    ) -> None:
        truncation = truncation_of(model.config)
        tokenizer = getattr(processor_or_tokenizer, "tokenizer", processor_or_tokenizer)
        if frontend is None:
            fe = getattr(processor_or_tokenizer, "feature_extractor", None)
            if fe is None:
                frontend = ClapFrontendConfig(truncation=truncation)
            else:
                frontend = ClapFrontendConfig.from_feature_extractor(fe, truncation=truncation)
        if frontend.truncation != truncation:
            raise ValueError(
                f"frontend truncation {frontend.truncation!r} does not fit this model "
                f"(enable_fusion={model.config.audio_config.enable_fusion} needs {truncation!r})"
            )
        positions = model.config.text_config.max_position_embeddings - model.config.text_config.pad_token_id - 1
        if not 2 <= max_text_tokens <= positions:
            raise ValueError(f"max_text_tokens must be in [2, {positions}] for this text tower, got {max_text_tokens}")
        if tokenizer.pad_token_id != model.config.text_config.pad_token_id:
            raise ValueError(
                f"tokenizer pad id {tokenizer.pad_token_id} != text_config.pad_token_id "
                f"{model.config.text_config.pad_token_id}: not this model's tokenizer"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.frontend = ClapFrontend(frontend)
        self.quantize, self.max_text_tokens, self.batch_size = quantize, max_text_tokens, batch_size
        self.rng = np.random.RandomState(seed)
        self.dim = int(model.config.projection_dim)
        self.info = EmbedderInfo(
            name=f"laion-clap-{truncation}" + ("-int16" if quantize else ""),
            weights_sha256=weights_sha256,
            sample_rate=frontend.sample_rate,
            window_s=frontend.max_length_s,
            hop_s=frontend.max_length_s,
            channel_mode="mono",
        )

    @property
    def _param(self) -> Tensor:
        return next(self.model.parameters())

    def file_window(self, audio: np.ndarray, sr: int, *, peak_dbfs: float | None = -1.0) -> np.ndarray:
        """A whole file as one window (1, 1, T') the way stable-audio-metrics feeds LAION-CLAP.

        Mono by channel mean, soxr HQ resampling to 48 kHz (librosa.load's default), peak normalisation to
        ``peak_dbfs`` (pyloudnorm.normalize.peak(audio, -1.0); silence stays silent; None skips it). The int16 round
        trip and the 10 s padding / cropping / fusion happen in :meth:`embed_audio`.
        """
        x = prepare(audio, sr, self.info)  # (1, T')
        x = x if peak_dbfs is None else peak_normalize(x, 10.0 ** (peak_dbfs / 20.0))
        return x[None]  # (1, 1, T')

    @staticmethod
    def _check(windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows)
        if windows.ndim != 3 or windows.shape[1] != 1 or windows.shape[0] < 1 or windows.shape[2] < 1:
            raise ValueError(f"LAION-CLAP expects mono windows (N, 1, T) with N, T >= 1, got shape {windows.shape}")
        bad = np.flatnonzero(~np.isfinite(windows).all(axis=(1, 2)))
        if bad.size:
            raise ValueError(f"audio windows {bad[:5].tolist()} contain NaN or infinite samples")
        return windows

    def features(self, windows: np.ndarray) -> tuple[Tensor, Tensor]:
        """Front-end input of windows (N, 1, T) after the int16 round trip: (N, C, frames, n_mels), is_longer (N,)."""
        x = self._check(windows)[:, 0]  # (N, T)
        return self.frontend(quantize_int16(x) if self.quantize else x.astype(np.float32), self.rng)

    @torch.inference_mode()
    def embed_audio(self, windows: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings (N, dim) float64 of mono 48 kHz windows (N, 1, T), T = 480,000 for 10 s."""
        windows, p, out = self._check(windows), self._param, []
        for i in range(0, len(windows), self.batch_size):  # features per batch: fusion inputs are 1 MB a window
            feats, longer = self.features(windows[i : i + self.batch_size])  # (B, C, frames, n_mels), (B,)
            x, is_longer = feats.to(p.device, p.dtype), longer[:, None].to(p.device)  # (B, 1)
            out.append(_unit(_pooled(self.model.get_audio_features(input_features=x, is_longer=is_longer))))
        return np.concatenate(out)

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings (N, dim) float64 of N texts, each cut to ``max_text_tokens`` tokens."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("embed_text expects a sequence of strings (wrap a single prompt in a list)")
        if len(texts) == 0:
            raise ValueError("embed_text got no texts")
        device, out = self._param.device, []
        for i in range(0, len(texts), self.batch_size):
            tok = self.tokenizer(
                list(texts[i : i + self.batch_size]),
                padding="max_length",
                truncation=True,
                max_length=self.max_text_tokens,
                return_tensors="pt",
            )
            ids, mask = tok["input_ids"].to(device), tok["attention_mask"].to(device)  # (B, L)
            out.append(_unit(_pooled(self.model.get_text_features(input_ids=ids, attention_mask=mask))))
        return np.concatenate(out)


def _weights_sha256(files: list[Path]) -> str:
    if len(files) == 1:
        return file_sha256(files[0])
    return hashlib.sha256("".join(file_sha256(f) for f in files).encode()).hexdigest()


def load_laion_clap(
    path: str | Path, *, tokenizer_path: str | Path | None = None, device: str | torch.device = "cpu", **kwargs: Any
) -> LaionClap:
    """Load a LAION-CLAP model from a local Hugging Face directory (no download, ever).

    ``path`` holds config.json (model_type "clap") and model.safetensors or pytorch_model.bin (safetensors preferred),
    e.g. a copy of laion/clap-htsat-unfused or laion/larger_clap_music, or the output of
    ``wavefoundry eval convert-clap`` (``wavefoundry.formats.laion_clap``). The tokenizer is read from
    ``tokenizer_path`` (default ``path``); front-end numbers from preprocessor_config.json when present. ``kwargs``
    go to :class:`LaionClap`.
    """
    tf = _transformers()
    path = Path(path).expanduser()
    tok_dir = path if tokenizer_path is None else Path(tokenizer_path).expanduser()
    for where in (path, tok_dir):
        if not where.is_dir():
            raise FileNotFoundError(f"LAION-CLAP directory not found: {where}")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json (a LAION-CLAP directory saved with save_pretrained)")
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    if model_type != "clap":
        raise ValueError(f"{path / 'config.json'} is model_type {model_type!r}, not a CLAP model ('clap')")
    found = [name for name in WEIGHT_FILES if (path / name).is_file()]
    if not found:
        raise FileNotFoundError(f"{path} has no weights: expected one of {', '.join(WEIGHT_FILES)}")
    if not any((tok_dir / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"no tokenizer in {tok_dir} (expected {' or '.join(TOKENIZER_FILES)}); give tokenizer_path=, a local "
            "roberta-base tokenizer directory"
        )
    safetensors = found[0].startswith("model.safetensors")
    weights = sorted(path.glob("model*.safetensors" if safetensors else "pytorch_model*.bin"))
    model = tf.ClapModel.from_pretrained(path, local_files_only=True, use_safetensors=safetensors)
    model = model.to(device=device, dtype=torch.float32).eval()
    tokenizer = tf.AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
    if "frontend" not in kwargs and (path / "preprocessor_config.json").is_file():
        fe = json.loads((path / "preprocessor_config.json").read_text())
        truncation = truncation_of(model.config)
        if fe.get("truncation", truncation) != truncation:
            logger.info(
                "preprocessor_config.json truncation %r ignored: the model needs %r", fe["truncation"], truncation
            )
        kwargs["frontend"] = ClapFrontendConfig.from_feature_extractor(fe, truncation=truncation)
    return LaionClap(model, tokenizer, weights_sha256=_weights_sha256(weights), **kwargs)
