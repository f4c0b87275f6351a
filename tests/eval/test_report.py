"""Demo page writer: spectrogram geometry (mel row of a sine), colormap, silent/bad audio, escaped HTML, rewrites."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
from PIL import Image

from wavefoundry.audio.features import hz_to_mel
from wavefoundry.audio.io import save_audio
from wavefoundry.audio.spectrogram import COLORMAPS, apply_colormap, spectrogram_image, spectrogram_png
from wavefoundry.eval.report import DemoEntry, format_value, timing_text, write_demo_page

SR = 16000


def _sine(f: float, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return np.repeat((0.5 * np.sin(2 * np.pi * f * t))[None], channels, axis=0).astype(np.float32)


def _chirp(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    f0, f1 = 100.0, 6000.0
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))  # instantaneous f0 + (f1 - f0) t / seconds
    return (0.5 * np.sin(phase))[None].astype(np.float32)


def _brightness(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64).sum(-1)


def _expected_band(f: float, n_mels: int) -> float:
    """Fractional index of the mel filter centred on ``f``: centres are n_mels + 2 points equally spaced in mel."""
    top = float(hz_to_mel(SR / 2))
    return float(hz_to_mel(f)) / top * (n_mels + 1) - 1


def test_colormap_anchors_and_monotone_brightness():
    rgb = apply_colormap(np.array([0.0, 1.0, -3.0, 7.0, np.nan]))
    assert rgb[0].tolist() == [0x44, 0x01, 0x54] and rgb[1].tolist() == [0xFD, 0xE7, 0x25]
    assert rgb[2].tolist() == rgb[0].tolist() == rgb[4].tolist() and rgb[3].tolist() == rgb[1].tolist()
    ramp = _brightness(apply_colormap(np.linspace(0, 1, 256)))
    assert np.all(np.diff(ramp) >= 0) and ramp[-1] > ramp[0] + 300
    with pytest.raises(ValueError, match="viridis"):
        apply_colormap(np.zeros(3), "jet")
    assert set(COLORMAPS) >= {"viridis", "magma", "gray"}


def test_chirp_png_has_requested_size_and_rises(tmp_path):
    path = spectrogram_png(_chirp(), SR, tmp_path / "chirp.png", height=100, width=300)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (300, 100) and img.mode == "RGB"
        rgb = np.asarray(img)
    assert rgb.std() > 10
    # The brightest row moves up (higher frequency) from left to right.
    rows = [int(np.argmax(_brightness(rgb[:, x]))) for x in (30, 150, 270)]
    assert rows[0] > rows[1] > rows[2]


@pytest.mark.parametrize("freq", [250.0, 1000.0, 4000.0])
@pytest.mark.parametrize(("n_mels", "height"), [(80, 80), (64, 192)])
def test_sine_bright_row_at_its_mel_band(freq, n_mels, height):
    rgb = spectrogram_image(_sine(freq, channels=2), SR, n_mels=n_mels, height=height, width=64)
    y = int(np.argmax(_brightness(rgb).mean(axis=1)))
    # Pixel row y (0 at the top) samples band n_mels - 1 - ((y + 0.5) n_mels / height - 0.5).
    band = n_mels - 1 - ((y + 0.5) * n_mels / height - 0.5)
    assert abs(band - _expected_band(freq, n_mels)) <= 1.5


def test_silent_and_short_audio_give_valid_uniform_images(tmp_path):
    path = spectrogram_png(np.zeros((2, SR), np.float32), SR, tmp_path / "silent.png", width=50, height=40)
    with Image.open(path) as img:
        rgb = np.asarray(img)
    assert rgb.shape == (40, 50, 3)
    assert np.all(rgb == np.array([0x44, 0x01, 0x54]))  # the lowest colour everywhere
    short = spectrogram_image(_sine(1000.0, seconds=0.01), SR, width=20, height=30)  # 160 samples < one window
    assert short.shape == (30, 20, 3) and short.std() > 0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="height"):
        spectrogram_image(_sine(440.0), SR, height=0)
    with pytest.raises(ValueError, match=r"NaN"):
        spectrogram_image(np.full((1, 100), np.nan, np.float32), SR)


def _entries(tmp_path, prompts):
    entries = []
    for i, prompt in enumerate(prompts):
        audio = _sine(220.0 * (i + 1), seconds=0.5)
        save_audio(tmp_path / f"{i:03d}.wav", audio, SR)
        entries.append(
            {
                "prompt": prompt,
                "audio_path": f"{i:03d}.wav",
                "audio": audio,
                "sr": SR,
                "seed": 7 + i,
                "seconds_generated": 0.25,
                "settings": {"steps": 50, "cfg": 6.0},
                "notes": "n & m",
            }
        )
    return entries


PROMPTS = ["a <script>alert('x')</script> synth", 'rain "on" a window & thunder', "ünïcode pad ♪"]
SUMMARY = {
    "model": "models/t2a-tiny",
    "pitch_ok": {"accuracy": 0.8125, "n": 16, "ci95": [0.57, 0.934]},
    "pan_ok": {"accuracy": 0.5, "n": 8},
}


def test_demo_page_contents(tmp_path):
    index = write_demo_page(tmp_path, _entries(tmp_path, PROMPTS), title="Demo <1>", summary=SUMMARY)
    assert index == tmp_path / "index.html"
    page = index.read_text(encoding="utf-8")
    assert "<script" not in page and "Demo &lt;1&gt;" in page
    for prompt in PROMPTS:
        assert html.escape(prompt, quote=True) in page
    audio_srcs = re.findall(r'<audio controls[^>]* src="([^"]+)"', page)
    img_srcs = re.findall(r'<img src="([^"]+)"', page)
    assert audio_srcs == ["000.wav", "001.wav", "002.wav"]
    assert img_srcs == ["spec-000.png", "spec-001.png", "spec-002.png"]
    assert all((tmp_path / p).is_file() for p in audio_srcs + img_srcs)
    with Image.open(tmp_path / "spec-001.png") as img:
        assert img.size == (640, 160)
    for text in ("0.8125", "[0.57, 0.934]", "16", "models/t2a-tiny", "accuracy", "ci95", "—"):
        assert text in page  # pan_ok has no ci95: an em dash
    # 0.25 s to generate 0.5 s of audio: real-time factor 0.5.
    assert "real-time factor 0.5" in page and "steps=50, cfg=6" in page and "n &amp; m" in page
    assert "http" not in page.replace("written by wavefoundry", "")  # no outside assets


def test_demo_page_rewrite_is_clean_and_deterministic(tmp_path):
    entries = _entries(tmp_path, PROMPTS)
    write_demo_page(tmp_path, entries, title="t")
    first = (tmp_path / "index.html").read_bytes()
    write_demo_page(tmp_path, entries, title="t")
    assert (tmp_path / "index.html").read_bytes() == first
    (tmp_path / "spec-keep.png").write_bytes(b"not ours")
    write_demo_page(tmp_path, entries[:1], title="t")
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["spec-000.png", "spec-keep.png"]
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert page.count("<audio") == 1 and page.count("<img") == 1 and "Summary" not in page


def test_demo_page_bad_entries(tmp_path):
    good = _entries(tmp_path, ["ok"])[0]
    with pytest.raises(ValueError, match="valid keys: prompt"):
        write_demo_page(tmp_path, [{**good, "promt": "typo"}], title="t")
    with pytest.raises(FileNotFoundError, match=r"missing\.wav"):
        write_demo_page(tmp_path, [{**good, "audio_path": "missing.wav"}], title="t")
    for bad in ("/etc/x.wav", "../x.wav"):
        with pytest.raises(ValueError, match="relative"):
            DemoEntry(prompt="p", audio_path=bad, audio=np.zeros(4), sr=SR)
    # Non-finite audio: the page is still written, with the reason in place of the spectrogram.
    nan = DemoEntry(prompt="nan clip", audio_path="000.wav", audio=np.full((1, 100), np.nan), sr=SR)
    page = write_demo_page(tmp_path, [nan], title="t").read_text(encoding="utf-8")
    assert "no spectrogram" in page and "<img" not in page and "<audio" in page


def test_formatting_helpers():
    assert format_value(np.float32(0.123456)) == "0.1235" and format_value(None) == "—"
    assert format_value({"a": 1, "b": [0.5, True]}) == "a=1, b=[0.5, true]"
    assert timing_text(2.0, 4.0) == "generated in 2.00 s for 4.00 s of audio, real-time factor 0.5"
    assert timing_text(None, 4.0) == "4.00 s of audio" and timing_text(None, None) == "—"
    entry = DemoEntry(prompt="p", audio_path="a.wav", audio=np.zeros((2, SR // 2)), sr=SR)
    assert entry.seconds_audio == 0.5
