"""Prompt builder: determinism, field coverage, key:value split for music metadata, bounds, cleaning."""

from __future__ import annotations

import re

import numpy as np
import pytest

from wavefoundry.data.prompts import FIELDS, build_prompt, clean_text, prompt_fields

FMA_META = {
    "title": "Night Drive",
    "artist": "AWOL",
    "album": "A Way Of Life",
    "genres": ["Hip-Hop", "Electronic", "Trip-Hop"],
    "tags": ["synth", "retro", "lofi"],
    "bpm": 120,
    "key": "C minor",
    "mood": "dark",
}
FREESOUND_META = {
    "title": "dog bark",
    "tags": ["dog", "bark", "animal", "outdoor"],
    "description": "a dog in a park",
}
KEYED = re.compile(r"^(" + "|".join(FIELDS) + r"): ", re.IGNORECASE)
SEEDS = range(600)


def test_same_seed_same_prompt_and_seeds_differ() -> None:
    prompts = [build_prompt(FMA_META, seed) for seed in SEEDS]
    assert prompts == [build_prompt(FMA_META, seed) for seed in SEEDS]
    assert build_prompt(FMA_META, np.random.default_rng(7)) == build_prompt(FMA_META, 7)
    assert len(set(prompts)) > 400  # a random view of the metadata, not a fixed string


def test_every_field_is_used_and_only_metadata_words_appear() -> None:
    allowed = {w.lower() for v in FMA_META.values() for w in re.findall(r"\w+", str(v))}
    allowed |= set(FIELDS) | {"bpm"}
    seen = set()
    for seed in SEEDS:
        prompt = build_prompt(FMA_META, seed).lower()
        assert set(re.findall(r"\w+", prompt)) <= allowed
        seen |= {name for name, words in _field_words().items() if words <= set(re.findall(r"\w+", prompt))}
    assert seen == set(_field_words())


def _field_words() -> dict[str, set[str]]:
    words = {k: {w.lower() for w in re.findall(r"\w+", str(v))} for k, v in FMA_META.items()}
    return {k: v - {"a", "of"} for k, v in words.items()}


def test_fma_half_key_value_half_plain() -> None:
    keyed = [bool(KEYED.match(build_prompt(FMA_META, seed))) for seed in SEEDS]
    assert 0.44 <= np.mean(keyed) <= 0.56
    example = next(build_prompt(FMA_META, s) for s in SEEDS if KEYED.match(build_prompt(FMA_META, s)))
    # key:value prompts name every field they use
    for piece in re.split(r", (?=\w+: )", example):
        assert KEYED.match(piece)


def test_freesound_style_is_never_keyed_and_auto_picks_it() -> None:
    for seed in range(200):
        assert not KEYED.match(build_prompt(FREESOUND_META, seed))
        assert build_prompt(FREESOUND_META, seed) == build_prompt(FREESOUND_META, seed, style="freesound")
        assert not KEYED.match(build_prompt(FMA_META, seed, style="freesound"))
    keyed = np.mean([bool(KEYED.match(build_prompt(FREESOUND_META, s, style="fma"))) for s in SEEDS])
    assert 0.44 <= keyed <= 0.56


def test_list_fields_are_shuffled_and_case_varies() -> None:
    orders = set()
    cases = set()
    for seed in range(300):
        prompt = build_prompt({"tags": ["dog", "Bark", "ANIMAL"]}, seed)
        orders.add(tuple(p.lower() for p in prompt.split(", ")))
        cases.add("lower" if prompt.islower() else "title" if prompt == prompt.title() else "original")
    assert len(orders) == 6  # all 3! orders
    assert cases == {"lower", "title", "original"}


def test_never_empty_when_a_field_exists() -> None:
    rng = np.random.default_rng(0)
    for seed in range(300):
        keys = [k for k in FMA_META if rng.random() < 0.3] or ["bpm"]
        assert build_prompt({k: FMA_META[k] for k in keys}, seed) != ""
    assert build_prompt({}, 0) == ""
    assert build_prompt({"title": "  ", "tags": [], "unrelated": "x"}, 0) == ""


def test_length_bound_cuts_at_a_field_boundary() -> None:
    tags = [f"tag{i:03d}" for i in range(400)]
    for seed in range(50):
        prompt = build_prompt({"tags": tags}, seed, max_chars=100)
        assert 0 < len(prompt) <= 100
        assert all(re.fullmatch(r"tag\d{3}", t, re.IGNORECASE) for t in prompt.split(", "))
    long_title = "word " * 300
    assert 0 < len(build_prompt({"title": long_title}, 0, max_chars=40)) <= 40
    assert all(len(build_prompt(FMA_META, s)) <= 512 for s in range(100))


def test_cleaning_and_aliases() -> None:
    assert clean_text("<p>Rain &amp; thunder</p>\n\n  at night") == "Rain & thunder at night"
    assert clean_text(120.0) == "120"
    assert clean_text(float("nan")) == ""
    fields = prompt_fields({"name": "x", "genre_top": "Rock", "tempo": "96 bpm", "tags": "a, b, a"})
    assert fields == {"title": "x", "genre": ["Rock"], "bpm": "96", "tags": ["a", "b"]}
    prompts = {build_prompt({"bpm": "96 BPM"}, s) for s in range(40)}
    assert prompts <= {"96 BPM", "96 bpm", "96 Bpm", "bpm: 96", "Bpm: 96"}


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown prompt style"):
        build_prompt(FMA_META, 0, style="audiocaps")
    with pytest.raises(TypeError, match="numpy Generator"):
        build_prompt(FMA_META, "seed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_chars"):
        build_prompt(FMA_META, 0, max_chars=0)
