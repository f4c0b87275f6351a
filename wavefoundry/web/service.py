"""The web UI's generation service, without Gradio: request checks, lazily loaded models, a bounded admission gate
and a self-cleaning result folder. ``web/app.py`` puts a page and an API on top of :meth:`WebService.generate`.

Safety rules it enforces (docs/web.md):

* Every number of a request is bounded by :class:`WebLimits` (and by the model's own limits, whichever is lower).
* Requests name a model by its display name, never by a path; init audio arrives as samples, never as a path.
* At most ``concurrency`` generations run at once and at most ``queue_size`` more wait; one more is refused at once
  with :class:`QueueFullError` (so a burst of requests never holds more than that many in memory).
* Outputs are written only inside one temporary folder, which keeps the newest ``keep_results`` results and is
  removed by :meth:`WebService.close`.
"""

from __future__ import annotations

import logging
import math
import secrets
import shlex
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from wavefoundry.audio.io import save_audio
from wavefoundry.audio.spectrogram import spectrogram_png
from wavefoundry.pipelines import SAMPLER_NAMES, ModelLoadError, TextToAudio

log = logging.getLogger("wavefoundry.web")


class RequestError(ValueError):
    """A request the service refuses; the message is shown to the user as it is."""


class QueueFullError(RequestError):
    """Every generation slot and every queue place is taken."""


@dataclass(kw_only=True)
class WebLimits:
    """Server-side bounds of one request and of the load; a model's own limits apply too (the lower wins)."""

    max_prompt_chars: int = 500
    max_seconds: float = 30.0
    max_steps: int = 200
    max_cfg: float = 25.0
    max_init_seconds: float = 60.0
    max_upload_mb: float = 20.0
    concurrency: int = 1
    queue_size: int = 8
    keep_results: int = 32

    def __post_init__(self) -> None:
        positive = {k: v for k, v in asdict(self).items() if k != "queue_size"}
        bad = [k for k, v in positive.items() if not (isinstance(v, int | float) and math.isfinite(v) and v > 0)]
        if bad or self.queue_size < 0:
            raise ValueError(f"web limits must be positive (queue_size >= 0): {', '.join(bad) or 'queue_size'}")


@dataclass(kw_only=True)
class GenerationRequest:
    """What the page (or an API client) asks for; ``model`` is a display name from :attr:`WebService.models`."""

    model: str
    prompt: str
    negative_prompt: str = ""
    seconds: float = 4.0
    steps: int = 50
    cfg_scale: float = 6.0
    sampler: str = "dpmpp-3m-sde"
    seed: int = 0
    init_noise: float = 1.0


@dataclass
class GenerationResult:
    """One finished generation: files inside the service's folder and how to reproduce it from the CLI."""

    audio: np.ndarray  # (C, T) float32
    sample_rate: int
    wav: Path
    flac: Path
    spectrogram: Path
    settings: dict
    command: str
    seconds_elapsed: float


def _number(name: str, value: object, low: float, high: float, *, integer: bool = False) -> float:
    """``value`` as a finite number in [low, high] (an int when ``integer``), else a RequestError naming it."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RequestError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x) or not low <= x <= high or (integer and x != int(x)):
        kind = "an integer" if integer else "a number"
        raise RequestError(f"{name} must be {kind} in [{low:g}, {high:g}], got {value!r}")
    return int(x) if integer else x


def _quote_command(parts: list[str]) -> str:
    return " ".join(shlex.quote(p) for p in parts)


class AdmissionGate:
    """At most ``concurrency`` holders at once, at most ``queue_size`` more waiting; beyond that, refuse at once."""

    def __init__(self, concurrency: int, queue_size: int) -> None:
        self.capacity = concurrency + queue_size
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Requests running or waiting now."""
        return self._admitted

    @contextmanager
    def admit(self) -> Iterator[None]:
        with self._lock:
            if self._admitted >= self.capacity:
                raise QueueFullError(
                    f"the server is busy ({self._admitted} requests running or queued); try again in a moment"
                )
            self._admitted += 1
        try:
            with self._slots:
                yield
        finally:
            with self._lock:
                self._admitted -= 1


