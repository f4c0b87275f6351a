"""Captions from ground-truth attributes: templates with synonyms, random modifier order and subsets.

Every caption of an item names its core facts (timbre and pitch or chord, the drum tempo, the texture);
the first caption also carries every modifier (pan, loudness, envelope, stereo width), later ones a random
subset, so a model sees varied wording for the same sound.
"""

from __future__ import annotations

import numpy as np

N_CAPTIONS = 5

BRIGHTNESS_WORDS = {
    "bright": ("bright", "brilliant", "crisp"),
    "warm": ("warm", "round"),
    "mellow": ("mellow", "dark"),
}
TIMBRE_NOUNS = {
    "sine": ("pure sine tone", "sine-wave synth", "clean sine wave"),
    "square": ("square-wave lead", "square synth", "chiptune square lead"),
    "saw": ("sawtooth lead", "saw synth", "sawtooth synth"),
    "pluck": ("plucked string", "plucked guitar-like string", "Karplus-Strong pluck"),
    "fm_bell": ("FM bell", "bell-like FM synth", "glassy FM bell"),
    "organ": ("organ", "drawbar organ", "electric organ"),
}
#: A word every caption of the timbre contains (what tests and filters can match on).
TIMBRE_STEMS = {
    "sine": "sine",
    "square": "square",
    "saw": "saw",
    "pluck": "pluck",
    "fm_bell": "bell",
    "organ": "organ",
}
ORGAN_STOP_WORDS = {"full": "full", "jazz": "jazzy", "flute": "flute-like", "reed": "reedy"}
ENVELOPE_WORDS = {
    "adsr": ("with a quick attack", "with a clean attack and release", "articulated"),
    "percussive": ("short and percussive", "with a sharp decay", "decaying quickly"),
    "swell": ("slowly swelling in", "with a slow swell", "fading in slowly"),
    "sustained": ("sustained", "held steadily", "with a steady sustain"),
}
ARP_WORDS = {"up": "ascending", "down": "descending", "up-down": "up-and-down"}
PATTERN_WORDS = {
    "rock": "rock",
    "four-on-the-floor": "four-on-the-floor",
    "disco": "disco",
    "syncopated": "syncopated rock",
    "pop": "pop",
    "funk": "funky",
}
KIT_WORDS = {"tight": ("tight", "crisp"), "punchy": ("punchy",), "boomy": ("boomy", "deep")}
TEXTURE_STEMS = {
    "rain": "rain",
    "wind": "wind",
    "engine": "engine",
    "birds": "bird",
    "clock": "clock",
    "siren": "siren",
    "noise": "noise",
}


def pan_words(pan: float | None) -> tuple[str, ...]:
    """Phrases for a pan position in [-1, 1] (None: mono, no phrase)."""
    if pan is None:
        return ()
    side = "left" if pan < 0 else "right"
    mag = abs(pan)
    if mag < 0.15:
        return ("centered", "in the center", "panned center")
    if mag < 0.5:
        return (f"slightly {side}", f"panned slightly {side}", f"a little {side} of center")
    if mag < 0.85:
        return (f"panned {side}", f"on the {side}", f"{side} of center")
    return (f"panned hard {side}", f"hard {side}", f"fully on the {side}")


def loudness_words(dbfs: float) -> tuple[str, ...]:
    """Phrases for an RMS level in dBFS: very quiet < -32 <= quiet < -25 <= moderate < -18 <= loud."""
    if dbfs < -32:
        return ("very quiet", "barely audible", "very low in level")
    if dbfs < -25:
        return ("quiet", "soft", "at a low level")
    if dbfs < -18:
        return ("at a moderate level", "moderately loud", "medium loud")
    return ("loud", "at a high level", "at full volume")


