"""AVCaps: pictures tied to the sound, captions naming both, labels, determinism, manifest round trip."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from wavefoundry.data.avcaps import (
    ATTRIBUTE_LABELS,
    CLASS_SHAPES,
    SOUND_CLASSES,
    AVCapsConfig,
    av_item,
    generate_avcaps,
    level_of,
    sound_class,
)
from wavefoundry.data.avcaps_render import BACKGROUNDS, COLORS, SHAPES, Scene, backgrounds_for, luminance, render_scene
from wavefoundry.data.images import load_image
from wavefoundry.data.manifest import read_manifest
from wavefoundry.data.synth import SynthConfig, synth_item

CFG = AVCapsConfig(n_items=12, seconds=0.5, sample_rate=8000, image_size=64, masked_fraction=0.25,
                   hidden_fraction=0.25)  # fmt: skip


def test_every_sound_class_has_its_own_shape():
    assert set(CLASS_SHAPES) == set(SOUND_CLASSES)
    assert len(set(CLASS_SHAPES.values())) == len(SOUND_CLASSES) and set(CLASS_SHAPES.values()) <= set(SHAPES)


def test_every_colour_has_a_contrasting_background():
    for color, rgb in COLORS.items():
        options = backgrounds_for(color)
        assert options and all(abs(luminance(BACKGROUNDS[b]) - luminance(rgb)) >= 60 for b in options)


def test_render_draws_the_scene_where_it_says():
    scene = Scene(shape="square", color="red", background="white", count=1, x=0.25, y=0.5, radius=0.1)
    px = render_scene(scene, 100)
    assert px.shape == (100, 100, 3) and px.dtype == np.uint8
    red = np.all(px == COLORS["red"], axis=-1)
    ys, xs = np.nonzero(red)
    # square outline is +-0.8 r: 16 x 16 pixels (17 with both edges) centred on (25, 50)
    assert abs(xs.mean() - 25) < 1 and abs(ys.mean() - 50) < 1 and 15 <= xs.max() - xs.min() <= 17
    three = render_scene(Scene(shape="circle", color="blue", background="black", count=3, x=0.5, y=0.5,
                               radius=0.08), 128)  # fmt: skip
    from scipy import ndimage

    assert ndimage.label(np.all(three == COLORS["blue"], axis=-1))[1] == 3  # three separate objects
    hidden = render_scene(Scene(shape="star", color="green", background="navy", count=2, x=0.5, y=0.5,
                                radius=0.1, hidden=True), 64)  # fmt: skip
    assert not np.any(np.all(hidden == COLORS["green"], axis=-1))
    with pytest.raises(ValueError, match="shape must be one of"):
        Scene(shape="blob", color="red", background="white", count=1, x=0.5, y=0.5, radius=0.1)
    with pytest.raises(ValueError, match=r"count must be in 1\.\.5"):
        Scene(shape="star", color="red", background="white", count=7, x=0.5, y=0.5, radius=0.1)


def test_items_are_deterministic_and_tied_to_the_sound():
    a, b = av_item(CFG, 3), av_item(CFG, 3)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.captions == b.captions
    synth_cfg = SynthConfig(n_items=12, seconds=0.5, sample_rate=8000, seed=0, valid_fraction=0.1, test_fraction=0.1)
    seen_masked = seen_hidden = 0
    for i in range(12):
        item, synth = av_item(CFG, i), synth_item(synth_cfg, i)
        attrs, scene = item.attrs, item.scene
        assert attrs["label"] == sound_class(synth.attrs) and scene.shape == CLASS_SHAPES[attrs["label"]]
        assert (
            set(attrs["labels"]) <= set(ATTRIBUTE_LABELS)
            and f"level:{level_of(attrs['loudness_dbfs'])}" in attrs["labels"]
        )
        pan = attrs["pan"] or 0.0
        if abs(pan) > 0.5:  # position follows the pan
            assert (scene.x - 0.5) * pan > 0
        assert len(item.captions) >= 3
        if attrs["masked"]:
            seen_masked += 1
            assert not np.array_equal(item.audio, synth.audio)
            assert all("static" in c or "hiss" in c for c in item.captions)
            assert not any(c in " ".join(item.captions) for c in synth.captions)  # the sound is not described
        else:
            np.testing.assert_array_equal(item.audio, synth.audio)
            assert any(c in item.captions[0] for c in synth.captions)  # the sound's caption is kept
        if attrs["hidden"]:
            seen_hidden += 1
            assert "curtain" in item.captions[0] and not any(lbl.startswith("color:") for lbl in attrs["labels"])
        else:
            assert scene.color in item.captions[0] and scene.shape.split()[-1] in item.captions[0]
        assert scene.background in item.captions[0]
    assert seen_masked and seen_hidden


def test_louder_is_bigger():
    loud = [(av_item(CFG, i).attrs["loudness_dbfs"], av_item(CFG, i).scene.radius) for i in range(12)]
    loud.sort()
    assert loud[0][1] < loud[-1][1]
    assert all(r1 <= r2 for (_, r1), (_, r2) in itertools.pairwise(loud))


def test_generate_writes_manifest_images_and_splits(tmp_path):
    cfg = AVCapsConfig(n_items=6, seconds=0.5, sample_rate=8000, image_size=32, valid_fraction=0.3,
                       test_fraction=0.3)  # fmt: skip
    manifest = generate_avcaps(tmp_path, cfg, workers=1, progress=False)
    items = read_manifest(manifest)
    assert len(items) == 6 and {it.split for it in items} <= {"train", "valid", "test"}
    for it in items:
        px = load_image(it.image)
        assert px.shape == (32, 32, 3)
        np.testing.assert_array_equal(px, av_item(cfg, int(it.id[-6:])).pixels)  # PNG is lossless
        assert it.captions and it.caption == it.captions[0] and it.attrs["label"] in SOUND_CLASSES
    line = json.loads(manifest.read_text().splitlines()[0])
    assert line["image"].startswith("images/") and isinstance(line["captions"], list)
    assert json.loads((tmp_path / "avcaps.json").read_text())["image_size"] == 32


def test_config_bad_values():
    with pytest.raises(ValueError, match="image_size"):
        AVCapsConfig(image_size=8)
    with pytest.raises(ValueError, match="at most one modality"):
        AVCapsConfig(masked_fraction=0.6, hidden_fraction=0.6)
    with pytest.raises(ValueError, match="seconds"):
        AVCapsConfig(seconds=0.1)
