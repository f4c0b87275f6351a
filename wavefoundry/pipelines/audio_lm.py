"""``AudioLM``: a discrete audio language model (SODA design) for ASR, TTS and continuation; its export."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from wavefoundry.train.export import ModelLoadError

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
