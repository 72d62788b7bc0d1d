"""Semantic version precedence (semver.org 2.0.0 §11), as firmware versions compare."""

from __future__ import annotations

import itertools

import pytest

from nxg_mqtt.errors import ValidationError
from nxg_mqtt.semver import Version

# semver.org's own ordered example, then numeric (not text) ordering
ORDERED = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.2.0",
    "1.10.0",
    "2.0.0",
]


def test_precedence_follows_semver() -> None:
    parsed = [Version.parse(v) for v in ORDERED]
    assert sorted(reversed(parsed)) == parsed
    assert all(a < b for a, b in itertools.pairwise(parsed))


def test_build_metadata_is_ignored() -> None:
    assert Version.parse("1.0.0+a") == Version.parse("1.0.0+b") == Version.parse("1.0.0")
    assert len({Version.parse("1.0.0+a"), Version.parse("1.0.0")}) == 1
    assert str(Version.parse("1.0.0+a")) == "1.0.0+a"


@pytest.mark.parametrize(
    "bad", ["1.2", "v1.2.0", "01.2.0", "1.2.0-", "1.2.0-01", "1.2.0+", "", " 1.0.0", 1, None, "1" * 70 + ".0.0"]
)
def test_invalid_versions_are_refused(bad: object) -> None:
    with pytest.raises(ValidationError) as refused:
        Version.parse(bad, "current_version")
    assert refused.value.code == "INVALID_VERSION" and '"current_version"' in refused.value.message
