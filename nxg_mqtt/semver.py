"""Semantic versions (semver.org 2.0.0): how firmware versions are parsed and compared.

    Version.parse("1.2.0-rc.1") < Version.parse("1.2.0") < Version.parse("1.10.0")

Precedence is semver's: major, minor and patch numerically; a pre-release is lower than its
release; pre-release identifiers compare numerically when both are numbers, else as text, and a
number is lower than text; build metadata (`+…`) is ignored, so `1.0.0+a == 1.0.0+b`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering

from nxg_mqtt.errors import ValidationError

_NUMBER = r"0|[1-9]\d*"
_PRE_ID = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
_RE = re.compile(
    rf"^({_NUMBER})\.({_NUMBER})\.({_NUMBER})"
    rf"(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
MAX_LENGTH = 64


@total_ordering
@dataclass(frozen=True, slots=True, eq=False)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()
    build: str = field(default="")
    text: str = ""

    @classmethod
    def parse(cls, text: object, what: str = "version") -> Version:
        """The version `text` names; ValidationError (`INVALID_VERSION`) naming `what` otherwise."""
        if not isinstance(text, str) or len(text) > MAX_LENGTH or (match := _RE.match(text)) is None:
            raise ValidationError(
                f'"{what}" must be a semantic version such as 1.4.2 or 2.0.0-rc.1 (got {text!r})',
                code="INVALID_VERSION",
            )
        major, minor, patch, pre, build = match.groups()
        return cls(int(major), int(minor), int(patch), tuple(pre.split(".")) if pre else (), build or "", text)

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        ids = tuple((0, int(i), "") if i.isdigit() else (1, 0, i) for i in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return self.text
