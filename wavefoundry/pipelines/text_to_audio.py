"""``TextToAudio``: text-to-audio latent diffusion (Stable Audio Open design) from a model directory."""

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
from wavefoundry.diffusion.generate import SamplingConfig, sample_latents
from wavefoundry.diffusion.samplers import SAMPLERS
from wavefoundry.train.diffusion import TextToAudioConfig, TextToAudioModel
from wavefoundry.train.export import ModelLoadError, load_autoencoder, load_strict, read_model_config

#: Input bounds of :class:`TextToAudio` (prompt length is bounded by the conditioner's ``max_prompt_chars``).
MAX_GENERATE_SECONDS = 600.0
MAX_STEPS = 1000
MAX_PROMPTS = 64
#: Sampler names :meth:`TextToAudio.generate` accepts.
SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS)


class TextToAudio:
    """Text-to-audio latent diffusion (Stable Audio Open design): prompt -> DiT sampling -> codec decoding.

    Load with :meth:`from_pretrained`: a directory written by ``wavefoundry export`` from a diffusion run
    (``config.json`` of type ``text-to-audio``, ``model.safetensors``, ``tokenizer.json``, ``autoencoder/``).
    """

    def __init__(self, model: TextToAudioModel, codec: Autoencoder, *, cross_attention_mask: bool = True) -> None:
        if model.cfg.dit.io_channels != codec.cfg.oobleck.latent_dim:
            raise ModelLoadError(f"the DiT has {model.cfg.dit.io_channels} latent channels but the autoencoder "
                                 f"{codec.cfg.oobleck.latent_dim}")  # fmt: skip
        self.model, self.codec = model.eval(), codec.eval()
        self.cross_attention_mask = cross_attention_mask

    @classmethod
    def from_pretrained(cls, path: str | Path, *, t5_path: str | Path | None = None) -> TextToAudio:
        """Load a text-to-audio model directory, in whichever layout it holds:

        * ours, from ``wavefoundry export``: ``config.json`` of type ``text-to-audio``;
        * diffusers' ``StableAudioPipeline``: ``model_index.json`` (its ``text_encoder/`` is the T5 unless
          ``t5_path`` is given); tried before the next one, as the Hugging Face Stable Audio Open repository
          holds both;
        * stable-audio-tools, e.g. Stable Audio Open 1.0: ``model_config.json`` + ``model.safetensors``, with the
          T5 from ``t5_path`` (a local T5 directory, or a folder with ``text_encoder/`` + ``tokenizer/``).

        Outside models attend to padded text tokens as they were trained to (``cross_attention_mask=False``).

        Raises:
            ModelLoadError: a missing file, an unknown layout, a config of another type, or weights that do not
                match the config.
        """
        path = Path(path).expanduser()
        if not path.is_dir():
            raise ModelLoadError(f"{path}: not a model directory")
        if (path / "config.json").is_file():
            return cls._from_exported(path, t5_path)
        if not (path / "model_index.json").is_file() and not (path / "model_config.json").is_file():
            raise ModelLoadError(
                f"{path}: not a text-to-audio model directory; expected config.json (wavefoundry export), "
                "model_index.json (diffusers StableAudioPipeline) or model_config.json + model.safetensors "
                "(stable-audio-tools)"
            )
        from wavefoundry.formats import stable_audio

        if not (path / "model_index.json").is_file() and t5_path is None:
            raise ModelLoadError(f"{path}: a stable-audio-tools checkpoint does not hold its T5; pass t5_path= "
                                 "(a local t5-base directory)")  # fmt: skip
        try:
            if (path / "model_index.json").is_file():
                parts = stable_audio.read_diffusers(path, t5_path=t5_path)
            else:
                parts = stable_audio.read_stable_audio(path, t5_path=t5_path)
            return cls._from_parts(parts, str(path))
        except ModelLoadError:
            raise
        except (OSError, ValueError) as exc:  # missing files, pickles, configs and weights we cannot load
            raise ModelLoadError(f"{path}: {exc}") from None

    @classmethod
    def _from_parts(cls, parts, where: str) -> TextToAudio:
        """A pipeline from :class:`~wavefoundry.formats.stable_audio.StableAudioParts` (an outside checkpoint)."""
        C = parts.dit.io_channels
        cfg = TextToAudioConfig(dit=parts.dit, conditioner=parts.conditioner, latent_mean=[0.0] * C,
                                latent_std=[parts.latent_scale] * C)  # fmt: skip
        model = TextToAudioModel(cfg)
        state = {f"dit.{k}": v for k, v in parts.dit_state.items()}
        state |= {f"conditioner.{k}": v for k, v in parts.conditioner_state.items()}
        load_strict(model, state, where)
        codec = Autoencoder(parts.autoencoder)
        load_strict(codec, parts.autoencoder_state, f"{where} (autoencoder)")
        return cls(model, codec.remove_weight_norm(), cross_attention_mask=False)

    @classmethod
    def _from_exported(cls, path: Path, t5_path: str | Path | None) -> TextToAudio:
        """Load a directory written by ``wavefoundry export``; ``t5_path`` replaces the T5 directory in its config."""
        from wavefoundry.conditioning.tokenizer import WordTokenizer
        from wavefoundry.config import ConfigError, from_dict

        try:
            cfg = from_dict(TextToAudioConfig, read_model_config(path, "text-to-audio"))
        except ConfigError as exc:
            raise ModelLoadError(f"{path / 'config.json'}: {exc}") from None
        if t5_path is not None:
            if cfg.conditioner.text_encoder != "t5":
                raise ModelLoadError(f"{path}: t5_path was given but this model's text encoder is "
                                     f"{cfg.conditioner.text_encoder!r}")  # fmt: skip
            from wavefoundry.formats.stable_audio import resolve_t5

            t5, tokenizer = resolve_t5(t5_path)
            cfg.conditioner = dataclasses.replace(cfg.conditioner, t5_path=str(t5),
                                                  t5_tokenizer_path=str(tokenizer) if tokenizer else None)  # fmt: skip
        tokenizer = None
        if cfg.conditioner.text_encoder == "learned":
            if not (path / "tokenizer.json").is_file():
                raise ModelLoadError(f"{path}: no tokenizer.json (the learned text encoder's vocabulary)")
            tokenizer = WordTokenizer.load(path / "tokenizer.json")
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise ModelLoadError(f"{path}: no model.safetensors")
        model = TextToAudioModel(cfg, tokenizer=tokenizer)
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
        """Longest ``seconds_total`` :meth:`generate` accepts: the model's timing range, at most the hard cap."""
        return min(MAX_GENERATE_SECONDS, self.model.cfg.conditioner.max_seconds)

    @property
    def max_prompt_chars(self) -> int:
        """Longest prompt (characters) the conditioner accepts."""
        return self.model.cfg.conditioner.max_prompt_chars

    def _check(self, prompts: Sequence[str], seconds_start: float, seconds_total: float, steps: int) -> None:
        if isinstance(prompts, str) or not prompts:
            raise ValueError("prompts must be a non-empty list of strings")
        if len(prompts) > MAX_PROMPTS:
            raise ValueError(f"at most {MAX_PROMPTS} prompts per call, got {len(prompts)}")
        limit = self.max_seconds
        if not (math.isfinite(seconds_total) and 0 < seconds_total <= limit):
            raise ValueError(f"seconds_total must be in (0, {limit:g}] s, got {seconds_total}")
        if not (math.isfinite(seconds_start) and 0 <= seconds_start < seconds_total):
            raise ValueError(f"seconds_start must be in [0, seconds_total), got {seconds_start}")
        if not 1 <= steps <= MAX_STEPS:
            raise ValueError(f"steps must be in [1, {MAX_STEPS}], got {steps}")

    def _init_latents(self, init_audio: tuple[np.ndarray, int], frames: int, n: int) -> torch.Tensor:
        """(audio (C, T), sample rate) -> normalised latents (n, D, frames), cropped or zero-padded."""
        from wavefoundry.audio.dsp import set_channels
        from wavefoundry.audio.resample import resample

        audio, sr = init_audio
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[None]
        audio = resample(set_channels(audio, self.codec.audio_channels), sr, self.sample_rate)
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]  # (1, C, T)
        z = self.codec.encode(x, chunk_seconds=10.0, sample=False).latents  # (1, D, L)
        z = torch.nn.functional.pad(z, (0, max(0, frames - z.shape[-1])))[..., :frames]
        return self.model.normalize(z).expand(n, -1, -1)

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        seconds_total: float = 4.0,
        seconds_start: float = 0.0,
        steps: int = 100,
        cfg_scale: float = 7.0,
        sampler: str = "dpmpp-3m-sde",
        seed: int = 0,
        seeds: Sequence[int] | None = None,
        negative_prompt: str | None = None,
        batch: int = 4,
        init_audio: tuple[np.ndarray, int] | None = None,
        init_noise_level: float = 1.0,
        sampling: SamplingConfig | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, int]:
        """Generate audio for each prompt.

        Only the latent frames the requested duration needs are denoised (rounded up to whole frames), and the
        decoded audio is cut to [seconds_start, seconds_total) as in diffusers' pipeline.

        Args:
            prompts: P prompts (a list; at most ``MAX_PROMPTS``).
            seconds_total: end of the clip in its virtual file, also the ``seconds_total`` condition.
            seconds_start: start of the returned audio and the ``seconds_start`` condition.
            steps, cfg_scale, sampler: sampling settings (``sampling`` overrides the rest of the grid).
            seed: noise seed; the same seed and batch give the same audio.
            seeds: one seed per prompt instead of ``seed``: prompt i's noise (initial and SDE) is drawn from its
                own generator, so its audio is that of ``generate([prompt_i], seed=seeds[i])`` (up to the
                rounding of batched matmuls) whatever the batch and the other prompts.
            negative_prompt: the unconditional branch of CFG is this prompt instead of the null condition.
            batch: prompts denoised together (bounds memory).
            init_audio: (audio (C, T), sample rate) to start from (audio-to-audio).
            init_noise_level: sigma the init latents are noised to (higher: further from the init audio).
            progress: show a progress bar over the sampler steps.

        Returns:
            (audio (P, C, T) float32, sample rate).
        """
        prompts = list(prompts) if not isinstance(prompts, str) else prompts
        self._check(prompts, seconds_start, seconds_total, steps)
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        base = sampling or SamplingConfig()
        cfg = dataclasses.replace(base, steps=steps, cfg_scale=cfg_scale, sampler=sampler)
        frames = math.ceil(seconds_total * self.frame_rate)
        outputs = []
        bar = tqdm(total=math.ceil(len(prompts) / batch) * steps, desc="generate", disable=not progress)
        for first in range(0, len(prompts), batch):
            chunk = prompts[first : first + batch]
            chunk_seeds = list(seeds[first : first + batch]) if seeds is not None else seed + first
            latents = self._sample(chunk, seconds_start, seconds_total, frames, cfg, chunk_seeds, negative_prompt,
                                   init_audio, init_noise_level, lambda info: bar.update(1))  # fmt: skip
            audio = self.codec.decode(self.model.denormalize(latents), chunk_seconds=30.0)  # (b, C, frames * hop)
            outputs.append(audio.float())
        bar.close()
        audio = torch.cat(outputs)
        start, end = round(seconds_start * self.sample_rate), round(seconds_total * self.sample_rate)
        return audio[..., start:end].numpy(), self.sample_rate

    def _sample(self, prompts, seconds_start, seconds_total, frames, cfg, seed, negative_prompt, init_audio,
                init_noise_level, callback) -> torch.Tensor:  # fmt: skip
        n = len(prompts)
        cond = self.model.conditioner(prompts, seconds_start, seconds_total)
        if negative_prompt is None:
            uncond = cond.null()
        else:
            uncond = self.model.conditioner([negative_prompt] * n, seconds_start, seconds_total)
        cond_kw, uncond_kw = cond.as_kwargs(), uncond.as_kwargs()
        if not self.cross_attention_mask:  # Stable Audio Open attends to padded text tokens too
            cond_kw["cross_mask"] = uncond_kw["cross_mask"] = None
        shape = (self.model.cfg.dit.io_channels, frames)
        if isinstance(seed, int):
            g = torch.Generator().manual_seed(seed)
            noise = torch.randn(n, *shape, generator=g)  # (n, D, frames)
        else:  # one generator per prompt: row i depends on seed[i] only
            g = [torch.Generator().manual_seed(int(s)) for s in seed]
            noise = torch.stack([torch.randn(shape, generator=gi) for gi in g])  # (n, D, frames)
        init = self._init_latents(init_audio, frames, n) if init_audio is not None else None
        return sample_latents(self.model.dit, noise, cond_kw, uncond_kw, cfg, init=init,
                              init_sigma=init_noise_level if init is not None else None, generator=g,
                              callback=callback)  # fmt: skip