def _article(phrase: str) -> str:
    # Note letters A, E and F (and "FM") are read with a vowel sound: "an A minor chord", "an FM bell".
    return ("an " if phrase[:1] in "aeiouAEFIO" else "a ") + phrase


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _tonal_parts(a: dict, rng: np.random.Generator) -> tuple[str, str, str, list[tuple[str, ...]]]:
    """(subject, verb phrase, noun phrase of what is played, modifier options) of a tonal item."""
    noun = _pick(rng, TIMBRE_NOUNS[a["timbre"]])
    if a["timbre"] == "organ":
        noun = f"{ORGAN_STOP_WORDS[a['organ_stops']]} {noun}"
    if a["brightness"] is not None and rng.random() < 0.8:
        noun = f"{_pick(rng, BRIGHTNESS_WORDS[a['brightness']])} {noun}"
    subject = _article(noun)
    if a["kind"] == "note":
        note = a["notes"][0]
        verb = _pick(rng, (f"playing a single {note} note", f"holding the note {note}", f"sounding {note}"))
        thing = _pick(rng, (f"a single {note} note", f"a held {note}", f"the note {note}"))
    elif a["kind"] == "chord":
        name = _pick(rng, (a["chord"], a["chord"], a["chord_symbol"]))
        held = f"striking {_article(name)}" if a["envelope"] == "percussive" else f"holding a sustained {name}"
        verb = _pick(rng, (f"playing {_article(name)} chord", f"{held} chord"))
        thing = _article(f"{name} chord")
    else:
        name, bpm, direction = a["chord"], a["tempo_bpm"], ARP_WORDS[a["arpeggio"]]
        verb = _pick(
            rng,
            (
                f"playing {_article(name)} arpeggio at {bpm} BPM",
                f"arpeggiating {name} in {a['note_value']} notes at {bpm} BPM",
                f"playing {_article(direction)} {name} arpeggio, {bpm} BPM",
            ),
        )
        thing = _pick(
            rng,
            (
                f"{_article(name)} arpeggio at {bpm} BPM",
                f"{_article(direction)} {name} arpeggio at {bpm} BPM",
            ),
        )
    mods = [ENVELOPE_WORDS[a["envelope"]]]
    if a["kind"] != "arpeggio":
        mods.append((f"lasting about {a['note_s']:.1f} seconds", f"{a['note_s']:.1f} seconds long"))
    return subject, verb, thing, mods


def _drum_parts(a: dict, rng: np.random.Generator) -> tuple[str, str, str, list[tuple[str, ...]]]:
    pattern, kit, bpm = PATTERN_WORDS[a["pattern"]], _pick(rng, KIT_WORDS[a["kit"]]), a["tempo_bpm"]
    subject = _pick(
        rng,
        (
            f"{_article(kit)} {pattern} drum beat",
            f"{_article(pattern)} drum pattern",
            f"{kit} drums playing {_article(pattern)} groove",
            f"a drum machine playing {_article(pattern)} beat",
        ),
    )
    tempo = _pick(rng, (f"at {bpm} BPM", f"at a tempo of {bpm} BPM", f"{bpm} BPM"))
    thing = _pick(rng, (f"{_article(pattern)} beat at {bpm} BPM", f"{bpm} BPM {pattern} drums"))
    sixteenths = a["steps"]["hat"].count("x") == 16
    offbeat = a["steps"]["hat"].startswith(".")
    hats = "sixteenth-note" if sixteenths else "off-beat" if offbeat else "eighth-note"
    mods = [(f"with {hats} hi-hats", "with kick, snare and hi-hat", f"{hats} hats over kick and snare")]
    return subject, tempo, thing, mods


