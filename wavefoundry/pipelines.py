"""Public inference API. ``Codec.from_pretrained(dir)`` loads an exported autoencoder for encoding and decoding;
``TextToAudio.from_pretrained(dir)`` a text-to-audio model for generation; ``AudioLM.from_pretrained(dir)`` a discrete
audio LM for ASR, TTS and continuation (its directory layout: :func:`export_audio_lm`, docs/audio_lm.md).

An exported model directory holds ``config.json`` (``{"type": ..., "model": {...}}``, loaded strictly),
``model.safetensors`` and a ``README.md`` model card. Training runs are turned into one by ``wavefoundry export``.
"""

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

__all__ = ["MAX_SECONDS", "AudioLM", "Codec", "ModelLoadError", "TextToAudio", "load_strict", "read_model_config"]

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


# --- discrete audio LM (SODA-style) -----------------------------------------------------------------------------

#: Files of an exported audio-LM directory next to the Hugging Face Qwen3 ``config.json`` + ``model.safetensors``.
LM_INFO, LM_LAYOUT, LM_TOKENIZER, LM_CODEC = "wavefoundry.json", "layout.json", "tokenizer.json", "codec"
#: Longest text :meth:`AudioLM.tts` takes, in characters.
MAX_LM_TEXT_CHARS = 2000