class ResultStore:
    """A private temporary folder with one sub-folder per result; only the newest ``keep`` are kept."""

    def __init__(self, keep: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="wavefoundry-web-"))
        self.keep = keep
        self._entries: deque[Path] = deque()
        self._lock = threading.Lock()

    def new(self) -> Path:
        folder = self.root / secrets.token_hex(8)
        folder.mkdir()
        with self._lock:
            self._entries.append(folder)
            while len(self._entries) > self.keep:
                shutil.rmtree(self._entries.popleft(), ignore_errors=True)
        return folder

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class WebService:
    """Generation for the web UI over :class:`~wavefoundry.pipelines.TextToAudio` models.

    Args:
        models: display name -> model directory (the server's own list; requests pick by name).
        limits: request and load bounds.
    """

    def __init__(self, models: Mapping[str, str | Path], limits: WebLimits | None = None) -> None:
        if not models:
            raise ValueError("give at least one model directory")
        self.paths = {name: Path(path) for name, path in models.items()}
        self.limits = limits or WebLimits()
        self.gate = AdmissionGate(self.limits.concurrency, self.limits.queue_size)
        self.store = ResultStore(self.limits.keep_results)
        self._loaded: dict[str, TextToAudio] = {}
        self._load_lock = threading.Lock()

    @property
    def models(self) -> list[str]:
        return list(self.paths)

    def pipeline(self, name: str) -> TextToAudio:
        """The loaded model ``name`` (loaded on first use); a failure is a RequestError and is retried next time."""
        if name not in self.paths:
            raise RequestError(f"unknown model {name!r}; choose one of: {', '.join(self.paths)}")
        with self._load_lock:
            if name not in self._loaded:
                try:
                    self._loaded[name] = TextToAudio.from_pretrained(self.paths[name])
                except (ModelLoadError, OSError, ValueError) as exc:
                    raise RequestError(f"model {name!r} could not be loaded: {exc}") from None
                log.info("loaded model %s from %s", name, self.paths[name])
        return self._loaded[name]

    def max_seconds(self, name: str) -> float:
        return min(self.limits.max_seconds, self.pipeline(name).max_seconds)

    def check(self, request: GenerationRequest) -> tuple[TextToAudio, GenerationRequest]:
        """The model and a normalised copy of ``request`` (numbers typed, text stripped), or a RequestError."""
        pipe = self.pipeline(request.model)
        prompt = (request.prompt or "").strip()
        negative = (request.negative_prompt or "").strip()
        max_chars = min(self.limits.max_prompt_chars, pipe.max_prompt_chars)
        if not prompt:
            raise RequestError("the prompt is empty: describe the sound to generate")
        for label, text in (("prompt", prompt), ("negative prompt", negative)):
            if len(text) > max_chars:
                raise RequestError(f"the {label} has {len(text)} characters; the limit is {max_chars}")
        if request.sampler not in SAMPLER_NAMES:
            raise RequestError(f"unknown sampler {request.sampler!r}; choose one of: {', '.join(SAMPLER_NAMES)}")
        lim = self.limits
        return pipe, GenerationRequest(
            model=request.model,
            prompt=prompt,
            negative_prompt=negative,
            seconds=_number("duration (seconds)", request.seconds, 0.1, self.max_seconds(request.model)),
            steps=_number("steps", request.steps, 1, lim.max_steps, integer=True),
            cfg_scale=_number("CFG scale", request.cfg_scale, 0.0, lim.max_cfg),
            sampler=request.sampler,
            seed=_number("seed", request.seed, 0, 2**31 - 1, integer=True),
            init_noise=_number("init noise", request.init_noise, 0.01, 500.0),
        )

    def check_init_audio(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
        """Bound uploaded audio: (C, T) or (T,) finite samples, at most ``max_init_seconds``, 1-2 channels."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[None]
        if audio.ndim != 2 or audio.shape[0] not in (1, 2) or audio.shape[1] == 0:
            raise RequestError(f"init audio must be mono or stereo samples, got shape {tuple(audio.shape)}")
        if not 8000 <= sample_rate <= 192000:
            raise RequestError(f"init audio sample rate must be 8-192 kHz, got {sample_rate}")
        if audio.shape[1] > self.limits.max_init_seconds * sample_rate:
            raise RequestError(f"init audio is longer than {self.limits.max_init_seconds:g} s")
        if not np.isfinite(audio).all():
            raise RequestError("init audio holds NaN or infinite samples")
        return audio, int(sample_rate)

    def command(self, request: GenerationRequest, *, init_audio: bool) -> str:
        """The ``wavefoundry generate`` command that makes the same audio from a shell."""
        parts = ["wavefoundry", "generate", request.prompt, "--model", str(self.paths[request.model])]
        parts += ["--seconds", f"{request.seconds:g}", "--steps", str(request.steps), "--cfg", f"{request.cfg_scale:g}"]
        parts += ["--sampler", request.sampler, "--seed", str(request.seed)]
        if request.negative_prompt:
            parts += ["--negative", request.negative_prompt]
        if init_audio:
            parts += ["--init-audio", "INIT_AUDIO.wav", "--init-noise", f"{request.init_noise:g}"]
        return _quote_command([*parts, "--out", "out.wav"])

    def generate(
        self, request: GenerationRequest, init_audio: tuple[np.ndarray, int] | None = None
    ) -> GenerationResult:
        """Check, wait for a slot (or refuse when the queue is full), generate, write WAV/FLAC/PNG.

        Raises:
            RequestError: a bad request, a model that fails to load, or a full queue (:class:`QueueFullError`).
        """
        pipe, req = self.check(request)
        init = self.check_init_audio(*init_audio) if init_audio is not None else None
        with self.gate.admit():
            start = time.perf_counter()
            try:
                audio, sr = pipe.generate(
                    [req.prompt],
                    seconds_total=req.seconds,
                    steps=req.steps,
                    cfg_scale=req.cfg_scale,
                    sampler=req.sampler,
                    seed=req.seed,
                    negative_prompt=req.negative_prompt or None,
                    init_audio=init,
                    init_noise_level=req.init_noise,
                )
            except ValueError as exc:  # the pipeline's own bounds
                raise RequestError(str(exc)) from None
            elapsed = time.perf_counter() - start
        folder = self.store.new()
        clip = audio[0]
        wav = save_audio(folder / "generated.wav", clip, sr)
        flac = save_audio(folder / "generated.flac", clip, sr)
        png = spectrogram_png(clip, sr, folder / "spectrogram.png")
        settings = {**asdict(req), "init_audio": init is not None, "sample_rate": sr}
        if init is None:
            settings.pop("init_noise")
        log.info("generated %.1f s for %r in %.1f s", req.seconds, req.prompt, elapsed)
        return GenerationResult(clip, sr, wav, flac, png, settings, self.command(req, init_audio=init is not None),
                                round(elapsed, 3))  # fmt: skip

    def close(self) -> None:
        """Remove every output written so far."""
        self.store.close()
