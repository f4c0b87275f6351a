"""Public inference API. ``Codec.from_pretrained(dir)`` loads an exported autoencoder for encoding and decoding;
``TextToAudio.from_pretrained(dir)`` a text-to-audio model for generation; ``MaskedAudioGen.from_pretrained(dir)``
a masked transformer over codec codes (docs/masked.md); ``AudioLM.from_pretrained(dir)`` a discrete audio LM for
ASR, TTS and continuation (its directory layout: :func:`export_audio_lm`, docs/audio_lm.md).

An exported model directory holds ``config.json`` (``{"type": ..., "model": {...}}``, loaded strictly),
``model.safetensors`` and a ``README.md`` model card. Training runs are turned into one by ``wavefoundry export``.
"""

from wavefoundry.pipelines.audio_lm import MAX_LM_TEXT_CHARS, AudioLM, export_any, export_audio_lm
from wavefoundry.pipelines.codec import MAX_SECONDS, Codec
from wavefoundry.pipelines.masked import MaskedAudioGen
from wavefoundry.pipelines.text_to_audio import (
    MAX_GENERATE_SECONDS,
    MAX_PROMPTS,
    MAX_STEPS,
    SAMPLER_NAMES,
    TextToAudio,
)
from wavefoundry.train.export import ModelLoadError, load_strict, read_model_config

__all__ = [
    "MAX_GENERATE_SECONDS",
    "MAX_LM_TEXT_CHARS",
    "MAX_PROMPTS",
    "MAX_SECONDS",
    "MAX_STEPS",
    "SAMPLER_NAMES",
    "AudioLM",
    "Codec",
    "MaskedAudioGen",
    "ModelLoadError",
    "TextToAudio",
    "export_any",
    "export_audio_lm",
    "load_strict",
    "read_model_config",
]
