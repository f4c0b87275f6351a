"""``MaskedAudioGen``: text-to-audio with the masked generative transformer over discrete codec codes (MAGNeT
design) from a model directory: prompt -> iterative parallel decoding of codes -> codec decoding."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from wavefoundry.codecs.autoencoder import Autoencoder
from wavefoundry.config import ConfigError, from_dict
from wavefoundry.lm.masked_decode import DecodeConfig, GuidedLogits, decode
from wavefoundry.train.export import ModelLoadError, load_autoencoder, load_strict, read_model_config
from wavefoundry.train.masked import MaskedAudioConfig, MaskedAudioModel

#: The ``type`` of an exported masked model's ``config.json``.
MASKED_TYPE = "masked-audio"
#: Most prompts per :meth:`MaskedAudioGen.generate` call.
MAX_MASKED_PROMPTS = 64


class MaskedAudioGen:
    """Masked generative transformer + discrete codec, ready for generation, continuation and inpainting.

    Load with :meth:`from_pretrained`: a directory written by ``wavefoundry export`` from a "masked" run
    (``config.json`` of type ``masked-audio``, ``model.safetensors``, ``tokenizer.json``, ``autoencoder/``).
    """

    def __init__(self, model: MaskedAudioModel, codec: Autoencoder) -> None:
        t = model.cfg.transformer
        if not codec.is_discrete or codec.bottleneck.num_quantizers != t.n_codebooks:
            raise ModelLoadError(f"the transformer needs a discrete codec with {t.n_codebooks} codebooks")
        if codec.bottleneck.codebook_size != t.codebook_size:
            raise ModelLoadError(f"the transformer has {t.codebook_size} codes per codebook, the codec "
                                 f"{codec.bottleneck.codebook_size}")  # fmt: skip
        self.model, self.codec = model.eval(), codec.eval()

    @classmethod
    def from_pretrained(cls, path: str | Path) -> MaskedAudioGen:
        """Load an exported masked-audio directory.

        Raises:
            ModelLoadError: a missing file, a config of another type, or weights that do not match the config.
        """
        from wavefoundry.conditioning.tokenizer import WordTokenizer

        path = Path(path).expanduser()
        try:
            cfg = from_dict(MaskedAudioConfig, read_model_config(path, MASKED_TYPE))
        except ConfigError as exc:
            raise ModelLoadError(f"{path / 'config.json'}: {exc}") from None
        tokenizer = None
        if cfg.conditioner.text_encoder == "learned":
            if not (path / "tokenizer.json").is_file():
                raise ModelLoadError(f"{path}: no tokenizer.json (the learned text encoder's vocabulary)")
            tokenizer = WordTokenizer.load(path / "tokenizer.json")
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise ModelLoadError(f"{path}: no model.safetensors")
        model = MaskedAudioModel(cfg, tokenizer=tokenizer)
        load_strict(model, load_file(str(weights)), str(weights))
        if not (path / "autoencoder").is_dir():
            raise ModelLoadError(f"{path}: no autoencoder/ directory")
        return cls(model, load_autoencoder(path / "autoencoder"))

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.codec.sample_rate / self.codec.hop_length

    @property
    def max_seconds(self) -> float:
        """Longest clip: the transformer's ``max_frames``, at most the conditioner's timing range."""
        return min(self.model.cfg.transformer.max_frames / self.frame_rate, self.model.cfg.conditioner.max_seconds)

    def encode(self, audio: np.ndarray, sample_rate: int) -> torch.Tensor:
        """Audio (C, T) or (T,) at any rate -> codes (K, L) int64 of this model's codec."""
        from wavefoundry.audio.dsp import set_channels
        from wavefoundry.audio.resample import resample

        audio = np.asarray(audio, dtype=np.float32)
        audio = resample(set_channels(audio[None] if audio.ndim == 1 else audio, self.codec.audio_channels),
                         sample_rate, self.sample_rate)  # fmt: skip
        x = torch.from_numpy(np.ascontiguousarray(audio))[None]  # (1, C, T)
        return self.codec.encode(x, chunk_seconds=10.0).codes[0]  # (K, L)

    def _plan(self, seconds: float, prefix, inpaint) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes (K, T), known (K, T)) for a plain generation, a continuation or an inpainting."""
        K = self.model.cfg.transformer.n_codebooks
        if inpaint is not None:
            audio, sr, start_s, end_s = inpaint
            codes = self.encode(audio, sr)
            frames, duration = codes.shape[1], np.asarray(audio).shape[-1] / sr
            if not (math.isfinite(start_s) and math.isfinite(end_s) and 0 <= start_s < end_s <= duration):
                raise ValueError(f"inpainting range must satisfy 0 <= start < end <= {duration:g} s, got "
                                 f"[{start_s}, {end_s})")  # fmt: skip
            known = torch.ones(K, frames, dtype=torch.bool)
            known[:, math.floor(start_s * self.frame_rate) : math.ceil(end_s * self.frame_rate)] = False
            return codes, known
        frames = math.ceil(seconds * self.frame_rate - 1e-9)
        codes = torch.zeros(K, frames, dtype=torch.long)
        known = torch.zeros(K, frames, dtype=torch.bool)
        if prefix is not None:
            audio, sr = prefix
            given = self.encode(audio, sr)
            if given.shape[1] > frames:
                raise ValueError(f"the prefix ({np.asarray(audio).shape[-1] / sr:g} s, {given.shape[1]} frames) is "
                                 f"longer than the requested duration ({seconds:g} s, {frames} frames)")  # fmt: skip
            codes[:, : given.shape[1]], known[:, : given.shape[1]] = given, True
        return codes, known

    def _check(self, prompts: Sequence[str], seconds: float, decode_cfg: DecodeConfig) -> None:
        if isinstance(prompts, str) or not prompts:
            raise ValueError("prompts must be a non-empty list of strings")
        if len(prompts) > MAX_MASKED_PROMPTS:
            raise ValueError(f"at most {MAX_MASKED_PROMPTS} prompts per call, got {len(prompts)}")
        if not (math.isfinite(seconds) and 0 < seconds <= self.max_seconds):
            raise ValueError(f"seconds must be in (0, {self.max_seconds:g}], got {seconds}")
        K = self.model.cfg.transformer.n_codebooks
        if len(decode_cfg.steps) != K:
            raise ValueError(f"steps {decode_cfg.steps} has {len(decode_cfg.steps)} stages; this model has {K} "
                             "codebooks (one step count >= 1 each)")  # fmt: skip

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        seconds: float = 4.0,
        steps: Sequence[int] | None = None,
        cfg_scale: float | None = None,
        cfg_min: float | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int = 0,
        batch: int = 4,
        negative_prompt: str | None = None,
        prefix: tuple[np.ndarray, int] | None = None,
        inpaint: tuple[np.ndarray, int, float, float] | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, int]:
        """Generate audio for each prompt.

        Args:
            prompts: P prompts (a list).
            seconds: duration (ignored with ``inpaint``: the audio's own).
            steps: decoding steps per codebook (default: the model's, e.g. 20, 10, 10, 10).
            cfg_scale, cfg_min: CFG scale at the first step and its floor as the mask rate falls (defaults: the
                model's decode settings); temperature, top_p likewise.
            seed: the same seed and batch give the same audio.
            batch: prompts decoded together.
            negative_prompt: the unconditional branch is this prompt instead of the null condition.
            prefix: (audio, sample rate) whose codes start every clip and are kept exactly (continuation).
            inpaint: (audio, sample rate, start s, end s): regenerate [start, end) of the audio, keep the rest.
            progress: show a progress bar over the decoding steps.

        Returns:
            (audio (P, C, T) float32, sample rate).
        """
        prompts = list(prompts) if not isinstance(prompts, str) else prompts
        overrides = {"steps": steps, "cfg_max": cfg_scale, "cfg_min": cfg_min, "temperature": temperature,
                     "top_p": top_p}  # fmt: skip
        try:
            dcfg = dataclasses.replace(self.model.cfg.decode, **{k: v for k, v in overrides.items() if v is not None})
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if inpaint is not None:
            seconds = np.asarray(inpaint[0]).shape[-1] / inpaint[1]
        self._check(prompts, seconds, dcfg)
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        codes, known = self._plan(seconds, prefix, inpaint)
        bar = tqdm(total=math.ceil(len(prompts) / batch) * sum(dcfg.steps), desc="generate", disable=not progress)
        outputs = []
        for first in range(0, len(prompts), batch):
            chunk = prompts[first : first + batch]
            n = len(chunk)
            out = self._decode(chunk, seconds, codes.expand(n, -1, -1), known.expand(n, -1, -1), dcfg,
                               seed + first, negative_prompt, lambda *_: bar.update(1))  # fmt: skip
            outputs.append(self.codec.decode_codes(out, chunk_seconds=30.0).float())  # (n, C, frames * hop)
        bar.close()
        audio = torch.cat(outputs)[..., : round(seconds * self.sample_rate)]
        return audio.numpy(), self.sample_rate

    def _decode(self, prompts, seconds, codes, known, dcfg, seed, negative_prompt, callback) -> torch.Tensor:
        cond = self.model.conditioner(prompts, 0.0, seconds)
        null = cond.null() if negative_prompt is None else self.model.conditioner([negative_prompt] * len(prompts),
                                                                                  0.0, seconds)  # fmt: skip
        fn = GuidedLogits(self.model.transformer, cond.cross, cond.cross_mask, null.cross, null.cross_mask)
        g = torch.Generator().manual_seed(seed)
        return decode(fn, codes.clone(), known.clone(), dcfg, mask_id=self.model.cfg.transformer.mask_id,
                      generator=g, callback=callback)  # fmt: skip
