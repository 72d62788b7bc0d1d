"""`CompiledSchema`: a manifest's `paramSchema` / `outputSchema` as the command path checks it.

jsonschema walks a schema keyword by keyword, building a validator object per level it
descends; for the usual capability schema (an object of a few typed, bounded properties) that is
about 35-55 µs of a command's ~1 ms. Most commands are valid, and for a schema built only of the
keywords below a plain Python predicate gives the same verdict in a few µs: when it says valid,
the command is valid; when it says invalid (or the schema uses anything else), jsonschema itself
runs, so every error a requester sees, and its wording, is still jsonschema's.

The predicate covers, with jsonschema's own semantics for drafts 6, 7, 2019-09 and 2020-12
(draft 4's boolean `exclusiveMinimum`, and any unknown draft, always go to jsonschema):
`type`, `properties`, `required`, `additionalProperties` (boolean or a schema), `minimum`,
`maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength`, `enum` of strings,
boolean schemas, and the annotations (`title`, `description`, `default`, `examples`,
`$comment`, `$schema` at the root). `tests/services/test_manifest_property.py` holds the verdicts
to jsonschema's on generated schemas and params.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema

Predicate = Callable[[Any], bool]

# drafts whose `integer` accepts 1.0 and whose exclusive bounds are numbers
_DRAFTS = (
    jsonschema.Draft6Validator,
    jsonschema.Draft7Validator,
    jsonschema.Draft201909Validator,
    jsonschema.Draft202012Validator,
)
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment"})


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int)


_TYPES: dict[str, Predicate] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": _is_integer,
    "number": _is_number,
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


class _Unsupported(Exception):
    """The schema uses something the predicate does not cover: jsonschema alone checks it."""


def _bound(schema: dict[str, Any], key: str) -> float | None:
    value = schema.get(key)
    if value is None:
        return None
    if not _is_number(value):
        raise _Unsupported(key)
    return value  # type: ignore[no-any-return]


def _length(schema: dict[str, Any], key: str) -> int | None:
    value = schema.get(key)
    if value is None:
        return None
    if not _is_integer(value) or value < 0:
        raise _Unsupported(key)
    return int(value)


def _compile(schema: Any) -> Predicate:
    if schema is True:
        return lambda v: True
    if schema is False:
        return lambda v: False
    if not isinstance(schema, dict):
        raise _Unsupported("not a schema")
    checks: list[Predicate] = []
    for key in schema:
        if key not in _KEYWORDS and key not in _ANNOTATIONS:
            raise _Unsupported(key)
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not names or not all(isinstance(n, str) and n in _TYPES for n in names):
            raise _Unsupported("type")
        tests = [_TYPES[n] for n in names]
        if len(tests) == 1:
            checks.append(tests[0])
        else:

            def any_type(v: Any) -> bool:
                return any(t(v) for t in tests)

            checks.append(any_type)
    if "enum" in schema:
        allowed = schema["enum"]
        if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
            raise _Unsupported("enum")
        members = frozenset(allowed)
        checks.append(lambda v: isinstance(v, str) and v in members)
    low, high = _bound(schema, "minimum"), _bound(schema, "maximum")
    above, below = _bound(schema, "exclusiveMinimum"), _bound(schema, "exclusiveMaximum")
    if (low, high, above, below) != (None, None, None, None):

        def bounded(v: Any) -> bool:
            if not _is_number(v):
                return True
            return (
                (low is None or v >= low)
                and (high is None or v <= high)
                and (above is None or v > above)
                and (below is None or v < below)
            )

        checks.append(bounded)
    shortest, longest = _length(schema, "minLength"), _length(schema, "maxLength")
    if shortest is not None or longest is not None:

        def sized(v: Any) -> bool:
            if not isinstance(v, str):
                return True
            n = len(v)
            return (shortest is None or n >= shortest) and (longest is None or n <= longest)

        checks.append(sized)
    if any(k in schema for k in ("properties", "required", "additionalProperties")):
        checks.append(_object(schema))
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)


def _object(schema: dict[str, Any]) -> Predicate:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(properties, dict) or not isinstance(required, list):
        raise _Unsupported("properties")
    if not all(isinstance(name, str) for name in required):
        raise _Unsupported("required")
    named = {name: _compile(sub) for name, sub in properties.items()}
    other = _compile(extra)
    needed = tuple(required)
    any_extra = extra is True

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        for name in needed:
            if name not in v:
                return False
        for name, value in v.items():
            sub = named.get(name)
            if sub is not None:
                if not sub(value):
                    return False
            elif not any_extra and not other(value):
                return False
        return True

    return check


_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "properties",
        "required",
        "additionalProperties",
    }
)


def predicate(validator: jsonschema.protocols.Validator) -> Predicate | None:
    """A plain-Python verdict for `validator`'s schema (True: valid), or None when the schema is
    outside the subset above (then only jsonschema may judge)."""
    if type(validator) not in _DRAFTS:
        return None
    schema = validator.schema
    if isinstance(schema, dict) and "$schema" in schema:
        schema = {k: v for k, v in schema.items() if k != "$schema"}
    try:
        return _compile(schema)
    except _Unsupported:
        return None


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    """A compiled schema: jsonschema's validator and, when the schema allows one, its predicate."""

    validator: jsonschema.protocols.Validator
    fast: Predicate | None

    @classmethod
    def of(cls, validator: jsonschema.protocols.Validator) -> CompiledSchema:
        return cls(validator, predicate(validator))

    @property
    def schema(self) -> Any:
        return self.validator.schema

    def surely_valid(self, value: Any) -> bool:
        """True only when `value` is valid; False means: ask jsonschema."""
        fast = self.fast
        try:
            return fast is not None and fast(value)
        except Exception:  # a comparison the predicate did not foresee: jsonschema decides
            return False
