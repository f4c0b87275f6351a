"""Conditioning for text-to-audio diffusion: text encoders, timing (number) conditioners and their combination.

* :mod:`.tokenizer`: :class:`WordTokenizer`, a word-level vocabulary built from training captions (JSON on disk).
* :mod:`.text`: :class:`LearnedTextEncoder`, the offline default text encoder (small pre-LN transformer).
* :mod:`.t5`: :class:`T5TextEncoder`, Stable Audio Open's frozen T5 loaded from a local directory.
* :mod:`.numbers`: :class:`NumberConditioner` (learned Fourier features of seconds) and :func:`validate_seconds`.
* :mod:`.conditioner`: :class:`Conditioner` -> :class:`Conditioning` (cross tokens, mask, global vector) for the DiT.

See docs/conditioning.md.
"""

from wavefoundry.conditioning.conditioner import (
    TEXT_ENCODERS,
    TOKENIZER_FILE,
    Conditioner,
    ConditionerConfig,
    Conditioning,
)
from wavefoundry.conditioning.numbers import FourierFeatures, NumberConditioner, validate_seconds
from wavefoundry.conditioning.t5 import T5TextEncoder
from wavefoundry.conditioning.text import LearnedPromptEncoder, LearnedTextEncoder, LearnedTextEncoderConfig
from wavefoundry.conditioning.tokenizer import WordTokenizer, check_prompts, split_words

__all__ = [
    "TEXT_ENCODERS",
    "TOKENIZER_FILE",
    "Conditioner",
    "ConditionerConfig",
    "Conditioning",
    "FourierFeatures",
    "LearnedPromptEncoder",
    "LearnedTextEncoder",
    "LearnedTextEncoderConfig",
    "NumberConditioner",
    "T5TextEncoder",
    "WordTokenizer",
    "check_prompts",
    "split_words",
    "validate_seconds",
]
