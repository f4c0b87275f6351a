"""Real audio-visual folders: images (modes, sizes, bad files), PyAV video frames and soundtrack, rejects."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from wavefoundry.audio.io import save_audio
from wavefoundry.data.avcaps_folder import item_id_of, read_captions, scan_av_folder
from wavefoundry.data.images import ImageError, load_image, save_png
from wavefoundry.data.manifest import read_manifest

av = pytest.importorskip("av")
from wavefoundry.data.video import VideoError, count_frames, frame_indices, read_frames, read_video_audio  # noqa: E402


def write_video(path, n=12, size=32, audio=True):
    """n frames at 10 fps, frame i a flat grey of level 20 i; optional 1 s mono 440 Hz AAC track."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("mpeg4", rate=10)
        v.width = v.height = size
        v.pix_fmt = "yuv420p"
        a = c.add_stream("aac", rate=16000) if audio else None
        if a is not None:
            a.layout = "mono"
        for i in range(n):
            for p in v.encode(av.VideoFrame.from_ndarray(np.full((size, size, 3), 20 * i, np.uint8), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)[None]
            for k in range(0, 16000, 1024):
                fr = av.AudioFrame.from_ndarray(x[:, k : k + 1024].copy(), format="fltp", layout="mono")
                fr.sample_rate, fr.pts = 16000, k
                for p in a.encode(fr):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def test_frame_indices_closed_form():
    assert frame_indices(12, 4) == [1, 4, 7, 10]
    assert frame_indices(2, 4) == [0, 0, 1, 1]  # short clips repeat frames
    with pytest.raises(ValueError, match="n_frames >= 1"):
        frame_indices(5, 0)


def test_read_frames_picks_evenly_spaced_frames(tmp_path):
    path = write_video(tmp_path / "v.mp4")
    assert count_frames(path) == 12
    frames = read_frames(path, 4)
    assert frames.shape == (4, 3, 32, 32) and frames.dtype == np.uint8
    np.testing.assert_allclose(frames.reshape(4, -1).mean(1), [20, 80, 140, 200], atol=4)  # frames 1, 4, 7, 10
    assert read_frames(path, 3, size=(16, 24)).shape == (3, 3, 16, 24)
    audio, sr = read_video_audio(path)
    assert sr == 16000 and audio.shape[0] == 1 and abs(audio.shape[1] - 16000) < 2048
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.05)


def test_video_bad_input(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(VideoError, match=r"bad\.mp4"):
        read_frames(bad, 2)
    silent = write_video(tmp_path / "silent.mp4", n=3, audio=False)
    with pytest.raises(VideoError, match="no audio stream"):
        read_video_audio(silent)


def test_load_image_converts_modes_and_resizes(tmp_path):
    Image.new("L", (20, 10), 128).save(tmp_path / "grey.png")
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    grey = load_image(tmp_path / "grey.png")
    assert grey.shape == (10, 20, 3) and (grey == 128).all()
    assert (load_image(tmp_path / "clear.png") == 0).all()  # alpha 0 composites on black
    assert load_image(tmp_path / "grey.png", size=16).shape == (16, 16, 3)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageError, match=r"broken\.png"):
        load_image(tmp_path / "broken.png")
    with pytest.raises(ImageError, match=r"missing\.png"):
        load_image(tmp_path / "missing.png")
    px = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(load_image(save_png(tmp_path / "x.png", px)), px)


def test_read_captions_formats(tmp_path):
    (tmp_path / "a.txt").write_text("  one\n\n two \n")
    (tmp_path / "b.json").write_text(json.dumps({"captions": ["x"], "label": "dog", "license": "CC0-1.0"}))
    assert read_captions(tmp_path / "a.txt") == (["one", "two"], {})
    assert read_captions(tmp_path / "b.json") == (["x"], {"label": "dog", "license": "CC0-1.0"})


def _tone(seconds=0.5, sr=8000):
    return (0.3 * np.sin(2 * np.pi * 330 * np.arange(int(seconds * sr)) / sr)).astype(np.float32)[None]


def test_scan_folder_keeps_good_items_and_rejects_bad_ones(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    good = {"captions": ["a dog barks", "barking"], "label": "dog", "labels": ["animal"], "license": "CC-BY-4.0"}
    save_audio(root / "dog.wav", _tone(), 8000)
    Image.new("RGB", (40, 30), (10, 200, 10)).save(root / "dog.jpg")
    (root / "dog.json").write_text(json.dumps(good))
    write_video(root / "clip.mp4", n=6)  # audio from the video's soundtrack
    (root / "clip.txt").write_text("a tone and a fading picture\n")
    save_audio(root / "noimg.wav", _tone(), 8000)  # no picture
    (root / "noimg.txt").write_text("x\n")
    save_audio(root / "badimg.wav", _tone(), 8000)
    (root / "badimg.png").write_bytes(b"not png")
    (root / "badimg.txt").write_text("x\n")
    Image.new("RGB", (8, 8)).save(root / "noaudio.png")
    (root / "noaudio.txt").write_text("x\n")
    save_audio(root / "empty.wav", _tone(), 8000)
    Image.new("RGB", (8, 8)).save(root / "empty.png")
    (root / "empty.txt").write_text("\n  \n")
    save_audio(root / "silent.wav", np.zeros((1, 4000), np.float32), 8000)
    Image.new("RGB", (8, 8)).save(root / "silent.png")
    (root / "silent.txt").write_text("silence\n")
    save_audio(root / "nc.wav", _tone(), 8000)
    Image.new("RGB", (8, 8)).save(root / "nc.png")
    (root / "nc.json").write_text(json.dumps({"captions": ["x"], "license": "CC-BY-NC-4.0"}))

    report = scan_av_folder(root, tmp_path / "out", license="CC0-1.0", n_frames=4)
    assert report.candidates == 8 and report.kept + report.rejected == report.candidates
    items = {it.id: it for it in read_manifest(report.manifest_path)}
    assert set(items) == {"dog", "clip"}
    dog, clip = items["dog"], items["clip"]
    assert dog.captions == good["captions"] and dog.license == "CC-BY-4.0" and dog.attrs["label"] == "dog"
    assert load_image(dog.image).shape == (30, 40, 3)
    assert clip.license == "CC0-1.0" and clip.sample_rate == 16000 and clip.attrs["n_frames"] == 4
    assert read_frames(clip.attrs["video"], 4).shape == (4, 3, 32, 32)
    assert load_image(clip.image).shape == (32, 32, 3)  # the video's middle frame
    rejects = {json.loads(line)["path"]: json.loads(line) for line in report.rejects_path.read_text().splitlines()}
    kinds = {k: v["kind"] for k, v in rejects.items()}
    assert kinds["noimg"] == "missing picture" and kinds["badimg"] == "unreadable image"
    assert kinds["noaudio"] == "missing audio" and kinds["empty"] == "empty captions"
    assert kinds["silent"].startswith("bad audio") and kinds["nc"] == "license"
    assert "CC-BY-NC-4.0" in rejects["nc"]["reason"]


def test_item_ids_are_dot_free_and_distinct():
    assert item_id_of("dog1") == "dog1"
    assert item_id_of("a b") != item_id_of("a_b") and "." not in item_id_of("x/y.z")
