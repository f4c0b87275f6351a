"""Offline sentences for the espeak-ng speech corpus: a seeded, templated generator per language.

Each language has a small lexicon: subjects with their grammatical number, verbs in the 3rd person singular
and plural with the kinds of object they take, plural nouns with their gender, adjectives in their plural
forms (and whether they go before the noun), number words, places and time phrases. Every phrase is stored
already inflected for the slot it fills (German places in the dative, Italian articles fused with
prepositions), objects are always plural ("three red apples"), adjectives take the noun's gender and verbs
take the subject's number, so agreement is right by construction. Two templates per language (statement,
question) put the parts in that language's order (German verb-second after a fronted time phrase).

A sentence has a spoken ``text`` (cased, punctuated: what espeak-ng reads) and a ``transcript``
(:func:`normalize_transcript`: NFC, lowercase, punctuation removed), the label for ASR and TTS.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Object kinds a verb may take: food ("eats"), things ("paints") or both ("buys").
KINDS = ("food", "thing")
#: Probability of each optional part of a sentence.
P_ADJECTIVE, P_PLACE, P_TIME, P_QUESTION, P_TIME_FIRST = 0.6, 0.85, 0.5, 0.2, 0.35
#: Redraws allowed for a sentence that is longer than ``max_chars``.
MAX_TRIES = 64

_KIND_CODES = {"f": ("food",), "t": ("thing",), "ft": KINDS}


@dataclass(frozen=True)
class Parts:
    """The drawn parts of one sentence; ``time`` and ``place`` may be empty."""

    subject: str
    plural: bool
    verb: str  # conjugated for the subject's number
    verb_plural: str  # the 3rd person plural (the English base form, for do-support)
    obj: str
    place: str
    time: str
    question: bool
    time_first: bool


@dataclass(frozen=True)
class Lexicon:
    """Words of one language, already inflected (see the module docstring)."""

    name: str
    subjects: tuple[tuple[str, bool], ...]  # (phrase, plural)
    verbs: tuple[tuple[str, str, tuple[str, ...]], ...]  # (3sg, 3pl, object kinds)
    nouns: tuple[tuple[str, str, str], ...]  # (plural, gender "m"/"f", kind)
    adjectives: tuple[tuple[str, str, bool], ...]  # (masculine plural, feminine plural, before the noun)
    numbers: tuple[str, ...]
    places: tuple[str, ...]
    times: tuple[str, ...]
    template: Callable[[Parts], str]


@dataclass(frozen=True)
class Sentence:
    """A spoken ``text``, its ``transcript`` and the template ``kind`` ("statement" or "question")."""

    text: str
    transcript: str
    kind: str


def _items(text: str) -> list[str]:
    return [t.strip() for t in text.split("|") if t.strip()]


def _subjects(singular: str, plural: str) -> tuple[tuple[str, bool], ...]:
    return tuple((s, False) for s in _items(singular)) + tuple((s, True) for s in _items(plural))


def _verbs(text: str) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """``"buys/buy/ft|eats/eat/f"``: 3sg / 3pl / object kinds (f food, t thing)."""
    out = []
    for entry in _items(text):
        sg, pl, kinds = entry.split("/")
        out.append((sg, pl, _KIND_CODES[kinds]))
    return tuple(out)


def _nouns(text: str) -> tuple[tuple[str, str, str], ...]:
    """``"pommes f f|livres m t"``: plural, gender, kind (f food, t thing)."""
    out = []
    for entry in _items(text):
        word, gender, kind = entry.split()
        out.append((word, gender, _KIND_CODES[kind][0]))
    return tuple(out)


def _adjectives(text: str, *, before: bool = False) -> tuple[tuple[str, str, bool], ...]:
    """``"<petits/petites|rouges"``: masculine/feminine plural (one form: both); ``<`` = before the noun."""
    out = []
    for entry in _items(text):
        first = before or entry.startswith("<")
        masc, _, fem = entry.lstrip("<").partition("/")
        out.append((masc, fem or masc, first))
    return tuple(out)


def _join(*words: str) -> str:
    return " ".join(w for w in words if w)


def _english(p: Parts) -> str:
    if p.question:
        return _join("do" if p.plural else "does", p.subject, p.verb_plural, p.obj, p.place, p.time) + "?"
    if p.time_first and p.time:
        return f"{p.time}, " + _join(p.subject, p.verb, p.obj, p.place) + "."
    return _join(p.subject, p.verb, p.obj, p.place, p.time) + "."


def _german(p: Parts) -> str:
    if p.question:
        return _join(p.verb, p.subject, p.time, p.obj, p.place) + "?"
    if p.time_first and p.time:  # verb second: the fronted time phrase pushes the subject after the verb
        return _join(p.time, p.verb, p.subject, p.obj, p.place) + "."
    return _join(p.subject, p.verb, p.time, p.obj, p.place) + "."


def _french(p: Parts) -> str:
    if p.question:
        que = "est-ce qu'" if p.subject[0] in "aeiouéèêâîôûy" else "est-ce que "
        return que + _join(p.subject, p.verb, p.obj, p.place, p.time) + " ?"
    if p.time_first and p.time:
        return f"{p.time}, " + _join(p.subject, p.verb, p.obj, p.place) + "."
    return _join(p.subject, p.verb, p.obj, p.place, p.time) + "."


def _romance(open_q: str) -> Callable[[Parts], str]:
    """Spanish and Italian: subject-verb-object; a question is the statement between question marks."""

    def template(p: Parts) -> str:
        if p.question:
            return open_q + _join(p.subject, p.verb, p.obj, p.place, p.time) + "?"
        if p.time_first and p.time:
            return f"{p.time}, " + _join(p.subject, p.verb, p.obj, p.place) + "."
        return _join(p.subject, p.verb, p.obj, p.place, p.time) + "."

    return template


LEXICONS: dict[str, Lexicon] = {
    "en": Lexicon(
        name="English",
        subjects=_subjects(
            "the teacher|the baker|my sister|my brother|our neighbour|the old woman|the young man|the child|"
            "the cook|the doctor|Anna|Peter|Lucy|Tom|he|she",
            "the children|my parents|our neighbours|the students|they|the two brothers",
        ),
        verbs=_verbs(
            "buys/buy/ft|sells/sell/ft|sees/see/ft|looks for/look for/ft|finds/find/ft|carries/carry/ft|"
            "counts/count/ft|paints/paint/t|washes/wash/ft|eats/eat/f|cooks/cook/f|brings/bring/ft"
        ),
        nouns=_nouns(
            "apples - f|pears - f|oranges - f|eggs - f|tomatoes - f|cakes - f|carrots - f|lemons - f|"
            "books - t|cups - t|bottles - t|chairs - t|flowers - t|keys - t|bags - t|hats - t|letters - t|"
            "shoes - t|pencils - t|plates - t|glasses - t|candles - t|stones - t"
        ),
        adjectives=_adjectives("small|big|old|new|beautiful|red|green|yellow|white|black|blue", before=True),
        numbers=tuple(_items("two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|fifty")),
        places=tuple(
            _items(
                "at the market|in the kitchen|in the garden|at the station|at school|in the park|by the river|"
                "in town|at the shop|at home|in the office|on the beach|in the village"
            )
        ),
        times=tuple(
            _items(
                "today|this morning|this afternoon|this evening|every day|every week|on Sundays|on Saturdays|tonight"
            )
        ),
        template=_english,
    ),
    "de": Lexicon(
        name="German",
        subjects=_subjects(
            "der Lehrer|die Bäckerin|meine Schwester|mein Bruder|unser Nachbar|die alte Frau|der junge Mann|"
            "das Kind|der Koch|die Ärztin|Anna|Peter|Lena|Jonas|er|sie",
            "die Kinder|meine Eltern|unsere Nachbarn|die Studenten|die beiden Brüder",
        ),
        verbs=_verbs(
            "kauft/kaufen/ft|verkauft/verkaufen/ft|sieht/sehen/ft|sucht/suchen/ft|findet/finden/ft|"
            "trägt/tragen/ft|zählt/zählen/ft|malt/malen/t|wäscht/waschen/ft|isst/essen/f|kocht/kochen/f|"
            "bringt/bringen/ft"
        ),
        nouns=_nouns(
            "Äpfel - f|Birnen - f|Orangen - f|Eier - f|Tomaten - f|Kuchen - f|Karotten - f|Zitronen - f|"
            "Bücher - t|Tassen - t|Flaschen - t|Stühle - t|Blumen - t|Schlüssel - t|Taschen - t|Hüte - t|"
            "Briefe - t|Schuhe - t|Stifte - t|Teller - t|Gläser - t|Kerzen - t|Steine - t"
        ),
        # Strong declension, nominative/accusative plural without an article: -e.
        adjectives=_adjectives("kleine|große|alte|neue|schöne|rote|grüne|gelbe|weiße|schwarze|blaue", before=True),
        numbers=tuple(
            _items("zwei|drei|vier|fünf|sechs|sieben|acht|neun|zehn|elf|zwölf|fünfzehn|zwanzig|dreißig|fünfzig")
        ),
        places=tuple(
            _items(
                "auf dem Markt|in der Küche|im Garten|am Bahnhof|in der Schule|im Park|am Fluss|in der Stadt|"
                "im Laden|zu Hause|im Büro|am Strand|im Dorf"
            )
        ),
        times=tuple(
            _items("heute|heute Morgen|heute Nachmittag|heute Abend|jeden Tag|jede Woche|sonntags|samstags|jetzt")
        ),
        template=_german,
    ),
    "fr": Lexicon(
        name="French",
        subjects=_subjects(
            "le professeur|la boulangère|ma sœur|mon frère|notre voisin|la vieille dame|le jeune homme|"
            "l'enfant|le cuisinier|le médecin|Marie|Pierre|Julie|Thomas|il|elle",
            "les enfants|mes parents|nos voisins|les étudiants|ils|elles|les deux frères",
        ),
        verbs=_verbs(
            "achète/achètent/ft|vend/vendent/ft|voit/voient/ft|cherche/cherchent/ft|trouve/trouvent/ft|"
            "porte/portent/ft|compte/comptent/ft|peint/peignent/t|lave/lavent/ft|mange/mangent/f|"
            "prépare/préparent/f|apporte/apportent/ft"
        ),
        nouns=_nouns(
            "pommes f f|poires f f|oranges f f|œufs m f|tomates f f|gâteaux m f|carottes f f|citrons m f|"
            "livres m t|tasses f t|bouteilles f t|chaises f t|fleurs f t|clés f t|sacs m t|chapeaux m t|"
            "lettres f t|chaussures f t|crayons m t|assiettes f t|verres m t|bougies f t|pierres f t"
        ),
        adjectives=_adjectives(
            "<petits/petites|<grands/grandes|<vieux/vieilles|<nouveaux/nouvelles|<beaux/belles|rouges|"
            "verts/vertes|jaunes|blancs/blanches|noirs/noires|bleus/bleues"
        ),
        numbers=tuple(_items("deux|trois|quatre|cinq|six|sept|huit|neuf|dix|onze|douze|quinze|vingt|trente|cinquante")),
        places=tuple(
            _items(
                "au marché|dans la cuisine|dans le jardin|à la gare|à l'école|dans le parc|près de la rivière|"
                "en ville|au magasin|à la maison|au bureau|sur la plage|au village"
            )
        ),
        times=tuple(
            _items("aujourd'hui|ce matin|cet après-midi|ce soir|chaque jour|chaque semaine|le dimanche|le samedi")
        ),
        template=_french,
    ),
    "es": Lexicon(
        name="Spanish",
        subjects=_subjects(
            "el profesor|la panadera|mi hermana|mi hermano|nuestro vecino|la señora mayor|el joven|el niño|"
            "el cocinero|la médica|Ana|Pedro|Lucía|Carlos|él|ella",
            "los niños|mis padres|nuestros vecinos|los estudiantes|ellos|ellas|los dos hermanos",
        ),
        verbs=_verbs(
            "compra/compran/ft|vende/venden/ft|ve/ven/ft|busca/buscan/ft|encuentra/encuentran/ft|"
            "lleva/llevan/ft|cuenta/cuentan/ft|pinta/pintan/t|lava/lavan/ft|come/comen/f|prepara/preparan/f|"
            "trae/traen/ft"
        ),
        nouns=_nouns(
            "manzanas f f|peras f f|naranjas f f|huevos m f|tomates m f|pasteles m f|zanahorias f f|limones m f|"
            "libros m t|tazas f t|botellas f t|sillas f t|flores f t|llaves f t|bolsas f t|sombreros m t|"
            "cartas f t|zapatos m t|lápices m t|platos m t|vasos m t|velas f t|piedras f t"
        ),
        adjectives=_adjectives(
            "pequeños/pequeñas|grandes|viejos/viejas|nuevos/nuevas|bonitos/bonitas|rojos/rojas|verdes|"
            "amarillos/amarillas|blancos/blancas|negros/negras|azules"
        ),
        numbers=tuple(
            _items("dos|tres|cuatro|cinco|seis|siete|ocho|nueve|diez|once|doce|quince|veinte|treinta|cincuenta")
        ),
        places=tuple(
            _items(
                "en el mercado|en la cocina|en el jardín|en la estación|en la escuela|en el parque|cerca del río|"
                "en la ciudad|en la tienda|en casa|en la oficina|en la playa|en el pueblo"
            )
        ),
        times=tuple(
            _items("hoy|esta mañana|esta tarde|esta noche|cada día|cada semana|los domingos|los sábados|ahora")
        ),
        template=_romance("¿"),
    ),
    "it": Lexicon(
        name="Italian",
        subjects=_subjects(
            "il professore|la fornaia|mia sorella|mio fratello|il nostro vicino|la signora anziana|il ragazzo|"
            "il bambino|il cuoco|la dottoressa|Giulia|Marco|Sara|Luca|lui|lei",
            "i bambini|i miei genitori|i nostri vicini|gli studenti|loro|i due fratelli",
        ),
        verbs=_verbs(
            "compra/comprano/ft|vende/vendono/ft|vede/vedono/ft|cerca/cercano/ft|trova/trovano/ft|"
            "porta/portano/ft|conta/contano/ft|dipinge/dipingono/t|lava/lavano/ft|mangia/mangiano/f|"
            "prepara/preparano/f|prende/prendono/ft"
        ),
        nouns=_nouns(
            "mele f f|pere f f|arance f f|uova f f|pomodori m f|biscotti m f|carote f f|limoni m f|"
            "libri m t|tazze f t|bottiglie f t|sedie f t|fiori m t|chiavi f t|borse f t|cappelli m t|"
            "lettere f t|scarpe f t|matite f t|piatti m t|bicchieri m t|candele f t|pietre f t"
        ),
        adjectives=_adjectives(
            "piccoli/piccole|grandi|vecchi/vecchie|nuovi/nuove|belli/belle|rossi/rosse|verdi|gialli/gialle|"
            "bianchi/bianche|neri/nere|blu"
        ),
        numbers=tuple(
            _items("due|tre|quattro|cinque|sei|sette|otto|nove|dieci|undici|dodici|quindici|venti|trenta|cinquanta")
        ),
        places=tuple(
            _items(
                "al mercato|in cucina|in giardino|alla stazione|a scuola|al parco|vicino al fiume|in città|"
                "al negozio|a casa|in ufficio|in spiaggia|in paese"
            )
        ),
        times=tuple(
            _items("oggi|stamattina|oggi pomeriggio|stasera|ogni giorno|ogni settimana|la domenica|il sabato|adesso")
        ),
        template=_romance(""),
    ),
}

#: Languages the built-in generator writes, in a fixed order.
LANGUAGES = tuple(LEXICONS)

_KEEP_IN_WORDS = {"'", "-"}


def normalize_transcript(text: str) -> str:
    """The transcript of a spoken text: NFC, lowercase, punctuation and symbols removed, single spaces.

    Apostrophes and hyphens inside a word stay ("qu'il", "est-ce"); typographic apostrophes become ``'``.
    """
    text = unicodedata.normalize("NFC", text).replace("\u2019", "'").lower()
    chars = []
    for i, c in enumerate(text):
        if unicodedata.category(c)[0] in "PSZC":
            inner = 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
            c = c if c in _KEEP_IN_WORDS and inner else " "
        chars.append(c)
    return " ".join("".join(chars).split())


def clean_text(text: str) -> str:
    """A line of user text made safe to speak: NFC, control characters and ``[`` ``]`` removed, single spaces.

    espeak-ng reads ``[[...]]`` as phoneme input, so brackets never reach it.
    """
    text = unicodedata.normalize("NFC", text).replace("[", " ").replace("]", " ")
    text = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
    return " ".join(text.split())


def _capitalize(text: str) -> str:
    """Upper-case the first letter (after an opening "¿"), as sentences begin."""
    match = re.search(r"[^\W\d_]", text)
    if not match:
        return text
    i = match.start()
    return text[:i] + text[i].upper() + text[i + 1 :]


def _pick(rng: np.random.Generator, options: tuple) -> object:
    return options[int(rng.integers(len(options)))]


def _object(lex: Lexicon, rng: np.random.Generator, kinds: tuple[str, ...]) -> str:
    noun, gender, _ = _pick(rng, tuple(n for n in lex.nouns if n[2] in kinds))
    number = _pick(rng, lex.numbers)
    if rng.random() >= P_ADJECTIVE:
        return f"{number} {noun}"
    masc, fem, before = _pick(rng, lex.adjectives)
    adj = fem if gender == "f" else masc
    return f"{number} {adj} {noun}" if before else f"{number} {noun} {adj}"


def _draw(lex: Lexicon, rng: np.random.Generator) -> Parts:
    subject, plural = _pick(rng, lex.subjects)
    sg, pl, kinds = _pick(rng, lex.verbs)
    obj = _object(lex, rng, kinds)
    place = _pick(rng, lex.places) if rng.random() < P_PLACE else ""
    time = _pick(rng, lex.times) if rng.random() < P_TIME else ""
    question = bool(rng.random() < P_QUESTION)
    time_first = bool(rng.random() < P_TIME_FIRST)
    return Parts(
        subject=subject,
        plural=plural,
        verb=pl if plural else sg,
        verb_plural=pl,
        obj=obj,
        place=place,
        time=time,
        question=question,
        time_first=time_first,
    )


def generate_sentence(language: str, rng: np.random.Generator, *, max_chars: int = 200) -> Sentence:
    """Draw one sentence of ``language`` (a key of :data:`LEXICONS`) no longer than ``max_chars``.

    Raises:
        ValueError: unknown language, or no sentence of at most ``max_chars`` characters in :data:`MAX_TRIES`
            draws.
    """
    if language not in LEXICONS:
        raise ValueError(f"no built-in sentences for language {language!r}; valid: {', '.join(LANGUAGES)}")
    lex = LEXICONS[language]
    for _ in range(MAX_TRIES):
        parts = _draw(lex, rng)
        text = _capitalize(lex.template(parts))
        if len(text) <= max_chars:
            return Sentence(text=text, transcript=normalize_transcript(text), kind=_kind(parts))
    raise ValueError(f"no {lex.name} sentence of at most {max_chars} characters in {MAX_TRIES} draws")


def _kind(parts: Parts) -> str:
    return "question" if parts.question else "statement"


def sentence(seed: int, index: int, language: str, *, max_chars: int = 200) -> Sentence:
    """Sentence ``index`` of ``seed`` in ``language``: depends only on these (and ``max_chars``)."""
    return generate_sentence(language, np.random.default_rng([seed, index]), max_chars=max_chars)
