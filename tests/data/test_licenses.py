"""Licence normalisation table, allow-list policy, attribution duty and deed URLs."""

from __future__ import annotations

import pytest

from wavefoundry.data.licenses import (
    DEFAULT_ALLOW,
    LicensePolicy,
    license_url,
    normalize_license,
    requires_attribution,
)

# (input as found in real metadata, SPDX-like id)
TABLE = [
    # Creative Commons deed URLs (Freesound "license", FMA "license_url")
    ("http://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
    ("https://creativecommons.org/licenses/by/4.0/", "CC-BY-4.0"),
    ("http://creativecommons.org/licenses/by/3.0/", "CC-BY-3.0"),
    ("http://creativecommons.org/licenses/by/3.0/legalcode", "CC-BY-3.0"),
    ("https://creativecommons.org/licenses/by/4.0/deed.en", "CC-BY-4.0"),
    ("http://creativecommons.org/licenses/sampling+/1.0/", "LicenseRef-CC-Sampling-Plus-1.0"),
    ("http://creativecommons.org/licenses/nc-sampling+/1.0/", "LicenseRef-CC-NC-Sampling-Plus-1.0"),
    ("http://creativecommons.org/licenses/by-nc/3.0/", "CC-BY-NC-3.0"),
    ("http://creativecommons.org/licenses/by-nc-nd/4.0/", "CC-BY-NC-ND-4.0"),
    ("http://creativecommons.org/licenses/by-sa/4.0/", "CC-BY-SA-4.0"),
    ("http://creativecommons.org/licenses/by-nd/3.0/", "CC-BY-ND-3.0"),
    ("http://creativecommons.org/licenses/by-nc-sa/3.0/us/", "CC-BY-NC-SA-3.0-US"),
    ("https://creativecommons.org/publicdomain/mark/1.0/", "CC-PDM-1.0"),
    # Freesound licence names
    ("Attribution", "CC-BY-4.0"),
    ("Attribution Noncommercial", "CC-BY-NC-4.0"),
    ("Creative Commons 0", "CC0-1.0"),
    ("Sampling+", "LicenseRef-CC-Sampling-Plus-1.0"),
    # FMA tracks.csv licence titles
    ("Attribution 4.0 International", "CC-BY-4.0"),
    ("Creative Commons Attribution 3.0 Unported License", "CC-BY-3.0"),
    ("Attribution-NonCommercial-ShareAlike 3.0 International", "CC-BY-NC-SA-3.0"),
    ("Attribution-Noncommercial-Share Alike 3.0 United States", "CC-BY-NC-SA-3.0-US"),
    ("Attribution-NonCommercial-NoDerivatives (aka Music Sharing) 3.0 International", "CC-BY-NC-ND-3.0"),
    ("Attribution-Noncommercial-No Derivative Works 3.0 United States", "CC-BY-NC-ND-3.0-US"),
    ("Creative Commons Attribution-NonCommercial-NoDerivatives 4.0", "CC-BY-NC-ND-4.0"),
    ("Attribution-ShareAlike 4.0 International", "CC-BY-SA-4.0"),
    ("CC0 1.0 Universal", "CC0-1.0"),
    ("Public Domain Mark 1.0", "CC-PDM-1.0"),
    # SPDX ids and short forms
    ("CC0-1.0", "CC0-1.0"),
    ("cc0", "CC0-1.0"),
    ("CC-BY-4.0", "CC-BY-4.0"),
    ("cc by-sa 4.0", "CC-BY-SA-4.0"),
    ("CC BY 3.0", "CC-BY-3.0"),
    ("CC-BY-3.0-US", "CC-BY-3.0-US"),
    ("LicenseRef-CC-Sampling-Plus-1.0", "LicenseRef-CC-Sampling-Plus-1.0"),
    ("LicenseRef-MyStudio", "LicenseRef-MyStudio"),
    # unreadable: never guessed
    ("FMA-Limited: Download Only", None),
    ("Free Art License", None),
    ("Sound Recording Common Law Protection", None),
    ("public domain", None),
    ("foo", None),
    ("CC BY 4.0 by the author", None),
    ("https://opensource.org/licenses/MIT", None),
    ("https://creativecommons.org/licenses/by-xx/4.0/", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), TABLE)
def test_normalization_table(text: str, expected: str | None) -> None:
    assert normalize_license(text) == expected


def test_name_takes_version_from_url() -> None:
    assert normalize_license("Attribution", url="http://creativecommons.org/licenses/by/3.0/") == "CC-BY-3.0"
    assert normalize_license(None, url="http://creativecommons.org/licenses/by/3.0/") == "CC-BY-3.0"
    # the URL is more specific: its jurisdiction wins over an unported title
    assert normalize_license("CC BY 3.0", url="http://creativecommons.org/licenses/by/3.0/us/") == "CC-BY-3.0-US"
    # an unreadable title is rescued by a readable URL
    assert normalize_license("my licence", url="https://creativecommons.org/publicdomain/zero/1.0/") == "CC0-1.0"


def test_conflicting_title_and_url_is_rejected() -> None:
    spdx, reason = LicensePolicy().check("CC-BY-4.0", url="http://creativecommons.org/licenses/by-nc/4.0/")
    assert spdx is None
    assert reason is not None and reason.startswith("conflicting licence")
    assert "CC-BY-NC-4.0" in reason
    # an explicit version that disagrees with the URL is a conflict too
    assert normalize_license("CC BY 4.0", url="http://creativecommons.org/licenses/by/3.0/") is None


def test_policy_reasons() -> None:
    policy = LicensePolicy()
    assert policy.check("http://creativecommons.org/licenses/by/4.0/") == ("CC-BY-4.0", None)
    assert policy.check("Attribution-NonCommercial 4.0") == (
        "CC-BY-NC-4.0",
        "licence CC-BY-NC-4.0 not in allow-list",
    )
    assert policy.check("foo") == (None, "unknown licence 'foo'")
    assert policy.check("") == (None, "no licence")
    assert policy.check(None) == (None, "no licence")
    assert policy.decide("foo").kind == "unknown licence"
    assert policy.decide("CC-BY-SA-4.0").kind == "licence not allowed"
    assert policy.decide("CC0").allowed


def test_default_allow_list_is_exactly_the_design_list() -> None:
    assert LicensePolicy().allow == {"CC0-1.0", "CC-BY-3.0", "CC-BY-4.0", "LicenseRef-CC-Sampling-Plus-1.0"}
    kept = {spdx for text, spdx in TABLE if spdx and LicensePolicy().check(text)[1] is None}
    assert kept == DEFAULT_ALLOW  # every other id of the table is rejected, ported and NC/ND/SA variants included


def test_custom_allow_list() -> None:
    policy = LicensePolicy(allow=["CC-BY-SA-4.0", "LicenseRef-MyStudio"])
    assert isinstance(policy.allow, frozenset)
    assert policy.check("cc by-sa 4.0") == ("CC-BY-SA-4.0", None)
    assert policy.check("LicenseRef-MyStudio") == ("LicenseRef-MyStudio", None)
    assert policy.check("CC0")[1] == "licence CC0-1.0 not in allow-list"


@pytest.mark.parametrize("entry", ["CC-BY", "cc0", "Attribution", "GPL"])
def test_allow_list_entries_must_be_ids(entry: str) -> None:
    with pytest.raises(ValueError, match="not a licence id"):
        LicensePolicy(allow=[entry])


def test_attribution_duty() -> None:
    assert not requires_attribution("CC0-1.0")
    assert not requires_attribution("CC-PDM-1.0")
    for spdx in ("CC-BY-3.0", "CC-BY-4.0", "LicenseRef-CC-Sampling-Plus-1.0", "CC-BY-NC-SA-3.0-US"):
        assert requires_attribution(spdx)


def test_deed_urls_round_trip() -> None:
    assert license_url("CC0-1.0") == "https://creativecommons.org/publicdomain/zero/1.0/"
    assert license_url("CC-BY-4.0") == "https://creativecommons.org/licenses/by/4.0/"
    assert license_url("LicenseRef-CC-Sampling-Plus-1.0") == "https://creativecommons.org/licenses/sampling+/1.0/"
    assert license_url("CC-BY-NC-SA-3.0-US") == "https://creativecommons.org/licenses/by-nc-sa/3.0/us/"
    for spdx in {s for _, s in TABLE if s and not s.startswith("LicenseRef-My")}:
        assert normalize_license(license_url(spdx)) == spdx
    assert license_url("LicenseRef-MyStudio") == ""
    with pytest.raises(ValueError, match="not a licence id"):
        license_url("CC-BY")