def export_audio_lm(path: str | Path, out_dir: str | Path, *, ema: bool = True) -> Path:
    """Write a self-contained audio-LM directory from an "lm" run: the decoder as a Hugging Face Qwen3ForCausalLM
    folder (``config.json`` + ``model.safetensors``), ``layout.json``, ``tokenizer.json``, ``codec/`` (a copy of
    the exported codec; a Mimi codec is recorded by its local path instead) and ``wavefoundry.json``
    (``{"type": "audio-lm", "codec": {...}}``)."""
    import json
    import shutil

    from wavefoundry.config import atomic_write_bytes, to_dict
    from wavefoundry.formats.qwen3 import save_qwen3
    from wavefoundry.train.checkpoint import read_metadata, resolve_model_dir
    from wavefoundry.train.lm_data import codec_kind
    from wavefoundry.train.tasks import load_model

    model_dir = resolve_model_dir(path)
    task, decoder = load_model(model_dir, ema=ema)
    if task.name != "lm":
        raise ValueError(f"{model_dir} is a '{task.name}' run, not an lm run")
    corpus, data = task.corpus(), task.config.data
    out = Path(out_dir)
    save_qwen3(decoder, out)
    atomic_write_bytes(out / LM_LAYOUT, (json.dumps(to_dict(task.layout()), indent=2) + "\n").encode())
    shutil.copyfile(corpus.root / LM_TOKENIZER, out / LM_TOKENIZER)
    codec = {"kind": codec_kind(data.codec), "path": LM_CODEC, "n_codebooks": corpus.info["n_codebooks"]}
    if codec["kind"] == "mimi":
        codec["path"] = str(Path(data.codec).resolve())  # hundreds of MB: point at the local folder
    else:
        (out / LM_CODEC).mkdir(exist_ok=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(Path(data.codec) / name, out / LM_CODEC / name)
    info = {"type": "audio-lm", "codec": codec, "step": read_metadata(model_dir / "model.safetensors").get("step")}
    atomic_write_bytes(out / LM_INFO, (json.dumps(info, indent=2) + "\n").encode())
    return out


def export_any(path: str | Path, out_dir: str | Path, *, ema: bool = True) -> Path:
    """``wavefoundry export``: an "lm" run through :func:`export_audio_lm`, any other through ``export_model``."""
    from wavefoundry.train.checkpoint import resolve_model_dir
    from wavefoundry.train.export import export_model
    from wavefoundry.train.tasks import load_run_config

    if load_run_config(resolve_model_dir(path)).task == "lm":
        return export_audio_lm(path, out_dir, ema=ema)
    return export_model(path, out_dir, ema=ema)


class AudioLM:
    """A discrete audio language model: ASR, TTS and audio continuation by prompting one decoder (SODA).

    Load with :meth:`from_pretrained` (a directory from ``wavefoundry export`` of an "lm" run). Prompts and masks
    come from ``lm/prompts.py``: ASR generates text ids until ``<|text_end|>``, TTS and continuation generate the
    audio ids of each frame's codebook slots in turn until ``<|audio_end|>`` (at a frame boundary).
    """

    def __init__(self, decoder, layout, text_tokenizer, codec, *, decode_codec=None) -> None:
        if decoder.cfg.vocab_size != layout.vocab_size:
            raise ModelLoadError(f"the decoder has {decoder.cfg.vocab_size} ids but the layout {layout.vocab_size}")
        if text_tokenizer.vocab_size != layout.text_vocab_size:
            raise ModelLoadError(f"the text tokenizer has {text_tokenizer.vocab_size} ids but the layout "
                                 f"{layout.text_vocab_size}")  # fmt: skip
        if (codec.n_codebooks, codec.codebook_size) != (layout.n_codebooks, layout.codebook_size):
            raise ModelLoadError(f"the codec has {codec.n_codebooks} x {codec.codebook_size} codes but the layout "
                                 f"{layout.n_codebooks} x {layout.codebook_size}")  # fmt: skip
        self.decoder, self.layout, self.text_tokenizer = decoder.eval(), layout, text_tokenizer
        self.codec, self.decode_codec = codec, decode_codec

    @classmethod
    def from_pretrained(cls, path: str | Path) -> AudioLM:
        """Load an exported audio-LM directory; a missing or mismatched part raises :class:`ModelLoadError`."""
        import json

        from wavefoundry.config import ConfigError, from_dict, read_json
        from wavefoundry.formats.qwen3 import load_qwen3
        from wavefoundry.lm.sequences import TokenLayout
        from wavefoundry.lm.text_tokenizer import TextTokenizer

        path = Path(path)
        for name in (LM_INFO, LM_LAYOUT, LM_TOKENIZER, "config.json"):
            if not (path / name).is_file():
                raise ModelLoadError(f"{path}: no {name} (an audio-LM directory comes from `wavefoundry export`)")
        try:
            info, layout = read_json(path / LM_INFO), from_dict(TokenLayout, read_json(path / LM_LAYOUT))
            if not isinstance(info, dict) or info.get("type") != "audio-lm" or "codec" not in info:
                raise ModelLoadError(f"{path / LM_INFO}: expected {{'type': 'audio-lm', 'codec': {{...}}}}")
            decoder = load_qwen3(path)
            tokenizer = TextTokenizer.from_file(path / LM_TOKENIZER)
        except (ConfigError, ValueError, FileNotFoundError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{path}: {exc}") from None
        codec, decode_codec = _lm_codecs(path, info["codec"], layout)
        return cls(decoder, layout, tokenizer, codec, decode_codec=decode_codec)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.codec.frame_rate

    @property
    def max_seq_len(self) -> int:
        return self.decoder.cfg.max_seq_len

    @property
    def max_audio_seconds(self) -> float:
        """The longest audio whose ids (plus the two delimiters) fit in ``max_seq_len``."""
        return (self.max_seq_len - 2) // self.layout.n_selected / self.frame_rate

    # --- encoding and decoding ---

    @torch.inference_mode()
    def encode_audio(self, audio: np.ndarray, sample_rate: int) -> torch.Tensor:
        """Audio (C, T) or (T,) at ``sample_rate`` -> codes (K, L) of the codec (remixed and resampled first)."""
        from wavefoundry.audio.dsp import set_channels
        from wavefoundry.train.lm_data import codec_channels

        audio = np.asarray(audio, dtype=np.float32)
        audio = audio[None] if audio.ndim == 1 else audio
        if audio.ndim != 2 or audio.shape[1] == 0 or not np.isfinite(audio).all():
            raise ValueError(f"expected finite audio shaped (channels, samples) or (samples,), got {audio.shape}")
        seconds = audio.shape[1] / sample_rate
        if seconds > self.max_audio_seconds:
            raise ValueError(f"audio of {seconds:.2f} s is longer than the {self.max_audio_seconds:.2f} s that fit "
                             f"in max_seq_len={self.max_seq_len}")  # fmt: skip
        x = torch.from_numpy(set_channels(audio, codec_channels(self.codec)).copy())[None]  # (1, C, T)
        return self.codec.encode(x, sample_rate=sample_rate)[0]

    @torch.inference_mode()
    def decode_codes(self, codes: torch.Tensor) -> np.ndarray:
        """Codes (K', L) of the layout's codebooks -> audio (C, L * hop) float32 at :attr:`sample_rate`."""
        if self.decode_codec is None:
            raise ValueError(f"cannot decode: the layout selects codebooks {self.layout.selected}, not a prefix 0..k")
        from wavefoundry.train.lm_data import codec_channels

        if codes.shape[-1] == 0:
            return np.zeros((codec_channels(self.codec), 0), dtype=np.float32)
        return self.decode_codec.decode(codes[None].long())[0].float().numpy()

    def _text_ids(self, text: str) -> torch.Tensor:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty string")
        if len(text) > MAX_LM_TEXT_CHARS:
            raise ValueError(f"text has {len(text)} characters, more than {MAX_LM_TEXT_CHARS}")
        return torch.tensor(self.text_tokenizer.encode(text), dtype=torch.long)

    def _room(self, prompt: torch.Tensor, new: int | None, what: str) -> int:
        """Tokens to generate after ``prompt``: ``new`` (None: all the room left), checked against max_seq_len."""
        left = self.max_seq_len - len(prompt)
        n = left if new is None else new
        if n < 1 or n > left:
            raise ValueError(f"the {what} prompt of {len(prompt)} tokens + {n} new tokens does not fit the model's "
                             f"max_seq_len={self.max_seq_len}")  # fmt: skip
        return n

    def _generate(self, prompt, n, allowed, eos, *, temperature, top_k=None, top_p=None, seed=0) -> torch.Tensor:
        from wavefoundry.lm.generate import generate

        generator = torch.Generator().manual_seed(seed)
        out = generate(self.decoder, prompt[None], max_new_tokens=n, temperature=temperature, top_k=top_k,
                       top_p=top_p, generator=generator, eos_id=eos, allowed=allowed)  # fmt: skip
        return out[0, len(prompt) :]

    # --- tasks ---

    def asr_codes(
        self, codes: torch.Tensor, *, few_shot=(), max_new_tokens: int | None = None, temperature: float = 0.0
    ) -> str:
        """Transcribe codes (K, L); ``few_shot``: :class:`~wavefoundry.lm.sequences.Utterance` examples."""
        from wavefoundry.lm.prompts import asr_prompt, parse_generated, text_mask

        prompt = asr_prompt(self.layout, codes, few_shot)
        n = self._room(prompt, max_new_tokens, "ASR")
        new = self._generate(prompt, n, text_mask(self.layout), self.layout.text_end, temperature=temperature)
        return self.text_tokenizer.decode(parse_generated(self.layout, new, "text").segment.tokens.tolist())

    def asr(
        self,
        audio: np.ndarray,
        sample_rate: int,
        *,
        few_shot=None,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
    ) -> str:
        """Transcribe audio (C, T) or (T,). ``few_shot``: (audio, sample_rate, transcript) examples placed before
        the query as audio-first utterances. ``max_new_tokens`` None: up to the room left in max_seq_len."""
        from wavefoundry.lm.sequences import Utterance

        shots = [Utterance(text=self._text_ids(t), codes=self.encode_audio(a, sr)) for a, sr, t in few_shot or ()]
        return self.asr_codes(self.encode_audio(audio, sample_rate), few_shot=shots, max_new_tokens=max_new_tokens,
                              temperature=temperature)  # fmt: skip

    def _audio_ids(self, prompt, frames: int, what: str, **sampling) -> torch.Tensor:
        """Up to ``frames`` frames of audio ids after ``prompt`` (which ends at a frame boundary) -> codes (K', T)."""
        from wavefoundry.lm.prompts import audio_mask, parse_generated

        if frames < 1:
            raise ValueError(f"{what}: the requested length is shorter than one frame (1 / {self.frame_rate:g} s)")
        k = self.layout.n_selected
        n = self._room(prompt, frames * k + 1, what)
        masks = [audio_mask(self.layout, slot) for slot in range(k)]
        new = self._generate(prompt, n, lambda step, ids: masks[step % k], self.layout.audio_end, **sampling)
        return parse_generated(self.layout, new[: frames * k], "audio").segment.tokens

    def max_tts_seconds(self, text: str) -> float:
        """The longest ``seconds_max`` whose frames fit after the TTS prompt of ``text`` in ``max_seq_len``."""
        from wavefoundry.lm.prompts import tts_prompt

        left = self.max_seq_len - len(tts_prompt(self.layout, self._text_ids(text))) - 1  # 1: <|audio_end|>
        return max(0, left) // self.layout.n_selected / self.frame_rate

    def tts_codes(
        self,
        text: str,
        *,
        seconds_max: float = 10.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
    ) -> torch.Tensor:
        """Speak ``text``: codes (K', T) of the layout's codebooks, T <= seconds_max * frame_rate."""
        from wavefoundry.lm.prompts import tts_prompt

        prompt = tts_prompt(self.layout, self._text_ids(text))
        frames = math.floor(seconds_max * self.frame_rate)
        return self._audio_ids(prompt, frames, "TTS", temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)

    def tts(
        self,
        text: str,
        *,
        seconds_max: float = 10.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
    ) -> tuple[np.ndarray, int]:
        """Speak ``text``: (audio (C, T) float32 with T <= seconds_max * sample_rate, sample_rate)."""
        codes = self.tts_codes(text, seconds_max=seconds_max, temperature=temperature, top_k=top_k, top_p=top_p,
                               seed=seed)  # fmt: skip
        return self.decode_codes(codes), self.sample_rate

    def continue_codes(
        self,
        codes: torch.Tensor,
        *,
        seconds: float,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
    ) -> torch.Tensor:
        """Continue codes (K, T0) or (K', T0) by up to ``seconds``: (K', T0 + T1), the prefix unchanged."""
        from wavefoundry.lm.prompts import continuation_prompt
        from wavefoundry.lm.sequences import codes_to_ids, ids_to_codes

        prefix = ids_to_codes(self.layout, codes_to_ids(self.layout, codes))  # (K', T0) of the selected codebooks
        prompt = continuation_prompt(self.layout, prefix)
        frames = math.floor(seconds * self.frame_rate)
        new = self._audio_ids(prompt, frames, "continuation", temperature=temperature, top_k=top_k, top_p=top_p,
                              seed=seed)  # fmt: skip
        return torch.cat([prefix, new], dim=1)

    def continue_audio(
        self,
        audio: np.ndarray,
        sample_rate: int,
        *,
        seconds: float,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
    ) -> tuple[np.ndarray, int]:
        """Continue audio (C, T) or (T,) by up to ``seconds``: (the prefix's reconstruction + continuation, rate)."""
        codes = self.continue_codes(self.encode_audio(audio, sample_rate), seconds=seconds, temperature=temperature,
                                    top_k=top_k, top_p=top_p, seed=seed)  # fmt: skip
        return self.decode_codes(codes), self.sample_rate


def _lm_codecs(path: Path, spec: dict, layout):
    """(encoding codec with all K codebooks, decoding codec of the layout's K' codebooks or None)."""
    from wavefoundry.codecs.tokenizer import CodecTokenizer
    from wavefoundry.train.lm_data import load_audio_tokenizer

    where = Path(spec.get("path", LM_CODEC))
    where = where if where.is_absolute() else path / where
    if not where.is_dir():
        raise ModelLoadError(f"{path}: the codec directory {where} is missing")
    try:
        codec = load_audio_tokenizer(where, spec.get("n_codebooks"))
    except (ValueError, FileNotFoundError) as exc:
        raise ModelLoadError(f"{where}: {exc}") from None
    k = layout.n_selected
    if layout.selected != tuple(range(k)):
        return codec, None
    if k == codec.n_codebooks:
        return codec, codec
    if isinstance(codec, CodecTokenizer):
        return codec, CodecTokenizer(codec.autoencoder, n_codebooks=k)
    return codec, load_audio_tokenizer(where, k)