#: Texture kind -> (the attribute that selects the wording, value -> phrases).
_TEXTURE_PHRASES: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "wind": (
        "strength",
        {
            "gentle": ("gentle wind", "a light wind", "wind blowing gently"),
            "gusty": ("gusty wind", "gusts of wind", "wind blowing in gusts"),
            "howling": ("howling wind", "wind howling", "a whistling, howling wind"),
        },
    ),
    "siren": (
        "siren",
        {
            "wail": ("a wailing siren", "an emergency siren wailing", "a siren slowly rising and falling"),
            "yelp": ("a yelping siren", "a fast whooping siren", "a police siren yelping"),
            "hi-lo": ("a two-tone hi-lo siren", "a two-tone siren alternating high and low", "a hi-lo siren"),
        },
    ),
    "noise": (
        "color",
        {c: (f"{c} noise", f"a steady hiss of {c} noise", f"{c} noise static") for c in ("white", "pink", "brown")},
    ),
}
_RAIN_LEVEL = {"light": ("light", "gentle"), "steady": ("steady", "constant"), "heavy": ("heavy", "pouring")}
_RAIN_WHERE = {
    "window": ("on a window", "against a window pane"),
    "roof": ("on a tin roof", "on a metal roof"),
    "leaves": ("on leaves", "falling on foliage"),
}


def _texture_subject(a: dict, rng: np.random.Generator) -> str:
    kind = a["kind"]
    if kind in _TEXTURE_PHRASES:
        key, phrases = _TEXTURE_PHRASES[kind]
        return _pick(rng, phrases[a[key]])
    if kind == "rain":
        return f"{_pick(rng, _RAIN_LEVEL[a['intensity']])} rain {_pick(rng, _RAIN_WHERE[a['surface']])}"
    if kind == "engine":
        depth = "deep" if a["engine_hz"] < 35 else "low"
        return _pick(rng, (f"a {depth} engine hum", "an idling engine", f"a {depth} droning engine", "engine rumble"))
    if kind == "birds":
        if a["chirps_per_s"] < 3:
            return _pick(rng, ("a few birds chirping", "sparse bird chirps", "occasional bird-like chirps"))
        return _pick(rng, ("birds chirping busily", "lots of bird chirps", "a flurry of bird-like chirps"))
    rate = "once per second" if a["tick_rate_hz"] == 1.0 else "twice per second"
    return f"{_pick(rng, ('a clock ticking', 'a ticking clock', 'a mechanical clock ticking'))} {rate}"


def _texture_parts(a: dict, rng: np.random.Generator) -> tuple[str, str, str, list[tuple[str, ...]]]:
    subject = _texture_subject(a, rng)
    mods = []
    if (a.get("stereo_width") or 0.0) >= 0.6:
        mods.append(("wide stereo", "spacious and wide", "with a wide stereo image"))
    return subject, "", subject, mods


_PARTS = {"tonal": _tonal_parts, "drums": _drum_parts, "texture": _texture_parts}


def _one_caption(attrs: dict, rng: np.random.Generator, full: bool) -> str:
    subject, verb, thing, mods = _PARTS[attrs["category"]](attrs, rng)
    mods = [*mods, pan_words(attrs.get("pan")), loudness_words(attrs["loudness_dbfs"])]
    words = [_pick(rng, m) for m in mods if m]
    rng.shuffle(words)
    if not full:
        words = words[: int(rng.integers(0, len(words) + 1))]
    head = f"{subject} {verb}".strip()
    form = int(rng.integers(4)) if attrs["category"] != "texture" else int(rng.integers(2)) * 3
    if form == 1 and words:
        return f"{', '.join(words)}: {head}"
    if form == 2:
        head = f"{thing}, played on {subject}" if attrs["category"] == "tonal" else thing
    if form == 3 and words:
        return f"{head} ({', '.join(words)})"
    return ", ".join([head, *words])


def make_captions(attrs: dict, rng: np.random.Generator, n: int = N_CAPTIONS) -> list[str]:
    """``n`` distinct captions (as far as the templates allow) of an item from its ``attrs``.

    ``attrs`` needs ``category``, ``pan`` (None: mono) and ``loudness_dbfs`` besides the category's keys.
    """
    captions: list[str] = []
    for attempt in range(4 * n):
        text = _one_caption(attrs, rng, full=attempt == 0)
        if text not in captions:
            captions.append(text)
        if len(captions) == n:
            break
    return captions
