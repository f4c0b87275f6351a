"""Licence strings and URLs -> SPDX-like ids, and the allow-list policy that decides what a dataset may keep.

Real metadata names licences in many ways: Creative Commons deed URLs (Freesound's ``license`` field, FMA's
``license_url``), titles ("Attribution-NonCommercial-ShareAlike 3.0 International" in FMA's ``tracks.csv``),
short names ("Attribution", "Creative Commons 0" on Freesound) and SPDX ids ("CC-BY-4.0").
:func:`normalize_license` maps all of them to one id, e.g. ``CC0-1.0``, ``CC-BY-4.0``, ``CC-BY-NC-SA-3.0-US``
(a ported licence keeps its jurisdiction: it is a different legal text) or
``LicenseRef-CC-Sampling-Plus-1.0``. Anything it cannot read is ``None``, so an unknown licence is never
mistaken for an allowed one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Licences a dataset build keeps unless told otherwise (DESIGN.md, "Data formats").
DEFAULT_ALLOW = frozenset({"CC0-1.0", "CC-BY-3.0", "CC-BY-4.0", "LicenseRef-CC-Sampling-Plus-1.0"})

#: Ids that carry no attribution duty; every other id needs one.
NO_ATTRIBUTION = frozenset({"CC0-1.0", "CC-PDM-1.0"})

#: Version assumed when a name has none ("Attribution" on Freesound is CC BY 4.0 since 2023).
DEFAULT_BY_VERSION = "4.0"

# Non-"licenses/" CC tools and the sampling family: URL path part -> id stem.
_SPECIAL = {
    "zero": "CC0",
    "mark": "CC-PDM",
    "sampling+": "LicenseRef-CC-Sampling-Plus",
    "nc-sampling+": "LicenseRef-CC-NC-Sampling-Plus",
    "sampling": "LicenseRef-CC-Sampling",
}
_STEM_TO_PATH = {v: ("publicdomain/" if k in ("zero", "mark") else "licenses/") + k for k, v in _SPECIAL.items()}
_BY_PARTS = ("nc", "nd", "sa")
_URL_RE = re.compile(r"^(?:https?://)?(?:www\.)?creativecommons\.org/(licenses|publicdomain)/([^?#]*)", re.I)
_ID_RE = re.compile(
    r"^(?:CC0|CC-PDM|LicenseRef-CC-(?:NC-)?Sampling(?:-Plus)?|CC-BY(?:-NC)?(?:-ND)?(?:-SA)?)-(\d\.\d)(?:-([A-Z]{2,3}))?$"
)
_VERSION_RE = re.compile(r"(?<![\d.])(\d)\.(\d)(?![\d.])(?:[\s_/-]+(?!by\b|nc\b|nd\b|sa\b)([a-z]{2}|igo)\b)?")
# Phrase -> token, applied in order to a lower-cased title before it is split into words.
_PHRASES = (
    (r"creative[\s_-]*commons", " cc "),
    (r"\bcc[\s_-]*(?:0|zero)\b|\bcc0\b|public[\s_-]*domain[\s_-]*dedication", " zero "),
    (r"public[\s_-]*domain[\s_-]*mark", " mark "),
    (r"non[\s_-]*commercial|\bnc\b", " nc "),
    (r"no[\s_-]*deriv\w*(?:[\s_-]*works)?|\bnd\b", " nd "),
    (r"share[\s_-]*alike|\bsa\b", " sa "),
    (r"sampling[\s_-]*(?:\+|plus\b)", " samplingplus "),
    (r"\battribution\b", " by "),
)
# Words that may surround a licence name without changing its meaning.
_FILLER = frozenset(
    {"cc", "license", "licence", "licensed", "under", "the", "a", "version", "v", "international", "unported"}
    | {
        "generic",
        "universal",
        "aka",
        "music",
        "sharing",
        "works",
        "deed",
        "legal",
        "code",
        "legalcode",
        "and",
    }
    | {"1", "0", "licenseref"}
)
_COUNTRIES = {
    "united states": "US",
    "usa": "US",
    "netherlands": "NL",
    "germany": "DE",
    "france": "FR",
    "spain": "ES",
    "italy": "IT",
    "canada": "CA",
    "australia": "AU",
    "brazil": "BR",
    "england and wales": "UK",
    "scotland": "SCO",
    "austria": "AT",
    "switzerland": "CH",
    "japan": "JP",
    "belgium": "BE",
    "poland": "PL",
    "portugal": "PT",
    "argentina": "AR",
    "mexico": "MX",
    "chile": "CL",
}


@dataclass(frozen=True)
class _Parsed:
    """A recognised licence: the id and whether its version was spelled out (else a default was assumed)."""

    id: str
    explicit_version: bool


def _compose(stem: str, version: str, port: str | None) -> str:
    return f"{stem}-{version}" + (f"-{port.upper()}" if port else "")


def _parse_url(text: str) -> _Parsed | None:
    match = _URL_RE.match(text.strip())
    if not match:
        return None
    parts = [p for p in match.group(2).lower().split("/") if p]
    if len(parts) < 2 or not re.fullmatch(r"\d\.\d", parts[1]):
        return None
    kind, version = parts[0], parts[1]
    port = parts[2] if len(parts) > 2 and re.fullmatch(r"[a-z]{2,3}", parts[2]) else None
    if kind in _SPECIAL:
        return _Parsed(_compose(_SPECIAL[kind], version, port), True)
    tokens = kind.split("-")
    if tokens[0] != "by" or any(t not in _BY_PARTS for t in tokens[1:]):
        return None
    return _Parsed(_compose(_by_stem(set(tokens[1:])), version, port), True)


def _by_stem(flags: set[str]) -> str:
    return "CC-BY" + "".join(f"-{p.upper()}" for p in _BY_PARTS if p in flags)


def _parse_title(text: str) -> _Parsed | None:
    """Read a licence title or SPDX-like id ("CC BY-NC 4.0", "Attribution-ShareAlike 3.0 United States")."""
    low = " " + text.lower().strip() + " "
    port = None
    for country, code in _COUNTRIES.items():
        if f" {country} " in low.replace("(", " ").replace(")", " "):
            port, low = code, low.replace(country, " ")
    match = _VERSION_RE.search(low)
    version = f"{match.group(1)}.{match.group(2)}" if match else None
    if match:
        port = port or match.group(3)
        low = low[: match.start()] + " " + low[match.end() :]
    for pattern, token in _PHRASES:
        low = re.sub(pattern, token, low)
    words = set(re.findall(r"[a-z0-9+]+", low))
    kinds = words & {"zero", "mark", "samplingplus", "sampling", "by"}
    flags = words & set(_BY_PARTS)
    if len(kinds) != 1 or words - kinds - flags - _FILLER:
        return None  # unknown words or two licence kinds: refuse rather than guess
    kind = kinds.pop()
    if kind == "by":
        stem, default = _by_stem(flags), DEFAULT_BY_VERSION
    elif kind == "samplingplus":
        stem, default = _SPECIAL["nc-sampling+" if "nc" in flags else "sampling+"], "1.0"
    else:
        if flags:
            return None
        stem, default = {"zero": "CC0", "mark": "CC-PDM", "sampling": _SPECIAL["sampling"]}[kind], "1.0"
    return _Parsed(_compose(stem, version or default, port), version is not None)


def _parse(text: str) -> _Parsed | None:
    text = text.strip()
    if _ID_RE.match(text):
        return _Parsed(text, True)
    if re.fullmatch(r"LicenseRef-[A-Za-z0-9.\-]+", text) and not text.lower().startswith("licenseref-cc-"):
        return _Parsed(text, True)  # a user's own licence id passes through for the allow-list to decide
    if "creativecommons.org" in text.lower():
        return _parse_url(text)
    return _parse_title(text)


def _family(spdx_id: str) -> str:
    return re.sub(r"-\d\.\d(-[A-Z]+)?$", "", spdx_id)


def normalize_license(text: str | None, *, url: str | None = None) -> str | None:
    """Map a licence title, SPDX-like id or deed URL (or a title plus a URL) to an SPDX-like id.

    When both are given and readable, the URL decides the version ("Attribution" + ``.../by/3.0/`` ->
    ``CC-BY-3.0``); if they name different licences the answer is ``None`` (see :meth:`LicensePolicy.decide`
    for the reason).

    Returns:
        the id, or ``None`` when nothing readable was given or the two disagree.
    """
    return _resolve(text, url)[0]


def _resolve(text: str | None, url: str | None) -> tuple[str | None, str | None, str]:
    """(id, None, "ok") or (None, why-not, kind of reason) for a licence text and URL."""
    text, url = (text or "").strip(), (url or "").strip()
    if not text and not url:
        return None, "no licence", "no licence"
    from_text = _parse(text) if text else None
    from_url = _parse(url) if url else None
    if from_text is None and from_url is None:
        return None, f"unknown licence {text or url!r}", "unknown licence"
    if from_text is None or from_url is None or from_url.id == from_text.id:
        # A readable URL rescues an unreadable title (and the other way round).
        return (from_text or from_url).id, None, "ok"
    less_specific = not from_text.explicit_version and _family(from_text.id) == _family(from_url.id)
    if less_specific or from_url.id.startswith(from_text.id + "-"):  # a bare name or an unported id + its URL
        return from_url.id, None, "ok"
    reason = f"conflicting licence: {text!r} is {from_text.id} but its URL is {from_url.id}"
    return None, reason, "conflicting licence"


def requires_attribution(spdx_id: str) -> bool:
    """Whether items under ``spdx_id`` must be credited (every licence but CC0 and the public-domain mark)."""
    return spdx_id not in NO_ATTRIBUTION


def license_url(spdx_id: str) -> str:
    """Canonical Creative Commons deed URL of an id (``""`` for a user's own ``LicenseRef-`` id).

    Raises:
        ValueError: the id is not one :func:`normalize_license` produces.
    """
    match = _ID_RE.match(spdx_id)
    if not match:
        if spdx_id.startswith("LicenseRef-"):
            return ""
        raise ValueError(f"not a licence id: {spdx_id!r}")
    stem, version, port = _family(spdx_id), match.group(1), match.group(2)
    path = _STEM_TO_PATH.get(stem) or "licenses/" + stem[3:].lower()  # CC-BY-NC -> licenses/by-nc
    return f"https://creativecommons.org/{path}/{version}/" + (f"{port.lower()}/" if port else "")


@dataclass(frozen=True)
class LicenseDecision:
    """Outcome of a licence check: ``id`` when readable, ``reason`` when the item must be left out."""

    id: str | None
    reason: str | None
    kind: str  # "ok", "no licence", "unknown licence", "conflicting licence" or "licence not allowed"

    @property
    def allowed(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, kw_only=True)
class LicensePolicy:
    """Which licences a dataset keeps.

    Args:
        allow: SPDX-like ids to keep (exact ids as :func:`normalize_license` returns them).
    """

    allow: frozenset[str] = field(default=DEFAULT_ALLOW)

    def __post_init__(self) -> None:
        allow = frozenset([self.allow] if isinstance(self.allow, str) else self.allow)
        for entry in allow:
            canonical = normalize_license(entry)
            if canonical != entry:
                hint = f"; did you mean {canonical!r}?" if canonical else ""
                raise ValueError(f"allow-list entry {entry!r} is not a licence id{hint}")
        object.__setattr__(self, "allow", allow)

    def decide(self, license: str | None, *, url: str | None = None) -> LicenseDecision:
        """Normalise ``license`` (and its ``url``) and decide whether the item may be kept."""
        spdx_id, reason, kind = _resolve(license, url)
        if reason is not None:
            return LicenseDecision(None, reason, kind)
        if spdx_id not in self.allow:
            return LicenseDecision(spdx_id, f"licence {spdx_id} not in allow-list", "licence not allowed")
        return LicenseDecision(spdx_id, None, "ok")

    def check(self, license: str | None, *, url: str | None = None) -> tuple[str | None, str | None]:
        """``(spdx_id, None)`` for an allowed licence, else ``(spdx_id_or_None, reason)``.

        Reasons read "no licence", "unknown licence 'foo'", "licence CC-BY-NC-4.0 not in allow-list" or
        "conflicting licence: ...".
        """
        decision = self.decide(license, url=url)
        return decision.id, decision.reason
