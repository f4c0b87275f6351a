"""espeak-ng as a subprocess: find it, list its voices, render one utterance to (1, T) audio, trim silence.

The program is always called with an argument list (never a shell string) and a timeout; text is passed
after ``--`` so it can never be read as an option. espeak-ng reads ``[[...]]`` as phoneme input, so callers
clean user text first (:func:`wavefoundry.data.speech_text.clean_text`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from wavefoundry.audio.io import load_audio
from wavefoundry.audio.resample import resample

MISSING = "espeak-ng not found: apt-get install espeak-ng"
#: Frames quieter than the loudest 10 ms frame by more than this are trimmed at the edges ...
TRIM_DB = 40.0
#: ... keeping this much audio before the first and after the last loud frame.
TRIM_PAD_S = 0.05
#: Seconds one espeak-ng call may take.
RENDER_TIMEOUT_S = 60.0


class EspeakNotFoundError(FileNotFoundError):
    """The espeak-ng program is not installed (or not at the given path)."""


class RenderError(RuntimeError):
    """espeak-ng failed on one utterance; the message is one line with the reason."""


def find_espeak(program: str = "espeak-ng") -> str:
    """The path of the espeak-ng executable (a name looked up on PATH, or a path).

    Raises:
        EspeakNotFoundError: "espeak-ng not found: apt-get install espeak-ng".
    """
    found = shutil.which(program)
    if found is None:
        raise EspeakNotFoundError(MISSING if program == "espeak-ng" else f"{MISSING} (looked for {program!r})")
    return found


def _run(binary: str, args: list[str], *, timeout: float = RENDER_TIMEOUT_S) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([binary, *args], capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"espeak-ng took longer than {timeout:g} s") from None
    except OSError as exc:
        raise RenderError(f"cannot run {binary}: {exc.strerror or exc}") from None


@lru_cache(maxsize=8)
def espeak_inventory(binary: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """(version line, language -> voice name, variant -> gender letter) of an espeak-ng install."""
    version = _listing(binary, "--version").splitlines()
    languages: dict[str, str] = {}
    for line in _listing(binary, "--voices").splitlines()[1:]:
        cols = line.split()
        if len(cols) < 5:
            continue
        name = cols[3].split("_(")[0].replace("_", " ")
        for lang in [cols[1], *re.findall(r"\(([^\s()]+) \d+\)", line)]:
            languages.setdefault(lang.lower(), name)
    variants = {}
    for line in _listing(binary, "--voices=variant").splitlines()[1:]:
        match = re.search(r"\s(\S+)/([MF-])\s.*!v/(\S+)", line)
        if match:
            variants[match.group(3)] = match.group(2)
    return (version[0] if version else ""), languages, variants


def _listing(binary: str, flag: str) -> str:
    result = _run(binary, [flag], timeout=30.0)
    if result.returncode != 0:
        raise RenderError(f"{binary} {flag} failed (exit {result.returncode}): {_last_line(result.stderr)}")
    return result.stdout.decode("utf-8", "replace")


def _last_line(raw: bytes) -> str:
    lines = raw.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no message"


def render_speech(
    text: str, *, voice: str, rate: int, pitch: int, sample_rate: int, binary: str = "espeak-ng"
) -> tuple[np.ndarray, str]:
    """Speak ``text`` with espeak-ng: ``-v voice -s rate -p pitch -w out.wav --ipa -- text`` (no shell).

    Returns:
        ((1, T) float32 audio at ``sample_rate``, untrimmed and at espeak-ng's level; the IPA espeak-ng printed).

    Raises:
        RenderError: non-zero exit, timeout, unreadable or empty output.
    """
    with tempfile.TemporaryDirectory(prefix="wf-espeak-") as tmp:
        out = Path(tmp) / "out.wav"
        args = ["-b", "1", "-v", voice, "-s", str(rate), "-p", str(pitch), "--ipa", "-w", str(out), "--", text]
        result = _run(binary, args)
        if result.returncode != 0:
            raise RenderError(f"espeak-ng exited with {result.returncode}: {_last_line(result.stderr)}")
        if not out.is_file() or out.stat().st_size <= 44:
            raise RenderError("espeak-ng wrote no audio")
        try:
            audio, sr = load_audio(out, max_seconds=600.0)
        except ValueError as exc:
            raise RenderError(f"espeak-ng output unreadable: {exc}") from None
    ipa = " ".join(result.stdout.decode("utf-8", "replace").split())
    return resample(audio[:1], sr, sample_rate), ipa


def trim_silence(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut (C, T) audio to its loud part: 10 ms frames within :data:`TRIM_DB` of the loudest, padded by
    :data:`TRIM_PAD_S` on each side."""
    hop = max(1, sample_rate // 100)
    n = audio.shape[-1] // hop
    if n < 2:
        return audio
    frames = audio[..., : n * hop].reshape(audio.shape[0], n, hop)  # (C, n, hop)
    energy = np.mean(np.square(frames, dtype=np.float64), axis=(0, 2))  # (n,)
    loud = np.nonzero(energy >= energy.max() * 10 ** (-TRIM_DB / 10))[0]
    pad = round(TRIM_PAD_S * sample_rate)
    start, stop = max(0, loud[0] * hop - pad), min(audio.shape[-1], (loud[-1] + 1) * hop + pad)
    return audio[..., start:stop]
