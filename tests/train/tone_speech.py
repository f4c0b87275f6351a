"""Synthetic "speech" for codec and LM tests: one 64 ms tone per character (a-d), silence for anything else, written
as a manifest of utterances with ``attrs["transcript"]``."""

from collections.abc import Callable

import numpy as np
import soundfile as sf

from wavefoundry.data.manifest import ManifestItem

SR, HOP = 16000, 256
TONES = {"a": 300.0, "b": 700.0, "c": 1500.0, "d": 3000.0}
CHAR_SAMPLES = 1024  # 4 codec frames per character at hop 256


def tone_speech(text: str) -> np.ndarray:
    """(T,) float32: the tones of ``text``'s characters one after another."""
    t = np.arange(CHAR_SAMPLES) / SR
    parts = [0.3 * np.sin(2 * np.pi * TONES[c] * t) if c in TONES else np.zeros(CHAR_SAMPLES) for c in text]
    return np.concatenate(parts).astype(np.float32)


def write_speech(root, texts, split="train", start=0, transcript: Callable[[str], str] = str) -> list[ManifestItem]:
    """One WAV per text in ``root`` (ids u{start}, u{start+1}, ...) and their manifest items."""
    items = []
    for i, text in enumerate(texts, start):
        path = root / f"u{i}.wav"
        audio = tone_speech(text)
        sf.write(path, audio, SR)
        items.append(ManifestItem(id=f"u{i}", path=str(path), duration_s=len(audio) / SR, sample_rate=SR, channels=1,
                                  split=split, attrs={"transcript": transcript(text)}))  # fmt: skip
    return items
