"""Textures: rain, wind, engine hum, bird-like chirps, a ticking clock, a siren, and white/pink/brown noise.

Each generator returns a stereo image (2, T) whose channel correlation is 1 - ``stereo_width``; continuous
textures fade in and out at the clip edges, event textures (birds, clock) are silent between events.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from wavefoundry.data.synth.instruments import harmonic_table, table_read
from wavefoundry.data.synth.sampling import Chooser, Rendered
from wavefoundry.data.synth.signals import (
    add_at,
    band_filter,
    colored_noise,
    max_freq,
    smooth_curve,
    stereo_image,
    stft_filter,
    unit_rms,
)

NOISE_COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
RAIN_RATES = {"light": 12.0, "steady": 40.0, "heavy": 120.0}  # drops per second
RAIN_SURFACES = {
    "window": (2500.0, 5000.0, 0.004),
    "roof": (900.0, 2200.0, 0.012),
    "leaves": (None, None, 0.006),
}
WIND_STRENGTHS = {
    "gentle": (0.05, 0.5),
    "gusty": (0.2, 1.2),
    "howling": (0.3, 2.5),
}  # (gust depth range, rate Hz)
SIREN_TYPES = ("wail", "yelp", "hi-lo")


def _edge_fades(n: int, sr: int, fade_s: float) -> np.ndarray:
    m = min(n // 2, int(fade_s * sr))
    gain = np.ones(n)
    ramp = np.linspace(0.0, 1.0, m, endpoint=False)
    gain[:m], gain[n - m :] = ramp, ramp[::-1]
    return gain


def _drop(sr: int, rng: np.random.Generator, surface: str) -> np.ndarray:
    lo, hi, tau = RAIN_SURFACES[surface]
    n = int(5 * tau * sr) + 1
    decay = np.exp(-np.arange(n) / (tau * sr))
    if lo is None:  # leaves: a soft noise tick rather than a ringing ping
        return band_filter(rng.standard_normal(n), sr, 300.0, 3000.0) * decay
    freq = rng.uniform(lo, min(hi, max_freq(sr)))
    return np.sin(2 * np.pi * freq * np.arange(n) / sr) * decay


def rain(ch: Chooser, n: int, sr: int, width: float) -> tuple[np.ndarray, dict]:
    """Pink hiss plus drops (short decaying pings), each drop placed at a random spot in the stereo field."""
    intensity = ch.choice("intensity", tuple(RAIN_RATES))
    surface = ch.choice("surface", tuple(RAIN_SURFACES))
    rng = ch.rng
    bed = stereo_image(lambda: band_filter(colored_noise(rng, n, sr, 1.0), sr, 400.0, None), rng, width)
    drops = np.zeros((2, n))
    n_drops = rng.poisson(RAIN_RATES[intensity] * n / sr)
    for start, amp, angle in zip(
        rng.integers(0, n, n_drops),
        rng.lognormal(0.0, 0.5, n_drops),
        rng.uniform(-width, width, n_drops),
        strict=True,
    ):
        theta = (angle + 1.0) * np.pi / 4
        add_at(drops, np.multiply.outer([np.cos(theta), np.sin(theta)], _drop(sr, rng, surface)), int(start), amp)
    bed_level = {"light": 0.25, "steady": 0.4, "heavy": 0.7}[intensity]
    image = bed_level * unit_rms(bed) + unit_rms(drops)
    return image, {"intensity": intensity, "surface": surface, "n_events": int(n_drops)}


def wind(ch: Chooser, n: int, sr: int, width: float) -> tuple[np.ndarray, dict]:
    """Pink/brown noise through a band-pass whose centre and level wander slowly (gusts)."""
    strength = ch.choice("strength", tuple(WIND_STRENGTHS))
    depth_hi, rate = WIND_STRENGTHS[strength]
    rng = ch.rng
    center = smooth_curve(rng, n, sr, rate, 250.0, 900.0 if strength == "howling" else 600.0)
    q = 4.0 if strength == "howling" else 1.2  # a narrow band whistles

    def make() -> np.ndarray:
        noise = colored_noise(rng, n, sr, 1.0)
        track = center[np.minimum(np.arange(n // 256 + 2) * 256, n - 1)]

        def gains(freqs: np.ndarray, times: np.ndarray) -> np.ndarray:
            fc = np.interp(times, np.arange(track.size) * 256 / sr, track)[:, None]  # (frames, 1)
            return 1.0 / (1.0 + (q * (freqs / fc - fc / np.maximum(freqs, 1.0))) ** 2) ** 0.5

        return stft_filter(noise, sr, gains)

    gust = smooth_curve(rng, n, sr, rate, 1.0 - min(0.95, depth_hi * 2), 1.0)
    image = stereo_image(make, rng, width) * gust
    return image, {"strength": strength}


def engine(ch: Chooser, n: int, sr: int, width: float) -> tuple[np.ndarray, dict]:
    """A low harmonic hum at the firing frequency with a slight speed wobble, over brown-noise rumble."""
    f0 = ch.uniform("engine_hz", 22.0, 60.0, digits=2)
    rng = ch.rng
    wobble = smooth_curve(rng, n, sr, 2.0, -0.015, 0.015)
    cycles = np.cumsum(f0 * (1.0 + wobble)) / sr
    k = np.arange(1, int(min(40, max_freq(sr) // (f0 * 1.02))) + 1)
    amps = rng.uniform(0.3, 1.0, k.size) / k**0.8
    hum = table_read(harmonic_table(amps, rng.uniform(0, 2 * np.pi, k.size)), cycles)
    rumble = stereo_image(lambda: colored_noise(rng, n, sr, 2.0), rng, width)
    return unit_rms(hum) + 0.3 * rumble, {"engine_hz": f0}


def _chirp(sr: int, rng: np.random.Generator) -> np.ndarray:
    dur = rng.uniform(0.04, 0.15)
    m = int(dur * sr)
    top = min(6500.0, max_freq(sr) * 0.95)
    f_a, f_b = rng.uniform(0.3 * top, top, 2)
    trill = rng.uniform(0.0, 0.08) * f_a * np.sin(2 * np.pi * rng.uniform(20, 60) * np.arange(m) / sr)
    freq = np.clip(np.linspace(f_a, f_b, m) + trill, 100.0, top)
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.hanning(m)


def birds(ch: Chooser, n: int, sr: int, width: float) -> tuple[np.ndarray, dict]:
    """Bird-like chirps (sine sweeps with a trill) in short bursts, each at its own place in the field."""
    rate = ch.uniform("chirps_per_s", 1.5, 6.0, digits=2)
    rng = ch.rng
    image = np.zeros((2, n))
    times = np.sort(rng.uniform(0.05, n / sr - 0.2, max(1, rng.poisson(rate * n / sr))))
    ends = []
    for t in times:
        theta = (rng.uniform(-width, width) + 1.0) * np.pi / 4
        c = _chirp(sr, rng)
        add_at(image, np.multiply.outer([np.cos(theta), np.sin(theta)], c), int(t * sr), rng.uniform(0.4, 1.0))
        ends.append(t + c.size / sr)
    span = (round(float(times[0]), 4), round(float(max(ends)), 4))
    return image, {"chirps_per_s": rate, "n_events": int(times.size), "span": span}


def clock(ch: Chooser, n: int, sr: int, width: float) -> tuple[np.ndarray, dict]:
    """A mechanical clock: alternating 'tick' and 'tock' clicks at 1 or 2 per second."""
    rate = ch.choice("tick_rate_hz", (1.0, 2.0))
    rng = ch.rng
    pitch = rng.uniform(1500.0, min(3500.0, max_freq(sr)))
    m = int(0.025 * sr)
    decay = np.exp(-np.arange(m) / (0.003 * sr))
    ticks = [
        np.sin(2 * np.pi * f * np.arange(m) / sr) * decay + 0.3 * rng.standard_normal(m) * decay
        for f in (pitch, 0.8 * pitch)
    ]
    start = ch.uniform("start_s", 0.02, 0.3, digits=4)
    onsets = np.arange(start, n / sr - 0.05, 1.0 / rate)
    mono = np.zeros(n)
    for k, t in enumerate(onsets):
        add_at(mono, ticks[k % 2], round(t * sr))
    attrs = {
        "tick_rate_hz": rate,
        "tempo_bpm": int(60 * rate),
        "onsets_s": [round(float(t), 4) for t in onsets],
    }
    attrs["span"] = (start, round(float(onsets[-1]) + m / sr, 4))
    return np.stack([mono, mono]), attrs


def siren(ch: Chooser, n: int, sr: int, width: float) -> tuple[np.ndarray, dict]:
    """An emergency siren: a buzzy tone sweeping between two pitches (wail, yelp) or alternating (hi-lo)."""
    kind = ch.choice("siren", SIREN_TYPES)
    low = ch.uniform("siren_low_hz", 450.0, 700.0, digits=1)
    high = round(low * ch.uniform("siren_ratio", 1.3, 2.2), 1)
    period = {"wail": (2.0, 5.0), "yelp": (0.2, 0.4), "hi-lo": (0.8, 1.4)}[kind]
    period_s = ch.uniform("siren_period_s", *period, digits=3)
    t = np.arange(n) / sr
    cycle = (t / period_s) % 1.0
    if kind == "hi-lo":
        freq = np.where(cycle < 0.5, high, low)
    else:
        freq = low + (high - low) * (0.5 - 0.5 * np.cos(2 * np.pi * cycle))
    n_partials = min(6, max(1, int(max_freq(sr) // high)))
    tone = table_read(harmonic_table(1.0 / np.arange(1, n_partials + 1)), np.cumsum(freq) / sr)
    return np.stack([tone, tone]), {"siren": kind, "siren_hz": [low, high], "siren_period_s": period_s}


def noise(ch: Chooser, n: int, sr: int, width: float) -> tuple[np.ndarray, dict]:
    """Stationary white, pink (1/f) or brown (1/f^2) noise."""
    color = ch.choice("color", tuple(NOISE_COLORS))
    rng = ch.rng
    return stereo_image(lambda: colored_noise(rng, n, sr, NOISE_COLORS[color]), rng, width), {"color": color}


TEXTURES: dict[str, Callable[[Chooser, int, int, float], tuple[np.ndarray, dict]]] = {
    "rain": rain,
    "wind": wind,
    "engine": engine,
    "birds": birds,
    "clock": clock,
    "siren": siren,
    "noise": noise,
}
#: Textures that are naturally a point source (no stereo width).
_POINT_SOURCES = ("clock", "siren", "engine")


def render_texture(ch: Chooser, n: int, sr: int) -> Rendered:
    """Draw and render a texture of ``n`` samples: a (2, n) stereo image and its attributes."""
    kind = ch.choice("kind", tuple(TEXTURES))
    width = 0.0 if kind in _POINT_SOURCES else ch.uniform("stereo_width", 0.0, 1.0, digits=2)
    image, attrs = TEXTURES[kind](ch, n, sr, width)
    seconds = n / sr
    span = attrs.pop("span", None)
    if span is None:  # continuous: active over the whole clip, with fades at the edges
        image = image * _edge_fades(n, sr, ch.uniform("fade_s", 0.01, 0.3, digits=3))
        span = (0.0, seconds)
    attrs.update(kind=kind, stereo_width=width, active_onset_s=span[0], active_offset_s=min(seconds, span[1]))
    return Rendered(image=image, attrs=attrs)
